"""sensitive-group-change: members added to built-in / configured sensitive groups."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.settings import DetectionSettings, DetectorOverride, Exclusions
from _harness import ev, run_detector, scan_sample_for

DID = "sensitive-group-change"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"
DC = "dc01.corp.local"


def run(events, **kw):
    return run_detector(DID, events, **kw)


def scan_sample(rel):
    return scan_sample_for(DID, rel)


needs_samples = pytest.mark.skipif(not SAMPLES.exists(),
                                   reason="../shared/samples not available")


def add(t, eid=4728, group="domain admins", sid="S-1-5-21-1-2-3-512", account="corp\\bob",
        flags=0, member="CN=Eve,CN=Users,DC=corp,DC=local"):
    return ev(t, eid, account=account, group=group, group_sid=sid, member=member,
              member_sid="S-1-5-21-1-2-3-1601", flags=flags)


def test_positive_domain_admins_add():
    alerts = run([add(0), add(5, eid=4756, group="enterprise admins", sid="S-1-5-21-1-2-3-519")])
    assert len(alerts) == 1
    a = alerts[0]
    assert a.entity == "corp\\bob" and a.evidence.count == 2
    assert "domain admins" in a.entities.groups and "enterprise admins" in a.entities.groups
    assert "added" in a.description


def test_fires_on_local_administrators_by_sid_and_configured_group():
    alerts = run([add(0, eid=4732, group="administratoren", sid="S-1-5-32-544"),
                  add(1, group="tier0-ops", sid="S-1-5-21-1-2-3-4444", account="corp\\amy")],
                 sensitive_groups=["tier0-ops"])
    assert sorted(a.entity for a in alerts) == ["corp\\amy", "corp\\bob"]


def test_negative_ordinary_group_removal_and_machine_actor():
    evs = [add(0, group="sales", sid="S-1-5-21-1-2-3-3001"),
           add(1, eid=4729),                                  # removal: off by default
           add(2, eid=4732, group="administrators", sid="S-1-5-32-544",
               account="corp\\ws01$", flags=1)]               # GPO restricted groups
    assert run(evs) == []


def test_low_sensitivity_includes_removals_and_machine_actors():
    evs = [add(1, eid=4729), add(2, eid=4732, group="administrators", sid="S-1-5-32-544",
                                 account="corp\\ws01$", flags=1)]
    alerts = run(evs, sensitivity="low")
    assert len(alerts) == 2


def test_excluded_actor():
    assert run([add(0)], exclude=Exclusions(accounts=["corp\\bob"])) == []


@pytest.mark.samples
@needs_samples
def test_positive_sample_guest_added_to_admins():
    alerts = scan_sample("evtx-attack-samples/Persistence/Network_Service_Guest_added_to_admins_4732.evtx")
    assert alerts and alerts[0].evidence.count == 2
