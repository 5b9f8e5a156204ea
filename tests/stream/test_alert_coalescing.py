"""Deferred alert rendering (``Engine.process(defer=True)`` + ``flush_alerts``), what the worker
does within one take when a partition is behind: one version per alert per group of batches
instead of one per batch -- every emitted version is one the per-batch run emits too, with the
same content, and every alert's final version is emitted."""

from __future__ import annotations

import pytest

from detectors.engine import Engine
from stream import wire
from stream.errors import StateError
from stream.settings import DetectionSettings
from stream.synth import SynthConfig, generate, restamp


def _batches():
    """Attack-heavy traffic: a synthetic hour, then its replay compressed (a storm)."""
    tr = generate(SynthConfig(events=60_000, partitions=1, identities=1500, seed=9,
                              batch_events=1024))
    msgs = [(k, v) for k, _p, v, _n in tr.wire_messages()]
    out = [(k, wire.decode(v)) for k, v in msgs]
    t = int(tr.numeric["time_ms"].max()) + 60_000
    out += [(k, wire.decode(restamp(v, t + 50 * j))) for j, (k, v) in enumerate(msgs)]
    return out


def _table(alerts) -> dict:
    out = {}
    for a in alerts:
        assert (a.id, a.version) not in out, "one version rendered twice"
        out[(a.id, a.version)] = a.to_json()
    return out


@pytest.mark.parametrize("group, fewer", [(2, 1.0), (5, 0.8)])
def test_deferred_versions_are_a_subset_with_the_same_content_and_all_finals(group, fewer):
    batches = _batches()
    per_batch, grouped = {}, {}
    for out, g in ((per_batch, 1), (grouped, group)):
        engines: dict = {}
        emitted = []
        for j, (kind, b) in enumerate(batches):
            e = engines.get(kind)
            if e is None:
                e = engines[kind] = Engine(DetectionSettings(), kind, 0)
            last_of_group = (j + 1) % g == 0 or j == len(batches) - 1
            emitted += e.process(b, defer=not last_of_group)
            if last_of_group:
                for other in engines.values():
                    emitted += other.flush_alerts()
        out.update(_table(emitted))
    assert len(per_batch) >= 500, "the traffic must raise many alert versions"
    assert set(grouped) <= set(per_batch)
    for k, j in grouped.items():
        assert j == per_batch[k], f"{k} rendered differently when deferred"
    finals = {}
    for i, v in per_batch:
        finals[i] = max(v, finals.get(i, 0))
    assert all((i, v) in grouped for i, v in finals.items())
    # fewer versions: the point of deferring
    assert len(grouped) < fewer * len(per_batch), (len(grouped), len(per_batch))


def test_snapshot_refuses_deferred_alerts_and_restore_clears_them():
    batches = _batches()
    e = Engine(DetectionSettings(), batches[0][0], 0)
    for kind, b in batches[:40]:
        if kind == e.key_kind:
            e.process(b, defer=True)
    with pytest.raises(StateError, match="deferred alerts"):
        e.snapshot()
    pending = e.flush_alerts()
    assert pending and e.flush_alerts() == []
    snap = e.snapshot()
    e.process(batches[40][1] if batches[40][0] == e.key_kind else batches[0][1], defer=True)
    e.restore(snap)
    assert e.flush_alerts() == []
