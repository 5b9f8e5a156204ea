"""Shared scaffolding of the detector tests: run one detector through the real offline
pipeline (jitted kernels, engine, alert lifecycle), scan a labelled sample, build events."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.scan import OfflinePipeline
from stream.settings import DetectionSettings

T0 = 1_700_000_000_000
DC = "dc01.corp.local"
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"


def run_detector(did: str, events: list[dict], **kw) -> list:
    """Alerts of detector ``did`` (only it enabled unless ``enabled`` is given)."""
    kw.setdefault("enabled", [did])
    p = OfflinePipeline(DetectionSettings(**kw), partitions=4)
    p.feed(sorted(events, key=lambda e: e["time_ms"]))
    return [valid(a) for a in p.finish() if a.detector == did]


def valid(a):
    """Every alert a detector test sees survives a JSON validation round trip unchanged."""
    from stream.alert import Alert

    back = Alert.model_validate_json(a.to_json())
    assert back.to_json() == a.to_json(), f"alert {a.id} is not a valid Alert"
    return a


def scan_sample_for(did: str, rel: str) -> list:
    """Alerts of ``did`` on one labelled recording (skips without ../shared/samples)."""
    from collectors.files import iter_paths
    from stream.scan import scan_records

    path = SAMPLES / rel
    if not path.exists():
        pytest.skip(f"sample {rel} not available (needs ../shared/samples)")
    return [valid(a) for a in scan_records(iter_paths([str(path)]), DetectionSettings(), 4)
            if a.detector == did]


def ev(t, eid, **kw) -> dict:
    """A normalized event on the DC at ``T0 + t`` seconds, by corp\\bob unless overridden."""
    d = {"time_ms": T0 + int(t * 1000), "event_id": eid, "computer": DC,
         "channel": "security", "account": "corp\\bob"}
    d.update(kw)
    return d
