"""Fixtures of the sink tests (the broker, topics and pg_dsn fixtures are in tests/conftest.py)."""

from __future__ import annotations

import uuid

import psycopg
import pytest


@pytest.fixture
def pg_schema_dsn(pg_dsn):
    """The test database with a private schema (search_path) so tests never collide."""
    schema = f"ws_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in pg_dsn else "?"
    yield f"{pg_dsn}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(f"DROP SCHEMA {schema} CASCADE")
