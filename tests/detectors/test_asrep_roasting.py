"""asrep-roasting: TGT issued without pre-authentication."""

from __future__ import annotations

from stream.settings import DetectionSettings, DetectorOverride, Exclusions
from _harness import run_detector

DID = "asrep-roasting"
T0 = 1_700_000_000_000


def tgt(t, account="corp\\legacy", preauth=0, status=0, enc=0x17, ip="10.0.0.66"):
    return {"time_ms": T0 + int(t * 1000), "event_id": 4768, "computer": "dc01.corp.local",
            "channel": "security", "account": account, "src_ip": ip, "service": "krbtgt",
            "status": status, "preauth_type": preauth, "ticket_encryption": enc}


def run(events, **kw):
    return run_detector(DID, events, **kw)


def test_positive_rc4_tgt_without_preauth():
    alerts = run([tgt(0)])
    assert len(alerts) == 1
    assert alerts[0].entity == "corp\\legacy" and "0x17" in alerts[0].description


def test_negative_normal_preauth_failures_and_absent_field():
    evs = [tgt(0, preauth=2), tgt(1, preauth=15), tgt(2, status=0x19), tgt(3, status=0x6),
           tgt(4, preauth=-1)]
    assert run(evs) == []


def test_excluded_legacy_client():
    assert run([tgt(0)], exclude=Exclusions(ips=["10.0.0.66"])) == []


def test_override_require_rc4():
    evs = [tgt(0, enc=0x12)]
    assert len(run(evs)) == 1
    assert run(evs, detectors={DID: DetectorOverride(params={"require_rc4": 1})}) == []
