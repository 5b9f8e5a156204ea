"""password-spray: many distinct accounts with a wrong password from one source."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.settings import DetectionSettings, DetectorOverride
from _harness import run_detector

DID = "password-spray"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"


def fail(t, user, eid=4771, ip="10.0.0.66", flags=2, status=None):
    st = status if status is not None else (0x18 if eid == 4771 else 0xC000006A)
    ev = {"time_ms": T0 + int(t * 1000), "event_id": eid, "computer": "dc01.corp.local",
          "channel": "security", "account": f"corp\\{user}", "status": st, "flags": flags}
    if eid == 4776:
        ev["src_host"] = "ws66"
    else:
        ev["src_ip"] = ip
    if eid == 4625:
        ev.update(status=0xC000006D, sub_status=st, logon_type=3)
    return ev


def run(events, **kw):
    return run_detector(DID, events, **kw)


def test_positive_kerberos_spray_one_source():
    alerts = run([fail(i * 2, f"user{i}") for i in range(12)])
    assert len(alerts) == 1
    a = alerts[0]
    assert a.entity == "10.0.0.66"
    assert a.evidence.details["distinct"] == 12
    assert "T1110.003" in a.mitre


def test_fires_ntlm_spray_keyed_by_workstation():
    alerts = run([fail(i, f"user{i}", eid=4776) for i in range(10)])
    assert len(alerts) == 1 and alerts[0].entity == "ws66"


def test_detect_explicit_credential_spray_4648():
    evs = [{"time_ms": T0 + i * 1000, "event_id": 4648, "computer": "ws66.corp.local",
            "account": "corp\\mallory", "target_account": f"corp\\user{i}",
            "target_host": "dc01.corp.local"} for i in range(10)]
    alerts = run(evs)
    assert len(alerts) == 1 and alerts[0].entity == "ws66.corp.local"


def test_negative_one_account_many_failures_is_not_spray():
    assert run([fail(i, "alice") for i in range(30)]) == []


def test_negative_distributed_sources_and_machine_accounts():
    evs = [fail(i, f"user{i}", ip=f"10.0.1.{i}") for i in range(20)]
    evs += [fail(i, f"ws{i}$", flags=3) for i in range(20)]
    evs += [fail(i, f"ghost{i}", status=0x6, eid=4771) for i in range(20)]  # not wrong pw
    assert run(evs) == []


def test_sensitivity_low_lower_threshold():
    evs = [fail(i, f"user{i}") for i in range(6)]
    assert run(evs) == []
    assert len(run(evs, sensitivity="low")) == 1
    assert len(run(evs, detectors={DID: DetectorOverride(params={"threshold": 6})})) == 1


@pytest.mark.samples
def test_positive_sample_not_required_for_kerbrute_file():
    """The kerbrute recording has only 2 wrong passwords: account-enumeration covers it."""
    if not SAMPLES.exists():
        pytest.skip(f"samples not available at {SAMPLES}")
    from collectors.files import iter_paths
    from stream.scan import scan_records
    path = SAMPLES / "evtx-attack-samples/Credential Access/kerberos_pwd_spray_4771.evtx"
    alerts = scan_records(iter_paths([str(path)]), DetectionSettings(), 4)
    ids = {a.detector for a in alerts}
    assert "account-enumeration" in ids
