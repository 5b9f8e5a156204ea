"""lateral-movement-fanout: one account to many hosts in a short time, above its baseline."""

from __future__ import annotations

from stream.scan import OfflinePipeline
from stream.settings import DetectionSettings, DetectorOverride

DID = "lateral-movement-fanout"
T0 = 1_700_000_000_000 - (1_700_000_000_000 % 86_400_000)
H = 3600
DAY = 86_400


def logon(t, host, account="corp\\bob", lt=3, flags=0):
    return {"time_ms": T0 + int(t * 1000), "event_id": 4624, "computer": f"{host}.corp.local",
            "channel": "security", "account": account, "src_ip": "10.0.0.5", "logon_type": lt,
            "protocol": "kerberos", "flags": flags}


def tgs(t, host, account="corp\\bob", flags=8, status=0):
    return {"time_ms": T0 + int(t * 1000), "event_id": 4769, "computer": "dc01.corp.local",
            "channel": "security", "account": account, "src_ip": "10.0.0.5",
            "service": f"{host}$", "flags": flags, "status": status}


def run(events, **kw):
    kw.setdefault("enabled", [DID])
    kw.setdefault("learning_days", 0)
    pipe = OfflinePipeline(DetectionSettings(**kw), partitions=4)
    pipe.feed(sorted(events, key=lambda e: e["time_ms"]))
    return [a for a in pipe.finish() if a.detector == DID]


def sweep(t0, n, account="corp\\bob"):
    # half via network logons on the targets, half via service tickets on the DC (the same
    # host seen both ways counts once)
    evs = []
    for i in range(n):
        evs.append(logon(t0 + i * 20, f"srv{i:02d}", account))
        evs.append(tgs(t0 + i * 20 + 1, f"SRV{i:02d}", account))
    return evs


def test_positive_sweep_of_20_hosts():
    alerts = run(sweep(DAY, 20))
    assert len(alerts) == 1
    a = alerts[0]
    assert a.entity == "corp\\bob"
    assert a.evidence.details["distinct"] == 20


def test_negative_few_hosts_dc_and_machine_accounts():
    evs = sweep(DAY, 10)                                                  # below 15
    evs += [logon(DAY + i, "dc01", "corp\\carol") for i in range(30)]      # DC only
    evs += [logon(DAY + i * 10, f"srv{i:02d}", "corp\\ws01$", flags=1) for i in range(30)]
    evs += [tgs(DAY + i, "krbtgt", "corp\\dave", flags=0) for i in range(30)]
    assert run(evs, domain_controllers=["dc01.corp.local"]) == []


def test_baseline_suppresses_routine_admin_sweeps():
    # an account that touches 20 hosts every day: baseline 20 -> needs 100 at 5x
    evs = []
    for d in range(4):
        evs += sweep(d * DAY + 9 * H, 20, "corp\\patcher")
    assert len(run(evs)) == 1            # only the first day (no baseline yet)


def test_learning_and_threshold_parameter():
    evs = sweep(DAY, 20)
    assert run(evs, learning_days=7) == []                     # high: learning
    assert len(run(evs, learning_days=7, sensitivity="medium")) == 1
    small = sweep(DAY, 8)
    assert run(small) == []
    assert len(run(small, detectors={DID: DetectorOverride(params={"threshold": 8})})) == 1
