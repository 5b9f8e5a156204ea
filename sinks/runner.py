"""The sink consumer loop: ``itdr sink NAME``.

One process per sink, consumer group ``itdr-sink-<name>`` (confluent-kafka,
``enable.auto.commit=false``, ``auto.offset.reset=earliest``). The checkpoint order is
quix-streams': 1) flush the sink, 2) flush the dead-letter producer, 3) mark the delivery
ledger, 4) commit offsets. A failed flush pauses the assigned partitions (the consumer keeps
polling, so it stays in its group) for the throttling delay or the retry backoff, then the same
batch is flushed again. SIGTERM stops consuming, makes one last flush attempt and commits;
whatever is not committed is re-read on the next start (at-least-once; the sinks are idempotent
by alert id and version).

Run::

    itdr sink workspace -c config.yaml
    itdr sink sentinel -c config.yaml
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from stream import metrics
from stream.dlq import send_to_dlq
from stream.errors import ConfigError, SinkBackpressureError, SinkError

from .base import BatchingSink, DeliveryLedger, SinkItem, SinkRetryLater
from .settings import SinksSettings

__all__ = ["SinkRunner", "build_sink", "cmd_sink", "consumer_config"]

log = logging.getLogger(__name__)

SINK_NAMES = ("alerts-topic", "workspace", "sentinel", "syslog", "sentinel-events")


def consumer_config(settings: Any, group_id: str, sinks: SinksSettings) -> dict[str, Any]:
    conf = settings.kafka.as_librdkafka()
    conf.update({"group.id": group_id, "enable.auto.commit": False,
                 "auto.offset.reset": "earliest", "enable.partition.eof": False,
                 "session.timeout.ms": sinks.session_timeout_ms,
                 "client.id": f"{settings.kafka.client_id}-{group_id}"})
    instance = sinks.group_instance_id
    if instance is None:
        instance = f"{group_id.removeprefix('itdr-sink-')}-{socket.gethostname()}"
    if instance:
        conf["group.instance.id"] = instance
    return conf


class SinkRunner:
    """Consume the sink's topics and drive a :class:`BatchingSink` through checkpoints.

    ``run()`` blocks until :meth:`stop` (or SIGTERM via :func:`cmd_sink`)."""

    def __init__(self, sink: BatchingSink, settings: Any, sinks: SinksSettings | None = None,
                 *, group_id: str | None = None, poll_interval_s: float = 0.2):
        self.sink = sink
        self.settings = settings
        self.sinks = sinks or SinksSettings.from_root(settings)
        self.group_id = group_id or f"itdr-sink-{sink.name}"
        self.topics = sink.topics(settings)
        self.dlq_topic = settings.topics.name("dlq")
        self.poll_interval_s = poll_interval_s
        self._stop = threading.Event()
        self._paused_until: float | None = None
        self.consumer = None
        self.producer = None
        self.commits = 0
        self.flushes = 0
        self._dlq_errors: list[str] = []

    # -- control ------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- dead letters -------------------------------------------------------------------------
    def _dead_letter(self, item: SinkItem) -> None:
        send_to_dlq(_ProduceWithCallback(self.producer.produce, self._dlq_errors.append),
                    self.dlq_topic, item.value, key=item.key, reason=item.reason or "rejected",
                    error=item.error or "PermanentSinkError", component=self.sink.component,
                    origin=item.origin)
        self.producer.poll(0)

    def _dead_letter_flush(self) -> None:
        left = self.producer.flush(10)
        if left:
            raise SinkError(f"{left} dead-letter records not acknowledged by the broker",
                            location=self.dlq_topic, fix="check that the DLQ topic exists and "
                            "the broker is reachable")
        if self._dlq_errors:
            errs, self._dlq_errors[:] = list(self._dlq_errors), []
            raise SinkError(f"dead-letter produce failed: {errs[0]}", location=self.dlq_topic)

    # -- loop ---------------------------------------------------------------------------------
    def run(self) -> None:
        from confluent_kafka import Consumer, Producer

        pconf = self.settings.kafka.as_librdkafka()
        pconf.update({"enable.idempotence": True, "linger.ms": 5,
                      "client.id": f"{self.settings.kafka.client_id}-{self.group_id}-dlq"})
        self.producer = Producer(pconf)
        self.sink.dead_letter = self._dead_letter
        self.sink.dead_letter_flush = self._dead_letter_flush
        self.sink.setup()
        self.consumer = Consumer(consumer_config(self.settings, self.group_id, self.sinks))
        self.consumer.subscribe(self.topics, on_assign=self._on_assign,
                                on_revoke=self._on_revoke)
        log.info("sink %s consuming %s as group %s", self.sink.name, self.topics, self.group_id)
        try:
            while not self._stop.is_set():
                self._step()
            self._final_flush()
        finally:
            try:
                self.consumer.close()
            except Exception as e:  # pragma: no cover - best effort
                log.debug("consumer close: %s", e)
            self.producer.flush(5)
            self.sink.close()

    def _step(self) -> None:
        now = time.monotonic()
        if self._paused_until is not None:
            msg = self.consumer.poll(min(self.poll_interval_s,
                                         max(0.0, self._paused_until - now)))
            if msg is not None:
                self._handle(msg)
            if time.monotonic() >= self._paused_until:
                if self._checkpoint():
                    self._resume()
            return
        timeout = min(self.poll_interval_s, self.sink.flush_due_in())
        msgs = self.consumer.consume(num_messages=max(1, self.sink.batching.max_records),
                                     timeout=timeout)
        for msg in msgs:
            # every returned message is buffered, even after a pause: the consumer position
            # has moved past it, so dropping it here would lose it
            self._handle(msg)
            if self._paused_until is None and len(self.sink.batch) >= \
                    self.sink.batching.max_records:
                self._checkpoint()
        if self._paused_until is None and self.sink.should_flush():
            self._checkpoint()

    def _handle(self, msg) -> None:
        err = msg.error()
        if err is not None:
            log.warning("consumer error: %s", err)
            return
        ts = msg.timestamp()
        item = SinkItem(value=msg.value() or b"", key=msg.key(), topic=msg.topic(),
                        partition=msg.partition(), offset=msg.offset(),
                        timestamp_ms=ts[1] if ts and ts[0] else 0, headers=msg.headers())
        self.sink.add(item)

    def _checkpoint(self) -> bool:
        """Flush then commit. False when the flush must be retried later (paused)."""
        try:
            offsets = self.sink.flush()
        except (SinkBackpressureError, SinkRetryLater) as e:
            self._pause(e.retry_after)
            return False
        self.flushes += 1
        if offsets:
            self._commit(offsets)
        return True

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        from confluent_kafka import TopicPartition

        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            self.consumer.commit(offsets=tps, asynchronous=False)
            self.commits += 1
        except Exception as e:
            # not fatal: the records are re-read after a restart/rebalance and deduplicated
            log.warning("offset commit failed (records will be re-read): %s", e)

    def _pause(self, delay: float) -> None:
        delay = max(0.05, float(delay))
        if self._paused_until is None:
            try:
                self.consumer.pause(self.consumer.assignment())
            except Exception as e:  # pragma: no cover
                log.debug("pause: %s", e)
            self.sink.on_paused()
        self._paused_until = time.monotonic() + delay

    def _resume(self) -> None:
        self._paused_until = None
        try:
            self.consumer.resume(self.consumer.assignment())
        except Exception as e:  # pragma: no cover
            log.debug("resume: %s", e)

    def _on_assign(self, consumer, partitions) -> None:
        log.info("%s assigned %s", self.sink.name,
                 [f"{p.topic}[{p.partition}]" for p in partitions])
        if self._paused_until is not None:
            consumer.pause(partitions)

    def _on_revoke(self, consumer, partitions) -> None:
        revoked = [(p.topic, p.partition) for p in partitions]
        if not revoked or not self.sink.batch.items:
            return
        try:
            offsets = self.sink.flush()
            if offsets:
                self._commit(offsets)
            self._paused_until = None
        except (SinkBackpressureError, SinkRetryLater, SinkError) as e:
            n = self.sink.discard(revoked)
            log.warning("%s: partitions revoked while the destination fails (%s); %d "
                        "uncommitted records left to the new owner", self.sink.name, e, n)

    def _final_flush(self) -> None:
        """On stop: one flush attempt (a short retry window) then commit."""
        deadline = time.monotonic() + 10.0
        while self.sink.batch.items and time.monotonic() < deadline:
            try:
                offsets = self.sink.flush()
            except (SinkBackpressureError, SinkRetryLater) as e:
                wait = min(e.retry_after, deadline - time.monotonic())
                if wait <= 0:
                    break
                time.sleep(min(wait, 1.0))
                continue
            if offsets:
                self._commit(offsets)
        if self.sink.batch.items:
            log.warning("%s: stopping with %d uncommitted records; they are re-read on the "
                        "next start", self.sink.name, len(self.sink.batch.items))


class _ProduceWithCallback:
    """Adapter so send_to_dlq's ``producer.produce(...)`` gets a delivery callback."""

    def __init__(self, produce, errors_append):
        self._produce = produce
        self._append = errors_append

    def _cb(self, err, msg) -> None:
        if err is not None:
            self._append(str(err))

    def produce(self, *a, **kw):
        kw.setdefault("on_delivery", self._cb)
        return self._produce(*a, **kw)


def ledger_for(name: str, sinks: SinksSettings) -> DeliveryLedger:
    return DeliveryLedger(Path(sinks.state_dir) / f"{name}-delivered.db",
                          retention_days=sinks.dedup_retention_days)


def build_sink(name: str, settings: Any, sinks: SinksSettings | None = None, **kw: Any
               ) -> BatchingSink:
    """Create the sink called ``name`` (the ``itdr sink`` choices) from the settings."""
    sinks = sinks or SinksSettings.from_root(settings)
    common = {"batching": sinks.batching, "retry": sinks.retry}
    if name == "workspace":
        from .workspace import WorkspaceSink

        return WorkspaceSink(sinks.workspace, **common, **kw)
    if name in ("sentinel", "sentinel-events"):
        from .sentinel import SentinelEventsSink, SentinelSink

        if not sinks.sentinel.enabled:
            raise ConfigError("the Sentinel sink is not enabled", location="sinks.sentinel."
                              "enabled", fix="set sinks.sentinel.enabled: true with endpoint, "
                              "dcr_immutable_id and credentials")
        if name == "sentinel-events":
            if not sinks.sentinel.events_stream_name:
                raise ConfigError("no identity-events stream configured",
                                  location="sinks.sentinel.events_stream_name",
                                  fix="set it to Custom-OpenITDRIdentityEvents_CL (see "
                                  "deploy/sentinel)")
            return SentinelEventsSink(sinks.sentinel, **common, **kw)
        ledger = ledger_for(name, sinks) if sinks.sentinel.dedup else None
        return SentinelSink(sinks.sentinel, ledger=ledger, **common, **kw)
    if name == "syslog":
        from .cef import SyslogSink

        if not sinks.syslog.enabled:
            raise ConfigError("the syslog sink is not enabled", location="sinks.syslog.enabled",
                              fix="set sinks.syslog.enabled: true with host, port, protocol")
        ledger = ledger_for(name, sinks) if sinks.syslog.dedup else None
        return SyslogSink(sinks.syslog, ledger=ledger, **common, **kw)
    if name == "alerts-topic":
        from .alerts_topic import AlertsTopicSink

        if not sinks.alerts_topic.enabled:
            raise ConfigError("the alerts-topic forwarder is not enabled",
                              location="sinks.alerts_topic.enabled",
                              fix="set sinks.alerts_topic.enabled: true and its topic")
        return AlertsTopicSink(sinks.alerts_topic, settings.kafka,
                               ledger=ledger_for(name, sinks), **common, **kw)
    raise ConfigError(f"unknown sink {name!r}", location="itdr sink NAME",
                      fix=f"use one of {', '.join(SINK_NAMES)}")


def cmd_sink(args) -> int:
    """``itdr sink NAME``: run one sink until SIGTERM/SIGINT."""
    from stream.cli import settings_from_args

    settings = settings_from_args(args)
    sinks = SinksSettings.from_root(settings)
    sink = build_sink(args.name, settings, sinks)
    runner = SinkRunner(sink, settings, sinks)
    if sinks.metrics_port:
        metrics.start_http_server(sinks.metrics_port, addr=sinks.metrics_host)

    def _term(signum, frame):
        log.info("signal %s: stopping sink %s", signum, sink.name)
        runner.stop()

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    print(f"sink {sink.name}: consuming {', '.join(runner.topics)} as {runner.group_id}",
          flush=True)
    runner.run()
    return 0
