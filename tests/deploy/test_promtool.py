"""deploy/prometheus: `promtool check rules` and `promtool test rules`, plus metric-name checks.

promtool comes from the Debian package `prometheus`
(`apt-get install -y --no-install-recommends prometheus`). Without it the promtool tests are
skipped locally, but FAIL when the CI environment variable is set: CI must install it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "rules.yaml"
RULE_TESTS = PROM / "rules.test.yaml"
METRICS_PY = ROOT / "stream" / "metrics.py"


def promtool() -> str:
    exe = shutil.which("promtool")
    if exe:
        return exe
    msg = ("promtool not found: install the Debian package `prometheus` "
           "(apt-get install -y --no-install-recommends prometheus)")
    if os.environ.get("CI"):
        pytest.fail(msg + " -- CI must provide it", pytrace=False)
    pytest.skip(msg)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], cwd=PROM, capture_output=True, text=True,
                          timeout=60)


def exported_metric_names() -> set[str]:
    """Series names stream/metrics.py exports (histograms add _bucket/_sum/_count)."""
    text = METRICS_PY.read_text(encoding="utf-8")
    names = set()
    for kind, name in re.findall(r"\b(Counter|Gauge|Histogram)\(\s*\"([a-z_:][a-z0-9_:]*)\"",
                                 text):
        if kind == "Histogram":
            names |= {name + "_bucket", name + "_sum", name + "_count"}
        elif kind == "Counter":
            # prometheus_client appends _total unless the name already ends with it
            names.add(name if name.endswith("_total") else name + "_total")
        else:
            names.add(name)
    return names


def metric_names_in(expr: str) -> set[str]:
    """Identifiers in a PromQL expression that look like OpenITDR series names."""
    return set(re.findall(r"\b(itdr_[a-z0-9_]+)\b", expr))


def test_promtool_check_rules():
    r = run("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_promtool_unit_tests():
    r = run("test", "rules", str(RULE_TESTS))
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_unit_tests_can_fail(tmp_path):
    """A broken rule (threshold flipped) must make the unit tests fail."""
    broken = RULES.read_text().replace("> 300", "> 3000000")
    assert broken != RULES.read_text()
    (tmp_path / "rules.yaml").write_text(broken)
    (tmp_path / "rules.test.yaml").write_text(RULE_TESTS.read_text())
    r = subprocess.run([promtool(), "test", "rules", "rules.test.yaml"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0


def _alerts() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def test_metrics_module_parsed():
    names = exported_metric_names()
    assert "itdr_sensor_last_heartbeat_timestamp_seconds" in names
    assert "itdr_worker_batch_processing_seconds_bucket" in names
    assert len(names) > 30


def test_rules_use_only_exported_metrics():
    exported = exported_metric_names()
    for rule in _alerts():
        used = metric_names_in(rule["expr"])
        assert used, rule["alert"]
        assert used <= exported, f"{rule['alert']}: unknown metrics {used - exported}"


def test_every_alert_has_runbook_annotations_and_a_unit_test():
    tested = set()
    for t in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for a in t.get("alert_rule_test", []):
            if a.get("exp_alerts"):
                tested.add(a["alertname"])
    required = {"OpenITDRConsumerLagGrowing", "OpenITDRSinkFailing", "OpenITDRSinkDeadLettering",
                "OpenITDRSensorSilent", "OpenITDRDeadLetterRate", "OpenITDRWorkerCorruptBatches",
                "OpenITDRCollectorSpoolGrowing", "OpenITDRNoEventsProcessed"}
    names = {r["alert"] for r in _alerts()}
    assert required <= names
    docs = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8").lower()
    for rule in _alerts():
        ann = rule["annotations"]
        assert ann.get("summary") and ann.get("description") and ann.get("runbook_url")
        assert rule["labels"]["severity"] in ("warning", "critical")
        anchor = ann["runbook_url"].rsplit("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert f"### {rule['alert'].lower()}" in docs, f"docs/deploy.md lacks {rule['alert']}"
        assert rule["alert"] in tested, f"no firing unit test for {rule['alert']}"


def test_sensor_silent_uses_heartbeat_gauge_and_5_minutes():
    rule = next(r for r in _alerts() if r["alert"] == "OpenITDRSensorSilent")
    assert "itdr_sensor_last_heartbeat_timestamp_seconds" in rule["expr"]
    assert "> 300" in rule["expr"]
