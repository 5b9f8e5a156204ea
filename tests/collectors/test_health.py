"""Sensor heartbeats and the HealthMonitor (MDI-style health alerts)."""

from __future__ import annotations

import subprocess
import sys
import uuid

import orjson
import pytest
from confluent_kafka import Producer

from collectors.health import Heartbeat
from stream.alert import Alert
from stream.health import AUDIT_GAP, NOT_ANALYSED, SILENT, HealthMonitor

from .helpers import consume_all
from .test_follow_resume import ITDR, write_config

T0 = 1_767_225_600_000
MIN = 60_000


def hb(sensor="dc01", t=T0, read=0, delivered=0, spool=0, ids=(), component="collect",
       backpressure=False):
    h = Heartbeat(sensor, component, ["Security.evtx"], 30, "health")
    return h.build(read=read, delivered=delivered, checkpoint_lag=read - delivered,
                   spool_bytes=spool, spool_batches=1 if spool else 0, dropped=0,
                   dead_lettered=0, backpressure=backpressure, unknown_ids={5156: 3},
                   event_counts={i: 1 for i in ids}, last_delivery_ms=t, now=t / 1000)


def test_silent_sensor_raises_then_closes():
    m = HealthMonitor(silent_after_s=300)
    m.observe(hb(t=T0))
    assert m.check(T0 + 4 * MIN) == []
    out = m.check(T0 + 6 * MIN)
    assert [(a.detector, a.entity, a.status) for a in out] == [(SILENT, "dc01", "open")]
    assert isinstance(out[0], Alert) and out[0].severity == "medium"
    assert m.check(T0 + 7 * MIN) == [], "raised once per episode"
    m.observe(hb(t=T0 + 8 * MIN))
    out = m.check(T0 + 8 * MIN)
    assert [(a.detector, a.status, a.version) for a in out] == [(SILENT, "closed", 2)]


def test_events_not_analysed_when_reading_without_delivery():
    m = HealthMonitor(stall_after_s=300)
    for i in range(12):                 # reads grow, deliveries stuck, spool grows
        m.observe(hb(t=T0 + i * MIN, read=1000 * (i + 1), delivered=500, spool=10_000 * i))
    out = m.check(T0 + 11 * MIN)
    assert [a.detector for a in out] == [NOT_ANALYSED]
    assert "delivered none" in out[0].description
    healthy = HealthMonitor(stall_after_s=300)
    for i in range(12):
        healthy.observe(hb(t=T0 + i * MIN, read=1000 * (i + 1), delivered=1000 * (i + 1)))
    assert healthy.check(T0 + 11 * MIN) == []


def test_worker_lag_growth_is_events_not_analysed():
    m = HealthMonitor(lag_stall_after_s=300)
    for i in range(10):
        m.observe_worker_lag(1000 + 5000 * i, T0 + i * MIN)
    out = m.check(T0 + 9 * MIN)
    assert [(a.detector, a.entity) for a in out] == [(NOT_ANALYSED, "stream-workers")]


def test_audit_policy_gap_names_the_subcategory():
    m = HealthMonitor(audit_window_s=3600)
    m.observe(hb(t=T0, read=10, delivered=10, ids=(4624, 4768, 4769, 4776)))
    m.observe(hb(t=T0 + 30 * MIN, read=20, delivered=20, ids=(4624,)))
    assert [a.detector for a in m.check(T0 + 30 * MIN)] == []     # window not elapsed
    m.observe(hb(t=T0 + 61 * MIN, read=30, delivered=30, ids=(4624,)))
    out = m.check(T0 + 61 * MIN)
    assert [a.detector for a in out] == [AUDIT_GAP]
    a = out[0]
    assert a.evidence.details["missing_event_ids"] == ["4662", "5136"]
    assert "Directory Service Access" in a.evidence.details["enable_4662"]
    assert "Directory Service Changes" in a.evidence.details["enable_5136"]
    # a gateway (WEF collector) aggregates many DCs: not judged per sensor
    g = HealthMonitor(audit_window_s=60)
    g.observe(hb(sensor="wec", t=T0, read=5, delivered=5, component="gateway"))
    assert g.check(T0 + 2 * MIN) == []


@pytest.mark.broker
def test_itdr_health_consumes_heartbeats_and_produces_alerts(broker, topics, tmp_path):
    p = Producer({"bootstrap.servers": broker.bootstrap})
    import time
    now = int(time.time() * 1000)
    p.produce(topics.name("health"), orjson.dumps(hb("dc-silent", t=now - 20 * MIN)))
    p.produce(topics.name("health"), orjson.dumps(hb("dc-ok", t=now)))
    p.produce(topics.name("health"), b"not json")
    p.flush(10)
    cfg = write_config(tmp_path / "c.yaml", broker.bootstrap, topics.prefix, tmp_path)
    r = subprocess.run([ITDR, "health", "-c", str(cfg), "--once", "--json"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    alerts = [Alert.from_json(x) for x in r.stdout.splitlines() if x.strip()]
    assert [(a.detector, a.entity) for a in alerts] == [(SILENT, "dc-silent")]
    msgs = consume_all(broker.bootstrap, topics.name("health"), 1)
    produced = [m for m in msgs if dict(m.headers() or []).get("itdr-kind") == b"health-alert"]
    assert len(produced) == 1 and Alert.from_json(produced[0].value()).entity == "dc-silent"


def test_collectors_never_import_faust_or_numba():
    code = ("import sys, importlib, pkgutil, collectors\n"
            "for m in pkgutil.iter_modules(collectors.__path__):\n"
            "    importlib.import_module('collectors.' + m.name)\n"
            "import stream.health, stream.cli\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('faust', 'numba', 'mode')]\n"
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert r.returncode == 0, f"imported: {r.stdout.decode()} {r.stderr.decode()[-500:]}"
