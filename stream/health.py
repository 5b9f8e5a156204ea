"""Sensor health monitoring, modelled on Microsoft Defender for Identity's health issues.

Pure Python (no Faust, no numba). :class:`HealthMonitor` consumes the sensors' heartbeats
(``collectors/health.py`` format, health topic) and raises health alerts as
:class:`stream.alert.Alert` objects, produced back to the health topic (header
``itdr-kind: health-alert``; heartbeats carry ``"type": "heartbeat"``):

================================ ====================================================== ========
detector id                      MDI health issue it mirrors                             severity
================================ ====================================================== ========
``health-sensor-silent``         "Sensor stopped communicating" (no heartbeat for        medium
                                 ``silent_after_s``, default 5 min)
``health-events-not-analysed``   "Some Windows events are not being analyzed": the       medium
                                 sensor is alive but its events do not get through
                                 (reading without deliveries, spool growing /
                                 backpressure, or the workers' consumer lag growing)
``health-audit-policy-gap``      "Directory Services Advanced Auditing is not enabled    medium
                                 as required" / "Directory Services Object Auditing"
                                 / "NTLM Auditing": a DC sensor that has been reading
                                 for ``audit_window_s`` never sent an event id that
                                 every audited DC produces; the alert names the audit
                                 subcategory to enable (mdi-reference §2)
================================ ====================================================== ========

Like MDI, issues close automatically when the condition clears (the alert is re-emitted with
``status: closed`` and a higher version).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import orjson

from .alert import Alert, Entities, Evidence, alert_id, iso_ms
from .metrics import HEALTH_ALERTS, SENSOR_LAST_HEARTBEAT

log = logging.getLogger(__name__)

# event id -> (audit policy to enable, why) -- mdi-reference §2
AUDIT_REQUIREMENTS: dict[int, tuple[str, str]] = {
    4624: ("Logon/Logoff > Audit Logon (Success and Failure)",
           "logons: abnormal logon, lateral movement, honeytoken activity"),
    4768: ("Account Logon > Audit Kerberos Authentication Service (Success and Failure)",
           "TGT requests: AS-REP roasting, enumeration, spray, golden ticket context"),
    4769: ("Account Logon > Audit Kerberos Service Ticket Operations (Success and Failure)",
           "service tickets: Kerberoasting, forged-ticket detection"),
    4776: ("Account Logon > Audit Credential Validation (Success and Failure)",
           "NTLM validations: brute force, enumeration, pass-the-hash context"),
    4662: ("DS Access > Audit Directory Service Access (Success and Failure) plus the "
           "domain-root SACL (Everyone, descendant User/Group/Computer/gMSA objects)",
           "object operations: DCSync, gMSA password reads, DKM reads"),
    5136: ("DS Access > Audit Directory Service Changes (Success and Failure)",
           "attribute changes: SIDHistory, RBCD, AdminSDHolder, honeytoken attributes"),
    8004: ("NTLM auditing: 'Audit NTLM authentication in this domain' = Enable all, "
           "'Audit Incoming NTLM Traffic' = all accounts, 'Restrict NTLM: Outgoing' = Audit all",
           "NTLM authentication with the server accessed"),
    4728: ("Account Management > Audit Security Group Management (Success and Failure)",
           "sensitive-group membership changes"),
}
DEFAULT_EXPECTED = (4624, 4768, 4769, 4776, 4662, 5136)

SILENT = "health-sensor-silent"
NOT_ANALYSED = "health-events-not-analysed"
AUDIT_GAP = "health-audit-policy-gap"


@dataclass
class _Sensor:
    sensor_id: str
    first_ms: int
    last_ms: int
    host: str = ""
    component: str = ""
    last: dict = field(default_factory=dict)
    history: list = field(default_factory=list)   # (time_ms, read, delivered, spool, lag)
    seen_ids: set = field(default_factory=set)
    reading_since_ms: int = 0


@dataclass
class _Open:
    alert: Alert


class HealthMonitor:
    """Heartbeats in, health alerts out. Time is passed explicitly (testable)."""

    def __init__(self, *, silent_after_s: float = 300.0, stall_after_s: float = 300.0,
                 audit_window_s: float = 86400.0,
                 expected_event_ids: tuple[int, ...] = DEFAULT_EXPECTED,
                 lag_stall_after_s: float = 300.0):
        self.silent_after_ms = int(silent_after_s * 1000)
        self.stall_after_ms = int(stall_after_s * 1000)
        self.audit_window_ms = int(audit_window_s * 1000)
        self.expected = tuple(expected_event_ids)
        self.lag_stall_after_ms = int(lag_stall_after_s * 1000)
        self.sensors: dict[str, _Sensor] = {}
        self.open: dict[tuple[str, str], Alert] = {}
        self._lag: list[tuple[int, int]] = []

    # -- input -------------------------------------------------------------------------------
    def observe(self, hb: dict, now_ms: int | None = None) -> None:
        if not isinstance(hb, dict) or hb.get("type") != "heartbeat" or not hb.get("sensor_id"):
            return
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        sid = str(hb["sensor_id"])
        t = int(hb.get("time_ms") or now_ms)
        s = self.sensors.get(sid)
        if s is None:
            s = self.sensors[sid] = _Sensor(sid, t, t)
        if hb.get("events_read", 0) < s.last.get("events_read", 0):
            s.history.clear()          # sensor restarted: counters start again
            s.reading_since_ms = 0
        s.last_ms = max(s.last_ms, t)
        s.host = str(hb.get("host") or "")
        s.component = str(hb.get("component") or "")
        s.last = hb
        s.seen_ids.update(int(x) for x in hb.get("event_ids_seen") or [])
        s.history.append((t, int(hb.get("events_read", 0)), int(hb.get("events_delivered", 0)),
                          int(hb.get("spool_bytes", 0)), int(hb.get("checkpoint_lag", 0)),
                          bool(hb.get("backpressure"))))
        if len(s.history) > 1000:
            del s.history[:500]
        if hb.get("events_read", 0) > 0 and not s.reading_since_ms:
            s.reading_since_ms = t
        SENSOR_LAST_HEARTBEAT.labels(sensor=sid).set(t / 1000)

    def observe_worker_lag(self, total_lag: int, now_ms: int | None = None) -> None:
        """Consumer lag of the stream workers on the events topics (runner samples it)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        self._lag.append((now_ms, total_lag))
        cutoff = now_ms - 2 * self.lag_stall_after_ms
        self._lag = [x for x in self._lag if x[0] >= cutoff]

    # -- rules -------------------------------------------------------------------------------
    def _stalled(self, s: _Sensor, now_ms: int) -> str | None:
        h = [x for x in s.history if x[0] >= now_ms - self.stall_after_ms]
        old = [x for x in s.history if x[0] <= now_ms - self.stall_after_ms]
        if not h or not old:
            return None
        a, b = old[-1], h[-1]
        if b[1] > a[1] and b[2] == a[2]:
            return (f"read {b[1] - a[1]:,} records in the last "
                    f"{(b[0] - a[0]) / 60000:.0f} min but delivered none to Kafka")
        if all(x[3] > 0 for x in h) and b[3] >= a[3] > 0:
            return f"disk spool not draining ({b[3]:,} bytes): the broker is not taking events"
        if all(x[5] for x in h):
            return "backpressure for the whole period: the sensor stopped reading its logs"
        return None

    def _worker_stalled(self, now_ms: int) -> str | None:
        old = [x for x in self._lag if x[0] <= now_ms - self.lag_stall_after_ms]
        new = [x for x in self._lag if x[0] > now_ms - self.lag_stall_after_ms]
        if old and new and new[-1][1] > 0 and min(x[1] for x in new) >= old[-1][1] > 0 \
                and new[-1][1] > old[-1][1]:
            return (f"stream workers' consumer lag grew from {old[-1][1]:,} to {new[-1][1]:,} "
                    "messages: events are not being analysed")
        return None

    def check(self, now_ms: int | None = None) -> list[Alert]:
        """Evaluate every rule; returns alerts opened, updated or closed by this check."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        out: list[Alert] = []
        for sid, s in self.sensors.items():
            silent = now_ms - s.last_ms >= self.silent_after_ms
            self._set(out, SILENT, s, silent, now_ms,
                      f"Sensor {sid} ({s.host or 'unknown host'}) stopped communicating: no "
                      f"heartbeat since {iso_ms(s.last_ms)} "
                      f"({(now_ms - s.last_ms) / 60000:.0f} min).",
                      ["Check that the `itdr collect`/`itdr gateway` service runs on the host",
                       "Check network access from the sensor to the Kafka brokers and the "
                       "sensor's Kafka credentials", "Look at the sensor's log for errors"],
                      {"last_heartbeat": iso_ms(s.last_ms)}, start_ms=s.last_ms)
            why = None if silent else self._stalled(s, now_ms)
            self._set(out, NOT_ANALYSED, s, why is not None, now_ms,
                      f"Some Windows events from sensor {sid} are not being analysed: {why}.",
                      ["Check broker availability and the topic ACLs for the sensor's user",
                       "Check the sensor's spool directory and disk space",
                       "Check the stream workers' consumer lag"],
                      {"reason": why or ""})
            missing = self._missing(s, now_ms)
            details = {"missing_event_ids": [str(e) for e in missing]}
            for e in missing:
                details[f"enable_{e}"] = AUDIT_REQUIREMENTS.get(e, ("", ""))[0]
            self._set(out, AUDIT_GAP, s, bool(missing), now_ms,
                      f"Domain controller sensor {sid} has sent no event "
                      f"{', '.join(map(str, missing))} in "
                      f"{(now_ms - s.reading_since_ms) / 3600000:.1f} h of reading: the audit "
                      "policy does not produce them, so detections that need them are blind.",
                      [f"{e}: enable {AUDIT_REQUIREMENTS[e][0]} ({AUDIT_REQUIREMENTS[e][1]})"
                       for e in missing if e in AUDIT_REQUIREMENTS] +
                      ["Verify with `auditpol /get /category:*` on the DC or the MDI readiness "
                       "script (Test-MdiReadiness.ps1)"], details)
        why = self._worker_stalled(now_ms)
        pseudo = _Sensor("stream-workers", now_ms, now_ms, host="")
        self._set(out, NOT_ANALYSED, pseudo, why is not None, now_ms,
                  f"Events are not being analysed: {why}.",
                  ["Check that the stream workers run (`itdr worker`) and are not crashing",
                   "Scale the workers or raise their resources"], {"reason": why or ""})
        for a in out:
            HEALTH_ALERTS.labels(kind=a.detector).inc()
        return out

    def _missing(self, s: _Sensor, now_ms: int) -> list[int]:
        if s.component not in ("collect", "") or not s.reading_since_ms:
            return []
        if now_ms - s.reading_since_ms < self.audit_window_ms:
            return []
        return [e for e in self.expected if e not in s.seen_ids]

    def _set(self, out: list, detector: str, s: _Sensor, active: bool, now_ms: int,
             description: str, steps: list[str], details: dict,
             start_ms: int | None = None) -> None:
        key = (detector, s.sensor_id)
        cur = self.open.get(key)
        if active and cur is None:
            start = start_ms if start_ms is not None else now_ms
            a = Alert(id=alert_id(detector, s.sensor_id, start), detector=detector,
                      title=_TITLES[detector], description=description, severity="medium",
                      key="none", entity=s.sensor_id,
                      entities=Entities(hosts=[s.host] if s.host else []),
                      evidence=Evidence(count=1, first_seen=iso_ms(start),
                                        last_seen=iso_ms(now_ms),
                                        details={k: v for k, v in details.items()}),
                      first_seen=iso_ms(start), last_seen=iso_ms(now_ms),
                      first_seen_ms=start, last_seen_ms=now_ms, next_steps=steps)
            self.open[key] = a
            out.append(a)
        elif not active and cur is not None:
            closed = cur.model_copy(update={"status": "closed", "version": cur.version + 1,
                                            "last_seen": iso_ms(now_ms),
                                            "last_seen_ms": now_ms})
            del self.open[key]
            out.append(closed)


_TITLES = {SILENT: "Sensor stopped communicating",
           NOT_ANALYSED: "Some Windows events are not being analysed",
           AUDIT_GAP: "Audit policy gap: required Windows events are not generated"}


# -- runner ------------------------------------------------------------------------------------
def worker_lag(consumer, topics, group_partitions: int) -> int | None:
    """Total lag of the consumer's group on the events topics (None if unknown)."""
    from confluent_kafka import TopicPartition

    tps = [TopicPartition(topics.name(w), p) for w in ("events", "events_by_source")
           for p in range(group_partitions)]
    try:
        committed = consumer.committed(tps, timeout=5)
    except Exception:  # noqa: BLE001
        return None
    total = 0
    for tp in committed:
        lo, hi = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition),
                                                timeout=5)
        off = tp.offset if tp.offset >= 0 else lo
        total += max(0, hi - off)
    return total


def run_monitor(settings, monitor: HealthMonitor, *, check_interval_s: float = 30.0,
                once: bool = False, emit=None, stop=None) -> list[Alert]:
    """Consume heartbeats, check periodically, produce health alerts to the health topic."""
    import uuid

    from confluent_kafka import Consumer, Producer

    conf = settings.kafka.as_librdkafka()
    topic = settings.topics.name("health")
    c = Consumer({**conf, "group.id": f"{settings.worker.app_id}-health" if not once
                  else f"itdr-health-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest",
                  "enable.auto.commit": True})
    lagc = Consumer({**conf, "group.id": settings.worker.app_id, "enable.auto.commit": False})
    p = Producer({**conf, "enable.idempotence": True, "acks": "all"})
    c.subscribe([topic])
    all_alerts: list[Alert] = []
    next_check = time.monotonic() + (0 if once else check_interval_s)
    idle = 0
    try:
        while not (stop and stop.is_set()):
            m = c.poll(0.5)
            if m is not None and not m.error():
                idle = 0
                hdrs = dict(m.headers() or [])
                if hdrs.get("itdr-kind") != b"health-alert":
                    try:
                        monitor.observe(orjson.loads(m.value()))
                    except orjson.JSONDecodeError:
                        log.warning("health topic: non-JSON message at %s[%s]@%s skipped",
                                    m.topic(), m.partition(), m.offset())
                continue
            idle += 1
            if once and idle < 3:
                continue
            if time.monotonic() >= next_check:
                lag = worker_lag(lagc, settings.topics, settings.topics.partitions)
                if lag is not None:
                    monitor.observe_worker_lag(lag)
                alerts = monitor.check()
                for a in alerts:
                    p.produce(topic, key=a.id.encode(), value=a.to_json(),
                              headers=[("itdr-kind", b"health-alert")])
                    if emit:
                        emit(a)
                p.flush(10)
                all_alerts.extend(alerts)
                next_check = time.monotonic() + check_interval_s
                if once:
                    break
    finally:
        c.close()
        lagc.close()
    return all_alerts


def cmd_health(args) -> int:
    import signal
    import sys
    import threading

    from .cli import settings_from_args

    settings = settings_from_args(args)
    mon = HealthMonitor(silent_after_s=args.silent_after, stall_after_s=args.stall_after,
                        audit_window_s=args.audit_window)
    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *a: stop.set())

    def emit(a: Alert) -> None:
        if args.json:
            sys.stdout.write(a.to_json().decode() + "\n")
        else:
            print(f"[{a.status}] {a.detector} {a.entity}: {a.description}")
        sys.stdout.flush()

    run_monitor(settings, mon, check_interval_s=args.check_interval, once=args.once,
                emit=emit, stop=stop)
    return 0
