"""Collector configuration: the ``collector:`` section of the OpenITDR settings file.

:class:`CollectorSettings` validates ``Settings.collector`` (a plain dict in
``stream/settings.py`` so that the stream side never imports the collectors). Frozen pydantic
models; every field has a description (they are the reference documentation, see
``docs/collectors.md``).

Example::

    collector:
      sensor_id: dc01
      paths: ["C:/Windows/System32/winevt/Logs/Security.evtx"]
      follow: true
      spool_max_bytes: 1073741824
      kafka:                      # the sensor's own credentials (SCRAM or mTLS)
        bootstrap_servers: kafka.corp.local:9093
        security_protocol: SASL_SSL
        sasl_mechanism: SCRAM-SHA-512
        sasl_username: sensor-dc01
"""

from __future__ import annotations

import socket
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stream.errors import ConfigError
from stream.settings import (DEFAULT_BATCH_EVENTS, KafkaSettings, Settings,
                             config_error_from_validation)

_FROZEN = ConfigDict(frozen=True, extra="forbid", revalidate_instances="always")


class GatewaySettings(BaseModel):
    """Forwarded-events gateway (``itdr gateway``): TCP and HTTP listeners."""

    model_config = _FROZEN

    host: str = Field("127.0.0.1", description="Bind address. Loopback by default: expose it "
                      "on purpose (and put TLS in front) when forwarders are remote.")
    tcp_port: int = Field(5514, ge=0, le=65535, description="TCP listener port, newline-"
                          "delimited JSON or XML events (0 = random, -1 is not allowed).")
    http_port: int = Field(5080, ge=0, le=65535, description="HTTP listener port: POST /events.")
    enable_tcp: bool = Field(True, description="Run the TCP listener.")
    enable_http: bool = Field(True, description="Run the HTTP listener.")
    max_record_bytes: int = Field(1 << 20, ge=1024, description="Largest accepted single "
                                  "record (one line / one <Event>); larger ones are dead-lettered.")
    max_body_bytes: int = Field(16 << 20, ge=1024, description="Largest HTTP body; larger "
                                "requests get 413.")
    max_connections: int = Field(256, ge=1, description="Concurrent TCP connections; extra "
                                 "ones are closed at once.")
    idle_timeout_s: float = Field(300.0, gt=0, description="Close TCP connections idle this long.")
    max_pending_events: int = Field(200_000, ge=1000, description="Events accepted but not yet "
                                    "handed to the producer; above it HTTP answers 429 and TCP "
                                    "stops reading (backpressure).")


class CollectorSettings(BaseModel):
    """One sensor (collector process) on a domain controller or a WEF collector."""

    model_config = _FROZEN

    sensor_id: str | None = Field(None, description="Sensor id reported in heartbeats and DLQ "
                                  "records (default: the host name, lower case).")
    paths: list[str] = Field(default_factory=list, description="EVTX / JSON-lines / XML files, "
                             "directories (recursive) or globs to read.")
    follow: bool = Field(True, description="Keep reading: growing files are polled and new "
                         "files (rotated archives) matching the paths are picked up.")
    poll_interval_s: float = Field(1.0, gt=0, description="How often followed paths are polled.")
    channels: list[str] = Field(default_factory=lambda: ["Security", "System"],
                                description="Live event-log channels (Windows only; `itdr "
                                "collect` subscribes to them when `live` is true).")
    live: bool = Field(False, description="Subscribe to the live Windows channels (needs the "
                       "`windows` extra: pywin32).")
    checkpoint_dir: str = Field(".itdr/collector/checkpoints", description="Per-source "
                                "checkpoints (last delivered EventRecordID / byte offset).")
    checkpoint_interval_s: float = Field(1.0, ge=0, description="Minimum seconds between two "
                                         "checkpoint writes (each is fsynced).")
    spool_dir: str = Field(".itdr/collector/spool", description="Disk spool for batches the "
                           "broker could not take.")
    spool_max_bytes: int = Field(1 << 30, ge=1 << 16, description="Spool size limit. When full "
                                 "the collector stops reading its sources (backpressure); it "
                                 "never drops events.")
    batch_events: int = Field(DEFAULT_BATCH_EVENTS, ge=1, le=1 << 20,
                              description="Max events per wire batch (~0.8 MB before "
                              "compression at 8192; lower it for a broker with a small "
                              "message.max.bytes).")
    linger_ms: float = Field(200.0, ge=0, description="Partial batches are flushed after this.")
    compression: Literal["lz4", "zstd", "snappy", "gzip", "none"] = Field(
        "lz4", description="Kafka compression codec.")
    delivery_timeout_s: float = Field(30.0, gt=0, description="librdkafka message.timeout.ms: "
                                      "a batch not acknowledged by then goes to the spool.")
    queue_max_kbytes: int = Field(262144, ge=1024, description="librdkafka local queue size "
                                  "(queue.buffering.max.kbytes); a full queue spools.")
    dual_key: bool = Field(True, description="Also write events carrying a source to the "
                           "by-source topic (collector-side dual keying).")
    heartbeat_interval_s: float = Field(30.0, gt=0, description="Heartbeat period (health topic).")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus metrics port "
                              "(0 = disabled).")
    metrics_host: str = Field("127.0.0.1", description="Bind address of the metrics endpoint.")
    kafka: KafkaSettings | None = Field(None, description="The sensor's own Kafka credentials "
                                        "(SASL/SCRAM user or mTLS certificate). Default: the "
                                        "top-level `kafka` section.")
    gateway: GatewaySettings = Field(default_factory=GatewaySettings,
                                     description="Forwarded-events gateway.")

    def resolved_sensor_id(self) -> str:
        return (self.sensor_id or socket.gethostname()).lower()


def collector_settings(settings: Settings, **overrides: Any) -> CollectorSettings:
    """Validate ``settings.collector`` (plus overrides) into :class:`CollectorSettings`."""
    data = dict(settings.collector or {})
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return CollectorSettings(**data)
    except ValidationError as e:
        err = config_error_from_validation(e, "collector")
        raise ConfigError(err.message.replace("\n  ", "\n  collector."), location="collector",
                          fix="see docs/collectors.md for the collector keys") from None


def kafka_for(settings: Settings, cs: CollectorSettings) -> KafkaSettings:
    """The Kafka connection the sensor uses (its own credentials when configured)."""
    return cs.kafka or settings.kafka
