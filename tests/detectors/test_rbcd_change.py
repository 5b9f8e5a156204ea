"""rbcd-change: 5136 msDS-AllowedToActOnBehalfOfOtherIdentity writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.schema import FLAG_VALUE_DELETED
from stream.settings import DetectionSettings, DetectorOverride, Exclusions
from _harness import ev, run_detector, scan_sample_for

DID = "rbcd-change"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"
DC = "dc01.corp.local"


def run(events, **kw):
    return run_detector(DID, events, **kw)


def scan_sample(rel):
    return scan_sample_for(DID, rel)


needs_samples = pytest.mark.skipif(not SAMPLES.exists(),
                                   reason="../shared/samples not available")

ATTR = "msDS-AllowedToActOnBehalfOfOtherIdentity"


def test_positive_machine_account_writes_rbcd_on_dc():
    alerts = run([ev(0, 5136, account="corp\\ws01$", flags=1,
                     object="CN=DC02,OU=Domain Controllers,DC=corp,DC=local",
                     object_class="computer", attribute=ATTR,
                     value="O:BAD:(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;S-1-5-21-1-2-3-1234)",
                     extra='{"OperationType":"%%14674"}')])
    assert len(alerts) == 1
    d = alerts[0].evidence.details
    assert d["written_by_machine_account"] and d["target_is_dc"]
    assert alerts[0].entity == "corp\\ws01$"


def test_negative_rbcd_cleared_and_other_attributes():
    evs = [ev(0, 5136, object="CN=SRV1,OU=Servers,DC=corp,DC=local", attribute=ATTR,
              value="O:BA", extra='{"OperationType":"%%14675"}', flags=FLAG_VALUE_DELETED),
           ev(1, 5136, object="CN=SRV1,OU=Servers,DC=corp,DC=local",
              attribute="msDS-AllowedToDelegateTo", value="cifs/x")]
    assert run(evs) == []


def test_excluded_admin():
    e = ev(0, 5136, object="CN=SRV1,OU=Servers,DC=corp,DC=local", attribute=ATTR, value="x")
    assert len(run([e])) == 1
    assert run([e], detectors={DID: DetectorOverride(
        exclude=Exclusions(accounts=["corp\\bob"]))}) == []
