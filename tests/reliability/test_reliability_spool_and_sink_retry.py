"""End to end through every buffer: the broker stops while the collector produces (batches
go to the collector's disk spool), the collector process dies with a full spool and a new
one drains it once the broker is back; meanwhile the workspace is unavailable (SQLite locked
by another connection holding an exclusive transaction) so the sink must retry. The final
workspace content equals the uninterrupted reference: every alert, every version, no
other id."""

from __future__ import annotations

import sqlite3
import time

import pytest
from _reliability_helpers import Pipeline, batches, labelled_stream, reference, send_paced

from sinks.workspace import open_store
from stream.recovery import (compare, latest, read_alerts, wait_for, wait_sink_caught_up,
                             wait_started, workspace_alerts)

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(300)]


def test_spool_through_broker_outage_and_locked_workspace_lose_nothing(fresh_broker,
                                                                       tmp_path):
    sim, detection, evs, first_attack = labelled_stream()
    stop_at = first_attack - 1500          # broker goes down late in the learning days
    crash_at = first_attack + 1500         # the collector dies inside the attack day
    msgs = batches(evs, flush_at=(crash_at,))
    a = next(i for i, m in enumerate(msgs) if m.last_seq >= stop_at)   # sent before the outage
    b = len(batches(evs[:crash_at]))       # batches built before the collector dies (its
    #                                        partial batches flushed into the spool)
    assert 0 < a < b < len(msgs)
    ref_final, ref_versions = reference(msgs, detection)
    assert len(ref_final) >= 20

    pipe = Pipeline(fresh_broker, tmp_path, detection)
    open_store(pipe.workspace).close()     # the workspace exists (schema migrated)
    locker = None
    try:
        w = pipe.start_worker()
        pipe.start_sink()
        wait_started(w, timeout=240, partitions=2 * pipe.topics.partitions)

        # 1. broker up
        prod = pipe.producer(delivery_timeout_s=3.0)
        send_paced(prod, msgs[:a], 4, pipe.check_alive)
        assert prod.flush(60)
        assert prod.spool.empty

        # 2. broker down while the collector produces: every batch ends in the spool
        fresh_broker.stop()
        send_paced(prod, msgs[a:b], 2)
        wait_for(lambda: prod.in_flight() == 0 and not prod.overflow, 30,
                 "deliveries to fail and spool", check=lambda: prod.service(0.05))
        assert len(prod.spool) == b - a, prod.stats()
        assert prod.delivery_failures > 0

        # 3. the collector process dies with a full spool (nothing in memory is kept)
        spooled = len(prod.spool)
        del prod

        # 4. the workspace becomes unavailable before the alerts of the attack day arrive
        locker = sqlite3.connect(pipe.workspace, isolation_level=None, timeout=10)
        locker.execute("BEGIN EXCLUSIVE")

        # 5. broker back; a new collector drains the old spool first, then sends the rest
        fresh_broker.start()
        prod = pipe.producer(delivery_timeout_s=30.0)
        assert len(prod.spool) == spooled
        assert prod.flush(120), prod.stats()
        assert prod.spool.empty and prod.spool.drained_total == spooled
        send_paced(prod, msgs[b:], 4, pipe.supervise)
        assert prod.flush(60), prod.stats()

        # 6. the worker rode through the outage and produced the alerts; the sink retried
        #    (supervised: see test_reliability_broker_restart.py for why it may restart)
        pipe.wait_worker_done(timeout=240)
        wait_for(lambda: "failed (attempt" in pipe.sink.log_text(), 60,
                 "the sink to hit the locked workspace", check=pipe.supervise)
        n_locked = locker.execute("SELECT COUNT(*) FROM alert_versions").fetchone()[0]
        assert n_locked == 0, "the sink wrote through an exclusive lock?"
        time.sleep(2)
        locker.execute("ROLLBACK")         # the destination recovers
        locker.close()
        locker = None
        wait_sink_caught_up(pipe.sink, pipe.kafka, pipe.topics, timeout=120)
        pipe.check_alive()
        print("exits (supervised restarts):", pipe.exits)
        pipe.sink.stop()
        pipe.worker.stop()
    finally:
        if locker is not None:
            locker.close()
        pipe.close()

    ws_final, ws_versions = workspace_alerts(pipe.workspace)
    c = compare(ref_final, ws_final)
    assert c["lost"] == [], f"alerts lost: {c['lost']}"
    assert c["duplicate_ids"] == [], f"alert ids not in the reference: {c['duplicate_ids']}"
    assert c["content_mismatches"] == [], c["content_mismatches"]
    assert ws_versions == set(ref_versions), (
        f"versions lost {sorted(set(ref_versions) - ws_versions)[:5]}, "
        f"extra {sorted(ws_versions - set(ref_versions))[:5]}")
    # and the alerts topic agrees
    assert compare(ref_final, latest(read_alerts(pipe.kafka, pipe.topics))) == \
        {"lost": [], "duplicate_ids": [], "content_mismatches": []}
