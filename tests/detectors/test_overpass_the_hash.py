"""overpass-the-hash: RC4 TGT downgrade / RC4 TGT from a new host (learned), seclogo."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.scan import OfflinePipeline
from stream.settings import DetectionSettings, DetectorOverride

DID = "overpass-the-hash"
T0 = 1_700_000_000_000
DAY = 86_400
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"


def tgt(t, account="corp\\alice", enc=0x12, ip="10.0.0.5", status=0, flags=0):
    return {"time_ms": T0 + int(t * 1000), "event_id": 4768, "computer": "dc01.corp.local",
            "channel": "security", "account": account, "ticket_encryption": enc,
            "preauth_type": 2, "status": status, "src_ip": ip, "service": "krbtgt",
            "flags": flags}


def run(events, **kw):
    kw.setdefault("enabled", [DID])
    kw.setdefault("learning_days", 7)
    pipe = OfflinePipeline(DetectionSettings(**kw), partitions=4)
    pipe.feed(sorted(events, key=lambda e: e["time_ms"]))
    return [a for a in pipe.finish() if a.detector == DID]


def profile():
    return [tgt(i * 3 * 3600) for i in range(20)]  # AES TGTs from the usual host, days 0..2


def test_positive_rc4_downgrade_after_learning():
    evs = profile() + [tgt(8 * DAY, enc=0x17, ip="10.0.0.5")]
    alerts = run(evs)
    assert len(alerts) == 1
    assert alerts[0].entity == "corp\\alice"
    assert "downgrade" in alerts[0].description


def test_fires_rc4_from_new_host_without_aes_history():
    evs = [tgt(i * 3600, account="corp\\legacy", enc=0x17) for i in range(5)]
    evs.append(tgt(8 * DAY, account="corp\\legacy", enc=0x17, ip="10.9.9.9"))
    alerts = run(evs)
    assert [a.entity for a in alerts] == ["corp\\legacy"]
    assert "does not normally use" in alerts[0].description


def test_negative_learning_period_and_benign():
    evs = profile() + [tgt(3 * DAY, enc=0x17)]                 # inside learning: quiet
    evs += [tgt(8 * DAY + i, enc=0x12, ip="10.7.7.7") for i in range(3)]  # AES, new host
    evs += [tgt(9 * DAY, account="corp\\ws01$", enc=0x17, flags=1)]        # machine
    evs += [tgt(9 * DAY + 5, enc=0x17, status=0x6, flags=2)]               # failed
    evs += [tgt(i * 3600, account="corp\\legacy", enc=0x17) for i in range(5)]
    evs += [tgt(8 * DAY, account="corp\\legacy", enc=0x17)]   # RC4-only account, known host
    assert run(evs) == []


def test_seclogo_indicator_only_below_high():
    ev = {"time_ms": T0, "event_id": 4624, "computer": "ws01.corp.local",
          "account": "corp\\alice", "logon_type": 9, "logon_process": "seclogo",
          "protocol": "negotiate", "auth_package": "Negotiate", "flags": 16}
    assert run([ev]) == []
    assert len(run([ev], sensitivity="medium")) == 1
    assert len(run([ev], detectors={DID: DetectorOverride(
        params={"seclogo_indicator": 1})})) == 1


def test_medium_ignores_learning():
    evs = profile() + [tgt(2 * DAY + 10, enc=0x17)]
    assert run(evs) == []
    assert len(run(evs, sensitivity="medium")) == 1


@pytest.mark.samples
def test_samples_detect_pth_file_at_medium():
    path = (SAMPLES / "evtx-attack-samples" / "Lateral Movement"
            / "LM_4624_mimikatz_sekurlsa_pth_source_machine.evtx")
    if not path.exists():
        pytest.skip("samples not available (../shared/samples)")
    from collectors.files import iter_paths
    from stream.scan import scan_records
    alerts = scan_records(iter_paths([str(path)]), DetectionSettings(sensitivity="medium"), 4)
    assert DID in {a.detector for a in alerts}
