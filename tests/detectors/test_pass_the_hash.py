"""pass-the-hash: seclogo LogonType 9, local NTLM without session key, new-host NTLM KL0."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.scan import OfflinePipeline
from stream.settings import DetectionSettings, DetectorOverride

DID = "pass-the-hash"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"
NULL_SUBJECT = 1 << 5
LOCAL = 1 << 4
MACHINE = 1


def logon(t, account="corp\\alice", lt=3, proto="ntlm", lproc="NtLmSsp", kl=0, ip="10.0.0.5",
          host="ws05", flags=NULL_SUBJECT, computer="srv01.corp.local"):
    return {"time_ms": T0 + int(t * 1000), "event_id": 4624, "computer": computer,
            "channel": "security", "account": account, "logon_type": lt, "protocol": proto,
            "logon_process": lproc, "auth_package": proto.upper(), "key_length": kl,
            "src_ip": ip, "src_host": host, "flags": flags}


def run(events, **kw):
    kw.setdefault("enabled", [DID])
    pipe = OfflinePipeline(DetectionSettings(**kw), partitions=4)
    pipe.feed(sorted(events, key=lambda e: e["time_ms"]))
    return [a for a in pipe.finish() if a.detector == DID]


def test_positive_seclogo_logon_type_9():
    ev = logon(0, lt=9, proto="negotiate", lproc="seclogo", ip="", host="", flags=LOCAL)
    alerts = run([ev])
    assert len(alerts) == 1
    assert alerts[0].entity == "corp\\alice"
    assert alerts[0].evidence.count == 1
    assert "seclogo" in alerts[0].description


def test_positive_local_ntlm_without_session_key():
    alerts = run([logon(0, ip="", host="srv01", flags=NULL_SUBJECT | LOCAL)])
    assert [a.entity for a in alerts] == ["corp\\alice"]
    assert "looped back" in alerts[0].description


def test_fires_on_new_host_after_learning():
    day = 86_400
    evs = [logon(i * 3600, kl=128, ip="10.0.0.5") for i in range(10)]  # usual host, NTLMv2
    evs.append(logon(8 * day, kl=0, ip="10.0.9.9", host="evil"))       # new host, no key
    alerts = run(evs, learning_days=7)
    assert len(alerts) == 1 and alerts[0].entities.ips == ["10.0.9.9"]


def test_negative_known_host_and_learning_period_quiet():
    day = 86_400
    # KL0 logons from the usual host after learning, and from a new host inside learning
    evs = [logon(i * 3600, kl=0, ip="10.0.0.5") for i in range(5)]
    evs.append(logon(8 * day, kl=0, ip="10.0.0.5"))
    evs.append(logon(2 * day, kl=0, ip="10.0.7.7", host="ws07"))
    assert run(evs, learning_days=7) == []


def test_negative_benign_ntlmv2_machine_anonymous_kerberos():
    evs = [
        logon(0, kl=128, ip="10.0.3.3"),                                   # session key
        logon(1, account="corp\\ws05$", flags=NULL_SUBJECT | MACHINE, ip="10.0.3.4"),
        logon(2, account="nt authority\\anonymous logon", flags=NULL_SUBJECT | 4,
              ip="10.0.3.5"),
        logon(3, proto="kerberos", lproc="Kerberos", ip="10.0.3.6"),
        logon(4, lt=2, proto="negotiate", lproc="User32", ip="", flags=LOCAL),
    ]
    assert run(evs, learning_days=0) == []


def test_medium_sensitivity_ignores_learning():
    ev = logon(0, kl=0, ip="10.0.9.9", host="evil")
    assert run([ev], learning_days=7) == []                      # high: inside learning
    assert len(run([ev], learning_days=7, sensitivity="medium")) == 1


def test_excluded_host_quiet():
    ev = logon(0, lt=9, proto="negotiate", lproc="seclogo", ip="", host="", flags=LOCAL)
    from stream.settings import Exclusions
    assert run([ev], detectors={DID: DetectorOverride(
        exclude=Exclusions(accounts=["alice"]))}) == []


@pytest.mark.samples
@pytest.mark.parametrize("name", [
    "LM_4624_mimikatz_sekurlsa_pth_source_machine.evtx",
    "ImpersonateUser-via local Pass The Hash Sysmon and Security.evtx"])
def test_samples_detect(name):
    path = SAMPLES / "evtx-attack-samples" / "Lateral Movement" / name
    if not path.exists():
        pytest.skip("samples not available (../shared/samples)")
    from collectors.files import iter_paths
    from stream.scan import scan_records
    alerts = scan_records(iter_paths([str(path)]), DetectionSettings(), 4)
    assert DID in {a.detector for a in alerts}
