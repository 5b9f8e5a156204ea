"""docs/alerts-schema.json is generated from the Alert model and must be up to date."""

from __future__ import annotations

import json

from sinks.schema_export import DOC, alerts_schema_text

from .helpers import make_alert


def test_alerts_schema_doc_is_up_to_date():
    assert DOC.read_text(encoding="utf-8") == alerts_schema_text(), (
        "docs/alerts-schema.json is stale: run `python -m sinks.schema_export`")


def test_alert_json_validates_against_the_published_schema():
    import jsonschema

    schema = json.loads(DOC.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    v = jsonschema.Draft202012Validator(schema)
    v.validate(json.loads(make_alert(1, 2).to_json()))
    bad = json.loads(make_alert(1).to_json())
    bad["severity"] = "critical"
    bad["unknown"] = 1
    assert len(list(v.iter_errors(bad))) == 2


def test_sinks_doc_lists_every_setting():
    from sinks.schema_export import settings_table

    doc = (DOC.parent / "sinks.md").read_text(encoding="utf-8")
    assert settings_table() in doc, ("docs/sinks.md configuration table is stale: regenerate "
                                     "it with sinks.schema_export.settings_table()")
