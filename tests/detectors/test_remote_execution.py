"""remote-execution: svcctl/atsvc/PsExec-like pipes, ADMIN$ executable writes, atexec tasks."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.scan import OfflinePipeline
from stream.settings import DetectionSettings

DID = "remote-execution"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"


def share(t, target, sh="\\\\*\\IPC$", ip="10.0.0.66", mask=0x12019F, account="corp\\bob",
          flags=0, computer="srv01.corp.local"):
    return {"time_ms": T0 + int(t * 1000), "event_id": 5145, "computer": computer,
            "channel": "security", "account": account, "src_ip": ip, "share": sh,
            "relative_target": target, "access_mask": mask, "flags": flags}


def run(events, **kw):
    kw.setdefault("enabled", [DID])
    pipe = OfflinePipeline(DetectionSettings(**kw), partitions=4)
    pipe.feed(sorted(events, key=lambda e: e["time_ms"]))
    return [a for a in pipe.finish() if a.detector == DID]


def test_positive_psexec_like_sequence():
    evs = [share(0, "\\", sh="\\\\*\\ADMIN$", mask=0x100080),
           share(1, "svc-x.exe", sh="\\\\*\\ADMIN$", mask=0x120196),
           share(2, "svcctl"),
           share(3, "svc-x-HOST-123-stdin", mask=0x120196)]
    alerts = run(evs)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.entity == "10.0.0.66" and a.evidence.count == 3
    assert a.key == "source"


@pytest.mark.parametrize("pipe", ["atsvc", "PSEXESVC", "RemCom_communicaton", "svcctl"])
def test_fires_on_single_pipe(pipe):
    assert len(run([share(0, pipe)])) == 1


def test_detect_atexec_task_and_service_tool():
    task = {"time_ms": T0, "event_id": 4698, "computer": "srv01.corp.local",
            "account": "corp\\bob", "object": "\\AbCdEfGh",
            "value": "<Command>cmd.exe</Command><Arguments>/C whoami &gt; "
                     "%windir%\\Temp\\AbCdEfGh.tmp 2&gt;&amp;1</Arguments>"}
    svc = {"time_ms": T0 + 5, "event_id": 7045, "computer": "srv02.corp.local",
           "channel": "system", "service_name": "PSEXESVC",
           "image_path": "%SystemRoot%\\PSEXESVC.exe"}
    alerts = run([task, svc])
    assert sorted(a.entity for a in alerts) == ["srv01.corp.local", "srv02.corp.local"]


def test_negative_benign_share_access():
    evs = [
        share(0, "srvsvc"), share(1, "winreg"), share(2, "lsarpc"),            # not exec
        share(3, "report.exe", sh="\\\\*\\ADMIN$", mask=0x120089),             # read only
        share(4, "Users\\bob\\tool.exe", sh="\\\\*\\C$", mask=0x120196),      # user folder
        share(5, "svcctl", ip="", flags=16),                                    # local
        share(6, "svcctl", account="corp\\sccm01$", flags=1),                  # machine
        {"time_ms": T0, "event_id": 7045, "computer": "srv01.corp.local",
         "service_name": "Spooler", "image_path": "C:\\Windows\\System32\\spoolsv.exe"},
    ]
    assert run(evs) == []


def test_admin_host_is_quiet():
    evs = [share(0, "svcctl", ip="10.0.0.66")]
    evs[0]["src_host"] = "jump01"
    assert run(evs, admin_hosts=["jump01"]) == []
    assert len(run(evs)) == 1


@pytest.mark.samples
@pytest.mark.parametrize("name", [
    "LM_Remote_Service01_5145_svcctl.evtx", "LM_renamed_psexecsvc_5145.evtx",
    "LM_REMCOM_5145_TargetHost.evtx", "LM_ScheduledTask_ATSVC_target_host.evtx"])
def test_samples_detect(name):
    path = SAMPLES / "evtx-attack-samples" / "Lateral Movement" / name
    if not path.exists():
        pytest.skip("samples not available (../shared/samples)")
    from collectors.files import iter_paths
    from stream.scan import scan_records
    alerts = scan_records(iter_paths([str(path)]), DetectionSettings(), 4)
    assert DID in {a.detector for a in alerts}
