"""The worker's empty-fetch back-off against the real embedded broker, which answers an empty
fetch at once instead of holding it for fetch.max.wait (stream/fetch_backoff.py)."""

from __future__ import annotations

import asyncio
import time

import aiokafka.client
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer

from stream import fetch_backoff


def _count_fetches(monkeypatch) -> list[int]:
    n = [0]
    orig = aiokafka.client.AIOKafkaClient.send

    async def send(self, node_id, request, *a, **k):
        if type(request).__name__.startswith("FetchRequest"):
            n[0] += 1
        return await orig(self, node_id, request, *a, **k)

    monkeypatch.setattr(aiokafka.client.AIOKafkaClient, "send", send)
    return n


async def _idle_then_one(kafka, topic: str, idle_s: float) -> tuple[float, bytes]:
    c = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False,
                         fetch_max_wait_ms=1500)
    await c.start()
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        await c.seek_to_end(tp)
        t0 = time.monotonic()
        while time.monotonic() - t0 < idle_s:
            assert not await c.getmany(timeout_ms=100)
        p = Producer({"bootstrap.servers": kafka.bootstrap_servers})
        p.produce(topic, b"hello", partition=0)
        p.flush(10)
        t1 = time.monotonic()
        m = await asyncio.wait_for(c.getone(), 10)
        return time.monotonic() - t1, m.value
    finally:
        await c.stop()


def test_idle_consumer_does_not_spin_and_still_gets_records_at_once(kafka, topics, monkeypatch):
    fetches = _count_fetches(monkeypatch)
    assert fetch_backoff.install(20.0)
    w0 = fetch_backoff.waits()
    took, value = asyncio.run(_idle_then_one(kafka, topics.name("events"), 1.0))
    assert value == b"hello"
    # <= one fetch per 20 ms back-off (+ slack for the start), not thousands per second
    assert fetches[0] <= 1.0 / 0.020 + 15, fetches[0]
    # the broker answered empty fetches at once, so the back-off is what held them
    assert fetch_backoff.waits() > w0
    # a record produced while idle arrives within a back-off or so, not after fetch.max.wait
    assert took < 0.5, took


def test_backoff_off_is_plain_aiokafka(kafka, topics, monkeypatch):
    fetches = _count_fetches(monkeypatch)
    assert fetch_backoff.install(0.0)
    try:
        w0 = fetch_backoff.waits()
        _took, value = asyncio.run(_idle_then_one(kafka, topics.name("events"), 0.3))
        assert value == b"hello"
        assert fetch_backoff.waits() == w0
        assert fetches[0] > 0
    finally:
        fetch_backoff.install(20.0)


def test_worker_app_applies_backoff_and_gc_settings(kafka, topics, tmp_path):
    import gc

    from stream.settings import Settings
    from stream.broker import free_port
    from stream.worker import build_app

    before = gc.get_threshold()
    s = Settings(kafka=kafka, topics=topics,
                 worker={"state_dir": str(tmp_path / "state"), "web_port": free_port(),
                         "gc_threshold": [12345, 11, 12], "empty_fetch_backoff_ms": 5})
    try:
        app, core = build_app(s)
        assert gc.get_threshold() == (12345, 11, 12)
        assert fetch_backoff._state["backoff_s"] == 0.005
        core.producer.flush(1)
    finally:
        gc.set_threshold(*before)
        fetch_backoff.install(20.0)


async def _idle_then_stop(kafka, topic: str) -> float:
    c = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False,
                         fetch_max_wait_ms=1500)
    await c.start()
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    await c.seek_to_end(tp)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.5:
        assert not await c.getmany(timeout_ms=100)
    t1 = time.monotonic()
    await c.stop()      # cancels the fetch task that is waiting out its back-off
    return time.monotonic() - t1


def test_consumer_stops_cleanly_while_a_fetch_waits_out_its_backoff(kafka, topics):
    """Shutdown cancels pending fetch tasks and awaits them: a task cancelled inside the
    back-off must end quietly (as aiokafka's own does), or the consumer thread dies with
    CancelledError and the worker never exits on SIGTERM."""
    assert fetch_backoff.install(3000.0)
    try:
        w0 = fetch_backoff.waits()
        took = asyncio.run(_idle_then_stop(kafka, topics.name("events")))
        assert fetch_backoff.waits() > w0        # a fetch was waiting when stop() came
        assert took < 2.0, took                  # did not wait the 3 s back-off out
    finally:
        fetch_backoff.install(20.0)
