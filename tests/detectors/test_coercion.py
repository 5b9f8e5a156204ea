"""coercion: efsrpc/lsass/netdfs/spoolss pipes; weak pipes followed by relayed DC auth."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.scan import OfflinePipeline
from stream.settings import DetectionSettings, DetectorOverride

DID = "coercion"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"


def pipe(t, name, ip="10.0.0.66", computer="dc01.corp.local", account="corp\\bob", flags=0):
    return {"time_ms": T0 + int(t * 1000), "event_id": 5145, "computer": computer,
            "channel": "security", "account": account, "src_ip": ip,
            "share": "\\\\*\\IPC$", "relative_target": name, "access_mask": 0x12019F,
            "flags": flags}


def dc_logon(t, ip="10.0.0.66", proto="ntlm"):
    return {"time_ms": T0 + int(t * 1000), "event_id": 4624, "computer": "ca01.corp.local",
            "account": "corp\\dc01$", "src_ip": ip, "src_host": "dc01", "logon_type": 3,
            "protocol": proto, "key_length": 0, "flags": 1 | (1 << 5)}


def run(events, **kw):
    kw.setdefault("enabled", [DID])
    pipe_ = OfflinePipeline(DetectionSettings(**kw), partitions=4)
    pipe_.feed(sorted(events, key=lambda e: e["time_ms"]))
    return [a for a in pipe_.finish() if a.detector == DID]


@pytest.mark.parametrize("name", ["efsrpc", "lsass", "netdfs", "spoolss"])
def test_positive_coercion_pipe_on_dc(name):
    alerts = run([pipe(0, name)])
    assert len(alerts) == 1
    assert alerts[0].entity == "10.0.0.66"
    assert name in alerts[0].description


def test_fires_weak_pipe_followed_by_relayed_dc_auth():
    evs = [pipe(0, "lsarpc"), dc_logon(3)]
    alerts = run(evs, domain_controllers=["dc01.corp.local"])
    assert len(alerts) == 1 and alerts[0].evidence.event_ids == [4624]


def test_negative_lsarpc_alone_and_print_server_clients():
    evs = [pipe(0, "lsarpc"), pipe(1, "samr"), pipe(2, "srvsvc")]
    # a print server: many clients open spoolss; only the first ones alert
    evs += [pipe(10 + i, "spoolss", ip=f"10.1.0.{i}", computer="print01.corp.local")
            for i in range(12)]
    alerts = run(evs)
    assert all(a.entity.startswith("10.1.0.") for a in alerts)
    assert len(alerts) < 12


def test_negative_benign_local_admin_and_kerberos():
    evs = [pipe(0, "efsrpc", ip="", flags=16),                         # local
           pipe(1, "lsarpc", ip="10.0.0.70"), dc_logon(2, ip="10.0.0.70", proto="kerberos")]
    ev = pipe(3, "spoolss", ip="10.0.0.71")
    ev["src_host"] = "adm01"
    evs.append(ev)
    assert run(evs, admin_hosts=["adm01"], domain_controllers=["dc01.corp.local"]) == []


def test_print_server_clients_parameter():
    evs = [pipe(i, "spoolss", ip=f"10.1.0.{i}", computer="print01.corp.local")
           for i in range(24)]
    few = run(evs)  # learned per partition: a few clients alert, then the server is known
    more = run(evs, detectors={DID: DetectorOverride(params={"print_server_clients": 50})})
    assert len(more) == 24 and len(few) < 24


@pytest.mark.samples
def test_samples_detect_spoolsample():
    path = SAMPLES / "evtx-attack-samples" / "Lateral Movement" / "spoolsample_5145.evtx"
    if not path.exists():
        pytest.skip("samples not available (../shared/samples)")
    from collectors.files import iter_paths
    from stream.scan import scan_records
    alerts = scan_records(iter_paths([str(path)]), DetectionSettings(), 4)
    assert DID in {a.detector for a in alerts}
