"""kerberoasting: RC4 service tickets for several user-account SPNs; sensitive SPN; fan-out."""

from __future__ import annotations

from stream.settings import DetectionSettings, DetectorOverride
from _harness import run_detector

DID = "kerberoasting"
T0 = 1_700_000_000_000


def tgs(t, svc, enc=0x17, account="corp\\mallory", ip="10.0.0.66", status=0, flags=0,
        sid="S-1-5-21-1-2-3-1500"):
    if svc.endswith("$"):
        flags |= 8
    return {"time_ms": T0 + int(t * 1000), "event_id": 4769, "computer": "dc01.corp.local",
            "channel": "security", "account": account, "src_ip": ip, "service": svc,
            "target_sid": sid, "ticket_encryption": enc, "ticket_options": 0x40810000,
            "status": status, "flags": flags}


def run(events, **kw):
    return run_detector(DID, events, **kw)


def test_positive_three_rc4_user_spns():
    alerts = run([tgs(0, "sqlsvc"), tgs(1, "websvc"), tgs(2, "backupsvc")])
    assert len(alerts) == 1
    a = alerts[0]
    assert a.entity == "corp\\mallory"
    assert "backupsvc" in a.entities.spns
    assert a.evidence.details["distinct"] == 3
    assert a.mdi_alert_id == ["2410"]


def test_fires_single_rc4_ticket_for_sensitive_or_admin_spn():
    alerts = run([tgs(0, "svc-da")], sensitive_accounts=["svc-da"])
    assert len(alerts) == 1
    alerts = run([tgs(0, "administrator", sid="S-1-5-21-1-2-3-500")])
    assert len(alerts) == 1


def test_detect_aes_fanout():
    evs = [tgs(i, f"svc{i}", enc=0x12) for i in range(20)]
    assert len(run(evs)) == 1


def test_negative_aes_machine_spns_krbtgt_failures():
    evs = [tgs(i, f"svc{i}", enc=0x12) for i in range(10)]          # AES, below fan-out
    evs += [tgs(i, f"srv{i}$") for i in range(10)]                    # computer services
    evs += [tgs(i, "krbtgt") for i in range(5)]
    evs += [tgs(i, f"x{i}", status=0x1B) for i in range(5)]           # failed requests
    evs += [tgs(i, f"y{i}", account="corp\\ws01$", flags=1) for i in range(5)]
    evs += [tgs(0, "sqlsvc", account="corp\\bob"), tgs(1, "websvc", account="corp\\bob")]
    assert run(evs) == []


def test_negative_rc4_spread_over_time():
    assert run([tgs(i * 400, f"svc{i}") for i in range(5)]) == []


def test_sensitivity_and_override():
    evs = [tgs(0, "sqlsvc"), tgs(1, "websvc")]
    assert run(evs) == []
    assert len(run(evs, sensitivity="medium")) == 1
    assert len(run(evs, detectors={DID: DetectorOverride(params={"threshold": 2})})) == 1
