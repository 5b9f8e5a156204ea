"""Sensor identity and heartbeats.

A sensor is one collector process (``itdr collect`` on a DC, or ``itdr gateway`` on a WEF
collector). Its id comes from ``collector.sensor_id`` (default: the host name, lower case);
it authenticates to Kafka with its own credentials (``collector.kafka``: SASL/SCRAM user or
mTLS certificate, see :class:`stream.settings.KafkaSettings`), so a compromised DC can be
revoked alone and ACLs can restrict each sensor to producing.

Every ``heartbeat_interval_s`` the sensor produces one JSON heartbeat to the health topic
(key = sensor id)::

    {"type": "heartbeat", "sensor_id": "dc01", "version": "0.1.0", "host": "dc01.corp.local",
     "component": "collect", "sources": ["C:/Windows/.../Security.evtx"],
     "hot_path": "native",                  # or "python": collectors._native not built
     "evtx_reader": "binxml",               # or "crate-json" (ITDR_BINXML=0), "python"
     "events_per_s": 1250.4, "events_read": 912345, "events_delivered": 911000,
     "checkpoint_lag": 1345, "spool_bytes": 0, "spool_batches": 0, "dropped": 0,
     "dead_lettered": 2, "backpressure": false,
     "unknown_by_event_id": {"5156": 120033}, "event_ids_seen": [4624, 4662, 4769, 5156],
     "event_counts": {"4624": 5000, ...}, "last_delivery_ms": 1767225600000,
     "time_ms": 1767225600000, "interval_s": 30}

``stream/health.py`` (the HealthMonitor) consumes these and raises MDI-style health alerts.
"""

from __future__ import annotations

import socket
import time

import orjson

from . import native

from stream.metrics import COLLECTOR_HEARTBEATS

try:
    from importlib.metadata import version as _pkg_version

    VERSION = _pkg_version("openitdr")
except Exception:  # pragma: no cover - not installed
    VERSION = "0.0.0"


def sensor_id(configured: str | None = None) -> str:
    return (configured or socket.gethostname()).lower()


class Heartbeat:
    """Builds heartbeats from a pipeline's counters (rate over the last interval)."""

    def __init__(self, sensor: str, component: str, sources: list[str], interval_s: float,
                 topic: str):
        self.sensor = sensor
        self.component = component
        self.sources = sources
        self.interval_s = interval_s
        self.topic = topic
        self.host = socket.getfqdn().lower()
        self._last_t = 0.0
        self._last_read = 0
        self.sent = 0

    def build(self, *, read: int, delivered: int, checkpoint_lag: int, spool_bytes: int,
              spool_batches: int, dropped: int, dead_lettered: int, backpressure: bool,
              unknown_ids: dict[int, int], event_counts: dict[int, int],
              last_delivery_ms: int, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        dt = now - self._last_t if self._last_t else 0.0
        rate = (read - self._last_read) / dt if dt > 0 else 0.0
        self._last_t, self._last_read = now, read
        return {"type": "heartbeat", "sensor_id": self.sensor, "version": VERSION,
                "host": self.host, "component": self.component, "sources": self.sources,
                "hot_path": native.status(), "evtx_reader": native.evtx_reader(),
                "events_per_s": round(rate, 1), "events_read": read,
                "events_delivered": delivered, "checkpoint_lag": checkpoint_lag,
                "spool_bytes": spool_bytes, "spool_batches": spool_batches, "dropped": dropped,
                "dead_lettered": dead_lettered, "backpressure": backpressure,
                "unknown_by_event_id": {str(k): v for k, v in sorted(unknown_ids.items())},
                "event_ids_seen": sorted(int(k) for k in event_counts if k is not None),
                "event_counts": {str(k): v for k, v in sorted(event_counts.items())
                                 if k is not None},
                "last_delivery_ms": last_delivery_ms, "time_ms": int(now * 1000),
                "interval_s": self.interval_s}

    def due(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return not self._last_t or now - self._last_t >= self.interval_s

    def from_pipeline(self, pipe) -> dict:
        st = pipe.stats
        ps = pipe.producer.stats()
        return self.build(read=st.read, delivered=ps["delivered_events"],
                          checkpoint_lag=ps["checkpoint_lag"], spool_bytes=ps["spool_bytes"],
                          spool_batches=ps["spool_batches"], dropped=ps["spool_corrupt"],
                          dead_lettered=st.dead_lettered,
                          backpressure=pipe.producer.backpressure,
                          unknown_ids=pipe.normalizer.unknown_ids, event_counts=st.event_ids,
                          last_delivery_ms=pipe.producer.last_delivery_ms)

    def tick(self, pipe) -> None:
        """``on_tick`` hook for :class:`~collectors.pipeline.CollectorPipeline`."""
        if self.due():
            hb = self.from_pipeline(pipe)
            pipe.producer.heartbeat(self.topic, orjson.dumps(hb), self.sensor.encode())
            self.sent += 1
            COLLECTOR_HEARTBEATS.inc()
