"""delegation-change: unconstrained / constrained delegation enabled."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.settings import DetectionSettings, DetectorOverride, Exclusions
from _harness import ev, run_detector, scan_sample_for

DID = "delegation-change"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"
DC = "dc01.corp.local"


def run(events, **kw):
    return run_detector(DID, events, **kw)


def scan_sample(rel):
    return scan_sample_for(DID, rel)


needs_samples = pytest.mark.skipif(not SAMPLES.exists(),
                                   reason="../shared/samples not available")


def test_positive_unconstrained_on_server_4742():
    alerts = run([ev(0, 4742, target_account="corp\\srv1$", flags=8, uac_old=0x80,
                     uac_new=0x2080, value="%%2093")])
    assert len(alerts) == 1
    assert "Trusted For Delegation" in alerts[0].description


def test_fires_on_constrained_and_protocol_transition():
    evs = [ev(0, 4738, target_account="corp\\svc_web", uac_old=0x210, uac_new=0x40210),
           ev(1, 4738, target_account="corp\\svc_web",
              properties="AllowedToDelegateTo=cifs/fs01.corp.local"),
           ev(2, 5136, object="CN=svc_sql,CN=Users,DC=corp,DC=local", object_class="user",
              attribute="msDS-AllowedToDelegateTo", value="MSSQLSvc/db01:1433",
              extra='{"OperationType":"%%14674"}'),
           ev(3, 5136, object="CN=WS9,OU=PCs,DC=corp,DC=local", object_class="computer",
              attribute="userAccountControl", value="528384",      # 0x81000
              extra='{"OperationType":"%%14674"}')]
    alerts = run(evs)
    assert len(alerts) == 1 and alerts[0].evidence.count == 4


def test_negative_dc_promotion_and_known_dc_and_unrelated_bits():
    evs = [ev(0, 4742, target_account="corp\\dc02$", flags=8, uac_old=0x80,
              uac_new=0x2100, value="%%2093 %%2088"),              # server trust account
           ev(1, 4742, target_account="corp\\dc01$", flags=8, uac_old=0x100,
              uac_new=0x2100),                                     # a known DC
           ev(2, 4738, target_account="corp\\eve", uac_old=0x210, uac_new=0x211),
           ev(3, 5136, object="CN=DC03,OU=Domain Controllers,DC=corp,DC=local",
              attribute="userAccountControl", value="532480")]
    assert run(evs, domain_controllers=["dc01.corp.local"]) == []


def test_excluded_host_owner():
    e = ev(0, 4742, target_account="corp\\srv1$", flags=8, uac_old=0x80, uac_new=0x2080)
    assert run([e], exclude=Exclusions(accounts=["corp\\srv1$"])) == []
