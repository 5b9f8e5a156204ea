"""Durable engine snapshots on the compacted state topic.

A snapshot is the pair *(engine state, last input offset it covers)* for one
``(key kind, partition)``. It is written to partition ``p % state_partitions`` of
``topics.state`` as:

* ``n`` chunk records, key ``c/<kind>/<p>/<snap_id>/<i>``, value = up to
  :data:`CHUNK_BYTES` bytes of ``Engine.snapshot()`` (Kafka's default 1 MB message limit
  would otherwise cap the state at a few thousand identities);
* then one manifest record, key ``m/<kind>/<p>``, value = JSON ``{offset, snap_id, n,
  size, sha256, ...}``.

Chunk keys are unique per snapshot, so a writer never overwrites bytes a manifest still
points to (a zombie writer after a rebalance cannot corrupt the new owner's snapshot).
After a new manifest is durable the previous snapshot's chunks are tombstoned so that
compaction reclaims them. Reading (:meth:`StateStore.load`) scans the state partition,
keeps the newest chunk value per key, and returns the snapshot with the highest covered
offset whose chunks are all present and match the checksum. Any snapshot is a consistent
``(state, offset)`` pair of the same immutable input, so the highest offset is the best one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import StateError
from .settings import KafkaSettings

log = logging.getLogger(__name__)

CHUNK_BYTES = 512 * 1024
_MANIFEST = "m"
_CHUNK = "c"


@dataclass
class Snapshot:
    """One restorable snapshot."""

    kind: int
    partition: int
    offset: int            # last input offset covered (-1 = none)
    data: bytes
    snap_id: str
    created_ms: int = 0


@dataclass
class Captured:
    """A snapshot taken on the event loop, waiting to be written."""

    kind: int
    partition: int
    offset: int
    data: bytes


def manifest_key(kind: int, partition: int) -> bytes:
    return f"{_MANIFEST}/{kind}/{partition}".encode()


def chunk_key(kind: int, partition: int, snap_id: str, i: int) -> bytes:
    return f"{_CHUNK}/{kind}/{partition}/{snap_id}/{i}".encode()


class StateStore:
    """Writes and reads engine snapshots (confluent-kafka clients; thread-safe writes)."""

    def __init__(self, kafka: KafkaSettings, topic: str, producer: Any = None,
                 writer: str = ""):
        from confluent_kafka import Producer

        self.kafka = kafka
        self.topic = topic
        self.writer = writer or f"{os.uname().nodename}:{os.getpid()}"
        self._own_producer = producer is None
        self.producer = producer or Producer({**kafka.as_librdkafka(),
                                              "enable.idempotence": True, "acks": "all",
                                              "linger.ms": 5, "compression.type": "lz4",
                                              "message.max.bytes": 4 * 1024 * 1024})
        self._n_parts: int | None = None
        self._previous: dict[tuple[int, int], tuple[str, int]] = {}

    # -- topology ----------------------------------------------------------------------------
    def state_partitions(self) -> int:
        if self._n_parts is None:
            md = self.producer.list_topics(self.topic, timeout=15)
            t = md.topics.get(self.topic)
            if t is None or t.error is not None or not t.partitions:
                raise StateError(f"state topic {self.topic} does not exist",
                                 fix="create the product topics (`itdr broker "
                                 "--create-topics` or ensure_topics)")
            self._n_parts = len(t.partitions)
        return self._n_parts

    def state_partition(self, partition: int) -> int:
        return partition % self.state_partitions()

    # -- write -------------------------------------------------------------------------------
    def write(self, snaps: list[Captured], timeout: float = 60.0) -> None:
        """Write snapshots durably (returns only when every record is acknowledged with
        acks=all; raises :class:`StateError` otherwise), then tombstone older chunks."""
        if not snaps:
            return
        errors: list[str] = []

        def on_delivery(err, msg):
            if err is not None:
                errors.append(str(err))

        written = []
        for s in snaps:
            sp = self.state_partition(s.partition)
            snap_id = uuid.uuid4().hex[:16]
            n = max(1, (len(s.data) + CHUNK_BYTES - 1) // CHUNK_BYTES)
            for i in range(n):
                self._produce(sp, chunk_key(s.kind, s.partition, snap_id, i),
                              s.data[i * CHUNK_BYTES:(i + 1) * CHUNK_BYTES], on_delivery)
            manifest = {"v": 1, "kind": s.kind, "partition": s.partition,
                        "offset": s.offset, "snap_id": snap_id, "n": n, "size": len(s.data),
                        "sha256": hashlib.sha256(s.data).hexdigest(),
                        "created_ms": int(time.time() * 1000), "writer": self.writer}
            self._produce(sp, manifest_key(s.kind, s.partition), orjson.dumps(manifest),
                          on_delivery)
            written.append((s, snap_id, n, sp))
        remaining = self.producer.flush(timeout)
        if remaining or errors:
            raise StateError(f"snapshot write failed ({remaining} records undelivered, "
                             f"errors: {errors[:3]})", location=self.topic,
                             fix="check the broker; the worker keeps the previous snapshot "
                             "and retries at the next interval")
        # the new manifests are durable: older chunks can go (compaction reclaims them)
        for s, snap_id, n, sp in written:
            prev = self._previous.get((s.kind, s.partition))
            if prev is not None:
                old_id, old_n = prev
                for i in range(old_n):
                    self._produce(sp, chunk_key(s.kind, s.partition, old_id, i), None, None)
            self._previous[(s.kind, s.partition)] = (snap_id, n)
        self.producer.poll(0)

    def _produce(self, sp: int, key: bytes, value: bytes | None, cb) -> None:
        while True:
            try:
                self.producer.produce(self.topic, key=key, value=value, partition=sp,
                                      on_delivery=cb)
                return
            except BufferError:
                self.producer.poll(0.05)

    def forget(self, kind: int, partition: int) -> None:
        """Stop tracking a partition's chunks (it was revoked; the new owner tombstones)."""
        self._previous.pop((kind, partition), None)

    # -- read --------------------------------------------------------------------------------
    def load(self, wanted: set[tuple[int, int]], timeout: float = 60.0
             ) -> dict[tuple[int, int], Snapshot]:
        """Newest valid snapshot for each wanted ``(kind, partition)`` (missing = none)."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

        if not wanted:
            return {}
        sps = sorted({self.state_partition(p) for _, p in wanted})
        conf = {**self.kafka.as_librdkafka(), "group.id": f"itdr-state-reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False, "auto.offset.reset": "earliest",
                "enable.partition.eof": True, "fetch.message.max.bytes": 8 * 1024 * 1024,
                "receive.message.max.bytes": 1 << 30}
        c = Consumer(conf)
        chunks: dict[bytes, bytes] = {}
        manifests: dict[tuple[int, int], list[dict]] = {}
        try:
            todo = set()
            assign = []
            for sp in sps:
                lo, hi = c.get_watermark_offsets(TopicPartition(self.topic, sp), timeout=15)
                if hi > lo:
                    todo.add(sp)
                    assign.append(TopicPartition(self.topic, sp, OFFSET_BEGINNING))
            if not assign:
                return {}
            c.assign(assign)
            deadline = time.monotonic() + timeout
            while todo:
                if time.monotonic() > deadline:
                    raise StateError(f"reading the state topic timed out after {timeout:.0f}s",
                                     location=self.topic)
                # a batch consume returns when it holds 500 messages or its timeout has
                # passed: with 0.5 s every restore of a small state waited out that half
                # second at the end (a worker's partitions idle for it on each assignment)
                for msg in c.consume(500, 0.05):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            todo.discard(msg.partition())
                            continue
                        raise StateError(f"reading the state topic failed: {err}",
                                         location=self.topic)
                    key = msg.key() or b""
                    val = msg.value()
                    if key.startswith(b"c/"):
                        if val is None:
                            chunks.pop(key, None)
                        else:
                            chunks[key] = val
                    elif key.startswith(b"m/") and val is not None:
                        try:
                            m = orjson.loads(val)
                            k = (int(m["kind"]), int(m["partition"]))
                        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                            log.warning("ignoring a corrupt snapshot manifest %r", key)
                            continue
                        if k in wanted:
                            manifests.setdefault(k, []).append(m)
        finally:
            c.close()
        out: dict[tuple[int, int], Snapshot] = {}
        for k, ms in manifests.items():
            for m in sorted(ms, key=lambda m: m["offset"], reverse=True):
                parts = [chunks.get(chunk_key(k[0], k[1], m["snap_id"], i))
                         for i in range(int(m["n"]))]
                if any(p is None for p in parts):
                    continue
                data = b"".join(parts)
                if len(data) != m["size"] or hashlib.sha256(data).hexdigest() != m["sha256"]:
                    log.warning("snapshot %s of %s fails its checksum; trying an older one",
                                m["snap_id"], k)
                    continue
                out[k] = Snapshot(k[0], k[1], int(m["offset"]), data, m["snap_id"],
                                  int(m.get("created_ms", 0)))
                self._previous[k] = (m["snap_id"], int(m["n"]))
                break
        return out

    def close(self) -> None:
        if self._own_producer:
            self.producer.flush(10)
