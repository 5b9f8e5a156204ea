"""samaccountname-spoofing (noPac): computer renamed without `$`, tickets for a DC-like name."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.settings import DetectionSettings, Exclusions
from _harness import run_detector

DID = "samaccountname-spoofing"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"
DC = "dc01.corp.local"


def ev(t, eid, **kw):
    return {"time_ms": T0 + int(t * 1000), "event_id": eid, "computer": DC,
            "channel": "security", **kw}


def rename(t, old, new, flags=8):
    return ev(t, 4781, account="corp\\mallory", target_account=f"corp\\{old}", value=new,
              flags=flags)


def tgt(t, account, status=0, flags=0):
    return ev(t, 4768, account=account, src_ip="10.0.0.66", service="krbtgt", status=status,
              ticket_encryption=0x12, preauth_type=2, flags=flags)


def run(events, **kw):
    return run_detector(DID, events, **kw)


def test_positive_nopac_chain():
    evs = [rename(0, "evil$", "dc01"),
           tgt(0.1, "corp\\dc01"),
           rename(0.2, "dc01", "evil$", flags=0),
           ev(0.3, 4769, account="corp\\dc01", src_ip="10.0.0.66", service="DC01$", status=0,
              ticket_encryption=0x12, flags=8)]
    # DCs are learned per engine from KDC events; the actor's partition may not have seen one
    alerts = run(evs, domain_controllers=[DC])
    by_entity = {a.entity: a for a in alerts}
    assert set(by_entity) == {"corp\\mallory", "corp\\dc01"}
    assert "domain controller" in by_entity["corp\\mallory"].description
    assert by_entity["corp\\dc01"].evidence.count == 2


def test_fires_on_4742_sam_account_name_without_dollar():
    alerts = run([ev(0, 4742, account="corp\\mallory", target_account="corp\\whatever",
                     object="whatever")])
    assert len(alerts) == 1


def test_negative_normal_renames_and_dc_tickets():
    evs = [rename(0, "ws01$", "ws02$"),                      # computer renamed with $
           rename(1, "alice", "alice.smith", flags=0),        # user rename
           ev(2, 4742, account="corp\\admin", target_account="corp\\ws03$", object="ws03$"),
           ev(3, 4742, account="corp\\admin", target_account="corp\\ws03$"),
           tgt(4, "corp\\dc01$", flags=1),                    # the DC's own TGT
           tgt(5, "corp\\dc01", status=0x6),                  # failed request
           tgt(6, "corp\\alice")]
    assert run(evs) == []


def test_excluded_actor():
    evs = [rename(0, "evil$", "dc01")]
    assert run(evs, exclude=Exclusions(accounts=["corp\\mallory"])) == []


@pytest.mark.samples
def test_positive_sample_nopac_recording():
    if not SAMPLES.exists():
        pytest.skip(f"samples not available at {SAMPLES}")
    from collectors.files import iter_paths
    from stream.scan import scan_records
    path = (SAMPLES / "evtx-attack-samples/Privilege Escalation/"
            "samaccount_spoofing_CVE-2021-42287_CVE-2021-42278_DC_securitylogs.evtx")
    alerts = [a for a in scan_records(iter_paths([str(path)]), DetectionSettings(), 4)
              if a.detector == DID]
    assert {a.entity for a in alerts} == {"3b\\lgrove", "threebeesco\\01566s-win16-ir"}
