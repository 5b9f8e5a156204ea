"""Shared helpers of the sink tests: alert factory, produce/consume, threaded runner."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from confluent_kafka import Consumer, Producer

from stream.alert import Alert, Entities, Evidence, alert_id, iso_ms
from stream.dlq import parse_headers
from stream.settings import Settings

T0 = 1_790_000_000_000  # fixed event time base (ms)


def make_alert(i: int, version: int = 1, *, detector: str = "password_spray",
               severity: str = "medium", details_size: int = 0, t0: int = T0) -> Alert:
    entity = f"corp\\user{i}"
    first = t0 + i * 1000
    last = first + version * 60_000
    details: dict = {"guessed": [f"corp\\victim{k}" for k in range(3)]}
    if details_size:
        details["blob"] = "x" * details_size
    return Alert(
        id=alert_id(detector, entity, first), version=version, detector=detector,
        title=f"Suspected {detector.replace('_', ' ')}",
        description=f"{entity} tried {10 * version} passwords from 10.0.0.{i % 250} over "
                    f"{version} minutes.",
        severity=severity, mitre=["T1110.003", "TA0006"], mdi_alert_id=["2412"],
        entity=entity,
        entities=Entities(accounts=[entity, "corp\\victim0"], hosts=[f"ws{i}.corp.local"],
                          ips=[f"10.0.0.{i % 250}"]),
        evidence=Evidence(count=10 * version, first_seen=iso_ms(first), last_seen=iso_ms(last),
                          dcs=["dc1.corp.local"], event_ids=[4625, 4771],
                          record_ids=[i, i + 1], details=details),
        first_seen=iso_ms(first), last_seen=iso_ms(last), first_seen_ms=first,
        last_seen_ms=last, next_steps=["Reset the password of the accounts."])


def produce(kafka, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    p = Producer({**kafka.as_librdkafka(), "linger.ms": 5})
    for key, value in records:
        p.produce(topic, key=key, value=value)
    assert p.flush(15) == 0


def produce_alerts(kafka, topics, alerts: list[Alert]) -> None:
    produce(kafka, topics.name("alerts"), [(a.id.encode(), a.to_json()) for a in alerts])


def consume_all(kafka, topic: str, expect: int, timeout: float = 15.0) -> list:
    c = Consumer({**kafka.as_librdkafka(), "group.id": f"reader-{time.monotonic_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expect and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            out.append(m)
    finally:
        c.close()
    return out


def dlq_records(kafka, topics, expect: int, timeout: float = 15.0) -> list[dict]:
    msgs = consume_all(kafka, topics.name("dlq"), expect, timeout)
    return [{"value": m.value(), "key": m.key(), **parse_headers(m.headers())} for m in msgs]


def root_settings(kafka, topics, sinks: dict[str, Any]) -> Settings:
    return Settings(kafka=kafka, topics=topics, sinks=sinks)


class ThreadedRunner:
    """Run a SinkRunner in a thread; stop() joins it."""

    def __init__(self, runner):
        self.runner = runner
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as e:  # pragma: no cover - reported by stop()
            self.error = e

    def __enter__(self) -> "ThreadedRunner":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self, timeout: float = 20.0) -> None:
        self.runner.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "sink runner did not stop"
        if self.error:
            raise self.error


def wait_for(pred: Callable[[], bool], timeout: float = 20.0, interval: float = 0.1,
             msg: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {msg}")
