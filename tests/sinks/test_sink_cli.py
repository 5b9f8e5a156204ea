"""`itdr alerts list` and `itdr alerts tail` through the real CLI entry point."""

from __future__ import annotations

import time

import orjson
import pytest
import yaml

from sinks.cli import format_line, parse_since
from sinks.workspace import open_store
from stream.cli import main
from stream.errors import ConfigError

from .helpers import make_alert, produce, produce_alerts


def test_parse_since():
    assert parse_since("30m") == 1800 and parse_since("1h") == 3600
    assert parse_since("7d") == 7 * 86400 and parse_since(" 90S ") == 90
    with pytest.raises(ConfigError) as e:
        parse_since("yesterday")
    assert e.value.location == "--since" and "30m" in e.value.fix


@pytest.fixture(params=["sqlite", "postgresql"])
def workspace_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "ws.db")
    return request.getfixturevalue("pg_schema_dsn")


def test_alerts_list(workspace_url, capsys):
    now = int(time.time() * 1000)
    recent = [make_alert(i, 2, t0=now - 20 * 60_000) for i in range(3)]
    old = make_alert(50, t0=now - 3 * 86400_000, detector="dcsync", severity="high")
    store = open_store(workspace_url)
    store.write(recent + [old, make_alert(0, 1, t0=now - 20 * 60_000)])
    store.close()
    assert main(["alerts", "list", "--workspace", workspace_url, "--since", "1h"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[-1] == "3 alert(s): 3 medium"
    assert "MEDI password_spray" in lines[0] and " x20 " in lines[0] and " v2]" in lines[0]
    assert main(["alerts", "list", "--workspace", workspace_url, "--detector", "dcsync",
                 "--json"]) == 0
    (row,) = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert row["id"] == old.id and row["severity"] == "high"
    assert main(["alerts", "list", "--workspace", workspace_url, "--since", "soon"]) == 2
    assert "--since" in capsys.readouterr().err


def test_alerts_list_missing_workspace_is_actionable(tmp_path, capsys):
    assert main(["alerts", "list", "--workspace", str(tmp_path / "none.db")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "itdr sink workspace" in err


def test_alerts_tail_filters_and_stops(kafka, topics, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"topics": {"prefix": topics.prefix}}))
    alerts = [make_alert(i, detector="dcsync" if i % 3 == 0 else "password_spray",
                         severity="high" if i % 2 == 0 else "low") for i in range(12)]
    produce_alerts(kafka, topics, alerts)
    produce(kafka, topics.name("alerts"), [(b"x", b"garbage")])
    base = ["alerts", "tail", "-c", str(cfg), "--bootstrap", kafka.bootstrap_servers,
            "--from-beginning"]
    assert main(base + ["--detector", "dcsync", "--timeout", "1.5"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert len(lines) == 4 and all(" dcsync " in x for x in lines)
    assert "1 records skipped" in out.err
    assert main(base + ["--severity", "high", "--json", "--max", "3"]) == 0
    got = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(got) == 3 and {g["severity"] for g in got} == {"high"}
    t0 = time.monotonic()
    assert main(["alerts", "tail", "-c", str(cfg), "--bootstrap", kafka.bootstrap_servers,
                 "--timeout", "1"]) == 0                         # from the end: nothing new
    assert capsys.readouterr().out == "" and time.monotonic() - t0 < 15


def test_format_line_is_one_line():
    a = make_alert(1).model_copy(update={"description": "a\nb"})
    line = format_line(a)
    assert line.startswith(a.last_seen[:19]) and a.id in line
    assert "\n" not in line and " a b " in line
