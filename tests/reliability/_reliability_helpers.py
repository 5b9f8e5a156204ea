"""Helpers of the reliability tests: a small labelled stream (DomainSimulator), its
reference alert set (offline engines over the exact wire batches the collector path sends),
and a pipeline of real subprocesses (``itdr worker``, ``itdr sink workspace``) that is always
torn down."""

from __future__ import annotations

import functools
import time
import uuid
from pathlib import Path

from collectors.batcher import Batcher
from stream.broker import ensure_topics
from stream.recovery import (BATCH_EVENTS, SinkProc, WorkerProc, collector_producer,
                             high_watermarks, reference_from_messages, send_batch,
                             simulated_events, sinks_config, write_config)
from stream.settings import TopicSettings

PARTITIONS = 4


@functools.lru_cache(maxsize=4)
def labelled_stream(seed: int = 5, events: int = 12_000):
    """(simulator, detection config, normalized events, index of the first attack-day
    event) -- generated once per session per seed."""
    sim, evs, first_attack = simulated_events(seed, events)
    return sim, sim.demo_config(), evs, first_attack


def batches(evs: list[dict], flush_at: tuple[int, ...] = (),
            batch_events: int = BATCH_EVENTS) -> list:
    """The wire batches a collector sends for ``evs``: full batches as they fill, plus a
    flush of every partial batch at each index in ``flush_at`` (a linger timer / a restart)
    and at the end."""
    b = Batcher(PARTITIONS, batch_events)
    out = []
    for i, ev in enumerate(evs):
        if i in flush_at:
            out.extend(b.flush())
        out.extend(b.add(ev, i + 1))
    out.extend(b.flush())
    return out


def reference(msgs: list, detection: dict):
    return reference_from_messages(msgs, detection, PARTITIONS)


def send_paced(producer, msgs: list, seconds: float, check=lambda: None) -> None:
    """Send ``msgs`` through the collector producer spread over ``seconds``."""
    t0 = time.monotonic()
    n = max(1, len(msgs))
    for i, m in enumerate(msgs):
        send_batch(producer, m)
        producer.service(0)
        if i % 4 == 0:
            check()
        lag = t0 + seconds * (i + 1) / n - time.monotonic()
        if lag > 0:
            time.sleep(lag)


class Pipeline:
    """Topics + configuration + worker/sink subprocesses on a given broker. ``close()``
    kills whatever is still running (call it in ``finally``)."""

    def __init__(self, broker, tmp_path: Path, detection: dict, sink: bool = True):
        self.broker = broker
        self.dir = Path(tmp_path)
        self.kafka = broker.kafka_settings()
        self.topics = TopicSettings(prefix=f"r{uuid.uuid4().hex[:8]}.", partitions=PARTITIONS)
        ensure_topics(self.kafka, self.topics)
        self.workspace = str(self.dir / "ws.db")
        self.sink_group_instance = f"rel-sink-{uuid.uuid4().hex[:6]}"
        self.cfg, self.port = write_config(
            self.dir, self.kafka, self.topics, f"rel-{uuid.uuid4().hex[:8]}", name="pipeline",
            snapshot_interval_s=1.0, instance_id="worker-0", detection=detection,
            sinks=sinks_config(self.workspace, str(self.dir / "sink-state"),
                               self.sink_group_instance) if sink else None)
        self.procs: list = []
        self.worker: WorkerProc | None = None
        self.sink: SinkProc | None = None
        self.exits: list[tuple[str, int, str]] = []

    def start_worker(self) -> WorkerProc:
        self.worker = WorkerProc(self.cfg, self.port,
                                 self.dir / f"worker-{len(self.procs)}.log")
        self.procs.append(self.worker)
        return self.worker

    def start_sink(self) -> SinkProc:
        self.sink = SinkProc(self.cfg, self.dir / f"sink-{len(self.procs)}.log")
        self.procs.append(self.sink)
        return self.sink

    def producer(self, delivery_timeout_s: float = 30.0, name: str = "spool"):
        return collector_producer(self.kafka, self.topics, self.dir / name,
                                  delivery_timeout_s=delivery_timeout_s)

    def supervise(self) -> None:
        """What a process supervisor (systemd, Kubernetes restartPolicy) does: restart a
        worker or sink that exited. Exits are recorded in ``self.exits``."""
        if self.worker is not None and not self.worker.alive():
            self.exits.append(("worker", self.worker.proc.returncode, self.worker.log.name))
            self.start_worker()
        if self.sink is not None and not self.sink.alive():
            self.exits.append(("sink", self.sink.proc.returncode, self.sink.log.name))
            self.start_sink()

    def wait_worker_done(self, timeout: float = 240) -> dict:
        """Supervised: until the (current) worker has processed and snapshotted every
        record of both events topics."""
        hw = high_watermarks(self.kafka, self.topics)
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            self.supervise()
            h = self.worker.health()
            if h:
                last = h
                offs = h["offsets"]
                if all(v == 0 or (k in offs and offs[k]["durable"] >= v - 1)
                       for k, v in hw.items()):
                    return h
            time.sleep(0.3)
        raise AssertionError(f"worker did not catch up: watermarks {hw}, last health {last}\n"
                             f"{self.worker.log_text()[-3000:]}")

    def check_alive(self) -> None:
        for p in (self.worker, self.sink):
            if p is not None and not p.alive():
                raise AssertionError(f"{p.log.name} exited (code {p.proc.returncode}):\n"
                                     f"{p.log_text()[-3000:]}")

    def close(self) -> None:
        for p in reversed(self.procs):
            try:
                p.kill()
            except Exception:  # noqa: BLE001
                pass
