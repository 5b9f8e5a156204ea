"""brute-force: many wrong passwords for one account; success afterwards is reported."""

from __future__ import annotations

from stream.settings import DetectionSettings, DetectorOverride
from _harness import run_detector

DID = "brute-force"
T0 = 1_700_000_000_000


def fail(t, account="corp\\alice", eid=4771, ip="10.0.0.66", flags=2, status=None, sub=0):
    st = status if status is not None else (0x18 if eid == 4771 else 0xC000006A if eid == 4776
                                            else 0xC000006D)
    ev = {"time_ms": T0 + int(t * 1000), "event_id": eid, "computer": "dc01.corp.local",
          "channel": "security", "account": account, "status": st, "sub_status": sub,
          "flags": flags}
    if eid == 4776:
        ev["src_host"] = "ws66"
    else:
        ev["src_ip"] = ip
    if eid == 4625:
        ev["sub_status"] = sub or 0xC000006A
        ev["logon_type"] = 3
    return ev


def run(events, **kw):
    return run_detector(DID, events, **kw)


def test_positive_ten_kerberos_wrong_passwords():
    alerts = run([fail(i * 5) for i in range(10)])
    assert len(alerts) == 1
    a = alerts[0]
    assert a.entity == "corp\\alice"
    assert a.evidence.count == 10
    assert a.mdi_alert_id == ["2023"] and "T1110.001" in a.mitre


def test_fires_on_ntlm_and_logon_failures_mixed():
    evs = [fail(i, eid=4776) for i in range(5)] + [fail(10 + i, eid=4625) for i in range(5)]
    alerts = run(evs)
    assert len(alerts) == 1 and alerts[0].evidence.count == 10


def test_detect_success_after_failures_from_same_source():
    evs = [fail(i, eid=4771) for i in range(10)]
    evs.append({"time_ms": T0 + 20_000, "event_id": 4768, "computer": "dc01.corp.local",
                "account": "corp\\alice", "src_ip": "10.0.0.66", "status": 0,
                "ticket_encryption": 0x12, "preauth_type": 2})
    alerts = run(evs)
    assert len(alerts) == 1
    assert alerts[0].evidence.details.get("followed_by_success")


def test_negative_below_threshold_and_spread_out():
    assert run([fail(i) for i in range(9)]) == []
    # 12 failures, one every 2 minutes: never 10 in 10 minutes
    assert run([fail(i * 120) for i in range(12)]) == []


def test_negative_machine_accounts_and_other_status_codes():
    evs = [fail(i, account="corp\\ws01$", flags=3) for i in range(15)]
    # 4771 0x12 (revoked/disabled), 4776 0xC0000064 (no such user), 4769 0xD
    evs += [fail(i, eid=4771, status=0x12) for i in range(15)]
    evs += [fail(i, eid=4776, status=0xC0000064) for i in range(15)]
    evs += [{"time_ms": T0 + i * 1000, "event_id": 4769, "computer": "dc01.corp.local",
             "account": "corp\\alice", "src_ip": "10.0.0.66", "status": 0xD, "flags": 2}
            for i in range(15)]
    assert run(evs) == []


def test_negative_success_from_another_source_not_flagged():
    evs = [fail(i) for i in range(10)]
    evs.append({"time_ms": T0 + 20_000, "event_id": 4768, "computer": "dc01.corp.local",
                "account": "corp\\alice", "src_ip": "10.9.9.9", "status": 0})
    alerts = run(evs)
    assert len(alerts) == 1 and "followed_by_success" not in alerts[0].evidence.details


def test_excluded_account_produces_no_alert():
    from stream.settings import Exclusions
    assert run([fail(i) for i in range(12)],
               exclude=Exclusions(accounts=["corp\\alice"])) == []


def test_sensitivity_and_override():
    evs = [fail(i) for i in range(6)]
    assert run(evs) == []
    assert len(run(evs, sensitivity="low")) == 1
    assert len(run(evs, detectors={DID: DetectorOverride(params={"threshold": 6})})) == 1
