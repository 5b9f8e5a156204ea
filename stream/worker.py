"""``itdr worker``: the Faust stream worker (columnar batches -> detection engines -> alerts).

Run::

    itdr worker -c config.yaml            # web endpoint: /metrics and /health

Layout (see ``docs/worker.md``):

* :class:`WorkerCore` is the whole processing path and the state/offset protocol, with no
  Faust in it: ``handle(kind, partition, offset, value, token)`` per Kafka message,
  ``capture()`` / ``write()`` / ``release()`` for snapshots. The benchmarks and the tests
  drive the same class.
* :func:`build_app` wraps it in a Faust application: two agents (by-account and by-source
  topics, raw bytes, ``noack_take``), a snapshot timer, a lag timer, rebalance signal
  handlers and the web pages.

Exactly-continuing recovery, in one paragraph: each ``(key kind, partition)`` engine
processes exactly the contiguous record sequence of its partition, starting after the offset
its snapshot covers. Records at or below that offset are skipped; a record beyond the next
expected offset makes the core read the missing range itself (so nothing Faust does or does
not deliver can make it skip input). Alerts and dead letters are flushed (acks=all,
idempotent producer) *before* a snapshot is written, and Faust events are acknowledged (so
that Faust may commit their offsets) only once a durable snapshot covers them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .dlq import send_to_dlq
from .errors import StateError, WireFormatError
from .metrics import (WORKER_ALERTS, WORKER_BATCHES, WORKER_BYTES, WORKER_CORRUPT_BATCHES,
                      WORKER_FAILED_BATCHES,
                      WORKER_DETECTOR_SECONDS, WORKER_EVENT_LATENCY_SECONDS, WORKER_EVENTS,
                      WORKER_LAG, WORKER_PROCESSING_SECONDS, WORKER_RECORD_AGE_SECONDS,
                      WORKER_SNAPSHOT_SECONDS, WORKER_SNAPSHOTS,
                      WORKER_STATE_BYTES)
from .schema import KEY_ACCOUNT, KEY_SOURCE
from .settings import KafkaSettings, Settings
from .state_store import Captured, StateStore

log = logging.getLogger(__name__)

KIND_NAMES = {KEY_ACCOUNT: "account", KEY_SOURCE: "source"}
_MAX_LATENCY_OBS_S = 3600.0   # event-to-alert latencies beyond this are old replays


def alert_producer_config(kafka: KafkaSettings) -> dict:
    """Idempotent, acks=all producer for alerts, dead letters and snapshots."""
    return {**kafka.as_librdkafka(), "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "compression.type": "lz4",
            "message.max.bytes": 4 * 1024 * 1024}


@dataclass
class PartitionRuntime:
    """One engine and its offset bookkeeping."""

    kind: int
    partition: int
    topic: str
    engine: Any
    offset: int = -1          # last input offset applied to the engine
    durable: int = -1         # last input offset covered by a durable snapshot
    dirty: bool = False       # processed something since the last snapshot
    pending: deque = field(default_factory=deque)   # (offset, ack token) not yet acked
    restored_from: int = -1   # snapshot offset restored at assignment (-1 = none)
    last_progress: float = field(default_factory=time.monotonic)


class WorkerCore:
    """The worker's processing path and state/offset protocol (no Faust)."""

    def __init__(self, settings: Settings, producer: Any = None, store: StateStore | None = None,
                 ack: Callable[[Any], Any] | None = None):
        from confluent_kafka import Producer

        self.settings = settings
        t = settings.topics
        self.topic_of = {KEY_ACCOUNT: t.name("events"), KEY_SOURCE: t.name("events_by_source")}
        self.kind_of = {v: k for k, v in self.topic_of.items()}
        self.alerts_topic = t.name("alerts")
        self.dlq_topic = t.name("dlq")
        self.producer = producer or Producer(alert_producer_config(settings.kafka))
        self.store = store or StateStore(settings.kafka, t.name("state"), self.producer)
        self._ack = ack or (lambda token: token.ack())
        self.parts: dict[tuple[int, int], PartitionRuntime] = {}
        self._delivery_errors: list[str] = []
        self._gap_consumer = None
        self._det_ns: dict[tuple[int, int, str], int] = {}
        self._alert_counters: dict[tuple[str, str], Any] = {}
        # within one take of the agent: alerts are rendered and produced once per take (see
        # flush_alerts), not once per message -- one version per alert per take when behind
        self.deferring: set[int] = set()     # key kinds whose agent is inside a take
        self.fatal: BaseException | None = None
        self.stats = {"processed": 0, "skipped": 0, "gap_filled": 0, "corrupt": 0,
                      "failed": 0, "alerts": 0, "snapshots": 0}
        self.alert_sink: list | None = None   # tests/bench: also keep the alerts here

    # -- assignment --------------------------------------------------------------------------
    def _new_engine(self, kind: int, partition: int):
        from detectors.engine import Engine

        return Engine(self.settings.detection, kind, partition)

    def assign(self, keys: Iterable[tuple[int, int]]) -> None:
        """Create engines for newly assigned ``(kind, partition)`` keys, restored from their
        newest durable snapshot (blocking read of the state topic)."""
        new = {k for k in keys if k not in self.parts}
        if not new:
            return
        t0 = time.perf_counter()
        snaps = self.store.load(new)
        for k in sorted(new):
            kind, p = k
            eng = self._new_engine(kind, p)
            rt = PartitionRuntime(kind, p, self.topic_of[kind], eng)
            s = snaps.get(k)
            if s is not None:
                eng.restore(s.data)
                rt.offset = rt.durable = rt.restored_from = s.offset
            self.parts[k] = rt
            log.info("assigned %s/%d: restored snapshot at offset %d (%d bytes)",
                     KIND_NAMES[kind], p, rt.restored_from, len(s.data) if s else 0)
        log.info("restored %d partition engines in %.2fs", len(new), time.perf_counter() - t0)

    def revoke(self, keys: Iterable[tuple[int, int]]) -> None:
        """Drop engines (their unacked events stay unacked: the next owner replays them)."""
        for k in keys:
            rt = self.parts.pop(k, None)
            if rt is not None:
                self.store.forget(*k)
                log.info("revoked %s/%d at offset %d (durable %d)", KIND_NAMES[k[0]], k[1],
                         rt.offset, rt.durable)

    # -- processing --------------------------------------------------------------------------
    def handle(self, kind: int, partition: int, offset: int, value: bytes | None,
               token: Any = None, key: bytes | None = None) -> str:
        """Process one Kafka message of an events topic. Returns what happened:
        ``processed``, ``skipped`` (offset already covered) or ``unassigned``."""
        rt = self.parts.get((kind, partition))
        if rt is None:
            return "unassigned"
        if offset <= rt.offset:
            self.stats["skipped"] += 1
            if token is not None:
                if offset <= rt.durable:
                    self._ack(token)
                else:
                    rt.pending.append((offset, token))
            return "skipped"
        if offset > rt.offset + 1:
            self._fill_gap(rt, offset)
        self._apply(rt, offset, value, key)
        if token is not None:
            rt.pending.append((offset, token))
        return "processed"

    def _apply(self, rt: PartitionRuntime, offset: int, value: bytes | None,
               key: bytes | None = None) -> None:
        from . import wire

        topic = rt.topic
        t0 = time.perf_counter()
        rt.offset = offset
        rt.dirty = True
        rt.last_progress = time.monotonic()
        nbytes = len(value) if value is not None else 0
        try:
            if value is None:
                raise WireFormatError("empty message (null value)")
            batch = wire.decode(value)
            if batch.key_kind != rt.kind:
                raise WireFormatError(f"batch key kind {batch.key_kind} does not match the "
                                      f"topic's key kind {rt.kind}",
                                      fix="by-account batches go to the events topic, "
                                      "by-source batches to events_by_source")
            rt.engine.process(batch, defer=True)
            alerts = [] if rt.kind in self.deferring else rt.engine.flush_rendered()
        except (WireFormatError, UnicodeDecodeError) as e:
            self.stats["corrupt"] += 1
            WORKER_CORRUPT_BATCHES.labels(topic).inc()
            log.warning("corrupt batch %s/%d/%d -> dead-letter topic: %s", topic, rt.partition,
                        offset, e)
            send_to_dlq(self.producer, self.dlq_topic, value or b"", key=key, reason=str(e),
                        error=type(e).__name__, component="worker",
                        origin=f"{topic}/{rt.partition}/{offset}")
            self.producer.poll(0)
            return
        except Exception as e:  # noqa: BLE001 - a detector bug must not stop the partition
            # the batch decoded but a detector raised: dead-letter it with the reason and go
            # on (the engine may hold part of the batch's effects; the DLQ keeps the batch for
            # a replay once the bug is fixed) instead of crash-looping on the same offset
            self.stats["failed"] += 1
            WORKER_FAILED_BATCHES.labels(topic).inc()
            log.exception("batch %s/%d/%d could not be processed -> dead-letter topic",
                          topic, rt.partition, offset)
            send_to_dlq(self.producer, self.dlq_topic, value or b"", key=key,
                        reason=f"processing failed: {type(e).__name__}: {str(e)[:300]}",
                        error=type(e).__name__, component="worker",
                        origin=f"{topic}/{rt.partition}/{offset}")
            self.producer.poll(0)
            return
        self.stats["processed"] += 1
        WORKER_EVENTS.labels(topic).inc(batch.n)
        WORKER_BATCHES.labels(topic).inc()
        WORKER_BYTES.labels(topic).inc(nbytes)
        if alerts:
            self._emit(alerts)
        WORKER_PROCESSING_SECONDS.observe(time.perf_counter() - t0)
        if rt.engine.batches % 16 == 0:
            self._detector_metrics(rt)

    def _emit(self, alerts: list) -> None:
        """Produce rendered alert versions (``Engine.flush_rendered``)."""
        now = time.time()
        counters = self._alert_counters
        observe = WORKER_EVENT_LATENCY_SECONDS.observe
        for a in alerts:
            self._produce(self.alerts_topic, a.id.encode(), a.json)
            c = counters.get((a.detector, a.severity))
            if c is None:   # labels() takes a lock and builds a key: once per detector
                c = counters[(a.detector, a.severity)] = WORKER_ALERTS.labels(a.detector,
                                                                              a.severity)
            c.inc()
            lat = now - a.last_seen_ms / 1000.0
            if 0 <= lat < _MAX_LATENCY_OBS_S:
                observe(lat)
            if self.alert_sink is not None:
                self.alert_sink.append(a.alert())
        self.stats["alerts"] += len(alerts)
        self.producer.poll(0)

    def _produce(self, topic: str, key: bytes, value: bytes) -> None:
        from confluent_kafka import KafkaException

        while True:
            try:
                self.producer.produce(topic, key=key, value=value, on_delivery=self._delivered)
                return
            except BufferError:
                self.producer.poll(0.05)
            except KafkaException as e:
                # e.g. a fatal idempotent-producer error: the record never reached the
                # producer, but the engine and rt.offset already moved past its batch. Record
                # it as a delivery error so that no later snapshot can cover that batch
                # (write() turns it fatal: the worker stops and its successor replays).
                self._delivery_errors.append(f"{topic}: {e}")
                raise

    def _delivered(self, err, msg) -> None:
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}: {err}")

    def _detector_metrics(self, rt: PartitionRuntime) -> None:
        for did, ns in rt.engine.detector_ns.items():
            k = (rt.kind, rt.partition, did)
            prev = self._det_ns.get(k, 0)
            if ns > prev:
                WORKER_DETECTOR_SECONDS.labels(did).inc((ns - prev) / 1e9)
            self._det_ns[k] = ns

    def _fill_gap(self, rt: PartitionRuntime, upto: int, timeout: float = 60.0) -> None:
        """Read offsets ``rt.offset + 1 .. upto - 1`` directly and apply them, so the engine
        never skips input whatever the Faust consumer's position was (e.g. a commit by
        another member made after this worker read its snapshot)."""
        from confluent_kafka import KafkaError, TopicPartition

        start = rt.offset + 1
        log.info("gap on %s/%d: expected offset %d, got %d; reading the gap directly",
                 rt.topic, rt.partition, start, upto)
        c = self._gap_reader()
        c.assign([TopicPartition(rt.topic, rt.partition, start)])
        deadline = time.monotonic() + timeout
        try:
            while rt.offset < upto - 1:
                if time.monotonic() > deadline:
                    raise StateError(f"could not read offsets {start}..{upto - 1} of "
                                     f"{rt.topic}/{rt.partition}: no record for {timeout:.0f}s")
                # returns at 64 messages or after its timeout: short, since a gap of a few
                # records would otherwise hold the processing thread for the whole timeout
                msgs = c.consume(64, 0.05)
                if msgs:
                    deadline = time.monotonic() + timeout   # bound = no progress, not total
                done = False
                for m in msgs:
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            done = True
                            break
                        raise StateError(f"gap read failed: {err}")
                    if m.offset() >= upto:
                        done = True
                        break
                    if m.offset() > rt.offset:
                        self._apply(rt, m.offset(), m.value(), m.key())
                        self.stats["gap_filled"] += 1
                if done:
                    break
        finally:
            c.unassign()

    def _gap_reader(self):
        from confluent_kafka import Consumer

        if self._gap_consumer is None:
            self._gap_consumer = Consumer({
                **self.settings.kafka.as_librdkafka(),
                "group.id": f"{self.settings.worker.app_id}-gap",
                "enable.auto.commit": False, "auto.offset.reset": "earliest",
                "enable.partition.eof": True, "fetch.message.max.bytes": 8 * 1024 * 1024,
                "receive.message.max.bytes": 1 << 30})
        return self._gap_consumer

    def catch_up(self, stall_s: float = 10.0) -> int:
        """Safety net for records the Faust consumer will never deliver (Faust acks -- and
        so may commit -- messages it skips during a rebalance): a partition that made no
        progress for ``stall_s`` while its log has more records is read directly up to the
        high watermark. Returns the number of partitions caught up."""
        from confluent_kafka import TopicPartition

        now = time.monotonic()
        n = 0
        for rt in list(self.parts.values()):
            if now - rt.last_progress < stall_s:
                continue
            try:
                _, hi = self._gap_reader().get_watermark_offsets(
                    TopicPartition(rt.topic, rt.partition), timeout=5, cached=False)
            except Exception as e:  # noqa: BLE001 - retried at the next tick
                log.warning("watermark query failed for %s/%d: %r", rt.topic, rt.partition, e)
                continue
            rt.last_progress = now
            if hi - 1 > rt.offset and self.parts.get((rt.kind, rt.partition)) is rt:
                log.info("%s/%d stalled at offset %d with high watermark %d: catching up",
                         rt.topic, rt.partition, rt.offset, hi)
                self._fill_gap(rt, hi)
                n += 1
        return n

    # -- snapshots ---------------------------------------------------------------------------
    def flush_alerts(self, kind: int | None = None) -> int:
        """Render and produce the alerts deferred during a take (the engines of ``kind``, or
        every engine)."""
        n = 0
        for rt in self.parts.values():
            if kind is not None and rt.kind != kind:
                continue
            alerts = rt.engine.flush_rendered()
            if alerts:
                self._emit(alerts)
                n += len(alerts)
        return n

    def capture(self, keys: Iterable[tuple[int, int]] | None = None) -> list[tuple[Captured,
                                                                                   PartitionRuntime]]:
        """Snapshot dirty engines (call on the processing thread: atomic per engine). Deferred
        alerts are produced first: a snapshot covers only batches whose alerts were sent."""
        self.flush_alerts()
        out = []
        for k in (list(self.parts) if keys is None else keys):
            rt = self.parts.get(k)
            if rt is None or not rt.dirty:
                continue
            out.append((Captured(rt.kind, rt.partition, rt.offset, rt.engine.snapshot()), rt))
            rt.dirty = False
        return out

    async def capture_stepwise(self) -> list[tuple[Captured, PartitionRuntime]]:
        """:meth:`capture` of every dirty engine, one engine per event-loop turn: the agents
        run between two engines' captures, so the loop is blocked for the largest engine's
        capture, not for all of them (at 1M identities all of them take ~0.4 s). Each engine's
        (state, offset) pair is still captured atomically; deferred alerts are produced
        before each. If cancelled, the engines captured so far are dirty again."""
        import asyncio

        caps: list[tuple[Captured, PartitionRuntime]] = []
        try:
            for k in [k for k, rt in self.parts.items() if rt.dirty]:
                caps.extend(self.capture([k]))
                await asyncio.sleep(0)
        except BaseException:
            self.restore_dirty(caps)
            raise
        return caps

    def write(self, caps: list[tuple[Captured, PartitionRuntime]], timeout: float = 60.0) -> None:
        """Make everything produced so far durable, then the snapshots (thread-safe)."""
        remaining = self.producer.flush(timeout)
        if remaining or self._delivery_errors:
            err = StateError(f"alert/dead-letter delivery failed ({remaining} undelivered, "
                             f"{self._delivery_errors[:3]})",
                             fix="the worker stops; on restart it replays from the last "
                             "snapshot and re-produces these alerts")
            self.fatal = err
            raise err
        if caps:
            self.store.write([c for c, _ in caps], timeout)

    def release(self, caps: list[tuple[Captured, PartitionRuntime]]) -> None:
        """After :meth:`write`: acknowledge the events the snapshots cover."""
        for cap, rt in caps:
            if self.parts.get((rt.kind, rt.partition)) is not rt:
                continue  # revoked meanwhile
            rt.durable = max(rt.durable, cap.offset)
            while rt.pending and rt.pending[0][0] <= rt.durable:
                self._ack(rt.pending.popleft()[1])
            WORKER_STATE_BYTES.labels(f"{KIND_NAMES[rt.kind]}-{rt.partition}").set(
                rt.engine.state_bytes())
            self.stats["snapshots"] += 1
            WORKER_SNAPSHOTS.inc()

    def mark_dirty(self, rt: PartitionRuntime) -> None:
        rt.dirty = True

    def restore_dirty(self, caps: list[tuple[Captured, PartitionRuntime]]) -> None:
        """A write failed: the engines stay dirty so the next interval retries."""
        for _, rt in caps:
            rt.dirty = True

    def snapshot_now(self, keys=None) -> int:
        """Synchronous capture + write + release (tests, bench, shutdown)."""
        caps = self.capture(keys)
        try:
            self.write(caps)
        except StateError:
            self.restore_dirty(caps)
            raise
        self.release(caps)
        return len(caps)

    def update_lag(self, highwater: Callable[[str, int], int | None]) -> None:
        for rt in self.parts.values():
            hw = highwater(rt.topic, rt.partition)
            if hw is not None and hw >= 0:
                WORKER_LAG.labels(rt.topic, str(rt.partition)).set(max(0, hw - rt.offset - 1))

    def close(self) -> None:
        try:
            self.producer.flush(10)
        finally:
            if self._gap_consumer is not None:
                self._gap_consumer.close()
                self._gap_consumer = None


# ---------------------------------------------------------------------------------------------
# Faust application
# ---------------------------------------------------------------------------------------------

def faust_broker_settings(kafka: KafkaSettings) -> dict:
    """``broker`` and ``broker_credentials`` for Faust (aiokafka) from the one Kafka model."""
    import faust

    urls = [f"kafka://{h.strip()}" for h in kafka.bootstrap_servers.split(",") if h.strip()]
    out: dict[str, Any] = {"broker": urls}
    proto = kafka.security_protocol
    ctx = None
    if proto in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(cafile=kafka.ssl_ca_location)
        if kafka.ssl_certificate_location:
            ctx.load_cert_chain(kafka.ssl_certificate_location, kafka.ssl_key_location,
                                kafka.ssl_key_password.get_secret_value()
                                if kafka.ssl_key_password else None)
    if proto == "SSL":
        out["broker_credentials"] = faust.SSLCredentials(ctx)
    elif proto in ("SASL_PLAINTEXT", "SASL_SSL"):
        out["broker_credentials"] = faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            mechanism=kafka.sasl_mechanism or "PLAIN", ssl_context=ctx)
    return out


def _health_doc(core: WorkerCore, app: Any) -> dict:
    return {"status": "ok" if core.fatal is None else "failing",
            "error": str(core.fatal) if core.fatal else None,
            "rebalancing": bool(getattr(app, "rebalancing", False)),
            "partitions": sorted(f"{KIND_NAMES[k]}/{p}" for k, p in core.parts),
            "offsets": {f"{KIND_NAMES[k]}/{p}": {"processed": rt.offset, "durable": rt.durable}
                        for (k, p), rt in sorted(core.parts.items())},
            "stats": core.stats}


class SnapshotPacer:
    """When the periodic snapshot runs: every ``interval_s``, but never more than
    ``max_share`` of the time -- after a snapshot that took ``d`` seconds (capture on the
    processing thread + durable write), the next one waits until ``d / max_share`` after the
    last one started (checkpointing's "minimum pause between checkpoints"). Small state
    snapshots every interval; a large one (1M identities: ~500 MB) spaces itself out instead
    of taking the worker's core. Final snapshots (revocation, shutdown) are not paced."""

    def __init__(self, interval_s: float, max_share: float):
        self.interval_s = interval_s
        self.max_share = max_share
        self.next_at = 0.0
        self.skipped = 0

    def due(self, now: float) -> bool:
        if now < self.next_at:
            self.skipped += 1
            return False
        return True

    def done(self, started: float, took: float) -> None:
        # the first timer tick at or after that time (ticks come every interval_s, give or
        # take the event loop's jitter: a tenth of it is tolerated)
        self.next_at = started + max(self.interval_s, took / self.max_share) - \
            0.1 * self.interval_s


def build_app(settings: Settings, core: WorkerCore | None = None):
    """The Faust application of the worker (returns ``(app, core)``)."""
    import faust
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    from . import fetch_backoff

    core = core or WorkerCore(settings)
    w = settings.worker
    os.makedirs(w.state_dir, exist_ok=True)
    fetch_backoff.install(w.empty_fetch_backoff_ms)
    import gc

    gc.set_threshold(*w.gc_threshold)
    app = faust.App(
        w.app_id,
        **faust_broker_settings(settings.kafka),
        autodiscover=False,
        store="memory://",
        datadir=os.path.join(w.state_dir, "faust"),
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=True,
        web_host=w.web_host,
        web_bind=w.web_host,
        web_port=w.web_port,
        # offsets: we ack only what a durable snapshot covers; never wait for unacked events
        # on rebalance (they are acked at the next snapshot or replayed by the next owner)
        stream_wait_empty=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        topic_disable_leader=True,
        stream_buffer_maxsize=max(2 * w.take_max, 32),
        broker_max_poll_records=w.take_max,
        consumer_max_fetch_size=8 * 1024 * 1024,
        broker_session_timeout=10.0,
        broker_rebalance_timeout=20.0,
        broker_heartbeat_interval=1.0,
        producer_max_request_size=4 * 1024 * 1024,
        **({"consumer_group_instance_id": w.instance_id} if w.instance_id else {}),
    )
    topics = {kind: app.topic(name, key_type=bytes, value_type=bytes,
                              key_serializer="raw", value_serializer="raw")
              for kind, name in core.topic_of.items()}
    snap_lock = asyncio.Lock()
    from confluent_kafka import KafkaException

    def make_agent(kind: int):
        async def agent(stream):
            handle = core.handle
            age = WORKER_RECORD_AGE_SECONDS.observe
            async for events in stream.noack_take(w.take_max, within=w.take_within_s):
                # a take holds several batches of a partition only when it is behind: their
                # alerts are rendered once, at the end of the take (one version per alert per
                # take; the same final versions)
                if len(events) > 1:
                    core.deferring.add(kind)
                for ev in events:
                    m = ev.message
                    if m.timestamp:
                        age(max(0.0, time.time() - m.timestamp))
                    try:
                        handle(kind, m.partition, m.offset, m.value, ev, m.key)
                        if ev is events[-1]:
                            core.deferring.discard(kind)
                            core.flush_alerts(kind)
                    except KafkaException as e:
                        # a fatal producer (e.g. idempotence lost across a broker restart):
                        # this process cannot produce again -- stop it (exit 1) so that its
                        # supervisor restarts it and the successor replays from the snapshot;
                        # letting Faust restart the agent would spin without progress
                        await fail(StateError(f"alert producer failed: {e}",
                                              fix="the worker exits; its restart replays from "
                                              "the last snapshot"))
                        return
                    await asyncio.sleep(0)   # let heartbeats, timers and the web page run
        agent.__name__ = f"events_{KIND_NAMES[kind]}"
        agent.__qualname__ = agent.__name__
        return app.agent(topics[kind], name=f"itdr-events-{KIND_NAMES[kind]}")(agent)

    app._itdr_agents = [make_agent(k) for k in (KEY_ACCOUNT, KEY_SOURCE)]

    async def fail(err: BaseException) -> None:
        if core.fatal is None:
            core.fatal = err
        log.error("worker stopping: %s", core.fatal)
        await app.crash(core.fatal)

    pacer = app._itdr_snapshot_pacer = SnapshotPacer(w.snapshot_interval_s,
                                                     w.snapshot_max_share)

    async def snapshot(keys=None, stepwise: bool = False) -> None:
        async with snap_lock:
            t0 = time.monotonic()
            # periodic: engine by engine, the agents running in between; final (revoke,
            # shutdown): all at once, nothing of those partitions may run in between
            caps = await core.capture_stepwise() if stepwise else core.capture(keys)
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, core.write, caps)
            except StateError as e:
                core.restore_dirty(caps)
                log.error("snapshot failed: %s", e)
                if core.fatal is not None:
                    await fail(core.fatal)
                return
            except KafkaException as e:
                # the state producer is fatal (raised from flush): same as a fatal alert
                # producer -- the process exits and its successor replays from the snapshot
                core.restore_dirty(caps)
                await fail(StateError(f"snapshot write failed: {e}",
                                      fix="the worker exits; its restart replays from the "
                                      "last durable snapshot"))
                return
            core.release(caps)
            if caps:
                took = time.monotonic() - t0
                WORKER_SNAPSHOT_SECONDS.observe(took)
                pacer.done(t0, took)

    @app.timer(w.snapshot_interval_s)
    async def snapshot_timer() -> None:
        if pacer.due(time.monotonic()):
            await snapshot(stepwise=True)

    @app.timer(1.0)
    async def catch_up_timer() -> None:
        if not app.rebalancing:
            core.catch_up()

    @app.timer(1.0)
    async def lag_timer() -> None:
        cons = app.consumer

        def hw(topic: str, p: int):
            try:
                from faust.types import TP
                return cons.highwater(TP(topic, p))
            except Exception:
                return None
        core.update_lag(hw)

    def keys_of(tps) -> set[tuple[int, int]]:
        return {(core.kind_of[tp.topic], tp.partition) for tp in tps if tp.topic in core.kind_of}

    async def on_revoked(sender, revoked, **kw) -> None:
        keys = keys_of(revoked) & set(core.parts)
        if keys:
            try:   # best effort: shorter replay for the next owner
                await asyncio.wait_for(snapshot(keys), timeout=10)
            except Exception as e:  # noqa: BLE001 - correctness does not depend on it
                log.warning("final snapshot on revoke failed: %r", e)
            core.revoke(keys)

    async def on_assigned(sender, assigned, **kw) -> None:
        keys = keys_of(assigned)
        gone = set(core.parts) - keys
        if gone:
            core.revoke(gone)
        loop = asyncio.get_running_loop()
        # blocking read of the state topic; processing waits for it (same loop)
        await loop.run_in_executor(None, core.assign, keys)

    app.on_partitions_revoked.connect(on_revoked)
    app.on_partitions_assigned.connect(on_assigned)
    app._itdr_handlers = (on_revoked, on_assigned)

    @app.page("/metrics")
    async def metrics_page(web, request):
        # aiohttp refuses a charset inside content_type; the exposition format is UTF-8 text
        return web.bytes(generate_latest(REGISTRY),
                         content_type=CONTENT_TYPE_LATEST.split("; charset")[0])

    @app.page("/health")
    async def health_page(web, request):
        doc = _health_doc(core, app)
        return web.json(doc, status=200 if core.fatal is None else 503)

    return app, core


def warm_up(settings: Settings) -> None:
    """Compile / load every detector kernel before consuming (numba cache)."""
    from detectors.engine import Engine

    from . import wire
    from .synth import SynthConfig, synth_batches

    t0 = time.perf_counter()
    for kind in (KEY_ACCOUNT, KEY_SOURCE):
        eng = Engine(settings.detection, kind, 0)
        for b in synth_batches(SynthConfig(events=2048, partitions=1, identities=64, seed=1,
                                           batch_events=1024), kind=kind):
            # through the wire: decoded batches are read-only views, and numba compiles a
            # separate specialization for read-only arrays -- warm the one the worker uses
            eng.process(wire.decode(wire.encode(b)))
    log.info("detector kernels ready in %.2fs", time.perf_counter() - t0)


def cmd_worker(args) -> int:
    from .broker import ensure_topics
    from .cli import settings_from_args

    settings = settings_from_args(args)
    over = {}
    if getattr(args, "web_port", None) is not None:
        over["web_port"] = args.web_port
    if getattr(args, "app_id", None):
        over["app_id"] = args.app_id
    if over:
        settings = settings.model_copy(update={"worker": settings.worker.model_copy(update=over)})
    level = str(getattr(args, "log_level", "WARNING")).upper()
    ensure_topics(settings.kafka, settings.topics)
    warm_up(settings)
    app, core = build_app(settings)
    from faust.worker import Worker

    worker = Worker(app, loglevel=level.lower(), quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as e:
        return int(e.code or 0) if core.fatal is None else 1
    finally:
        try:
            core.close()
        except Exception:  # noqa: BLE001
            pass
    return 0 if core.fatal is None else 1
