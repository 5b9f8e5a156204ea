"""`itdr worker` end to end on the real broker: late and out-of-order events inside the
lateness bound still produce the brute-force alert; a corrupt batch goes to the dead-letter
topic with its reason and later good batches of the same partition are processed."""

from __future__ import annotations

import random
import uuid

import pytest
from _worker_harness import (T0, TrafficProducer, WorkerProc, alert_table,
                             assert_matches_reference, failure, logon,
                             read_alerts, read_topic, reference_alerts, wait_caught_up,
                             wait_started, write_config)

from stream import dlq
from stream.schema import KEY_ACCOUNT, key_hash

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]
BAD = b"XXXX" + b"not a wire batch".ljust(60, b"\0")


def _partition_of(account: str, partitions: int) -> int:
    return key_hash(account) % partitions


def test_late_out_of_order_and_corrupt_batches(kafka, topics, tmp_path):
    rng = random.Random(7)
    prod = TrafficProducer(kafka, topics, max_events=8)
    P = topics.partitions

    # 1) shuffled brute force: 14 failures over 2 minutes arriving in random order
    shuffled = "corp\\shuffled"
    evs = [failure(shuffled, T0 + 600_000 + j * 9000, "10.5.5.5", 100 + j) for j in range(14)]
    rng.shuffle(evs)
    # 2) late: 12 failures that arrive after the partition's watermark moved 4 minutes on
    #    (inside the 300 s lateness bound)
    late = "corp\\late"
    p_late = _partition_of(late, P)
    filler = next(f"corp\\filler{i}" for i in range(1000) if _partition_of(f"corp\\filler{i}", P)
                  == p_late)
    ahead = [logon(filler, T0 + 900_000 + 240_000 + i, "10.6.6.6", 300 + i) for i in range(10)]
    late_evs = [failure(late, T0 + 900_000 + j * 5000, "10.7.7.7", 400 + j) for j in range(12)]
    # 3) corrupt batch between two good halves of one brute force (6 + 6 failures)
    split = "corp\\split"
    p_split = _partition_of(split, P)
    first = [failure(split, T0 + 1_200_000 + j * 4000, "10.8.8.8", 500 + j) for j in range(6)]
    second = [failure(split, T0 + 1_200_000 + (6 + j) * 4000, "10.8.8.8", 600 + j)
              for j in range(6)]

    prod.send(evs)
    prod.send(ahead)
    prod.send(late_evs)
    prod.send(first)
    prod.raw(KEY_ACCOUNT, p_split, BAD, key=b"bad")
    prod.send(second)

    cfg, port = write_config(tmp_path, kafka, topics, f"wk-{uuid.uuid4().hex[:8]}",
                             instance_id="det-0")
    w = WorkerProc(cfg, port, tmp_path / "w.log")
    try:
        wait_started(w)
        wait_caught_up([w], kafka, topics, durable=True)
        metrics = w.metrics()
    finally:
        w.stop()

    alerts = read_alerts(kafka, topics)
    by_entity: dict[str, list] = {}
    for a in alerts:
        by_entity.setdefault(a.entity, []).append(a)
    for who, n in ((shuffled, 14), (late, 12), (split, 12)):
        assert who in by_entity, f"no brute-force alert for {who}: {sorted(by_entity)}"
        best = max(by_entity[who], key=lambda a: a.version)
        assert best.detector == "brute-force"
        assert best.evidence.count >= 10, f"{who}: only {best.evidence.count} failures in evidence"
    # the split attack needs failures from both sides of the corrupt batch (threshold 10)
    assert max(a.last_seen_ms for a in by_entity[split]) >= second[0]["time_ms"]
    # identical to the uninterrupted in-process reference
    assert_matches_reference(alert_table(alerts), alert_table(reference_alerts(kafka, topics)))

    dead = read_topic(kafka, topics.name("dlq"), idle=0.5)
    assert len(dead) == 1
    h = dlq.parse_headers(dead[0].headers())
    assert dead[0].value() == BAD
    assert "bad magic" in h[dlq.REASON]
    assert h[dlq.ERROR] == "WireFormatError" and h[dlq.COMPONENT] == "worker"
    assert h[dlq.ORIGIN].startswith(f"{topics.name('events')}/{p_split}/")
    assert "itdr_worker_corrupt_batches_total" in metrics
    assert "itdr_worker_alerts_total" in metrics
    # durable = covered by a periodic snapshot, which the worker timed
    snap = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
            if line.startswith("itdr_worker_snapshot_seconds_count ")]
    assert snap and snap[0] >= 1
