"""End to end: ``itdr demo --events N --json`` as a subprocess (real broker, real stream
worker and workspace sink child processes)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.broker]

_missing = [m for m in ("stream.worker", "sinks.runner", "sinks.workspace")
            if importlib.util.find_spec(m) is None]


def _run_demo(tmp_path: Path, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("ITDR_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", "demo", "--events", "20000", "--json",
         "--workspace", str(tmp_path / "ws.db"), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(bool(_missing), reason=f"worker not yet available: {_missing}")
def test_demo_detects_every_injected_attack_without_false_positives(tmp_path):
    p = _run_demo(tmp_path)
    assert p.returncode == 0, f"demo failed ({p.returncode}):\n{p.stderr[-4000:]}"
    last = p.stdout.strip().splitlines()[-1]
    s = orjson.loads(last)
    for k in ("events", "injected_attacks", "detected_attacks", "false_positives",
              "alerts_by_detector", "elapsed_s", "missed"):
        assert k in s, k
    assert s["events"] > 15_000
    assert s["injected_attacks"] >= 12
    assert s["detected_attacks"] == s["injected_attacks"], s["missed"]
    assert s["false_positives"] == 0, s["false_positive_alerts"]
    assert s["normalize_errors"] == 0
    # the human-readable table is printed too, and the workspace holds the alerts
    assert "injected attacks detected" in p.stdout
    assert sum(s["alerts_by_detector"].values()) == s["alerts"]
    from sinks.workspace import open_store
    store = open_store(str(tmp_path / "ws.db"), migrate=False)
    try:
        assert store.count() == s["alerts"]
    finally:
        store.close()
    # progress went to stderr, plain text without a TTY
    assert "sending" in p.stderr and "\r" not in p.stderr


@pytest.mark.skipif(bool(_missing), reason=f"worker not yet available: {_missing}")
def test_demo_reports_pipeline_failure_with_nonzero_exit(tmp_path):
    """A broken pipeline (here: the workspace cannot be created) is an error, not a result."""
    bad = tmp_path / "not-a-dir"
    bad.write_text("x")
    env = dict(os.environ)
    env.pop("ITDR_CONFIG", None)
    p = subprocess.run(
        [sys.executable, "-m", "stream.cli", "demo", "--events", "2000", "--json",
         "--workspace", str(bad / "ws.db")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0
    assert "error" in p.stderr.lower()


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return st.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(bool(_missing), reason=f"worker not yet available: {_missing}")
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_demo_stops_its_children_on_sigterm(tmp_path):
    import signal
    import time

    env = dict(os.environ)
    env.pop("ITDR_CONFIG", None)
    p = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "demo", "--events", "20000",
         "--workspace", str(tmp_path / "ws.db")],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        kids: list[int] = []
        while time.monotonic() < deadline and len(kids) < 3:   # broker, worker, sink
            time.sleep(0.5)
            kids = _children(p.pid)
            assert p.poll() is None, p.stderr.read()
        assert len(kids) >= 3, kids
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=60)
        assert rc == 130
        time.sleep(0.5)
        assert not [k for k in kids if _alive(k)]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.skipif(bool(_missing), reason=f"worker not yet available: {_missing}")
def test_demo_can_be_pointed_at_a_syslog_receiver_by_configuration(tmp_path):
    """`itdr demo -c cfg.yaml` with sinks.syslog enabled also delivers every alert version as
    CEF to that receiver (the same works for sinks.sentinel / sinks.alerts_topic)."""
    sys.path.insert(0, str(ROOT / "tests" / "sinks"))
    from syslog_receiver import SyslogReceiver

    rx = SyslogReceiver("tcp")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"sinks:\n  syslog: {{enabled: true, host: 127.0.0.1, port: {rx.port}, "
                   f"protocol: tcp}}\n")
    try:
        p = _run_demo(tmp_path, "-c", str(cfg))
        assert p.returncode == 0, f"demo failed ({p.returncode}):\n{p.stderr[-4000:]}"
        s = orjson.loads(p.stdout.strip().splitlines()[-1])
        assert s["detected_attacks"] == s["injected_attacks"]
        assert "through the syslog sink" in p.stderr
        cef = [m for m in rx.messages if "CEF:0|OpenITDR|OpenITDR|" in m]
        detectors = {m.split("|")[4] for m in cef}
        assert set(s["alerts_by_detector"]) <= detectors
        assert len(cef) >= s["alerts"]
    finally:
        rx.close()
