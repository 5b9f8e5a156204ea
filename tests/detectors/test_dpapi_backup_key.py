"""dpapi-backup-key: BCKUPKEY secret read (4662) or protected_storage pipe (5145)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.settings import DetectionSettings, Exclusions
from _harness import run_detector

DID = "dpapi-backup-key"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"


def secret(t, obj="Policy\\Secrets\\G$BCKUPKEY_PREFERRED", account="corp\\mallory", flags=0):
    return {"time_ms": T0 + int(t * 1000), "event_id": 4662, "computer": "dc01.corp.local",
            "channel": "security", "account": account, "object": obj,
            "object_class": "SecretObject", "access_mask": 2, "flags": flags}


def pipe(t, name="protected_storage", ip="10.0.0.66", account="corp\\mallory", flags=0):
    return {"time_ms": T0 + int(t * 1000), "event_id": 5145, "computer": "dc01.corp.local",
            "channel": "security", "account": account, "src_ip": ip, "share": "\\\\*\\IPC$",
            "relative_target": name, "flags": flags}


def run(events, **kw):
    return run_detector(DID, events, **kw)


def test_positive_backup_key_secret_read():
    alerts = run([secret(0), secret(0.1, "Policy\\Secrets\\G$BCKUPKEY_a0feda20-878f")])
    assert len(alerts) == 1
    assert alerts[0].entity == "corp\\mallory" and alerts[0].evidence.count == 2


def test_fires_protected_storage_pipe():
    alerts = run([pipe(0)])
    assert len(alerts) == 1 and "protected_storage" in alerts[0].description


def test_negative_other_secrets_machine_and_dc_sources():
    evs = [secret(0, "Policy\\Secrets\\$MACHINE.ACC", account="nt authority\\local service"),
           secret(1, account="corp\\dc01$", flags=1),
           secret(2, account="nt authority\\system"),
           pipe(3, "lsarpc"), pipe(4, account="corp\\ws01$", flags=1),
           pipe(5, ip="", flags=16)]
    assert run(evs) == []


def test_excluded_host_ip():
    assert run([pipe(0)], exclude=Exclusions(ips=["10.0.0.66"])) == []


@pytest.mark.samples
@pytest.mark.parametrize("rel", [
    "evtx-attack-samples/Credential Access/CA_protectedstorage_5145_rpc_masterkey.evtx",
    "otrf-security-datasets/empire_mimikatz_backupkeys_dcerpc_smb_lsarpc.json"])
def test_positive_samples(rel):
    if not SAMPLES.exists():
        pytest.skip(f"samples not available at {SAMPLES}")
    from collectors.files import iter_paths
    from stream.scan import scan_records
    alerts = scan_records(iter_paths([str(SAMPLES / rel)]), DetectionSettings(), 4)
    assert DID in {a.detector for a in alerts}
