"""Workspace store (real SQLite and PostgreSQL) and the workspace sink on a real broker."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

import orjson
import pytest
import yaml

from sinks.runner import SinkRunner, build_sink
from sinks.workspace import SCHEMA_VERSION, WorkspaceStore, open_store
from stream import metrics

from .helpers import (T0, ThreadedRunner, dlq_records, make_alert, produce, produce_alerts,
                      root_settings, wait_for)
from .netproxy import TcpProxy

FAST = {"batching": {"max_records": 50, "max_wait_s": 0.2},
        "retry": {"initial_backoff_s": 0.1, "max_backoff_s": 0.5}}


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "ws.db")
    return request.getfixturevalue("pg_schema_dsn")


def test_store_upsert_versions_evidence_and_queries(store_url):
    store = open_store(store_url)
    assert store.migrate() == SCHEMA_VERSION       # idempotent
    a1, a2, b1 = make_alert(1, 1), make_alert(1, 2), make_alert(2, 1, detector="dcsync",
                                                                  severity="high")
    store.write([a1, a2, b1])
    store.write([a1])                               # late re-send of v1 never wins
    store.write([a2, b1])                           # replay: idempotent
    got = store.get_alert(a1.id)
    assert got["version"] == 2 and got["evidence"]["count"] == 20
    assert store.versions(a1.id) == [1, 2]
    assert store.count("alerts") == 2 and store.count("alert_versions") == 3
    assert ("host", "ws1.corp.local") in store.evidence(a1.id)
    assert ("event_id", "4625") in store.evidence(a1.id)
    assert [a["id"] for a in store.list_alerts(detector="dcsync")] == [b1.id]
    assert [a["id"] for a in store.list_alerts(severity="high")] == [b1.id]
    assert [a["id"] for a in store.list_alerts(entity="ws2.corp.local")] == [b1.id]
    # since filters on last evidence time (event time)
    assert store.list_alerts(since_ms=a2.last_seen_ms + 1) == []
    assert len(store.list_alerts(since_ms=T0)) == 2
    store.write(heartbeats=[("dc1", 5, '{"sensor_id": "dc1", "eps": 10}'),
                            ("dc1", 3, '{"sensor_id": "dc1", "stale": true}')])
    (h,) = store.sensor_health()
    assert h["last_heartbeat_ms"] == 5 and h["payload"]["eps"] == 10
    store.close()
    # reopening keeps the schema version (migrations recorded once)
    again = WorkspaceStore(store_url)
    assert again.migrate() == SCHEMA_VERSION and again.count("alerts") == 2
    again.close()


def _committed(kafka, group: str, topic: str, partitions: int) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({**kafka.as_librdkafka(), "group.id": group})
    try:
        offs = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        c.close()
    return sum(max(0, tp.offset) for tp in offs)


def test_sink_delivers_updates_duplicates_and_dead_letters_poison(kafka, topics, tmp_path):
    db = str(tmp_path / "ws.db")
    settings = root_settings(kafka, topics, {**FAST, "workspace": {"url": db}})
    alerts = [make_alert(i, v) for i in range(60) for v in (1, 2)]
    resent = [make_alert(i, 2) for i in range(10)]          # worker crash: re-sent
    produce_alerts(kafka, topics, alerts[:70])
    produce(kafka, topics.name("alerts"), [(b"bad1", b"{not json"),
                                           (b"bad2", orjson.dumps({"id": "x"}))])
    produce_alerts(kafka, topics, alerts[70:] + resent)
    produce(kafka, topics.name("health"), [(b"dc1", orjson.dumps({"sensor_id": "dc1",
                                                                  "time_ms": 123}))])
    sink = build_sink("workspace", settings)
    runner = SinkRunner(sink, settings, group_id=f"g-{uuid.uuid4().hex[:6]}")
    store = WorkspaceStore(db)
    with ThreadedRunner(runner):
        wait_for(lambda: os.path.exists(db) and _count(store) == 120, msg="120 versions")
        wait_for(lambda: _committed(kafka, runner.group_id, topics.name("alerts"), 4) == 132,
                 msg="all offsets committed")
    assert store.count("alerts") == 60
    assert all(a["version"] == 2 for a in store.list_alerts())
    assert store.sensor_health()[0]["sensor_id"] == "dc1"
    dl = dlq_records(kafka, topics, 2)
    assert sorted(d["key"] for d in dl) == [b"bad1", b"bad2"]
    for d in dl:
        assert d["itdr-component"] == "sink:workspace"
        assert "not a valid alert" in d["itdr-reason"]
        assert d["itdr-origin"].startswith(topics.name("alerts") + "/")
    assert dl[0]["value"] in (b"{not json", orjson.dumps({"id": "x"}))


def _count(store: WorkspaceStore) -> int:
    try:
        return store.count("alert_versions")
    except Exception:
        store.reset_connection()
        return -1


def test_sqlite_locked_for_a_while_then_recovers(kafka, topics, tmp_path):
    db = str(tmp_path / "ws.db")
    open_store(db).close()
    settings = root_settings(kafka, topics, {**FAST, "workspace": {"url": db, "health": False}})
    sink = build_sink("workspace", settings)
    runner = SinkRunner(sink, settings, group_id=f"g-{uuid.uuid4().hex[:6]}")
    retries0 = metrics.SINK_RETRIED.labels("workspace")._value.get()
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")                 # the destination is unavailable
    with ThreadedRunner(runner):
        produce_alerts(kafka, topics, [make_alert(i) for i in range(100)])
        time.sleep(2.5)
        locker.execute("ROLLBACK")                    # ... and recovers
        locker.close()
        store = WorkspaceStore(db)
        wait_for(lambda: _count(store) == 100, msg="all alerts after recovery")
    assert metrics.SINK_RETRIED.labels("workspace")._value.get() > retries0


def test_postgres_down_for_a_while_then_recovers(kafka, topics, pg_schema_dsn):
    u = urlsplit(pg_schema_dsn)
    proxy = TcpProxy(u.hostname, u.port or 5432)
    dsn = pg_schema_dsn.replace(f"{u.hostname}:{u.port or 5432}", f"127.0.0.1:{proxy.port}")
    settings = root_settings(kafka, topics, {**FAST, "workspace": {"url": dsn, "health": False}})
    sink = build_sink("workspace", settings)
    runner = SinkRunner(sink, settings, group_id=f"g-{uuid.uuid4().hex[:6]}")
    store = WorkspaceStore(pg_schema_dsn)
    try:
        with ThreadedRunner(runner):
            produce_alerts(kafka, topics, [make_alert(i) for i in range(50)])
            wait_for(lambda: _count(store) == 50, msg="first 50")
            proxy.cut()                               # database unreachable
            produce_alerts(kafka, topics, [make_alert(i, 2) for i in range(50)]
                           + [make_alert(i) for i in range(50, 100)])
            time.sleep(2.0)
            assert _count(store) == 50
            proxy.restore()
            wait_for(lambda: _count(store) == 150, msg="all after recovery")
        assert store.count("alerts") == 100
        assert {a["version"] for a in store.list_alerts() if a["entity"] < "corp\\user5"} >= {2}
    finally:
        store.close()
        proxy.close()


def test_sink_process_killed_mid_batch_resumes_without_loss(kafka, topics, tmp_path):
    db = tmp_path / "ws.db"
    cfg = tmp_path / "itdr.yaml"
    cfg.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": kafka.bootstrap_servers},
        "topics": {"prefix": topics.prefix, "partitions": topics.partitions},
        "sinks": {"batching": {"max_records": 20, "max_wait_s": 0.5},
                  "session_timeout_ms": 6000, "state_dir": str(tmp_path / "state"),
                  "workspace": {"url": str(db), "health": False}}}))
    n = 3000
    produce_alerts(kafka, topics, [make_alert(i) for i in range(n)])
    cmd = [sys.executable, "-m", "stream.cli", "sink", "workspace", "-c", str(cfg)]
    store = WorkspaceStore(str(db))
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        wait_for(lambda: db.exists() and _count(store) >= 200, timeout=30,
                 interval=0.02, msg="first batches")
        os.kill(p.pid, signal.SIGKILL)                # mid-stream, mid-batch
        p.wait(10)
        at_kill = _count(store)
        assert at_kill < n, "the sink finished before it could be killed"
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True)
        wait_for(lambda: _count(store) == n, timeout=40, msg="all alerts after restart")
        p.send_signal(signal.SIGTERM)                 # graceful stop: exit code 0
        assert p.wait(20) == 0, p.stderr.read().decode()[-2000:]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
        store.close()
    assert store.count("alerts") == n
