"""Exactly-continuing recovery of `itdr worker` on the real broker: SIGKILL mid-stream and a
rebalance (a second worker joins, then leaves) give the alerts of an uninterrupted run --
same ids, versions and content; duplicates of an already-sent (id, version) allowed, no
alert lost, no new id."""

from __future__ import annotations

import time
import uuid

import pytest

from stream.broker import ensure_topics
from stream.settings import TopicSettings
from _worker_harness import (TrafficProducer, WorkerProc, alert_table,
                             assert_matches_reference, brute_force_traffic, read_alerts,
                             reference_alerts, wait_caught_up, wait_started,
                             write_config)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]


def _assert_same_as_uninterrupted(kafka, topics):
    got = alert_table(read_alerts(kafka, topics))
    ref = alert_table(reference_alerts(kafka, topics))
    assert len(ref) >= 50, "the scenario must produce many alert versions"
    assert_matches_reference(got, ref)
    assert {i for i, _ in got} == {i for i, _ in ref}
    return got, ref


def test_sigkill_mid_stream_then_restart_gives_the_same_alerts(kafka, topics, tmp_path):
    evs = brute_force_traffic(n_attacked=16, per_account=24, benign=1500, seed=3)
    third = len(evs) // 3
    prod = TrafficProducer(kafka, topics, max_events=25)
    app_id = f"wk-{uuid.uuid4().hex[:8]}"
    # static membership: the restarted worker (same instance id) takes its partitions back
    # at once (noida-db never evicts a SIGKILLed dynamic member)
    cfg, port = write_config(tmp_path, kafka, topics, app_id, snapshot_interval_s=1.5,
                             instance_id="worker-0")

    prod.send(evs[:third])
    w1 = WorkerProc(cfg, port, tmp_path / "w1.log")
    try:
        wait_started(w1)
        wait_caught_up([w1], kafka, topics, durable=True)   # phase 1 snapshotted
        # phase 2: kill right after processing, before the next snapshot covers all of it
        replay_pending = False
        for attempt in range(4):
            lo = third + attempt * (third // 4)
            prod.send(evs[lo:lo + third // 4])
            seen = wait_caught_up([w1], kafka, topics)
            if any(v["processed"] > v["durable"] for v in seen.values()):
                replay_pending = True
                break
        w1.kill()
    finally:
        w1.kill()
    assert replay_pending, "could not kill the worker between two snapshots"
    sent = third + (attempt + 1) * (third // 4)
    prod.send(evs[sent:])

    w2 = WorkerProc(cfg, port, tmp_path / "w2.log")
    try:
        wait_started(w2)
        wait_caught_up([w2], kafka, topics)
        log = w2.log_text()
        restored = [ln for ln in log.splitlines() if "restored snapshot at offset" in ln]
        assert restored and any("offset -1" not in ln for ln in restored), \
            "the restarted worker did not restore from snapshots"
    finally:
        w2.stop()
    _assert_same_as_uninterrupted(kafka, topics)


@pytest.fixture
def tansu_kafka(tansu):
    return tansu.kafka_settings()


@pytest.fixture
def tansu_topics(tansu_kafka):
    t = TopicSettings(prefix=f"rb{uuid.uuid4().hex[:8]}.", partitions=4)
    ensure_topics(tansu_kafka, t)
    return t


@pytest.mark.parametrize("leave", ["stop", "sigkill"])
def test_second_worker_joins_then_leaves_without_loss(leave, tansu_kafka, tansu_topics,
                                                      tmp_path):
    """Two `itdr worker` processes (dynamic members of one group) on tansu: noida-db cannot
    complete this rebalance (tests/tansu_broker.py). B leaves either gracefully (SIGTERM:
    final snapshot, LeaveGroup) or by SIGKILL mid-stream (its partitions move to A after the
    session timeout; A restores B's last snapshots and replays the rest)."""
    kafka, topics = tansu_kafka, tansu_topics
    evs = brute_force_traffic(n_attacked=16, per_account=24, benign=1500, seed=5)
    third = len(evs) // 3
    prod = TrafficProducer(kafka, topics, max_events=25)
    app_id = f"wk-{uuid.uuid4().hex[:8]}"
    cfg_a, port_a = write_config(tmp_path, kafka, topics, app_id, name="a",
                                 snapshot_interval_s=1.0)
    cfg_b, port_b = write_config(tmp_path, kafka, topics, app_id, name="b",
                                 snapshot_interval_s=1.0)
    a = WorkerProc(cfg_a, port_a, tmp_path / "a.log")
    b = None
    try:
        prod.send(evs[:third])
        wait_started(a, partitions=2 * topics.partitions)
        wait_caught_up([a], kafka, topics)
        b = WorkerProc(cfg_b, port_b, tmp_path / "b.log")
        hb = wait_started(b)
        # the group is rebalanced: B owns some partitions, A the others
        deadline = time.time() + 60
        while time.time() < deadline:
            ha, hb = a.health(), b.health()
            if ha and hb and ha["partitions"] and hb["partitions"] and not ha["rebalancing"] \
                    and len(ha["partitions"]) + len(hb["partitions"]) == 2 * topics.partitions:
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"no shared assignment: {a.health()} {b.health()}")
        if leave == "stop":
            prod.send(evs[third:2 * third], flush_every=200)
            wait_caught_up([a, b], kafka, topics)
            b.stop()       # B leaves; A takes every partition back
        else:
            mid = third + third // 2
            prod.send(evs[third:mid], flush_every=200)
            time.sleep(1.5)        # B has processed (and snapshotted) part of it
            b.kill()               # SIGKILL mid-stream: no final snapshot, no LeaveGroup
            prod.send(evs[mid:2 * third], flush_every=200)
        b_log = b.log_text()
        assert "assigned" in b_log
        restored_before = a.log_text().count("restored snapshot at offset")
        wait_started(a, partitions=2 * topics.partitions, timeout=120)
        if leave == "sigkill":
            # A took B's partitions over from B's snapshots (not from scratch)
            took = [ln for ln in a.log_text().splitlines()
                    if "restored snapshot at offset" in ln][restored_before:]
            assert any("offset -1" not in ln for ln in took), took
        prod.send(evs[2 * third:])
        wait_caught_up([a], kafka, topics)
    finally:
        if b is not None:
            b.kill()
        a.stop()
    _assert_same_as_uninterrupted(kafka, topics)
