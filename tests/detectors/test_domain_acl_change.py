"""domain-acl-change: security descriptor writes on the domain root, AdminSDHolder, GPOs."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.schema import FLAG_VALUE_DELETED
from stream.settings import DetectionSettings, DetectorOverride, Exclusions
from _harness import ev, run_detector, scan_sample_for

DID = "domain-acl-change"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"
DC = "dc01.corp.local"


def run(events, **kw):
    return run_detector(DID, events, **kw)


def scan_sample(rel):
    return scan_sample_for(DID, rel)


needs_samples = pytest.mark.skipif(not SAMPLES.exists(),
                                   reason="../shared/samples not available")

ROOT = "DC=corp,DC=local"
SD = ("O:BAG:BAD:AI(OA;;CR;1131f6aa-9c07-11d1-f79f-00c04fc2dcd2;;ED)"
      "(OA;;CR;1131f6ad-9c07-11d1-f79f-00c04fc2dcd2;;BA)")
BACKDOOR = SD + ("(OA;;CR;1131f6ad-9c07-11d1-f79f-00c04fc2dcd2;;S-1-5-21-1-2-3-1601)"
                 "(OA;;CR;89e95b76-444d-4c62-991a-0facbeda640c;;S-1-5-21-1-2-3-1601)")


def sd(t, obj, value, op="%%14674", **kw):
    # the normalizer flags a "value deleted" operation (FLAG_VALUE_DELETED)
    return ev(t, 5136, object=obj, object_class="domainDNS", attribute="nTSecurityDescriptor",
              value=value, extra='{"OperationType":"%s"}' % op,
              flags=FLAG_VALUE_DELETED if op == "%%14675" else 0, **kw)


def test_positive_dcsync_rights_granted_on_domain_root():
    alerts = run([sd(0, ROOT, SD, op="%%14675"), sd(0, ROOT, BACKDOOR)])
    assert len(alerts) == 1
    a = alerts[0]
    assert a.evidence.count == 1
    assert a.evidence.details["replication_rights_granted_to"] == ["s-1-5-21-1-2-3-1601"]
    assert "DCSync" in a.description and "domain root" in a.description


def test_fires_on_gpo_and_adminsdholder_acl():
    evs = [sd(0, "CN={31B2F340-016D-11D2-945F-00C04FB984F9},CN=Policies,CN=System," + ROOT,
              "O:DAG:DAD:(A;;GA;;;S-1-5-21-1-2-3-1601)"),
           sd(1, "CN=AdminSDHolder,CN=System," + ROOT, "O:DAG:DAD:(A;;GA;;;AU)")]
    alerts = run(evs)
    assert len(alerts) == 1 and alerts[0].evidence.count == 2


def test_negative_other_objects_and_attributes():
    evs = [sd(0, "OU=Sales," + ROOT, BACKDOOR),
           sd(1, "DC=ws01,DC=corp.local,CN=MicrosoftDNS,DC=DomainDnsZones," + ROOT, BACKDOOR),
           ev(2, 5136, object="CN={31B2F340-016D-11D2-945F-00C04FB984F9},CN=Policies,CN=System,"
              + ROOT, attribute="versionNumber", value="7"),
           sd(3, "CN=User,CN={31B2F340-016D-11D2-945F-00C04FB984F9},CN=Policies,CN=System,"
              + ROOT, BACKDOOR)]
    assert run(evs) == []


def test_excluded_sync_setup_account():
    assert run([sd(0, ROOT, BACKDOOR, account="corp\\aadsetup")],
               exclude=Exclusions(accounts=["corp\\aadsetup"])) == []


@pytest.mark.samples
@needs_samples
def test_positive_samples():
    a = scan_sample("evtx-attack-samples/Persistence/DACL_DCSync_Right_Powerview_ "
                    "Add-DomainObjectAcl.evtx")
    assert a and a[0].evidence.details["replication_rights_granted_to"]
    b = scan_sample("evtx-attack-samples/Privilege Escalation/privexchange_dirkjan.evtx")
    assert b and b[0].entity == "icorp\\exchange$"
