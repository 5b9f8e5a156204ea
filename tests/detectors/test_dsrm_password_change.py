"""dsrm-password-change: 4794."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.settings import DetectionSettings, DetectorOverride, Exclusions
from _harness import ev, run_detector, scan_sample_for

DID = "dsrm-password-change"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"
DC = "dc01.corp.local"


def run(events, **kw):
    return run_detector(DID, events, **kw)


def scan_sample(rel):
    return scan_sample_for(DID, rel)


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
