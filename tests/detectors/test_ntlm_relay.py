"""ntlm-relay: machine-account NTLM logons that look relayed."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.scan import OfflinePipeline
from stream.settings import DetectionSettings, DetectorOverride

DID = "ntlm-relay"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"
MACHINE = 1
NULL_SUBJECT = 1 << 5


def ntlm(t, account="corp\\exch01$", ip="10.0.0.66", host="exch01", kl=0, proto="ntlm",
         flags=MACHINE | NULL_SUBJECT):
    return {"time_ms": T0 + int(t * 1000), "event_id": 4624, "computer": "dc01.corp.local",
            "channel": "security", "account": account, "src_ip": ip, "src_host": host,
            "logon_type": 3, "protocol": proto, "key_length": kl, "flags": flags}


def tgt(t, account, ip):
    return {"time_ms": T0 + int(t * 1000), "event_id": 4768, "computer": "dc01.corp.local",
            "account": account, "src_ip": ip, "ticket_encryption": 0x12, "flags": MACHINE}


def run(events, **kw):
    kw.setdefault("enabled", [DID])
    pipe = OfflinePipeline(DetectionSettings(**kw), partitions=4)
    pipe.feed(sorted(events, key=lambda e: e["time_ms"]))
    return [a for a in pipe.finish() if a.detector == DID]


def test_positive_machine_ntlm_without_session_key():
    alerts = run([ntlm(0)])
    assert len(alerts) == 1
    assert alerts[0].entity == "corp\\exch01$"
    assert "KeyLength 0" in alerts[0].description


def test_fires_dc_account_from_foreign_ip_and_wrong_workstation():
    evs = [tgt(0, "corp\\dc02$", "10.0.0.2"),
           ntlm(10, account="corp\\dc02$", host="dc02", kl=128, ip="10.0.0.66"),
           ntlm(20, account="corp\\ws01$", host="kali", kl=128, ip="10.0.0.67")]
    alerts = run(evs, domain_controllers=["dc02.corp.local"])
    assert sorted(a.entity for a in alerts) == ["corp\\dc02$", "corp\\ws01$"]


def test_negative_benign_machine_logons():
    evs = [tgt(0, "corp\\dc02$", "10.0.0.2"),
           ntlm(10, account="corp\\dc02$", host="dc02", kl=128, ip="10.0.0.2"),   # own IP
           ntlm(11, account="corp\\ws05$", host="ws05", kl=128, ip="10.0.0.5"),   # NTLMv2
           ntlm(12, kl=0, proto="kerberos"),                                      # Kerberos
           ntlm(13, account="corp\\alice", host="ws05", flags=NULL_SUBJECT),      # user
           ntlm(14, ip="", flags=MACHINE | NULL_SUBJECT | 16)]                    # local
    assert run(evs, domain_controllers=["dc02.corp.local"]) == []


def test_any_machine_ip_parameter():
    evs = [tgt(0, "corp\\ws09$", "10.0.0.9"),
           ntlm(10, account="corp\\ws09$", host="ws09", kl=128, ip="10.0.0.66")]
    assert run(evs) == []
    assert len(run(evs, sensitivity="medium")) == 1
    assert len(run(evs, detectors={DID: DetectorOverride(params={"any_machine_ip": 1})})) == 1


@pytest.mark.samples
def test_samples_detect_privexchange():
    path = SAMPLES / "evtx-attack-samples" / "Privilege Escalation" / "privexchange_dirkjan.evtx"
    if not path.exists():
        pytest.skip("samples not available (../shared/samples)")
    from collectors.files import iter_paths
    from stream.scan import scan_records
    alerts = scan_records(iter_paths([str(path)]), DetectionSettings(), 4)
    assert DID in {a.detector for a in alerts}
