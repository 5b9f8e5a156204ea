"""Alerts-topic forwarder: copy alerts to another topic, possibly on another Kafka cluster.

The value is forwarded byte for byte (the Alert JSON), keyed by alert id, with headers
``itdr-alert-id`` and ``itdr-alert-version`` so consumers can deduplicate by (id, version)
without parsing. Idempotent producer; a flush waits for every acknowledgement
(``delivery_timeout_s``); records not acknowledged by then are failed by librdkafka
(``message.timeout.ms``) and re-sent by the framework's retry. A delivery ledger drops alerts
already forwarded (worker re-sends, sink restarts).

Run: ``itdr sink alerts-topic -c config.yaml``.
"""

from __future__ import annotations

import logging
from typing import Any

from stream.errors import SinkError
from stream.settings import KafkaSettings

from .base import BatchingSink, SinkBatch
from .settings import AlertsTopicSettings

__all__ = ["AlertsTopicSink"]

log = logging.getLogger(__name__)


class AlertsTopicSink(BatchingSink):
    """``itdr sink alerts-topic``."""

    name = "alerts-topic"

    def __init__(self, settings: AlertsTopicSettings, kafka: KafkaSettings, **kw: Any):
        super().__init__(**kw)
        self.settings = settings
        self.kafka = kafka
        self.producer = None

    def producer_config(self) -> dict[str, Any]:
        conf = self.kafka.as_librdkafka()
        if self.settings.bootstrap_servers:
            # another cluster: do not inherit the source cluster's credentials
            conf = {"bootstrap.servers": self.settings.bootstrap_servers}
        timeout_ms = int(self.settings.delivery_timeout_s * 1000)
        conf.update({"enable.idempotence": True, "acks": "all", "linger.ms": 5,
                     "message.timeout.ms": timeout_ms,
                     "client.id": f"{self.kafka.client_id}-sink-alerts-topic"})
        conf.update(self.settings.producer_extra)
        return conf

    def setup(self) -> None:
        from confluent_kafka import Producer

        self.producer = Producer(self.producer_config())

    def write(self, batch: SinkBatch) -> None:
        pending = batch.pending()
        errors: list[str] = []
        acked: list[Any] = []

        def cb(item):
            def on_delivery(err, msg):
                if err is None:
                    acked.append(item)
                else:
                    errors.append(str(err))
            return on_delivery

        for item in pending:
            alert = item.payload
            headers = [("itdr-alert-id", alert.id.encode()),
                       ("itdr-alert-version", str(alert.version).encode())]
            while True:
                try:
                    self.producer.produce(self.settings.topic, value=item.value,
                                          key=alert.id.encode(), headers=headers,
                                          on_delivery=cb(item))
                    break
                except BufferError:
                    self.producer.poll(0.1)
        left = self.producer.flush(self.settings.delivery_timeout_s + 2.0)
        batch.mark_delivered(acked)
        if left or errors:
            raise SinkError(f"{len(pending) - len(acked)} of {len(pending)} alerts not "
                            f"acknowledged by {self.settings.topic}: "
                            f"{errors[0] if errors else f'{left} still queued'}",
                            location="sinks.alerts_topic", fix="check that the destination "
                            "cluster is reachable and the topic exists")

    def close(self) -> None:
        if self.producer is not None:
            self.producer.flush(5)
