"""shadow-credentials: msDS-KeyCredentialLink written by someone other than the object."""

from __future__ import annotations

from stream.settings import DetectionSettings, Exclusions
from _harness import run_detector

DID = "shadow-credentials"
T0 = 1_700_000_000_000


def write(t, obj="CN=Alice,CN=Users,DC=corp,DC=local", account="corp\\mallory",
          attr="msDS-KeyCredentialLink", flags=0):
    return {"time_ms": T0 + int(t * 1000), "event_id": 5136, "computer": "dc01.corp.local",
            "channel": "security", "account": account, "object": obj, "object_class": "user",
            "attribute": attr, "value": "B:828:0002000020000...", "flags": flags}


def run(events, **kw):
    return run_detector(DID, events, **kw)


def test_positive_user_writes_key_credential_of_another_user():
    alerts = run([write(0)])
    assert len(alerts) == 1
    a = alerts[0]
    assert a.entity == "corp\\mallory" and "CN=Alice" in a.description
    assert a.mdi_alert_id == ["2431"]


def test_fires_machine_account_writing_another_computer():
    alerts = run([write(0, obj="CN=SRV02,OU=Servers,DC=corp,DC=local",
                        account="corp\\ws01$", flags=1)])
    assert len(alerts) == 1


def test_negative_self_registration_sync_account_and_other_attributes():
    evs = [write(0, obj="CN=WS01,OU=Workstations,DC=corp,DC=local", account="corp\\ws01$",
                 flags=1),
           write(1, account="corp\\msol_0123abcd"),
           write(2, attr="description")]
    assert run(evs, sync_accounts=["msol_*"]) == []


def test_excluded_device_registration_service():
    assert run([write(0, account="corp\\adfs-drs")],
               exclude=Exclusions(accounts=["corp\\adfs-drs"])) == []
