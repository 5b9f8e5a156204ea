"""The engine applies a batch's hits alert by alert (``Engine._alerts_grouped``: counts and
times from numpy reductions, each evidence list's new values from one sort) and falls back to
the hit-by-hit walk (``Engine._alerts_per_hit``, the specification) when an episode could end
inside a batch. Both must give the same alerts (every version, byte for byte) and the same
snapshots: on an alert storm, with exclusions, and with an episode gap short enough that
episodes end inside batches."""

from __future__ import annotations

import pytest

from detectors.engine import Engine
from stream import wire
from stream.settings import DetectionSettings
from stream.synth import SynthConfig, generate, restamp


def _batches():
    """A synthetic hour, then its replay compressed into seconds (an alert storm)."""
    tr = generate(SynthConfig(events=60_000, partitions=2, identities=1500, seed=5,
                              batch_events=2048))
    msgs = [(k, p, v) for k, p, v, _n in tr.wire_messages()]
    t = int(tr.numeric["time_ms"].max()) + 60_000
    return msgs + [(k, p, restamp(v, t + 200 * j)) for j, (k, p, v) in enumerate(msgs)]


def _run(settings: DetectionSettings, grouped: bool, calls: dict):
    engines: dict = {}
    out = []
    for kind, part, value in _batches():
        e = engines.get((kind, part))
        if e is None:
            e = engines[(kind, part)] = Engine(settings, kind, part)
            inner = e._alerts_grouped

            def counted(*a, _inner=inner):
                ok = grouped and _inner(*a)
                calls[ok] = calls.get(ok, 0) + 1
                return ok
            e._alerts_grouped = counted
        out += [a.to_json() for a in e.process(wire.decode(value))]
    return out, [engines[k].snapshot() for k in sorted(engines)]


SETTINGS = {
    "default": DetectionSettings(),
    "exclusions": DetectionSettings(
        sensitivity="low", exclude={"accounts": ["corp\\user0001*"], "subnets": ["10.0.1.0/24"]},
        detectors={"brute-force": {"exclude": {"hosts": ["ws0001*"]}}}),
    # episodes of 20 s: the storm's alerts end and reopen inside batches
    "short-episodes": DetectionSettings(episode_gap_s=20.0, lateness_s=1.0),
}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_grouped_hits_equal_the_hit_by_hit_walk(name):
    s = SETTINGS[name]
    walked, grouped = {}, {}
    ref_alerts, ref_snaps = _run(s, False, walked)
    alerts, snaps = _run(s, True, grouped)
    assert len(ref_alerts) >= 500, "the traffic must raise many alert versions"
    assert grouped.get(True, 0) > 0, "the grouped path was never taken"
    if name == "short-episodes":
        assert grouped.get(False, 0) > 0, "no batch needed the hit-by-hit walk"
    assert alerts == ref_alerts
    assert snaps == ref_snaps


def test_restored_engines_continue_exactly():
    """Engines replaced every 20 batches by fresh ones restored from their snapshots (the
    full-list hints of the open alerts are rebuilt on restore, not stored) give the alerts
    and final snapshots of an uninterrupted run."""
    s = DetectionSettings()
    ref_alerts, ref_snaps = _run(s, True, {})
    engines: dict = {}
    alerts = []
    for j, (kind, part, value) in enumerate(_batches()):
        e = engines.get((kind, part))
        if e is None:
            e = engines[(kind, part)] = Engine(s, kind, part)
        alerts += [a.to_json() for a in e.process(wire.decode(value))]
        if j % 20 == 19:
            for k, old in engines.items():
                engines[k] = Engine(s, *k)
                engines[k].restore(old.snapshot())
    assert any(oa.full for e in engines.values() for oa in e.open.values())
    assert alerts == ref_alerts
    assert [engines[k].snapshot() for k in sorted(engines)] == ref_snaps
