"""Helpers for the worker tests: traffic through the collectors' Batcher, `itdr worker`
subprocesses, reading alerts back, and the reference (uninterrupted, in-process engines over
the very same partition record sequences)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from collectors.batcher import Batcher
from stream import wire
from stream.alert import Alert
from stream.broker import free_port
from stream.errors import WireFormatError
from stream.schema import FLAG_FAILURE, KEY_ACCOUNT, KEY_SOURCE
from stream.settings import DetectionSettings, KafkaSettings, TopicSettings

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DETECTION = {"enabled": ["brute-force"]}


def kinds_topics(topics: TopicSettings) -> dict[int, str]:
    return {KEY_ACCOUNT: topics.name("events"), KEY_SOURCE: topics.name("events_by_source")}


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


# -- worker subprocess -----------------------------------------------------------------------

def write_config(tmp_path: Path, kafka: KafkaSettings, topics: TopicSettings, app_id: str,
                 name: str = "w", snapshot_interval_s: float = 1.0, instance_id: str | None = None,
                 **detection) -> tuple[Path, int]:
    port = free_port()
    cfg = {"kafka": {"bootstrap_servers": kafka.bootstrap_servers},
           "topics": topics.model_dump(),
           "detection": {**DETECTION, **detection},
           "worker": {"app_id": app_id, "web_port": port, "snapshot_interval_s": snapshot_interval_s,
                      "take_max": 16, "state_dir": str(tmp_path / f"state-{name}"),
                      "instance_id": instance_id}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, port


class WorkerProc:
    def __init__(self, cfg: Path, port: int, log: Path):
        self.port = port
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker", "-c", str(cfg), "--log-level", "INFO"],
            cwd=str(ROOT), stdout=open(log, "ab"), stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return json.loads(r.read())
        except Exception:
            return None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            return r.read().decode()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def high_watermarks(kafka: KafkaSettings, topics: TopicSettings) -> dict[str, int]:
    """``"<kind>/<p>" -> high watermark`` of both events topics."""
    c = Consumer({**kafka.as_librdkafka(), "group.id": "hw-" + uuid.uuid4().hex})
    out = {}
    try:
        for kind, name in kinds_topics(topics).items():
            for p in range(topics.partitions):
                _, hi = c.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                out[f"{'account' if kind == KEY_ACCOUNT else 'source'}/{p}"] = hi
    finally:
        c.close()
    return out


def wait_caught_up(workers: list[WorkerProc], kafka, topics, timeout: float = 90,
                   durable: bool = False) -> dict:
    """Wait until the workers together have processed every record of both events topics
    (and, with ``durable``, snapshotted them)."""
    hw = high_watermarks(kafka, topics)
    deadline = time.time() + timeout
    last = {}
    while time.time() < deadline:
        seen: dict[str, dict] = {}
        for w in workers:
            assert w.alive(), f"worker died:\n{w.log_text()[-3000:]}"
            h = w.health()
            if h:
                seen.update(h["offsets"])
        last = seen
        key = "durable" if durable else "processed"
        if all(h == 0 or (k in seen and seen[k][key] >= h - 1) for k, h in hw.items()):
            return seen
        time.sleep(0.2)
    raise AssertionError(f"workers did not catch up: watermarks {hw}, seen {last}\n"
                         + "\n".join(w.log_text()[-2000:] for w in workers))


def wait_started(w: WorkerProc, timeout: float = 90, partitions: int | None = None) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert w.alive(), f"worker died:\n{w.log_text()[-3000:]}"
        h = w.health()
        if h and not h["rebalancing"] and h["partitions"] and (
                partitions is None or len(h["partitions"]) == partitions):
            return h
        time.sleep(0.2)
    raise AssertionError(f"worker did not start:\n{w.log_text()[-3000:]}")


# -- alerts and the reference ------------------------------------------------------------------

def read_topic(kafka: KafkaSettings, topic: str, idle: float = 1.5, timeout: float = 30):
    c = Consumer({**kafka.as_librdkafka(), "group.id": "rd-" + uuid.uuid4().hex,
                  "auto.offset.reset": "earliest", "enable.partition.eof": True,
                  "enable.auto.commit": False})
    md = c.list_topics(topic, timeout=10)
    parts = list(md.topics[topic].partitions)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    out = []
    eof: set[int] = set()
    deadline = time.time() + timeout
    last = time.time()
    try:
        while time.time() < deadline:
            msgs = c.consume(500, 0.3)
            for m in msgs:
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                    continue
                out.append(m)
                last = time.time()
            if len(eof) == len(parts) and time.time() - last > idle:
                break
    finally:
        c.close()
    return out


def read_alerts(kafka: KafkaSettings, topics: TopicSettings) -> list[Alert]:
    return [Alert.from_json(m.value()) for m in read_topic(kafka, topics.name("alerts"))]


def alert_table(alerts: list[Alert]) -> dict[tuple[str, int], dict]:
    """(id, version) -> full alert content; asserts duplicates are identical (idempotent
    re-emission after a replay)."""
    out: dict[tuple[str, int], dict] = {}
    for a in alerts:
        d = a.model_dump(mode="json")
        k = (a.id, a.version)
        if k in out:
            assert out[k] == d, f"alert {k} re-emitted with different content"
        out[k] = d
    return out


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
