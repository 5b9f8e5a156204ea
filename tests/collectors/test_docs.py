"""The documentation covers the contract: every schema field and every consumed event id."""

from __future__ import annotations

import re
from pathlib import Path

from collectors.normalize import EVENT_TABLE
from collectors.settings import CollectorSettings, GatewaySettings
from stream.schema import ALL_FIELDS

DOCS = Path(__file__).parents[2] / "docs"


def test_every_schema_field_documented_with_example():
    text = (DOCS / "schema.md").read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)` \|.*$", text, re.M)}
    missing = [f for f in ALL_FIELDS if f not in rows]
    assert not missing, f"fields not documented in docs/schema.md: {missing}"
    for f in ALL_FIELDS:
        assert rows[f].rstrip().endswith("` |"), f"{f}: no example value"


def test_every_event_id_in_normalization_doc():
    text = (DOCS / "normalization.md").read_text()
    ids = set(int(x) for x in re.findall(r"^\| (\d+) \|", text, re.M))
    assert ids == set(EVENT_TABLE)


def test_every_collector_setting_documented():
    text = (DOCS / "collectors.md").read_text()
    for model in (CollectorSettings, GatewaySettings):
        for name, f in model.model_fields.items():
            assert f.description, f"{model.__name__}.{name} has no description"
            assert f"`{name}`" in text, f"{name} not in docs/collectors.md"
