"""smb-session-enumeration: srvsvc on a DC, or a burst of enumeration pipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.settings import DetectionSettings, DetectorOverride
from _harness import run_detector

DID = "smb-session-enumeration"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"


def pipe(t, name, ip="10.0.0.66", computer="srv01.corp.local", account="corp\\bob", flags=0):
    return {"time_ms": T0 + int(t * 1000), "event_id": 5145, "computer": computer,
            "channel": "security", "account": account, "src_ip": ip,
            "share": "\\\\*\\IPC$", "relative_target": name, "access_mask": 0x12019F,
            "flags": flags}


def run(events, **kw):
    return run_detector(DID, events, **kw)


def test_positive_srvsvc_on_known_dc():
    alerts = run([pipe(0, "srvsvc", computer="dc01.corp.local")],
                 domain_controllers=["dc01.corp.local"])
    assert len(alerts) == 1 and alerts[0].entity == "10.0.0.66"
    assert "domain controller" in alerts[0].description


def test_fires_psloggedon_like_burst_on_any_server():
    alerts = run([pipe(0, "winreg"), pipe(0.01, "lsarpc"), pipe(0.02, "srvsvc")])
    assert len(alerts) == 1


def test_negative_psexec_like_and_single_pipes_on_member_servers():
    evs = [pipe(0, "winreg"), pipe(0.5, "srvsvc"), pipe(1, "svcctl")]      # 2 recon pipes
    evs += [pipe(0, "srvsvc", ip="10.0.0.7"), pipe(100, "lsarpc", ip="10.0.0.7"),
            pipe(200, "samr", ip="10.0.0.7")]                               # spread out
    assert run(evs) == []


def test_negative_machine_account_admin_host_and_local():
    dc = dict(computer="dc01.corp.local")
    evs = [pipe(0, "srvsvc", account="corp\\ws01$", flags=1, **dc)]
    evs += [pipe(0, "srvsvc", ip="10.0.5.5", **dc)]
    evs += [pipe(0, "srvsvc", ip="", flags=16, **dc)]
    assert run(evs, domain_controllers=["dc01"], admin_hosts=["10.0.5.5"]) == []


def test_sensitivity_low_two_pipes():
    evs = [pipe(0, "winreg"), pipe(0.5, "srvsvc")]
    assert run(evs) == []
    assert len(run(evs, sensitivity="low")) == 1
    assert len(run(evs, detectors={DID: DetectorOverride(params={"burst_pipes": 2})})) == 1


@pytest.mark.samples
@pytest.mark.parametrize("rel", ["evtx-attack-samples/Discovery/discovery_psloggedon.evtx",
                                 "evtx-attack-samples/Discovery/discovery_bloodhound.evtx"])
def test_positive_samples(rel):
    if not SAMPLES.exists():
        pytest.skip(f"samples not available at {SAMPLES}")
    from collectors.files import iter_paths
    from stream.scan import scan_records
    alerts = scan_records(iter_paths([str(SAMPLES / rel)]), DetectionSettings(), 4)
    assert DID in {a.detector for a in alerts}


@pytest.mark.samples
def test_negative_sample_psexec_is_not_session_enumeration():
    if not SAMPLES.exists():
        pytest.skip(f"samples not available at {SAMPLES}")
    from collectors.files import iter_paths
    from stream.scan import scan_records
    path = SAMPLES / "evtx-attack-samples/Lateral Movement/LM_renamed_psexecsvc_5145.evtx"
    alerts = scan_records(iter_paths([str(path)]), DetectionSettings(), 4)
    assert DID not in {a.detector for a in alerts}
