"""abnormal-logon: sensitive account from a never-used source / at an unusual hour."""

from __future__ import annotations

from stream.scan import OfflinePipeline
from stream.settings import DetectionSettings, DetectorOverride

DID = "abnormal-logon"
T0 = 1_700_000_000_000 - (1_700_000_000_000 % 86_400_000)  # midnight UTC
H = 3600
DAY = 86_400


def auth(t, account="corp\\adm-alice", ip="10.0.0.5", eid=4624, lt=3, flags=0, status=0):
    return {"time_ms": T0 + int(t * 1000), "event_id": eid, "computer": "srv01.corp.local",
            "channel": "security", "account": account, "src_ip": ip, "logon_type": lt,
            "flags": flags, "status": status, "protocol": "kerberos"}


def run(events, **kw):
    kw.setdefault("enabled", [DID])
    kw.setdefault("sensitive_accounts", ["adm-alice"])
    pipe = OfflinePipeline(DetectionSettings(**kw), partitions=4)
    pipe.feed(sorted(events, key=lambda e: e["time_ms"]))
    return [a for a in pipe.finish() if a.detector == DID]


def office_profile(account="corp\\adm-alice", days=10):
    # weekday office hours 08-17 UTC from two hosts
    return [auth(d * DAY + h * H + 60, account=account, ip=ip, eid=eid)
            for d in range(days) for h in range(8, 17, 2)
            for ip, eid in (("10.0.0.5", 4624), ("10.0.0.6", 4769))]


def test_positive_new_source_after_learning():
    evs = office_profile() + [auth(10 * DAY + 10 * H, ip="10.9.9.9")]
    alerts = run(evs)
    assert len(alerts) == 1
    assert alerts[0].entity == "corp\\adm-alice"
    assert alerts[0].entities.ips == ["10.9.9.9"]
    assert "never used" in alerts[0].description


def test_fires_unusual_hour_and_builtin_administrator():
    evs = office_profile() + [auth(10 * DAY + 3 * H, ip="10.0.0.5")]     # 03:00 UTC
    evs += office_profile("corp\\administrator") + [
        auth(10 * DAY + 10 * H, account="corp\\administrator", ip="10.8.8.8")]
    alerts = run(evs)
    assert sorted(a.entity for a in alerts) == ["corp\\adm-alice", "corp\\administrator"]
    hour = [a for a in alerts if a.entity == "corp\\adm-alice"][0]
    assert "hour" in hour.description


def test_negative_learning_period_non_sensitive_and_benign():
    evs = office_profile(days=3) + [auth(3 * DAY + 10 * H, ip="10.9.9.9")]   # in learning
    evs += office_profile("corp\\bob") + [auth(10 * DAY + 10 * H, account="corp\\bob",
                                               ip="10.9.9.9")]             # not sensitive
    evs += office_profile("corp\\carol")
    evs += [auth(10 * DAY + 10 * H, account="corp\\carol", ip="10.9.9.9", flags=2,
                 status=0xC000006A)]                                       # failure
    evs += [auth(10 * DAY + 11 * H, ip="", flags=16)]                     # local
    evs += [auth(10 * DAY + 11 * H, ip="10.0.0.5", lt=5)]                 # service logon
    local = auth(10 * DAY + 12 * H, ip="", eid=4776)
    local["src_host"] = "srv01"                                           # the DC itself
    evs += [local]
    evs += [auth(10 * DAY + 12 * H, account="corp\\adm-zed", ip="10.9.9.9")]  # no profile
    assert run(evs, sensitive_accounts=["adm-alice", "carol", "adm-zed"]) == []


def test_low_sensitivity_profiles_every_account():
    evs = office_profile("corp\\bob", days=2) + [
        auth(2 * DAY + 10 * H, account="corp\\bob", ip="10.9.9.9")]
    assert run(evs) == []
    low = run(evs, sensitivity="low")
    # low = test mode: the profile is young, so earlier new sources may alert too; the
    # anomalous 10.9.9.9 logon must be among them
    assert any("10.9.9.9" in a.evidence.details.get("sources", []) for a in low)
    assert len(run(evs, learning_days=1, detectors={DID: DetectorOverride(
        params={"all_accounts": 1})})) == 1
