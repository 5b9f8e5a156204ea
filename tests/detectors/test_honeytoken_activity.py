"""honeytoken-activity: any event involving a configured decoy account."""

from __future__ import annotations

from stream.scan import OfflinePipeline
from stream.settings import DetectionSettings, DetectorOverride, Exclusions

DID = "honeytoken-activity"
T0 = 1_700_000_000_000
# bare names match `domain\\name` accounts AND the bare 4769 ServiceName
HONEY = ["svc-backup-old", "S-1-5-21-1-2-3-4242", "cn=svc-backup-old,*"]


def ev(t, eid, **kw):
    return {"time_ms": T0 + int(t * 1000), "event_id": eid, "computer": "dc01.corp.local",
            "channel": "security", **kw}


def run(events, **kw):
    kw.setdefault("enabled", [DID])
    kw.setdefault("honeytoken_accounts", HONEY)
    p = OfflinePipeline(DetectionSettings(**kw), partitions=4)
    p.feed(sorted(events, key=lambda e: e["time_ms"]))
    return [a for a in p.finish() if a.detector == DID]


def test_positive_honeytoken_logon_attempt():
    alerts = run([ev(0, 4771, account="corp\\svc-backup-old", src_ip="10.0.0.66",
                     status=0x18, flags=2)])
    assert len(alerts) == 1
    assert alerts[0].entity == "corp\\svc-backup-old"
    assert alerts[0].evidence.details["honeytoken"] == "corp\\svc-backup-old"


def test_fires_on_kerberoast_of_decoy_spn_sam_read_and_ds_change():
    evs = [ev(0, 4769, account="corp\\mallory", service="svc-backup-old",
              src_ip="10.0.0.66", ticket_encryption=0x17),
           ev(1, 4661, account="corp\\mallory", object="S-1-5-21-1-2-3-4242",
              object_class="SAM_USER"),
           ev(2, 5136, account="corp\\mallory", attribute="description",
              object="CN=svc-backup-old,OU=Svc,DC=corp,DC=local")]
    alerts = run(evs)
    assert len(alerts) == 1 and alerts[0].entity == "corp\\mallory"
    assert alerts[0].evidence.count == 3


def test_negative_other_accounts_and_no_configuration():
    evs = [ev(i, 4624, account=f"corp\\user{i}", src_ip="10.0.0.5", logon_type=3)
           for i in range(10)]
    assert run(evs) == []
    decoy = [ev(0, 4624, account="corp\\svc-backup-old", src_ip="10.0.0.5", logon_type=3)]
    assert run(decoy, honeytoken_accounts=[]) == []


def test_excluded_maintenance_account():
    evs = [ev(0, 4738, account="corp\\idm-sync", target_account="corp\\svc-backup-old")]
    assert len(run(evs)) == 1
    ov = {DID: DetectorOverride(exclude=Exclusions(accounts=["corp\\idm-sync"]))}
    assert run(evs, detectors=ov) == []
