"""deploy/sentinel: valid JSON/YAML, consistent with the sink's row mapping."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from sinks.sentinel import ALERT_COLUMNS, EVENT_COLUMNS, MITRE_TACTICS, alert_to_row
from sinks.settings import SentinelSettings

from .helpers import make_alert

ROOT = Path(__file__).resolve().parents[2] / "deploy" / "sentinel"
TABLE_TYPES = {"datetime": "dateTime"}
RESERVED = {"_ResourceId", "id", "_SubscriptionId", "TenantId", "Type", "UniqueId", "Title"}
SENTINEL_TACTICS = {"Reconnaissance", "ResourceDevelopment", "InitialAccess", "Execution",
                    "Persistence", "PrivilegeEscalation", "DefenseEvasion", "CredentialAccess",
                    "Discovery", "LateralMovement", "Collection", "CommandAndControl",
                    "Exfiltration", "Impact"}


def _table(name: str) -> dict:
    return json.loads((ROOT / "tables" / f"{name}.json").read_text())


def test_tables_match_row_mapping():
    for name, cols in (("OpenITDRAlerts_CL", ALERT_COLUMNS),
                       ("OpenITDRIdentityEvents_CL", EVENT_COLUMNS)):
        schema = _table(name)["properties"]["schema"]
        assert schema["name"] == name
        got = {c["name"]: c["type"] for c in schema["columns"]}
        assert got == {c: TABLE_TYPES.get(t, t) for c, t in cols.items()}
        for c in schema["columns"]:
            assert c["description"]
            assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,44}", c["name"])
            assert c["name"] not in RESERVED
    assert list(alert_to_row(make_alert(1))) == list(ALERT_COLUMNS)


def test_dcr_template_declares_the_streams_and_flows():
    t = json.loads((ROOT / "dcr.json").read_text())
    (dcr,) = [r for r in t["resources"] if r["type"] == "Microsoft.Insights/dataCollectionRules"]
    props = dcr["properties"]
    decls = props["streamDeclarations"]
    default_stream = SentinelSettings.model_fields["stream_name"].default
    for stream, cols in ((default_stream, ALERT_COLUMNS),
                         ("Custom-OpenITDRIdentityEvents_CL", EVENT_COLUMNS)):
        assert {c["name"]: c["type"] for c in decls[stream]["columns"]} == cols
        (flow,) = [f for f in props["dataFlows"] if f["streams"] == [stream]]
        assert flow["outputStream"] == stream
        assert flow["transformKql"].startswith("source")
        dest = {d["name"] for d in props["destinations"]["logAnalytics"]}
        assert set(flow["destinations"]) <= dest
    assert {"dcrImmutableId", "logsIngestionEndpoint"} <= set(t["outputs"])
    for p in t["parameters"].values():
        assert p["metadata"]["description"]


def test_analytics_rules_reference_real_columns_and_entities():
    rules = sorted((ROOT / "analytics").glob("*.yaml"))
    assert len(rules) >= 1
    known_tactics = {t for v in MITRE_TACTICS.values() for t in v}
    for path in rules:
        r = yaml.safe_load(path.read_text())
        assert r["kind"] in ("NRT", "Scheduled")
        q = r["query"]
        assert q.lstrip().startswith("OpenITDRAlerts_CL")
        projected = set(re.search(r"\| project (.*)", q, re.S).group(1).replace("\n", " ")
                        .replace(" ", "").split(","))
        extended = set(re.findall(r"(\w+) = ", q))
        source_cols = projected - extended
        assert source_cols <= set(ALERT_COLUMNS), source_cols - set(ALERT_COLUMNS)
        types = {m["entityType"] for m in r["entityMappings"]}
        assert {"Account", "Host", "IP"} <= types
        for m in r["entityMappings"]:
            for f in m["fieldMappings"]:
                assert f["columnName"] in projected
        for col in r["customDetails"].values():
            assert col in projected
        o = r["alertDetailsOverride"]
        assert o["alertSeverityColumnName"] in projected
        assert o["alertTacticsColumnName"] in projected
        for name in re.findall(r"{{(\w+)}}", o["alertDisplayNameFormat"]
                               + o["alertDescriptionFormat"]):
            assert name in projected
        assert set(r["tactics"]) <= SENTINEL_TACTICS
        assert known_tactics <= set(r["tactics"])
        assert set(r["relevantTechniques"]) == set(MITRE_TACTICS)
        g = r["incidentConfiguration"]["groupingConfiguration"]
        assert g["groupByCustomDetails"] == ["OpenITDRAlertId"]
        assert "OpenITDRAlertId" in r["customDetails"]
    # severity values produced by the sink are Sentinel severities
    assert alert_to_row(make_alert(1, severity="informational"))["Severity"] == "Informational"
