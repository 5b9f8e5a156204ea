"""account-enumeration: many distinct unknown principals from one source."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.settings import DetectionSettings, DetectorOverride, Exclusions
from _harness import run_detector

DID = "account-enumeration"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"


def krb(t, user, status=0x6, eid=4768, ip="10.0.0.66", flags=2):
    return {"time_ms": T0 + int(t * 1000), "event_id": eid, "computer": "dc01.corp.local",
            "channel": "security", "account": f"corp\\{user}", "src_ip": ip,
            "status": status, "service": "krbtgt/CORP.LOCAL", "flags": flags}


def ntlm(t, user, status=0xC0000064, host="ws66"):
    return {"time_ms": T0 + int(t * 1000), "event_id": 4776, "computer": "dc01.corp.local",
            "account": f"corp\\{user}", "src_host": host, "status": status, "flags": 2}


def run(events, **kw):
    return run_detector(DID, events, **kw)


def test_positive_volume_ten_unknown_names_in_five_minutes():
    # one guess every 25 s: too slow for the burst rule, the volume rule fires
    alerts = run([krb(i * 25, f"guess{i}") for i in range(10)])
    assert len(alerts) == 1
    a = alerts[0]
    assert a.entity == "10.0.0.66"
    assert a.evidence.details["unknown_names"] == 10
    assert a.mdi_alert_id == ["2003"]


def test_fires_burst_kerbrute_signature_and_reports_matched_accounts():
    # kerbrute: 7 unknown principals and 2 wrong passwords within a second
    evs = [krb(i * 0.001, f"guess{i}") for i in range(7)]
    evs += [krb(0.01, "administrator", status=0x18, eid=4771),
            krb(0.011, "backdoor", status=0x18, eid=4771)]
    alerts = run(evs)
    assert len(alerts) == 1
    d = alerts[0].evidence.details
    assert d["unknown_names"] == 7 and d["matched_accounts"] == 2


def test_detect_ntlm_no_such_user_by_workstation():
    alerts = run([ntlm(i * 20, f"guess{i}") for i in range(10)])
    assert len(alerts) == 1 and alerts[0].entity == "ws66"


def test_negative_slow_typos_and_repeated_stale_name():
    # a few distinct mistyped names over an hour, and one stale name retried forever
    evs = [krb(i * 600, f"typo{i}") for i in range(6)]
    evs += [krb(i * 2, "deleted.user", ip="10.0.0.7") for i in range(200)]
    assert run(evs) == []


def test_negative_wrong_passwords_and_machine_accounts_only():
    evs = [krb(i * 0.01, f"user{i}", status=0x18, eid=4771) for i in range(20)]
    evs += [krb(i * 0.01, f"ws{i}$", flags=3) for i in range(20)]
    assert run(evs) == []


def test_excluded_source_ip():
    evs = [krb(i * 0.01, f"guess{i}") for i in range(12)]
    assert run(evs, exclude=Exclusions(ips=["10.0.0.66"])) == []


def test_sensitivity_and_override():
    evs = [krb(i * 25, f"guess{i}") for i in range(7)]  # 7 names, 25 s apart
    assert run(evs) == []
    assert len(run(evs, sensitivity="medium")) == 1
    assert len(run(evs, detectors={DID: DetectorOverride(params={"threshold": 7})})) == 1


@pytest.mark.samples
def test_positive_sample_kerbrute_recording():
    if not SAMPLES.exists():
        pytest.skip(f"samples not available at {SAMPLES}")
    from collectors.files import iter_paths
    from stream.scan import scan_records
    path = SAMPLES / "evtx-attack-samples/Credential Access/kerberos_pwd_spray_4771.evtx"
    alerts = [a for a in scan_records(iter_paths([str(path)]), DetectionSettings(), 4)
              if a.detector == DID]
    assert len(alerts) == 1 and alerts[0].entity == "172.16.66.1"
