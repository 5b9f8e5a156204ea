"""Helpers for the worker tests: traffic through the collectors' Batcher, `itdr worker`
subprocesses, reading alerts back, and the reference (uninterrupted, in-process engines over
the very same partition record sequences)."""

from __future__ import annotations

import random
from pathlib import Path

from confluent_kafka import Producer

from collectors.batcher import Batcher
from stream import wire
from stream import recovery as _recovery
from stream.alert import Alert
from stream.errors import WireFormatError
from stream.recovery import (WorkerProc, alert_table, high_watermarks, kinds_topics,  # noqa: F401
                             read_alerts, read_topic, wait_caught_up, wait_started)
from stream.schema import FLAG_FAILURE, KEY_ACCOUNT, KEY_SOURCE
from stream.settings import DetectionSettings, KafkaSettings, TopicSettings

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DETECTION = {"enabled": ["brute-force"]}


# -- traffic ----------------------------------------------------------------------------------

def failure(account: str, t_ms: int, src: str, rec: int) -> dict:
    """A Kerberos pre-authentication failure (wrong password) for ``account``."""
    return {"time_ms": t_ms, "record_id": rec, "event_id": 4771, "status": 0x18,
            "preauth_type": 2, "account": account, "computer": "dc1.corp.local",
            "channel": "security", "action": "preauth_failed", "protocol": "kerberos",
            "src_ip": src, "flags": FLAG_FAILURE}


def logon(account: str, t_ms: int, src: str, rec: int) -> dict:
    return {"time_ms": t_ms, "record_id": rec, "event_id": 4624, "logon_type": 3,
            "account": account, "computer": "dc2.corp.local", "channel": "security",
            "action": "logon", "protocol": "kerberos", "src_ip": src}


def brute_force_traffic(n_attacked: int = 16, per_account: int = 24, benign: int = 1500,
                        seed: int = 1, gap_ms: int = 7000) -> list[dict]:
    """Time-ordered events: attacked accounts with steady wrong-password failures (alerts
    with many versions) mixed with benign logons."""
    rng = random.Random(seed)
    evs = []
    rec = 0
    for a in range(n_attacked):
        start = T0 + rng.randint(0, 120_000)
        src = f"10.9.{a}.{rng.randint(1, 250)}"
        for j in range(per_account):
            rec += 1
            evs.append(failure(f"corp\\victim{a:03d}", start + j * gap_ms, src, rec))
    span = per_account * gap_ms + 120_000
    for i in range(benign):
        rec += 1
        evs.append(logon(f"corp\\user{rng.randint(0, 300):04d}", T0 + rng.randint(0, span),
                         f"10.1.{rng.randint(0, 20)}.{rng.randint(1, 250)}", rec))
    evs.sort(key=lambda e: (e["time_ms"], e["record_id"]))
    return evs


class TrafficProducer:
    """Batcher + confluent-kafka producer with explicit partitions (as the collectors do)."""

    def __init__(self, kafka: KafkaSettings, topics: TopicSettings, max_events: int = 40):
        self.topics = kinds_topics(topics)
        self.batcher = Batcher(topics.partitions, max_events=max_events)
        self.p = Producer({**kafka.as_librdkafka(), "enable.idempotence": True, "acks": "all",
                           "compression.type": "lz4"})
        self.sent = 0

    def send(self, events: list[dict], flush_every: int = 0) -> int:
        n = 0
        for i, ev in enumerate(events):
            for m in self.batcher.add(ev, i):
                self._produce(m.topic_kind, m.partition, m.key, m.value)
                n += 1
            if flush_every and (i + 1) % flush_every == 0:
                for m in self.batcher.flush():
                    self._produce(m.topic_kind, m.partition, m.key, m.value)
                    n += 1
        for m in self.batcher.flush():
            self._produce(m.topic_kind, m.partition, m.key, m.value)
            n += 1
        assert self.p.flush(30) == 0
        self.sent += n
        return n

    def raw(self, kind: int, partition: int, value: bytes, key: bytes | None = None) -> None:
        self._produce(kind, partition, key, value)
        assert self.p.flush(30) == 0

    def _produce(self, kind, partition, key, value):
        self.p.produce(self.topics[kind], value=value, key=key, partition=partition)


# -- worker subprocess, waiting, reading alerts: shared with the recovery bench and
#    tests/reliability (stream/recovery.py) ---------------------------------------------------

def write_config(tmp_path: Path, kafka: KafkaSettings, topics: TopicSettings, app_id: str,
                 name: str = "w", snapshot_interval_s: float = 1.0, instance_id: str | None = None,
                 **detection) -> tuple[Path, int]:
    return _recovery.write_config(tmp_path, kafka, topics, app_id, name=name,
                                  snapshot_interval_s=snapshot_interval_s,
                                  instance_id=instance_id,
                                  detection={**DETECTION, **detection}, take_max=16)


# -- the reference ----------------------------------------------------------------------------

def reference_alerts(kafka: KafkaSettings, topics: TopicSettings,
                     detection: dict | None = None) -> list[Alert]:
    """What an uninterrupted worker must produce: one Engine per (kind, partition) over the
    partition's records in offset order (corrupt batches skipped)."""
    from detectors.engine import Engine

    ds = DetectionSettings(**{**DETECTION, **(detection or {})})
    out = []
    for kind, name in kinds_topics(topics).items():
        msgs = read_topic(kafka, name, idle=0.5)
        by_p: dict[int, list] = {}
        for m in msgs:
            by_p.setdefault(m.partition(), []).append(m)
        for p, lst in by_p.items():
            eng = Engine(ds, kind, p)
            for m in sorted(lst, key=lambda m: m.offset()):
                try:
                    b = wire.decode(m.value())
                except WireFormatError:
                    continue
                out.extend(eng.process(b))
    return out


def assert_matches_reference(got: dict, ref: dict) -> None:
    """A worker's alert versions against the uninterrupted per-batch reference (both
    ``alert_table``s). A worker that is behind renders an alert once per take (several wire
    batches), so it may skip intermediate versions; every version it emits must be one of
    the reference's with the same content, and every alert's final version must be there."""
    extra = sorted(set(got) - set(ref))
    assert not extra, f"{len(extra)} alert versions not in the uninterrupted run: {extra[:5]}"
    for k in got:
        assert got[k] == ref[k], f"alert {k} differs from the uninterrupted run"
    final: dict[str, int] = {}
    for i, v in ref:
        final[i] = max(v, final.get(i, 0))
    missing = sorted((i, v) for i, v in final.items() if (i, v) not in got)
    assert not missing, f"{len(missing)} final alert versions lost, e.g. {missing[:5]}"
