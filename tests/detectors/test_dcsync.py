"""dcsync: replication extended rights exercised by a non-DC subject (4662)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.settings import DetectionSettings, Exclusions
from _harness import run_detector

DID = "dcsync"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"
GET_CHANGES_ALL = "%%7688\r\n\t\t{1131f6ad-9c07-11d1-f79f-00c04fc2dcd2}\r\n\t{19195a5b}"
OTHER_RIGHT = "%%7688\r\n\t\t{00299570-246d-11d0-a768-00aa006e0529}"


def repl(t, account="corp\\mallory", props=GET_CHANGES_ALL, mask=0x100, flags=0, sid=""):
    return {"time_ms": T0 + int(t * 1000), "event_id": 4662, "computer": "dc01.corp.local",
            "channel": "security", "account": account, "account_sid": sid,
            "object": "%{c6faf700-bfe4-452a-a766-424f84c29583}",
            "object_class": "%{19195a5b-6da0-11d0-afd3-00c04fd930c9}", "properties": props,
            "access_mask": mask, "flags": flags}


def run(events, **kw):
    return run_detector(DID, events, **kw)


def test_positive_user_account_replicates():
    alerts = run([repl(0), repl(0.1)])
    assert len(alerts) == 1
    a = alerts[0]
    assert a.entity == "corp\\mallory" and a.severity == "high"
    assert a.evidence.details["rights"] == ["Get-Changes-All"]


def test_fires_for_non_dc_machine_account():
    assert len(run([repl(0, account="corp\\ws01$", flags=1)],
                   domain_controllers=["dc01.corp.local"])) == 1


def test_negative_dc_machine_account_sync_account_and_other_rights():
    evs = [repl(0, account="corp\\dc02$", flags=1),
           repl(1, account="corp\\msol_abc123"),
           repl(2, account="nt authority\\system", sid="S-1-5-18"),
           repl(3, props=OTHER_RIGHT),
           repl(4, mask=0x10)]
    alerts = run(evs, domain_controllers=["dc01.corp.local", "dc02.corp.local"],
                 sync_accounts=["msol_*"])
    assert alerts == []


def test_excluded_account():
    assert run([repl(0)], exclude=Exclusions(accounts=["corp\\mallory"])) == []


@pytest.mark.samples
@pytest.mark.parametrize("rel", [
    "evtx-attack-samples/Credential Access/CA_DCSync_4662.evtx",
    "otrf-security-datasets/empire_dcsync_dcerpc_drsuapi_DsGetNCChanges.json"])
def test_positive_samples(rel):
    if not SAMPLES.exists():
        pytest.skip(f"samples not available at {SAMPLES}")
    from collectors.files import iter_paths
    from stream.scan import scan_records
    alerts = [a for a in scan_records(iter_paths([str(SAMPLES / rel)]), DetectionSettings(), 4)
              if a.detector == DID]
    assert len(alerts) == 1
