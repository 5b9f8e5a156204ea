"""dsrm-password-change: 4794."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.scan import OfflinePipeline
from stream.settings import DetectionSettings, DetectorOverride, Exclusions

DID = "dsrm-password-change"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"
DC = "dc01.corp.local"


def ev(t, eid, **kw):
    d = {"time_ms": T0 + int(t * 1000), "event_id": eid, "computer": DC,
         "channel": "security", "account": "corp\\bob"}
    d.update(kw)
    return d


def run(events, **kw):
    kw.setdefault("enabled", [DID])
    p = OfflinePipeline(DetectionSettings(**kw), partitions=4)
    p.feed(sorted(events, key=lambda e: e["time_ms"]))
    return [a for a in p.finish() if a.detector == DID]


def scan_sample(rel):
    from collectors.files import iter_paths
    from stream.scan import scan_records

    path = SAMPLES / rel
    if not path.exists():
        pytest.skip(f"sample {rel} not available (needs ../shared/samples)")
    return [a for a in scan_records(iter_paths([str(path)]), DetectionSettings(), 4)
            if a.detector == DID]


needs_samples = pytest.mark.skipif(not SAMPLES.exists(),
                                   reason="../shared/samples not available")


def test_positive_dsrm_set():
    alerts = run([ev(0, 4794, account="corp\\administrator", src_host="dc01")])
    assert len(alerts) == 1 and alerts[0].entity == "corp\\administrator"
    assert "set the Directory Services Restore Mode" in alerts[0].description


def test_fires_on_failed_attempt():
    alerts = run([ev(0, 4794, status=0xC000006A, flags=2)])
    assert len(alerts) == 1 and "failed" in alerts[0].description


def test_negative_other_events():
    assert run([ev(0, 4724, target_account="corp\\eve"), ev(1, 4738)]) == []


def test_excluded_rotation_account():
    assert run([ev(0, 4794, account="corp\\svc_dsrm")],
               exclude=Exclusions(accounts=["svc_dsrm"])) == []


@pytest.mark.samples
@needs_samples
def test_positive_sample():
    assert scan_sample("evtx-attack-samples/Credential Access/4794_DSRM_password_change_t1098.evtx")
