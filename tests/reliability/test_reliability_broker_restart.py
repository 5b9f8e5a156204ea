"""The broker restarts while events flow to a running ``itdr worker``: the final alert set
-- every version of every alert on the alerts topic -- equals the uninterrupted reference.
Nothing lost, no new id.

The worker runs supervised (restarted if it exits, as systemd / Kubernetes do): noida-db
forgets idempotent-producer sequence state across a restart, so the worker's producer can hit
a fatal OUT_OF_ORDER_SEQUENCE_NUMBER; the worker then stops on purpose (nothing it produced
after its last snapshot is trusted) and its successor replays from the snapshot. Either way
-- ride-through or crash-restart -- the alerts must be exactly the reference's."""

from __future__ import annotations

import pytest
from _reliability_helpers import Pipeline, batches, labelled_stream, reference, send_paced

from stream.recovery import alert_table, compare, latest, read_alerts, wait_started

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(300)]


def test_broker_restart_mid_stream_loses_nothing(fresh_broker, tmp_path):
    sim, detection, evs, first_attack = labelled_stream()
    msgs = batches(evs)
    ref_final, ref_versions = reference(msgs, detection)
    assert len(ref_final) >= 20 and len(ref_versions) >= len(ref_final)
    # restart in the attack day: alerts are being produced while the broker goes away
    cut = next(i for i, m in enumerate(msgs) if m.last_seq >= first_attack + 200)
    pipe = Pipeline(fresh_broker, tmp_path, detection, sink=False)
    try:
        w = pipe.start_worker()
        wait_started(w, timeout=240, partitions=2 * pipe.topics.partitions)
        prod = pipe.producer(delivery_timeout_s=60)
        send_paced(prod, msgs[:cut], 8, pipe.check_alive)
        assert prod.flush(60)
        before = w.health()
        assert before and before["stats"]["processed"] > 0
        fresh_broker.restart()                       # SIGTERM, same port and data dir
        send_paced(prod, msgs[cut:], 6, pipe.supervise)
        assert prod.flush(120), prod.stats()
        assert prod.spool.empty
        after = pipe.wait_worker_done(timeout=240)
        # records were processed after the broker restart (by this or a restarted worker)
        assert after["stats"]["processed"] > (before["stats"]["processed"]
                                              if pipe.worker is w else 0)
        print("worker exits (supervised restarts):", pipe.exits)
    finally:
        pipe.close()

    got = read_alerts(pipe.kafka, pipe.topics)
    table = alert_table(got)                         # re-emitted versions are identical
    c = compare(ref_final, latest(got))
    assert c["lost"] == [], f"alerts lost: {c['lost']}"
    assert c["duplicate_ids"] == [], f"alert ids not in the reference: {c['duplicate_ids']}"
    assert c["content_mismatches"] == []
    # a worker that is behind renders an alert once per take: it may skip intermediate
    # versions, never a final one, never one the reference does not have
    final = {(i, a.version) for i, a in ref_final.items()}
    missing = final - set(table)
    extra = set(table) - set(ref_versions)
    assert not missing, f"{len(missing)} final alert versions lost, e.g. {sorted(missing)[:5]}"
    assert not extra, f"{len(extra)} alert versions not in the reference: {sorted(extra)[:5]}"
    for k, d in table.items():
        assert d == ref_versions[k].model_dump(mode="json"), f"alert {k} differs from the reference"
