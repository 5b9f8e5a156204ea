"""Periodic snapshots never take more than ``worker.snapshot_max_share`` of the time
(``stream.worker.SnapshotPacer``), and a small state still snapshots every interval."""

import pytest

from stream.settings import Settings
from stream.worker import SnapshotPacer


def _simulate(pacer: SnapshotPacer, took: float, hours: float = 1.0,
              jitter: float = 0.02) -> tuple[int, float]:
    """Timer ticks every interval (late by up to ``jitter`` of it); a due tick runs a snapshot
    of ``took`` seconds. Returns (snapshots, share of the time they took)."""
    t, n, busy = 0.0, 0, 0.0
    k = 0
    while t < hours * 3600:
        k += 1
        t = k * pacer.interval_s + (k % 3) * jitter * pacer.interval_s
        if pacer.due(t):
            pacer.done(t, took)
            n += 1
            busy += took
    return n, busy / t


def test_small_snapshots_run_at_every_tick():
    p = SnapshotPacer(5.0, 0.2)
    n, share = _simulate(p, took=0.05)
    assert n == 720 and p.skipped == 0          # one per 5 s tick for an hour
    assert share < 0.011


@pytest.mark.parametrize("took,max_share", [(2.0, 0.2), (1.5, 0.1), (4.0, 0.5), (12.0, 0.2)])
def test_large_snapshots_space_out_to_the_share(took, max_share):
    p = SnapshotPacer(5.0, max_share)
    n, share = _simulate(p, took=took)
    assert share <= max_share + 1e-9
    # and not much rarer than the share allows (the next tick after took/max_share)
    assert share >= max_share * 0.5
    assert p.skipped > 0


def test_without_the_pacer_the_share_would_be_exceeded():
    """The same big snapshot with max_share 1 runs at every tick: 40 % of the time."""
    p = SnapshotPacer(5.0, 1.0)
    n, share = _simulate(p, took=2.0)
    assert n == 720 and share > 0.39


def test_setting_is_validated_and_reaches_the_worker(kafka, topics, tmp_path):
    from pydantic import ValidationError

    from stream.broker import free_port
    from stream.worker import build_app

    for bad in (0, 1.5):
        with pytest.raises(ValidationError, match="snapshot_max_share"):
            Settings(worker={"snapshot_max_share": bad})
    s = Settings(kafka=kafka, topics=topics,
                 worker={"state_dir": str(tmp_path / "state"), "web_port": free_port(),
                         "snapshot_interval_s": 3.0, "snapshot_max_share": 0.07})
    app, core = build_app(s)
    try:
        assert app._itdr_snapshot_pacer.max_share == 0.07
        assert app._itdr_snapshot_pacer.interval_s == 3.0
    finally:
        core.close()
