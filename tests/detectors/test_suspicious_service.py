"""suspicious-service: services installed with suspicious image paths (7045 / 4697)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.scan import OfflinePipeline
from stream.settings import DetectionSettings

DID = "suspicious-service"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"


def svc(t, name, image, eid=7045, computer="srv01.corp.local"):
    d = {"time_ms": T0 + int(t * 1000), "event_id": eid, "computer": computer,
         "channel": "system" if eid == 7045 else "security", "service_name": name,
         "image_path": image, "target_account": "localsystem"}
    if eid == 4697:
        d["account"] = "corp\\bob"
    return d


def run(events, **kw):
    kw.setdefault("enabled", [DID])
    pipe = OfflinePipeline(DetectionSettings(**kw), partitions=4)
    pipe.feed(sorted(events, key=lambda e: e["time_ms"]))
    return [a for a in pipe.finish() if a.detector == DID]


@pytest.mark.parametrize("image", [
    "%COMSPEC% /Q /c echo whoami ^> \\\\127.0.0.1\\C$\\__output 2^>^&1 > %TEMP%\\execute.bat",
    "powershell -nop -w hidden -enc SQBFAFgA",
    "cmd.exe",
    "calc.exe",
    "%SystemRoot%\\xKqPzRtM.exe",
    "C:\\Windows\\Temp\\svc.exe",
    "C:\\Users\\Public\\mimidrv.sys",
])
def test_positive_suspicious_images(image):
    alerts = run([svc(0, "evil", image)])
    assert len(alerts) == 1
    assert alerts[0].entity == "evil on srv01.corp.local"


def test_detect_4697_and_grouping_per_host_and_service():
    evs = [svc(0, "evil", "cmd.exe /c calc", eid=4697), svc(1, "evil", "cmd.exe /c calc"),
           svc(2, "evil", "cmd.exe /c calc", computer="srv02.corp.local")]
    alerts = run(evs)
    assert sorted((a.entity, a.evidence.count) for a in alerts) == [
        ("evil on srv01.corp.local", 2), ("evil on srv02.corp.local", 1)]


@pytest.mark.parametrize("image", [
    "C:\\Windows\\System32\\svchost.exe -k netsvcs -p",
    "\"C:\\Program Files\\Vendor\\agent.exe\" --service",
    "System32\\drivers\\vendor.sys",
    "\\SystemRoot\\System32\\drivers\\disk.sys",
    "\"C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.2\\MsMpEng.exe\"",
    "C:\\Windows\\explorer.exe",
])
def test_negative_benign_images(image):
    assert run([svc(0, "good", image)]) == []


@pytest.mark.samples
@pytest.mark.parametrize("rel", [
    "Lateral Movement/LM_Remote_Service02_7045.evtx",
    "Privilege Escalation/System_7045_namedpipe_privesc.evtx"])
def test_samples_detect(rel):
    path = SAMPLES / "evtx-attack-samples" / rel
    if not path.exists():
        pytest.skip("samples not available (../shared/samples)")
    from collectors.files import iter_paths
    from stream.scan import scan_records
    alerts = scan_records(iter_paths([str(path)]), DetectionSettings(), 4)
    assert DID in {a.detector for a in alerts}
