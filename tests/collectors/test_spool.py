"""Disk spool: the broker goes away, batches spool (bounded, backpressure), survive a
collector restart, and drain completely and in order when the broker is back."""

from __future__ import annotations

import time
import uuid

import pytest

from collectors.batcher import Batcher
from collectors.producer import BatchProducer
from collectors.spool import Spool
from stream.broker import ensure_topics
from stream.settings import TopicSettings

from .helpers import events_in, synthetic_events

pytestmark = pytest.mark.broker


def _wait(cond, timeout=30.0, step=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if step:
            step()
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_spool_entry_roundtrip_and_corruption(tmp_path):
    s = Spool(tmp_path, max_bytes=1 << 20)
    assert s.append("t", 3, b"3", b"payload-1", [("h", b"v")], 7)
    assert s.append("t", 1, None, b"payload-2", None, 2)
    s2 = Spool(tmp_path, max_bytes=1 << 20)      # survives a restart
    es = s2.peek(10)
    assert [(e.topic, e.partition, e.key, e.value, e.n_events) for e in es] == [
        ("t", 3, b"3", b"payload-1", 7), ("t", 1, None, b"payload-2", 2)]
    assert es[0].headers == [("h", b"v")]
    # flip one payload byte: detected, moved aside, counted -- never served
    p = sorted(tmp_path.glob("*.spool"))[0]
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))
    s3 = Spool(tmp_path, max_bytes=1 << 20)
    es = s3.peek(10)
    assert [e.value for e in es] == [b"payload-2"]
    assert s3.corrupt == 1 and (tmp_path / "corrupt" / p.name).exists()


def test_spool_is_bounded(tmp_path):
    s = Spool(tmp_path, max_bytes=1 << 16)
    n = 0
    while s.append("t", 0, None, b"x" * 4000):
        n += 1
    assert 10 <= n <= 16
    assert s.rejected_full == 1 and s.bytes <= 1 << 16


def test_spool_fills_while_broker_down_and_drains_after_restart(fresh_broker, tmp_path):
    kafka = fresh_broker.kafka_settings()
    topics = TopicSettings(prefix=f"sp{uuid.uuid4().hex[:6]}.", partitions=4)
    ensure_topics(kafka, topics)
    committed: list[dict] = []
    spool_dir = tmp_path / "spool"
    # the spool bound must be well below what 5000 dual-keyed events take in wire v2
    # (~310 kB in 200-event batches; v1 took ~2.2 MB)
    spool_max = 100_000
    prod = BatchProducer(kafka, topics, Spool(spool_dir, max_bytes=spool_max),
                         on_commit=committed.append, delivery_timeout_s=2.0)
    batcher = Batcher(topics.partitions, max_events=200)
    evs = synthetic_events(6000)
    first, rest = evs[:1000], evs[1000:]
    # 1) broker up: first 1000 delivered, epoch committed
    for i, e in enumerate(first):
        for m in batcher.add(e, i):
            prod.send_batch(m)
    for m in batcher.flush():
        prod.send_batch(m)
    prod.close_epoch({"src": {"record_id": 1000}}, 1000)
    assert prod.flush(20)
    assert committed == [{"src": {"record_id": 1000}}]
    # 2) broker down: deliveries fail after the timeout, batches spool; the spool bound is
    #    reached -> backpressure (overflow kept in memory, nothing dropped)
    fresh_broker.stop()
    sent = 1000
    for e in rest:
        for m in batcher.add(e, sent):
            prod.send_batch(m)
        sent += 1
        if sent % 500 == 0:
            prod.service(0)
        if prod.backpressure:
            break
    for m in batcher.flush():
        prod.send_batch(m)
    prod.close_epoch({"src": {"record_id": sent}}, sent - 1000)
    assert _wait(lambda: prod.in_flight() == 0, 20, lambda: prod.service(0.05))
    assert not prod.spool.empty
    assert prod.backpressure and prod.overflow, "spool bound should have been reached"
    assert prod.spool.bytes <= spool_max
    assert committed == [{"src": {"record_id": 1000}}], "checkpoint moved without delivery"
    # 3) restart the broker: spool and overflow drain completely, checkpoint advances
    fresh_broker.start()
    assert _wait(lambda: not prod.spooling and prod.in_flight() == 0, 60,
                 lambda: prod.service(0.05))
    prod.service(0)
    assert committed[-1] == {"src": {"record_id": sent}}
    got = events_in(fresh_broker.bootstrap, topics.name("events"), 4)
    ids = sorted(e["record_id"] for _, e in got)
    assert ids == list(range(1, sent + 1)), "events lost or duplicated"
    # per-partition order preserved through the spool
    for p in range(4):
        rids = [e["record_id"] for q, e in got if q == p]
        assert rids == sorted(rids)
    # 4) right partition: partition == hash(account) % 4 (checked in events_in via header)
    assert prod.spool.stats()["drained_total"] > 0


def test_spool_survives_collector_restart(fresh_broker, tmp_path):
    kafka = fresh_broker.kafka_settings()
    topics = TopicSettings(prefix=f"sr{uuid.uuid4().hex[:6]}.", partitions=4)
    ensure_topics(kafka, topics)
    spool_dir = tmp_path / "spool"
    fresh_broker.stop()
    prod = BatchProducer(kafka, topics, Spool(spool_dir), delivery_timeout_s=1.0)
    batcher = Batcher(topics.partitions, max_events=100)
    for m in batcher.extend(synthetic_events(1500)):
        prod.send_batch(m)
    assert _wait(lambda: prod.in_flight() == 0, 20, lambda: prod.service(0.05))
    n_spooled = len(prod.spool)
    assert n_spooled > 0
    del prod                        # the collector dies with a full spool
    fresh_broker.start()
    prod2 = BatchProducer(kafka, topics, Spool(spool_dir), delivery_timeout_s=5.0)
    assert len(prod2.spool) == n_spooled
    assert prod2.flush(30)
    got = events_in(fresh_broker.bootstrap, topics.name("events"), 4)
    assert sorted(e["record_id"] for _, e in got) == list(range(1, 1501))
    by_src = events_in(fresh_broker.bootstrap, topics.name("events_by_source"), 4)
    assert sorted(e["record_id"] for _, e in by_src) == list(range(1, 1501))
