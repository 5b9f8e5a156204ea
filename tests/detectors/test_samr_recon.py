"""samr-recon: SAM-R reads of privileged groups / many principals; remote 4799/4798."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.settings import DetectionSettings, DetectorOverride, Exclusions
from _harness import run_detector

DID = "samr-recon"
T0 = 1_700_000_000_000
DOM = "S-1-5-21-1111-2222-3333"
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"


def sam(t, obj, cls="SAM_GROUP", account="corp\\bob", flags=0, computer="dc01.corp.local"):
    return {"time_ms": T0 + int(t * 1000), "event_id": 4661, "computer": computer,
            "channel": "security", "account": account, "object": obj, "object_class": cls,
            "access_mask": 0x2D, "flags": flags}


def grp(t, name, sid, account="corp\\bob", caller="", flags=0):
    return {"time_ms": T0 + int(t * 1000), "event_id": 4799, "computer": "srv01.corp.local",
            "account": account, "group": name, "group_sid": sid, "object": caller,
            "flags": flags}


def run(events, **kw):
    return run_detector(DID, events, **kw)


def test_positive_domain_admins_membership_lookup():
    alerts = run([sam(0, "DC=corp,DC=local", "SAM_DOMAIN"), sam(0.01, f"{DOM}-512")])
    assert len(alerts) == 1
    a = alerts[0]
    assert "corp\\bob" in a.entities.accounts
    assert "privileged group" in a.description
    assert a.mdi_alert_id[0] == "2021"


def test_fires_on_many_users_opened():
    evs = [sam(i, f"{DOM}-{1100 + i}", "SAM_USER") for i in range(20)]
    alerts = run(evs)
    assert len(alerts) == 1 and alerts[0].evidence.details["distinct"] == 20


def test_detect_remote_local_admin_group_enumeration():
    alerts = run([grp(0, "administrators", "S-1-5-32-544"),
                  grp(5, "users", "S-1-5-32-545")])
    assert len(alerts) == 1 and alerts[0].entity == "srv01.corp.local"


def test_negative_machine_accounts_domain_handles_and_few_users():
    evs = [sam(0, f"{DOM}-512", account="corp\\ws01$", flags=1)]
    evs += [sam(i, "DC=corp,DC=local", "SAM_DOMAIN") for i in range(30)]
    evs += [sam(i, f"{DOM}-{1100 + i}", "SAM_USER") for i in range(10)]   # < 20 objects
    evs += [sam(0, f"{DOM}-512", account="nt authority\\system")]
    assert run(evs) == []


def test_negative_local_enumeration_with_caller_process():
    evs = [grp(i, "administrators", "S-1-5-32-544", caller="C:\\Windows\\System32\\net1.exe")
           for i in range(5)]
    evs += [grp(i, "administrators", "S-1-5-32-544", account="corp\\srv01$", flags=1)
            for i in range(5)]
    assert run(evs) == []


def test_excluded_admin_account():
    evs = [sam(0, f"{DOM}-512", account="corp\\helpdesk")]
    assert run(evs, exclude=Exclusions(accounts=["corp\\helpdesk"])) == []


def test_override_group_lookup_off_and_sensitivity():
    evs = [sam(0, f"{DOM}-512"), sam(1, f"{DOM}-519")]
    off = {DID: DetectorOverride(params={"group_lookup": 0})}
    assert run(evs, detectors=off) == []
    # low sensitivity: 2 distinct sensitive objects are enough even without group_lookup
    assert len(run(evs, detectors={DID: DetectorOverride(sensitivity="low",
                                                         params={"group_lookup": 0})})) == 1


@pytest.mark.samples
@pytest.mark.parametrize("rel", [
    "evtx-attack-samples/Discovery/dicovery_4661_net_group_domain_admins_target.evtx",
    "evtx-attack-samples/Discovery/4799_remote_local_groups_enumeration.evtx",
    "otrf-security-datasets/empire_shell_rpc_samr_smb_group_domain_admins_standard_user.json",
])
def test_positive_samples(rel):
    if not SAMPLES.exists():
        pytest.skip(f"samples not available at {SAMPLES}")
    from collectors.files import iter_paths
    from stream.scan import scan_records
    alerts = scan_records(iter_paths([str(SAMPLES / rel)]), DetectionSettings(), 4)
    assert DID in {a.detector for a in alerts}
