"""Detectors may override ``merge_details`` (alert storms merge one hit's details per hit) with
an equivalent that builds no intermediate dict, and ``merge_rows`` (one alert's hits of a
batch at once) with one that does less per row. Every override must give exactly what the
generic merges give (``details()`` merged hit by hit): the same alerts, byte for byte, on
attack-heavy traffic (a synthetic hour, then its replay compressed into seconds: roasting
and brute-force storms)."""

from __future__ import annotations

import pytest

from detectors.base import REGISTRY, Detector, load_catalogue
from detectors.engine import Engine
from stream import wire
from stream.settings import DetectionSettings
from stream.synth import SynthConfig, generate, restamp


def _overriding(method: str = "merge_details") -> list[type[Detector]]:
    load_catalogue()
    return [REGISTRY[d] for d in REGISTRY.ids()
            if getattr(REGISTRY[d], method) is not getattr(Detector, method)]


def _storm(events: int, identities: int) -> list[tuple[int, bytes]]:
    """A synthetic hour, then its replay compressed into seconds."""
    tr = generate(SynthConfig(events=events, partitions=1, identities=identities, seed=9,
                              batch_events=1024))
    msgs = [(k, v) for k, _p, v, _n in tr.wire_messages()]
    t = int(tr.numeric["time_ms"].max()) + 60_000
    return msgs + [(k, restamp(v, t + 50 * j)) for j, (k, v) in enumerate(msgs)]


def _alerts(msgs: list[tuple[int, bytes]]) -> list[bytes]:
    engines: dict = {}
    out = []
    for kind, v in msgs:
        e = engines.setdefault(kind, Engine(DetectionSettings(), kind, 0))
        out += [a.to_json() for a in e.process(wire.decode(v))]
    return out


@pytest.mark.parametrize("method", ["merge_details", "merge_rows"])
def test_the_storm_detectors_override_it(method):
    ids = {c.id for c in _overriding(method)}
    assert {"kerberoasting", "brute-force"} <= ids


@pytest.mark.parametrize("methods", [("merge_details",), ("merge_rows",),
                                     ("merge_details", "merge_rows")])
def test_overrides_merge_exactly_like_the_generic_merge(monkeypatch, methods):
    msgs = _storm(60_000, 1500)
    fast = _alerts(msgs)
    for m in methods:
        for cls in _overriding(m):
            monkeypatch.setattr(cls, m, getattr(Detector, m))
    generic = _alerts(msgs)
    assert len(fast) > 1000          # a storm: many versions carrying merged details
    assert fast == generic


@pytest.mark.parametrize("bad", [None, "merge_details", "merge_rows"])
def test_the_comparison_can_fail(monkeypatch, bad):
    """The equality above is not vacuous: a merge that drops a detail changes the alerts."""
    from detectors.catalogue.credential_access import Kerberoasting

    msgs = _storm(20_000, 500)
    ref = _alerts(msgs)
    if bad == "merge_details":
        monkeypatch.setattr(Kerberoasting, "merge_details",
                            lambda self, into, batch, i, aux: into.__setitem__("encryption", ""))
    elif bad == "merge_rows":        # the rows after the first one ignored
        monkeypatch.setattr(Kerberoasting, "merge_rows",
                            lambda self, into, batch, rows, auxs: Detector.merge_rows(
                                self, into, batch, rows[:1], auxs[:1]))
    got = _alerts(msgs)
    assert (got == ref) is (bad is None)
