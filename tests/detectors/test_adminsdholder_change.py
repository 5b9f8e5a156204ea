"""adminsdholder-change: any 5136 write on CN=AdminSDHolder,CN=System."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.schema import FLAG_VALUE_DELETED
from stream.settings import DetectionSettings, DetectorOverride, Exclusions
from _harness import ev, run_detector, scan_sample_for

DID = "adminsdholder-change"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"
DC = "dc01.corp.local"


def run(events, **kw):
    return run_detector(DID, events, **kw)


def scan_sample(rel):
    return scan_sample_for(DID, rel)


needs_samples = pytest.mark.skipif(not SAMPLES.exists(),
                                   reason="../shared/samples not available")

ASH = "CN=AdminSDHolder,CN=System,DC=corp,DC=local"


def test_positive_acl_added_to_adminsdholder():
    sd = "O:DAG:DAD:PAI(A;;LCRPLORC;;;AU)(A;;GA;;;S-1-5-21-1-2-3-1601)"
    alerts = run([ev(0, 5136, object=ASH, object_class="container",
                     attribute="nTSecurityDescriptor", value=sd,
                     extra='{"OperationType":"%%14675"}', flags=FLAG_VALUE_DELETED),
                  ev(0, 5136, object=ASH, object_class="container",
                     attribute="nTSecurityDescriptor", value=sd,
                     extra='{"OperationType":"%%14674"}')])
    assert len(alerts) == 1 and alerts[0].evidence.count == 1   # the delete half is ignored
    assert alerts[0].evidence.details["rights_granted_to"] == ["s-1-5-21-1-2-3-1601"]


def test_fires_on_other_attribute():
    alerts = run([ev(0, 5136, object=ASH.lower(), attribute="adminDescription", value="x")])
    assert len(alerts) == 1


def test_negative_other_objects():
    evs = [ev(0, 5136, object="CN=Users,DC=corp,DC=local", attribute="nTSecurityDescriptor",
              value="O:DA"),
           ev(1, 5136, object="CN=AdminSDHolderBackup,OU=x,DC=corp,DC=local",
              attribute="description", value="x")]
    assert run(evs) == []


def test_excluded_actor():
    assert run([ev(0, 5136, object=ASH, attribute="description", value="x")],
               exclude=Exclusions(accounts=["bob"])) == []
