"""risky-account-change: roastable/weak flags, SPN on users, DC/admin resets, admin-like renames, attribute-less changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.settings import DetectionSettings, DetectorOverride, Exclusions
from _harness import ev, run_detector, scan_sample_for

DID = "risky-account-change"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"
DC = "dc01.corp.local"


def run(events, **kw):
    return run_detector(DID, events, **kw)


def scan_sample(rel):
    return scan_sample_for(DID, rel)


needs_samples = pytest.mark.skipif(not SAMPLES.exists(),
                                   reason="../shared/samples not available")


def test_positive_preauth_disabled_4738():
    alerts = run([ev(0, 4738, target_account="corp\\eve", target_sid="S-1-5-21-1-2-3-1601",
                     uac_old=0x210, uac_new=0x10210, value="%%2096")])
    assert len(alerts) == 1
    assert "Don't Require Preauth enabled" in alerts[0].description


def test_fires_on_text_only_uac_spn_on_user_dc_reset_and_rename():
    evs = [ev(0, 4738, target_account="corp\\a", target_sid="S-1-5-21-1-2-3-1", value="%%2082"),
           ev(1, 5136, object="CN=svc,CN=Users,DC=corp,DC=local", object_class="user",
              attribute="servicePrincipalName", value="http/fake.corp.local",
              extra='{"OperationType":"%%14674"}'),
           ev(2, 4724, target_account="corp\\dc01$", target_sid="S-1-5-21-1-2-3-1000",
              flags=8),                                  # the reporting DC's own account
           ev(3, 4781, target_account="corp\\eve", target_sid="S-1-5-21-1-2-3-1601",
              value="adm_eve")]
    alerts = run(evs)
    assert len(alerts) == 1 and alerts[0].evidence.count == 4
    assert alerts[0].evidence.event_ids == [4724, 4738, 4781, 5136]


def test_detect_attribute_less_change_by_other_account():
    alerts = run([ev(0, 4738, target_account="corp\\alice", target_sid="S-1-5-21-1-2-3-1107")])
    assert len(alerts) == 1 and "DACL" in alerts[0].description


def test_negative_benign_changes():
    evs = [
        # pwd-not-required cleared / account enabled after creation (bits removed, not set)
        ev(0, 4738, target_account="corp\\new", target_sid="S-1-5-21-1-2-3-2000",
           uac_old=0x15, uac_new=0x211, value="%%2050 %%2089"),
        # attribute-less change explained by an unlock of the same account
        ev(10, 4767, target_account="corp\\eve", target_sid="S-1-5-21-1-2-3-1601"),
        ev(10.2, 4738, target_account="corp\\eve", target_sid="S-1-5-21-1-2-3-1601"),
        # attribute-less change of one's own account / by a machine account
        ev(20, 4738, account="corp\\eve", target_account="corp\\eve",
           target_sid="S-1-5-21-1-2-3-1601"),
        ev(21, 4742, account="corp\\ws01$", flags=1 | 8, target_account="corp\\ws01$",
           target_sid="S-1-5-21-1-2-3-3001"),
        # SPN on a computer, reset of an ordinary user, rename of a machine
        ev(30, 5136, object="CN=WS1,OU=PCs,DC=corp,DC=local", object_class="computer",
           attribute="servicePrincipalName", value="HOST/ws1"),
        ev(31, 4724, target_account="corp\\eve", target_sid="S-1-5-21-1-2-3-1601"),
        ev(32, 4781, target_account="corp\\ws01$", flags=8, value="admin01"),
        # creation followed by an attribute-less 4742 (domain join)
        ev(40, 4741, target_account="corp\\ws02$", target_sid="S-1-5-21-1-2-3-3002", flags=8),
        ev(40.1, 4742, target_account="corp\\ws02$", target_sid="S-1-5-21-1-2-3-3002",
           flags=8),
    ]
    assert run(evs) == []


def test_param_override_disables_attribute_less_rule():
    e = ev(0, 4738, target_account="corp\\alice", target_sid="S-1-5-21-1-2-3-1107")
    assert run([e], detectors={DID: DetectorOverride(params={"opaque_changes": 0})}) == []


def test_fires_on_reset_of_configured_sensitive_account():
    e = ev(0, 4724, target_account="corp\\ceo", target_sid="S-1-5-21-1-2-3-1900")
    assert run([e]) == []
    assert len(run([e], sensitive_accounts=["corp\\ceo"])) == 1


@pytest.mark.samples
@needs_samples
def test_positive_samples():
    a = scan_sample("evtx-attack-samples/Credential Access/"
                    "remote_pwd_reset_rpc_mimikatz_postzerologon_target_DC.evtx")
    assert a and a[0].evidence.event_ids == [4724]
    b = scan_sample("evtx-attack-samples/Credential Access/"
                    "ACL_ForcePwd_SPNAdd_User_Computer_Accounts.evtx")
    assert b and all(x.entity == "insecurebank\\bob" for x in b)
