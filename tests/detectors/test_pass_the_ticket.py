"""pass-the-ticket: ticket used from an IP that obtained no TGT while another IP did."""

from __future__ import annotations

from stream.scan import OfflinePipeline
from stream.settings import DetectionSettings, DetectorOverride

DID = "pass-the-ticket"
T0 = 1_700_000_000_000
H = 3600


def ev(t, eid, ip, account="corp\\alice", status=0, flags=0, **kw):
    d = {"time_ms": T0 + int(t * 1000), "event_id": eid, "computer": "dc01.corp.local",
         "channel": "security", "account": account, "src_ip": ip, "status": status,
         "flags": flags, "service": "cifs" if eid == 4769 else "krbtgt"}
    d.update(kw)
    return d


def run(events, **kw):
    kw.setdefault("enabled", [DID])
    pipe = OfflinePipeline(DetectionSettings(**kw), partitions=4)
    pipe.feed(sorted(events, key=lambda e: e["time_ms"]))
    return [a for a in pipe.finish() if a.detector == DID]


def test_positive_tgs_from_other_ip():
    evs = [ev(0, 4768, "10.0.0.5"), ev(60, 4769, "10.0.0.5"),
           ev(2 * H, 4769, "10.0.0.66", service="srv01$"),
           ev(2 * H + 5, 4769, "10.0.0.66", service="srv02$")]
    alerts = run(evs)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.entity == "corp\\alice" and a.evidence.count == 2
    assert a.entities.ips == ["10.0.0.66"]
    assert a.first_seen_ms == T0  # evidence starts at the TGT issued to the other IP


def test_fires_on_kerberos_network_logon():
    evs = [ev(0, 4768, "10.0.0.5"),
           ev(30, 4624, "10.0.0.66", logon_type=3, protocol="kerberos",
              computer="srv01.corp.local")]
    assert len(run(evs)) == 1


def test_negative_benign_same_ip_expired_family_machine():
    evs = [
        ev(0, 4768, "10.0.0.5"), ev(10, 4769, "10.0.0.5"),                # same IP
        ev(11 * H, 4769, "10.0.0.66"),                                    # after lifetime
        ev(0, 4768, "10.0.1.5", account="corp\\bob"),
        ev(20, 4769, "fe80::1", account="corp\\bob"),                     # other family
        ev(0, 4768, "10.0.2.5", account="corp\\ws01$", flags=1),
        ev(20, 4769, "10.0.2.6", account="corp\\ws01$", flags=1),         # machine
        ev(20, 4769, "10.0.3.6", account="corp\\carol"),                  # no TGT at all
        ev(0, 4768, "10.0.4.5", account="corp\\dave"),
        ev(20, 4769, "10.0.4.6", account="corp\\dave", status=0x1F, flags=2),  # failed
    ]
    assert run(evs) == []


def test_second_tgt_for_new_ip_is_quiet():
    evs = [ev(0, 4768, "10.0.0.5"), ev(100, 4768, "10.0.0.66"), ev(200, 4769, "10.0.0.66")]
    assert run(evs) == []


def test_lifetime_parameter_override():
    evs = [ev(0, 4768, "10.0.0.5"), ev(2 * H, 4769, "10.0.0.66")]
    assert len(run(evs)) == 1
    assert run(evs, detectors={DID: DetectorOverride(params={"tgt_lifetime_h": 1})}) == []
