"""dcshadow: DC SPNs on a non-DC computer, nTDSDSA object creation."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.settings import DetectionSettings, DetectorOverride, Exclusions
from _harness import ev, run_detector, scan_sample_for

DID = "dcshadow"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"
DC = "dc01.corp.local"


def run(events, **kw):
    return run_detector(DID, events, **kw)


def scan_sample(rel):
    return scan_sample_for(DID, rel)


needs_samples = pytest.mark.skipif(not SAMPLES.exists(),
                                   reason="../shared/samples not available")

SPNS = ("HOST/alice.corp.local\r\n\t\tGC/alice.corp.local/corp.local\r\n\t\t"
        "E3514235-4B06-11D1-AB04-00C04FC2DCD2/ae9a3b29-01d1-4851-8ca8-e49cd3985e5b/corp.local")


def test_positive_gc_spn_added_to_workstation():
    alerts = run([ev(0, 4742, account="corp\\administrator", target_account="corp\\alice$",
                     flags=8, service=SPNS)])
    assert len(alerts) == 1
    assert "E3514235" in alerts[0].description and "alice$" in alerts[0].description


def test_fires_on_5136_spn_and_5137_ntdsdsa():
    evs = [ev(0, 5136, object="CN=ALICE,CN=Computers,DC=corp,DC=local", object_class="computer",
              attribute="servicePrincipalName", value="GC/alice.corp.local/corp.local",
              extra='{"OperationType":"%%14674"}'),
           ev(1, 5137, object="CN=NTDS Settings,CN=ALICE,CN=Servers,CN=Default-First-Site-Name,"
              "CN=Sites,CN=Configuration,DC=corp,DC=local", object_class="nTDSDSA")]
    alerts = run(evs)
    assert len(alerts) == 1 and alerts[0].evidence.count == 2


def test_negative_real_dcs_and_ordinary_spns():
    evs = [ev(0, 4742, target_account="corp\\dc01$", flags=8, service=SPNS),  # reporting DC
           ev(1, 4742, target_account="corp\\dc02$", flags=8, service=SPNS),  # configured DC
           ev(2, 4742, target_account="corp\\ws01$", flags=8,
              service="HOST/ws01.corp.local\r\n\t\tTERMSRV/ws01"),
           ev(3, 5136, object="CN=DC02,OU=Domain Controllers,DC=corp,DC=local",
              attribute="servicePrincipalName", value="GC/dc02.corp.local/corp.local")]
    assert run(evs, domain_controllers=["dc02.corp.local"]) == []


def test_excluded_actor():
    e = ev(0, 4742, account="corp\\administrator", target_account="corp\\alice$", flags=8,
           service=SPNS)
    assert run([e], exclude=Exclusions(accounts=["administrator"])) == []


@pytest.mark.samples
@needs_samples
def test_positive_sample():
    assert scan_sample("evtx-attack-samples/Persistence/persistence_security_dcshadow_4742.evtx")
