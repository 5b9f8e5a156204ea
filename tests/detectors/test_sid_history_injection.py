"""sid-history-injection: 4765/4766, SidHistory in 4738, 5136 sIDHistory."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.schema import FLAG_VALUE_DELETED
from stream.settings import DetectionSettings, DetectorOverride, Exclusions
from _harness import ev, run_detector, scan_sample_for

DID = "sid-history-injection"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"
DC = "dc01.corp.local"


def run(events, **kw):
    return run_detector(DID, events, **kw)


def scan_sample(rel):
    return scan_sample_for(DID, rel)


needs_samples = pytest.mark.skipif(not SAMPLES.exists(),
                                   reason="../shared/samples not available")


def test_positive_4765_privileged_sid():
    alerts = run([ev(0, 4765, account="corp\\administrator", target_account="corp\\andrei",
                     member="old\\domain admins", member_sid="S-1-5-21-9-9-9-512")])
    assert len(alerts) == 1
    a = alerts[0]
    assert a.entity == "corp\\administrator"
    assert a.evidence.details["privileged_sid"]
    assert "PRIVILEGED" in a.description


def test_fires_on_4766_4738_and_5136():
    evs = [ev(0, 4766, target_account="corp\\eve", member_sid="S-1-5-21-9-9-9-1104"),
           ev(1, 4738, target_account="corp\\eve",
              properties="SidHistory=S-1-5-21-9-9-9-500"),
           ev(2, 5136, object="CN=eve,CN=Users,DC=corp,DC=local", object_class="user",
              attribute="sIDHistory", value="S-1-5-21-9-9-9-519",
              extra='{"OperationType":"%%14674"}')]
    alerts = run(evs)
    assert len(alerts) == 1 and alerts[0].evidence.count == 3
    assert alerts[0].evidence.event_ids == [4738, 4766, 5136]


def test_negative_ordinary_account_changes():
    evs = [ev(0, 4738, target_account="corp\\eve", properties="PasswordLastSet=1/1/2024"),
           ev(1, 5136, object="CN=eve,CN=Users,DC=corp,DC=local", object_class="user",
              attribute="sIDHistory", value="S-1-5-21-9-9-9-519",
              extra='{"OperationType":"%%14675"}',
              flags=FLAG_VALUE_DELETED),       # value deleted = cleanup
           ev(2, 5136, object="CN=eve,CN=Users,DC=corp,DC=local", object_class="user",
              attribute="description", value="x")]
    assert run(evs) == []


def test_excluded_migration_account():
    evs = [ev(0, 4765, account="corp\\admt", target_account="corp\\eve",
              member_sid="S-1-5-21-9-9-9-1104")]
    assert run(evs, detectors={DID: DetectorOverride(
        exclude=Exclusions(accounts=["corp\\admt"]))}) == []


@pytest.mark.samples
@needs_samples
def test_positive_sample_4765():
    alerts = scan_sample("evtx-attack-samples/Privilege Escalation/4765_sidhistory_add_t1178.evtx")
    assert alerts and alerts[0].evidence.details["privileged_sid"]
