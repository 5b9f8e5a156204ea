"""The engine builds Alert models without validation (detectors/engine.py ``_to_alert``) and
serializes them from their fields (``Alert.to_json``): both must equal the validated model and
pydantic's own JSON dump, for every alert of attack traffic."""

from __future__ import annotations

import numpy as np
import orjson

from detectors.engine import Engine, _details_value
from stream import wire
from stream.alert import Alert, Evidence
from stream.generator import DomainSimulator, scan_simulation
from stream.settings import DetectionSettings
from stream.synth import SynthConfig, generate


def _alerts() -> list[Alert]:
    """The demo domain with its injected attacks (the full catalogue) plus synthetic load."""
    out, _ = scan_simulation(DomainSimulator(seed=7, events=30_000))
    traffic = generate(SynthConfig(events=40_000, partitions=2, identities=2000, seed=3))
    engines: dict = {}
    for kind, part, value, _n in traffic.wire_messages():
        e = engines.get((kind, part))
        if e is None:
            e = engines[(kind, part)] = Engine(DetectionSettings(), kind, part)
        out.extend(e.process(wire.decode(value)))
    return out


def test_built_alerts_equal_validated_models_and_pydantic_json():
    alerts = _alerts()
    assert len({a.detector for a in alerts}) >= 25, "the traffic must raise most detectors"
    for a in alerts:
        j = a.to_json()
        assert j == orjson.dumps(a.model_dump(mode="json")), a.id
        v = Alert.model_validate(orjson.loads(j))
        assert v.model_dump() == a.model_dump(), a.id
        assert v.to_json() == j
        # the fields in declaration order, every field present
        assert list(a.__dict__) == list(Alert.model_fields)
        assert list(a.evidence.__dict__) == list(Evidence.model_fields)


def test_details_are_coerced_as_validation_would():
    raw = {"flag": True, "n": np.int64(3), "f": np.float32(1.5), "x": 2.25, "s": "a",
           "l": ["x", "y"], "i": 7}
    got = _details_value(raw)
    want = Evidence.model_validate({"first_seen": "", "last_seen": "", "details": raw}).details
    assert got == want
    assert orjson.dumps(got) == orjson.dumps(want)
    assert type(got["flag"]) is int and type(got["f"]) is float


def test_rendered_alerts_are_the_models_json():
    """``Engine.flush_rendered`` (what the worker produces) gives, version by version, the
    bytes ``Alert.to_json()`` of ``flush_alerts`` gives: run the same traffic through two
    engines, one rendering models, one JSON."""
    from stream.synth import restamp

    traffic = generate(SynthConfig(events=40_000, partitions=2, identities=1500, seed=3,
                                   batch_events=2048))
    msgs = [(k, p, v) for k, p, v, _n in traffic.wire_messages()]
    t = int(traffic.numeric["time_ms"].max()) + 60_000    # then that hour squeezed: a storm
    msgs += [(k, p, restamp(v, t + 200 * j)) for j, (k, p, v) in enumerate(msgs)]
    models: dict = {}
    rendered: dict = {}
    got, want = [], []
    for kind, part, value in msgs:
        for engines, sink, flush in ((models, want, "flush_alerts"),
                                     (rendered, got, "flush_rendered")):
            e = engines.get((kind, part))
            if e is None:
                e = engines[(kind, part)] = Engine(DetectionSettings(), kind, part)
            e.process(wire.decode(value), defer=True)
            sink.extend(getattr(e, flush)())
    assert len(want) > 200 and len(got) == len(want)
    assert any(b'"followed_by_success":1' in r.json for r in got)   # a bool detail, coerced
    for r, a in zip(got, want):
        assert r.json == a.to_json()
        assert (r.id, r.detector, r.severity, r.last_seen_ms) == (
            a.id, a.detector, a.severity, a.last_seen_ms)
        assert r.alert() == a


def test_rendered_details_are_coerced_as_validation_would():
    from detectors.engine import _details_json

    raw = {"flag": True, "n": np.int64(3), "s": "a", "l": ["x"], "i": 7}
    assert orjson.dumps(_details_json(raw)) == orjson.dumps(_details_value(raw))
    plain = {"s": "a", "l": ["x"], "i": 7, "f": 1.5}
    assert _details_json(plain) is plain
