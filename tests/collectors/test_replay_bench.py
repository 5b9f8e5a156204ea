"""``itdr replay`` (rate control, order, rebased time) and ``itdr bench collect``."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from .helpers import events_in
from .test_follow_resume import ITDR, nxlog_line, write_config

pytestmark = pytest.mark.broker
SAMPLES = Path("/work/shared/samples")


def _replay(broker, topics, tmp_path, f: Path, rate: int) -> tuple[dict, list, float]:
    """``itdr replay f --rate rate --rebase-time --json``: (report, events in Kafka, the time
    it started)."""
    cfg = write_config(tmp_path / "c.yaml", broker.bootstrap, topics.prefix, tmp_path)
    t0 = time.time()
    r = subprocess.run([ITDR, "replay", "-c", str(cfg), str(f), "--rate", str(rate),
                        "--rebase-time", "--json"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    rep = orjson.loads(r.stdout.splitlines()[-1])
    return rep, events_in(broker.bootstrap, topics.name("events"), topics.partitions), t0


def _ordered_and_rebased(got: list, partitions: int, t0: float) -> int:
    """Order kept per partition, the last event at the replay's start; returns the span of
    the event times."""
    for p in range(partitions):
        ids = [e["record_id"] for q, e in got if q == p]
        assert ids == sorted(ids)
    last = max(e["time_ms"] for _, e in got)
    assert abs(last - t0 * 1000) < 15_000, "timestamps not rebased to now"
    return last - min(e["time_ms"] for _, e in got)


def test_replay_rate_order_and_rebase(broker, topics, tmp_path):
    f = tmp_path / "rec.jsonl"
    f.write_bytes(b"".join(nxlog_line(i) for i in range(1, 3001)))
    rep, got, t0 = _replay(broker, topics, tmp_path, f, 4000)
    assert rep["normalized"] == 3000 and rep["delivered_events"] >= 3000
    assert rep["elapsed_s"] >= 0.6, "rate limit not applied"
    assert rep["events_per_s"] <= 4000 * 1.15
    assert sorted(e["record_id"] for _, e in got) == list(range(1, 3001))
    # relative spacing kept (10:00:01-10:50:00)
    assert _ordered_and_rebased(got, topics.partitions, t0) == 2_999_000


def test_replay_of_evtx_keeps_the_c_path_with_rate_and_rebase(broker, topics, tmp_path):
    """EVTX replay at a rate, rebased: the chunk reader and C batcher run (time offset added
    to the rows in C, pacing per run of events), with the same guarantees as above."""
    from . import evtx_gen as g
    events = g.security_events(3000, start_ms=1_704_103_200_000)
    f = tmp_path / "rec.evtx"
    f.write_bytes(g.evtx_bytes(g.build_chunks(events, first_id=1), 3001))
    rep, got, t0 = _replay(broker, topics, tmp_path, f, 5000)
    assert rep["read"] == 3000 and rep["normalized"] == 2500      # 4688/5156 dropped
    assert rep["elapsed_s"] >= 0.4, "rate limit not applied"
    assert rep["events_per_s"] <= 5000 * 1.15
    assert len(got) == 2500
    # the spacing kept (the last record: a 5156)
    assert _ordered_and_rebased(got, topics.partitions, t0) == 250 * 2999 - 250


@pytest.mark.samples
def test_bench_collect_json():
    if not SAMPLES.exists():
        pytest.skip("../shared/samples not present")
    r = subprocess.run([ITDR, "bench", "collect", "--json", "--events", "20000"],
                       capture_output=True, timeout=180)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    res = orjson.loads(r.stdout.splitlines()[-1])
    assert {"events_per_s", "ceiling_events_per_s", "ratio"} <= set(res)
    assert res["records"] == 20000 and res["flushed"]
    assert res["hot_path"] == "native"          # CI builds the C extension
    assert res["delivered_events"] >= res["normalized"] > 0
    assert 0 < res["ratio"] < 2
