"""deploy/grafana/openitdr-dashboard.json: valid dashboard JSON whose every query uses only
metric names exported by stream/metrics.py, and whose PromQL parses (promtool)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from test_promtool import exported_metric_names, metric_names_in, promtool, run  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
DASH = ROOT / "deploy" / "grafana" / "openitdr-dashboard.json"


def dashboard() -> dict:
    return json.loads(DASH.read_text(encoding="utf-8"))


def exprs() -> list[tuple[str, str]]:
    out = []
    d = dashboard()
    for p in d["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    for v in d["templating"]["list"]:
        q = v.get("query")
        if isinstance(q, dict):
            out.append((f"variable {v['name']}", q["query"]))
    return out


def test_dashboard_structure():
    d = dashboard()
    assert d["uid"] and d["title"] == "OpenITDR"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"].lower() for p in d["panels"])
    for want in ("throughput in", "throughput out", "lag per partition", "quantiles",
                 "detector", "alerts by detector", "alerts by severity", "sink", "spool",
                 "heartbeat"):
        assert want in titles, want
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24


def test_every_query_uses_only_exported_metrics():
    exported = exported_metric_names()
    seen = set()
    for title, expr in exprs():
        used = metric_names_in(expr)
        assert used, f"{title}: no OpenITDR metric in {expr!r}"
        unknown = used - exported
        assert not unknown, f"{title}: unknown metric(s) {unknown}"
        seen |= used
    # the dashboard covers every component family
    for prefix in ("itdr_collector_", "itdr_gateway_", "itdr_worker_", "itdr_sink_",
                   "itdr_sensor_"):
        assert any(s.startswith(prefix) for s in seen), prefix


def test_metric_name_check_would_catch_a_typo():
    exported = exported_metric_names()
    assert metric_names_in("rate(itdr_worker_event_total[5m])") - exported


def test_queries_parse_with_promtool(tmp_path):
    """Each query becomes a recording rule; `promtool check rules` parses the PromQL."""
    rules = []
    for i, (_, expr) in enumerate(exprs()):
        if expr.startswith("label_values("):
            continue
        e = (expr.replace("$__rate_interval", "5m").replace("$__range", "1h")
             .replace("$namespace", ".*"))
        rules.append({"record": f"dashboard:query_{i}", "expr": e})
    f = tmp_path / "dash.rules.yaml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = run("check", "rules", str(f))
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(rf"SUCCESS: {len(rules)} rules found", r.stdout)
