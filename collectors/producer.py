"""Kafka producer of the collectors: wire batches to explicit partitions, delivery-confirmed
checkpoints, and a disk spool when the broker is unreachable.

* confluent-kafka (librdkafka) with ``enable.idempotence``, ``acks=all`` and compression (lz4
  by default). Each :class:`~collectors.batcher.WireMessage` goes to the by-account or
  by-source topic at the partition the :class:`~collectors.batcher.Batcher` computed.
* **Epochs** tie checkpoints to deliveries. Everything sent between two
  :meth:`BatchProducer.close_epoch` calls belongs to one epoch; ``close_epoch(positions)``
  attaches the source positions reached at that point. When the broker has acknowledged every
  message of an epoch *and of all earlier epochs*, its positions are handed to the
  :class:`~collectors.checkpoint.CheckpointStore`. A checkpoint therefore never covers an
  event the broker has not confirmed.
* **Spool**: a delivery failure (timeout, broker down), a full local queue, or anything sent
  while older messages still wait in the spool, goes to the :class:`~collectors.spool.Spool`
  (same topic, partition, key, headers). The spool is drained oldest-first once nothing else is
  in flight and the broker answers again; its entries keep their epoch, so checkpoints advance
  only when the spooled copy is acknowledged. When the spool is full, messages wait in a small
  in-memory overflow list and :attr:`BatchProducer.backpressure` turns true: the caller stops
  reading its sources until there is room. Nothing is dropped.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Callable

from confluent_kafka import KafkaError, KafkaException, Producer

from stream.metrics import (COLLECTOR_BATCHES_PRODUCED, COLLECTOR_BYTES_PRODUCED,
                            COLLECTOR_EVENTS_PRODUCED)
from stream.schema import KEY_SOURCE
from stream.settings import KafkaSettings, TopicSettings

from .batcher import WireMessage
from .spool import Spool, SpoolEntry

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 << 20

# librdkafka's own log lines (connection refused while the broker is down...) go to Python
# logging instead of stderr.
_rdkafka_log = logging.getLogger("collectors.rdkafka")


def producer_config(kafka: KafkaSettings, *, compression: str = "lz4",
                    delivery_timeout_s: float = 30.0, queue_max_kbytes: int = 262144,
                    client_suffix: str = "collector") -> dict[str, Any]:
    conf = kafka.as_librdkafka()
    conf.update({
        "client.id": f"{kafka.client_id}-{client_suffix}",
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": compression,
        "linger.ms": 5,
        "batch.size": 8 << 20,
        "message.max.bytes": MAX_MESSAGE_BYTES,
        "message.timeout.ms": int(delivery_timeout_s * 1000),
        "queue.buffering.max.kbytes": queue_max_kbytes,
        "queue.buffering.max.messages": 100_000,
        "reconnect.backoff.max.ms": 2000,
    })
    # user-provided extras win (e.g. a smaller message.max.bytes for a managed Kafka)
    conf.update(kafka.extra)
    return conf


class _Epochs:
    """Outstanding message counts per epoch and the positions each epoch reached."""

    def __init__(self, on_commit: Callable[[dict], None]):
        self.current = 1
        self.outstanding: dict[int, int] = {1: 0}
        self.events: dict[int, int] = {1: 0}
        self.closed: deque[tuple[int, dict]] = deque()
        self.on_commit = on_commit
        self.committed_events = 0

    def add(self, epoch: int, n_events: int = 0) -> None:
        if epoch in self.outstanding:
            self.outstanding[epoch] += 1
            self.events[epoch] += n_events

    def done(self, epoch: int | None) -> None:
        if epoch is not None and epoch in self.outstanding:
            self.outstanding[epoch] -= 1

    def close(self, positions: dict, n_read: int) -> int:
        ep = self.current
        self.events[ep] = n_read
        self.closed.append((ep, positions))
        self.current = ep + 1
        self.outstanding[self.current] = 0
        self.events[self.current] = 0
        return ep

    def commit_ready(self) -> int:
        n = 0
        while self.closed and self.outstanding.get(self.closed[0][0], 0) <= 0:
            ep, pos = self.closed.popleft()
            self.outstanding.pop(ep, None)
            self.committed_events += self.events.pop(ep, 0)
            if pos:
                self.on_commit(pos)
            n += 1
        return n

    def lag_events(self) -> int:
        return sum(self.events.get(ep, 0) for ep, _ in self.closed)


class BatchProducer:
    """Produces wire batches and raw records; spools on failure; advances checkpoints."""

    def __init__(self, kafka: KafkaSettings, topics: TopicSettings, spool: Spool, *,
                 on_commit: Callable[[dict], None] | None = None, compression: str = "lz4",
                 delivery_timeout_s: float = 30.0, queue_max_kbytes: int = 262144,
                 sensor_id: str = "", client_suffix: str = "collector",
                 drain_window: int = 64):
        self.topics = topics
        self.topic_account = topics.name("events")
        self.topic_source = topics.name("events_by_source")
        self.spool = spool
        self.sensor_id = sensor_id
        self._headers = [("itdr-sensor", sensor_id.encode())] if sensor_id else None
        self.conf = producer_config(kafka, compression=compression,
                                    delivery_timeout_s=delivery_timeout_s,
                                    queue_max_kbytes=queue_max_kbytes,
                                    client_suffix=client_suffix)
        self.p = Producer(dict(self.conf, logger=_rdkafka_log))
        self.epochs = _Epochs(on_commit or (lambda pos: None))
        self.overflow: deque[SpoolEntry] = deque()
        self.drain_window = drain_window
        self._draining: dict[int, SpoolEntry] = {}
        self._drain_failed_at = 0.0
        self._drain_backoff = 0.5
        self.delivered_batches = 0
        self.delivered_events = 0
        self.delivery_failures = 0
        self.queue_full = 0
        self.heartbeat_failures = 0
        self.last_error: str = ""
        self.last_delivery_ms = 0

    # -- state -------------------------------------------------------------------------------
    @property
    def spooling(self) -> bool:
        return not self.spool.empty or bool(self.overflow) or bool(self._draining)

    @property
    def backpressure(self) -> bool:
        """True when the caller must stop reading sources (spool full)."""
        return bool(self.overflow) or self.spool.bytes >= 0.9 * self.spool.max_bytes

    def in_flight(self) -> int:
        return len(self.p)

    # -- sending -----------------------------------------------------------------------------
    def topic_for(self, kind: int) -> str:
        return self.topic_source if kind == KEY_SOURCE else self.topic_account

    def send_batch(self, msg: WireMessage) -> None:
        self._send(self.topic_for(msg.topic_kind), msg.partition, msg.key, msg.value,
                   self._headers, msg.n_events)

    def send_raw(self, topic: str, value: bytes, *, key: bytes | None = None,
                 headers: list[tuple[str, bytes]] | None = None, partition: int = -1) -> None:
        """Any other record that must not be lost (dead letters)."""
        self._send(topic, partition, key, value, headers, 0)

    def _send(self, topic: str, partition: int, key: bytes | None, value: bytes,
              headers: list | None, n_events: int) -> None:
        ep = self.epochs.current
        self.epochs.add(ep, n_events)
        if self.spooling:
            self._to_spool(SpoolEntry(0, topic, partition, key, value, list(headers or []),
                                      n_events, 0, ep))
            return
        try:
            self._produce(topic, partition, key, value, headers, n_events, ep, None)
        except BufferError:
            self.queue_full += 1
            self.last_error = "local producer queue full"
            self._to_spool(SpoolEntry(0, topic, partition, key, value, list(headers or []),
                                      n_events, 0, ep))

    def _produce(self, topic, partition, key, value, headers, n_events, ep, spool_seq) -> None:
        def cb(err, m, _ep=ep, _n=n_events, _seq=spool_seq, _topic=topic):
            self._delivered(err, m, _ep, _n, _seq, _topic)

        kw = {"value": value, "key": key, "on_delivery": cb}
        if partition >= 0:
            kw["partition"] = partition
        if headers:
            kw["headers"] = headers
        self.p.produce(topic, **kw)

    def _delivered(self, err, m, ep, n_events, spool_seq, topic) -> None:
        if err is None:
            self.delivered_batches += 1
            self.delivered_events += n_events
            self.last_delivery_ms = int(time.time() * 1000)
            if n_events:
                COLLECTOR_BATCHES_PRODUCED.labels(topic=topic).inc()
                COLLECTOR_EVENTS_PRODUCED.labels(topic=topic).inc(n_events)
                COLLECTOR_BYTES_PRODUCED.labels(topic=topic).inc(len(m.value() or b""))
            if spool_seq is not None:
                self._draining.pop(spool_seq, None)
                self.spool.remove(spool_seq)
                self._drain_failed_at = 0.0     # the broker answers again: full windows
                self._drain_backoff = 0.5
            self.epochs.done(ep)
            return
        self.delivery_failures += 1
        self.last_error = str(err)
        if spool_seq is not None:
            # a drained entry failed again: it is still in the spool; retry later
            self._draining.pop(spool_seq, None)
            self._drain_failed_at = time.monotonic()
            self._drain_backoff = min(self._drain_backoff * 2, 5.0)
            return
        if err.code() in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError._INVALID_ARG,
                          KafkaError.UNKNOWN_TOPIC_OR_PART) and not err.retriable():
            log.error("broker refused a message for %s[%s]: %s -- spooled; fix the topic or "
                      "size configuration", topic, m.partition(), err)
        headers = m.headers() or []
        self._to_spool(SpoolEntry(0, topic, m.partition() if m.partition() is not None else -1,
                                  m.key(), m.value(), list(headers), n_events, 0, ep))

    def _to_spool(self, e: SpoolEntry) -> None:
        if self.overflow or not self.spool.append(e.topic, e.partition, e.key, e.value,
                                                  e.headers, e.n_events, e.token):
            self.overflow.append(e)

    # -- epochs ------------------------------------------------------------------------------
    def close_epoch(self, positions: dict, n_read: int = 0) -> int:
        return self.epochs.close(positions, n_read)

    # -- servicing ---------------------------------------------------------------------------
    def poll(self, timeout: float = 0.0) -> None:
        self.p.poll(timeout)

    def service(self, timeout: float = 0.0) -> None:
        """Serve delivery callbacks, move overflow into the spool, drain the spool, commit."""
        self.p.poll(timeout)
        while self.overflow:
            e = self.overflow[0]
            if not self.spool.append(e.topic, e.partition, e.key, e.value, e.headers,
                                     e.n_events, e.token):
                break
            self.overflow.popleft()
        self._drain()
        self.epochs.commit_ready()

    def _drain(self) -> None:
        if self.spool.empty or self._draining:
            return
        if len(self.p) > 0:     # older direct messages still in flight: keep order
            return
        if time.monotonic() - self._drain_failed_at < self._drain_backoff:
            return
        # probe with one entry, then a window
        n = 1 if self._drain_failed_at else self.drain_window
        for e in self.spool.peek(n):
            self._draining[e.seq] = e
            try:
                self._produce(e.topic, e.partition, e.key, e.value, e.headers, e.n_events,
                              e.token, e.seq)
            except BufferError:
                self._draining.pop(e.seq, None)
                break

    def flush(self, timeout: float = 30.0) -> bool:
        """Deliver everything possible within ``timeout`` (including the spool)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.service(0.05)
            if len(self.p) == 0 and not self.spooling:
                self.epochs.commit_ready()
                return True
            if self._drain_failed_at and len(self.p) == 0 and not self._draining:
                time.sleep(0.05)
        self.epochs.commit_ready()
        return len(self.p) == 0 and not self.spooling

    def heartbeat(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Fire-and-forget (a lost heartbeat is itself the signal)."""
        def cb(err, m):
            if err is not None:
                self.heartbeat_failures += 1
        try:
            self.p.produce(topic, value=value, key=key, on_delivery=cb)
        except (BufferError, KafkaException):
            self.heartbeat_failures += 1

    def partitions_of(self, topic: str, timeout: float = 5.0) -> int | None:
        try:
            md = self.p.list_topics(topic, timeout=timeout)
        except KafkaException:
            return None
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            return None
        return len(t.partitions)

    def stats(self) -> dict:
        s = {"delivered_batches": self.delivered_batches,
             "delivered_events": self.delivered_events,
             "delivery_failures": self.delivery_failures, "queue_full": self.queue_full,
             "overflow": len(self.overflow), "in_flight": len(self.p),
             "checkpoint_lag": self.epochs.lag_events(), "last_error": self.last_error}
        s.update(self.spool.stats())
        return s
