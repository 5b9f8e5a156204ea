"""Test helpers: read back what the collectors produced (real broker, no mocks)."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from stream import wire
from stream.dlq import parse_headers


def consume_all(bootstrap: str, topic: str, partitions: int, timeout: float = 10.0) -> list:
    """Every message currently in ``topic`` (up to the high watermark)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        want = {}
        for p in range(partitions):
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if hi > lo:
                want[p] = hi
        if not want:
            return []
        c.assign([TopicPartition(topic, p, 0) for p in want])
        got: list = []
        seen = {p: 0 for p in want}
        deadline = time.monotonic() + timeout
        while any(seen[p] < want[p] for p in want) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            got.append(m)
            seen[m.partition()] = m.offset() + 1
        return got
    finally:
        c.close()


def events_in(bootstrap: str, topic: str, partitions: int) -> list[tuple[int, dict]]:
    """Decoded events as (partition, event dict) in partition/offset order."""
    out = []
    msgs = consume_all(bootstrap, topic, partitions)
    msgs.sort(key=lambda m: (m.partition(), m.offset()))
    for m in msgs:
        b = wire.decode(m.value())
        assert b.partition == m.partition(), "batch produced to the wrong partition"
        for i in range(b.n):
            e = b.event(i)
            out.append((m.partition(), e.model_dump()))
    return out


def dlq_records(bootstrap: str, topic: str) -> list[tuple[bytes, dict]]:
    return [(m.value(), parse_headers(m.headers())) for m in consume_all(bootstrap, topic, 1)]


def synthetic_events(n: int, start: int = 1) -> list[dict]:
    out = []
    for i in range(start, start + n):
        out.append({"time_ms": 1_700_000_000_000 + i, "record_id": i, "event_id": 4624,
                    "computer": "dc01.corp.local", "channel": "security", "action": "logon",
                    "protocol": "kerberos", "account": f"corp\\user{i % 97}",
                    "src_ip": f"10.0.{i % 7}.{i % 200}", "logon_type": 3, "flags": 0})
    return out


class RecordingProducer:
    """Stands in for the Kafka producer where a test checks the pipeline's own logic (what it
    hands the producer: batches, dead letters, epochs), not the delivery."""

    backpressure = False

    class epochs:
        @staticmethod
        def lag_events() -> int:
            return 0

    def __init__(self):
        self.batches, self.raw, self.epochs_closed = [], [], []

    def send_batch(self, m):
        self.batches.append(m)

    def send_raw(self, topic, value, *, key=None, headers=None):
        self.raw.append((topic, value, parse_headers(headers)))

    def close_epoch(self, positions, n_read=0):
        self.epochs_closed.append((dict(positions), n_read))
        return 0

    def service(self, t=0):
        return None

    def flush(self, t=0):
        return True

    def stats(self):
        return {}
