"""Follow mode + checkpoints: ``itdr collect --follow`` is SIGKILLed while a log grows, then
restarted; every event of the file ends up in the topic (no gaps), and the checkpoint ends at
the end of the file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest

from stream.broker import ensure_topics
from stream.settings import TopicSettings

from .helpers import events_in

pytestmark = pytest.mark.broker

ITDR = str(Path(sys.executable).with_name("itdr"))


def nxlog_line(i: int) -> bytes:
    return orjson.dumps({
        "EventID": 4624, "EventTime": f"2024-01-01 10:{(i // 60) % 60:02d}:{i % 60:02d}",
        "Hostname": "DC01.corp.local", "Channel": "Security",
        "SourceName": "Microsoft-Windows-Security-Auditing", "RecordNumber": i,
        "TargetUserName": f"user{i % 50}", "TargetDomainName": "CORP",
        "IpAddress": f"10.0.0.{i % 250}", "LogonType": "3",
        "AuthenticationPackageName": "Kerberos"}) + b"\n"


def write_config(path: Path, bootstrap: str, prefix: str, work: Path, **collector) -> Path:
    cfg = {"kafka": {"bootstrap_servers": bootstrap}, "topics": {"prefix": prefix},
           "collector": {"checkpoint_dir": str(work / "cp"), "spool_dir": str(work / "spool"),
                         "linger_ms": 50, "poll_interval_s": 0.1, "checkpoint_interval_s": 0.2,
                         "heartbeat_interval_s": 1, "sensor_id": "dc01", **collector}}
    path.write_bytes(orjson.dumps(cfg))       # JSON is valid YAML
    return path


def test_follow_resume_after_sigkill(broker, tmp_path):
    kafka = broker.kafka_settings()
    prefix = f"fr{uuid.uuid4().hex[:6]}."
    topics = TopicSettings(prefix=prefix, partitions=4)
    ensure_topics(kafka, topics)
    log = tmp_path / "forwarded.jsonl"
    log.write_bytes(b"")
    cfg = write_config(tmp_path / "c.yaml", broker.bootstrap, prefix, tmp_path)
    n_total = 12000
    written = [0]

    def writer():
        with open(log, "ab") as f:
            for i in range(1, n_total + 1):
                line = nxlog_line(i)
                if i % 400 == 0:        # leave a half-written line for a moment
                    f.write(line[:20])
                    f.flush()
                    time.sleep(0.02)
                    f.write(line[20:])
                else:
                    f.write(line)
                written[0] = i
                if i % 400 == 0:
                    f.flush()
                    time.sleep(0.01)

    cmd = [ITDR, "collect", "-c", str(cfg), str(log), "--follow"]
    t = threading.Thread(target=writer)
    t.start()
    p1 = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cp = tmp_path / "cp" / "checkpoints.json"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (cp.exists() and written[0] > n_total // 3):
        time.sleep(0.05)
    assert cp.exists(), "no checkpoint written"
    os.kill(p1.pid, signal.SIGKILL)
    p1.wait(10)
    pos_at_kill = orjson.loads(cp.read_bytes())["sources"][str(log.resolve())]["offset"]
    assert 0 < pos_at_kill < n_total * 250
    p2 = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t.join(60)
    size = log.stat().st_size
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if cp.exists() and orjson.loads(cp.read_bytes())["sources"].get(
                str(log.resolve()), {}).get("offset") == size:
            break
        time.sleep(0.1)
    p2.send_signal(signal.SIGTERM)
    _, err = p2.communicate(timeout=30)
    assert p2.returncode == 0, err.decode()[-2000:]
    final = orjson.loads(cp.read_bytes())["sources"][str(log.resolve())]
    assert final["offset"] == size, "checkpoint did not reach the end of the file"
    got = events_in(broker.bootstrap, topics.name("events"), 4)
    ids = [e["record_id"] for _, e in got]
    assert set(ids) == set(range(1, n_total + 1)), \
        f"missing: {sorted(set(range(1, n_total + 1)) - set(ids))[:10]}"
    # at-least-once: duplicates only from the window between the last checkpoint and the kill
    dup = len(ids) - n_total
    assert 0 <= dup < n_total // 2
    # events carry the normalized fields
    e0 = next(e for _, e in got if e["record_id"] == 7)
    assert e0["account"] == "corp\\user7" and e0["src_ip"] == "10.0.0.7"
    # heartbeats went to the health topic
    from .helpers import consume_all

    hbs = [orjson.loads(m.value()) for m in consume_all(broker.bootstrap,
                                                         topics.name("health"), 1)]
    assert hbs and all(h["sensor_id"] == "dc01" for h in hbs)
