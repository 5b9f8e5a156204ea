"""audit-tampering: log cleared (1102/104), auditing removed (4719)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.settings import DetectionSettings, DetectorOverride, Exclusions
from _harness import ev, run_detector, scan_sample_for

DID = "audit-tampering"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"
DC = "dc01.corp.local"


def run(events, **kw):
    return run_detector(DID, events, **kw)


def scan_sample(rel):
    return scan_sample_for(DID, rel)


needs_samples = pytest.mark.skipif(not SAMPLES.exists(),
                                   reason="../shared/samples not available")


def pol(t, value, account="corp\\dc01$", flags=1):
    return ev(t, 4719, account=account, flags=flags, value=value,
              object="0CCE9215-69AE-11D9-BED3-505054503030", object_class="%%8273")


def test_positive_security_and_system_log_cleared():
    evs = [ev(0, 1102, computer="pc01.corp.local"),
           ev(1, 104, channel="system", computer="pc01.corp.local", value="System")]
    alerts = run(evs)
    assert len(alerts) == 1 and alerts[0].entity == "pc01.corp.local"
    assert alerts[0].evidence.count == 2
    assert "System event log was cleared" in alerts[0].description


def test_fires_on_auditing_removed():
    alerts = run([pol(0, "%%8448, %%8450", account="corp\\bob", flags=0)])
    assert len(alerts) == 1 and "success auditing removed" in alerts[0].description


def test_negative_gpo_refresh_adds_auditing():
    assert run([pol(0, "%%8449"), pol(0, "%%8449, %%8451"), pol(1, "%%8451")]) == []


def test_low_sensitivity_includes_policy_additions():
    assert len(run([pol(0, "%%8449")], sensitivity="low")) == 1


def test_excluded_lab_host():
    assert run([ev(0, 1102, computer="lab01.corp.local", account="corp\\bob")],
               exclude=Exclusions(accounts=["corp\\bob"])) == []


@pytest.mark.samples
@needs_samples
def test_positive_samples():
    assert scan_sample("evtx-attack-samples/Defense Evasion/DE_1102_security_log_cleared.evtx")
    assert scan_sample("evtx-attack-samples/Defense Evasion/DE_104_system_log_cleared.evtx")
