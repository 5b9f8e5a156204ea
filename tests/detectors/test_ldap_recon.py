"""ldap-recon: bulk Read Property on user/group/computer objects (4662)."""

from __future__ import annotations

from stream.settings import DetectionSettings, DetectorOverride
from _harness import run_detector

DID = "ldap-recon"
T0 = 1_700_000_000_000
USER_CLASS = "%{bf967aba-0de6-11d0-a285-00aa003049e2}"
DOMAIN_CLASS = "%{19195a5b-6da0-11d0-afd3-00c04fd930c9}"


def read(t, obj, account="corp\\bob", cls=USER_CLASS, mask=0x10, flags=0):
    return {"time_ms": T0 + int(t * 1000), "event_id": 4662, "computer": "dc01.corp.local",
            "channel": "security", "account": account, "object": obj, "object_class": cls,
            "properties": "%%7684", "access_mask": mask, "flags": flags}


def run(events, **kw):
    return run_detector(DID, events, **kw)


def test_positive_bulk_user_reads():
    alerts = run([read(i * 2, f"%{{0000-{i}}}") for i in range(25)])
    assert len(alerts) == 1
    a = alerts[0]
    assert "corp\\bob" in a.entities.accounts
    assert a.evidence.details["distinct"] >= 20


def test_negative_same_object_machine_and_other_classes():
    evs = [read(i, "%{same}") for i in range(50)]
    evs += [read(i, f"%{{m-{i}}}", account="corp\\ws01$", flags=1) for i in range(50)]
    evs += [read(i, f"%{{d-{i}}}", cls=DOMAIN_CLASS) for i in range(50)]
    evs += [read(i, f"%{{w-{i}}}", mask=0x20) for i in range(50)]  # write property
    assert run(evs) == []


def test_negative_slow_reads_outside_window():
    assert run([read(i * 60, f"%{{s-{i}}}") for i in range(25)]) == []


def test_sensitivity_and_override():
    evs = [read(i, f"%{{o-{i}}}") for i in range(12)]
    assert run(evs) == []
    assert len(run(evs, sensitivity="low")) == 1
    assert len(run(evs, detectors={DID: DetectorOverride(params={"threshold": 12})})) == 1
