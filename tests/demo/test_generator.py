"""The synthetic domain generator behind ``itdr demo``: determinism, ground truth, records
that normalize, and the offline check that keeps the demo honest (every injected attack is
detected, nothing else fires) on the exact streaming code path (``OfflinePipeline``)."""

from __future__ import annotations

import hashlib
from collections import Counter

import orjson
import pytest

from collectors.normalize import EVENT_TABLE, Normalizer, channel_ok
from detectors.base import load_catalogue
from stream.generator import DomainSimulator, InjectedAttack, match_alerts, scan_simulation
from stream.settings import DetectionSettings

# The v1 detector contract (docs/detections.md): ground truth may only use these ids.
CONTRACT_IDS = {
    "account-enumeration", "samr-recon", "ldap-recon", "smb-session-enumeration",
    "honeytoken-activity", "brute-force", "password-spray", "kerberoasting", "asrep-roasting",
    "dcsync", "dpapi-backup-key", "shadow-credentials", "samaccountname-spoofing",
    "pass-the-hash", "overpass-the-hash", "pass-the-ticket", "remote-execution",
    "suspicious-service", "coercion", "ntlm-relay", "golden-ticket", "dcshadow",
    "sensitive-group-change", "sid-history-injection", "adminsdholder-change",
    "domain-acl-change", "rbcd-change", "delegation-change", "risky-account-change",
    "dsrm-password-change", "zerologon", "audit-tampering", "abnormal-logon",
    "lateral-movement-fanout",
}
EVENTS = 20_000


def _digest(sim: DomainSimulator) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    for rec in sim.records():
        h.update(orjson.dumps(rec, option=orjson.OPT_SORT_KEYS))
        n += 1
    return h.hexdigest(), n


@pytest.fixture(scope="module")
def sim() -> DomainSimulator:
    return DomainSimulator(seed=7, events=EVENTS)


@pytest.fixture(scope="module")
def records(sim) -> list[dict]:
    return list(sim.records())


def test_same_seed_identical_records():
    a = _digest(DomainSimulator(seed=3, events=8_000))
    b = _digest(DomainSimulator(seed=3, events=8_000))
    assert a == b
    # records() can be iterated twice on the same instance with the same result
    s = DomainSimulator(seed=3, events=8_000)
    assert _digest(s) == _digest(s) == a


def test_other_seed_other_records():
    assert _digest(DomainSimulator(seed=3, events=8_000)) != \
        _digest(DomainSimulator(seed=4, events=8_000))


def test_event_volume_follows_events(records):
    assert 0.7 * EVENTS <= len(records) <= 1.4 * EVENTS


def test_records_in_time_order_with_increasing_record_ids(records):
    last = 0
    per_log: dict[tuple, int] = {}
    for r in records:
        assert r["_time_ms"] >= last
        last = r["_time_ms"]
        k = (r["_computer"], r["_channel"])
        assert r["_record"] > per_log.get(k, 0)
        per_log[k] = r["_record"]


def test_flat_record_format(records):
    sys_keys = {"_eid", "_time_ms", "_computer", "_channel", "_provider", "_record",
                "_user_sid"}
    for r in records:
        assert sys_keys <= r.keys()
        assert all(isinstance(v, str) for k, v in r.items() if k not in sys_keys)
        assert r["_computer"].endswith(".corp.local")


def test_every_record_normalizes(records):
    norm = Normalizer()
    for r in records:
        assert r["_eid"] in EVENT_TABLE, r
        assert channel_ok(r["_eid"], r["_channel"], r["_provider"]), r
        ev = norm.normalize(r)   # raises NormalizationError on a malformed record
        assert ev is not None
        assert ev["time_ms"] == r["_time_ms"]
    assert norm.unknown == 0


def test_ground_truth_coverage(sim):
    gt = sim.injected()
    assert all(isinstance(g, InjectedAttack) for g in gt)
    kinds = {g.detector for g in gt}
    assert len(kinds) >= 12
    assert kinds <= CONTRACT_IDS, kinds - CONTRACT_IDS
    for g in gt:
        assert set(g.also) <= CONTRACT_IDS
        assert g.entity and g.description
    # attacks happen after the 7-day learning period, on the last simulated day
    first_day = sim.start_ms
    assert all(g.time_ms >= first_day + 8 * 86_400_000 for g in gt)


def test_ground_truth_matches_generated_records(sim):
    fresh = DomainSimulator(seed=7, events=EVENTS)
    assert [g.to_dict() for g in fresh.ground_truth] == [g.to_dict() for g in sim.injected()]
    before = sim.injected()
    list(sim.records())
    assert [g.to_dict() for g in sim.ground_truth] == [g.to_dict() for g in before]


def test_demo_config_is_valid_detection_settings(sim):
    s = DetectionSettings(**sim.demo_config())
    assert s.sync_accounts and s.honeytoken_accounts and s.domain_controllers
    assert s.exclude.hosts and s.exclude.ips


def test_matching_rules():
    g = InjectedAttack("dcsync", "corp\\bob", 1_000_000, "x", aliases=("10.1.0.42",),
                       also=("abnormal-logon",))
    assert g.matches("dcsync", "CORP\\bob", 1_000_000)
    assert g.matches("dcsync", "10.1.0.42", 1_000_000)
    assert g.matches("abnormal-logon", "corp\\bob", 1_000_500)
    assert not g.matches("kerberoasting", "corp\\bob", 1_000_000)
    assert not g.matches("dcsync", "corp\\alice", 1_000_000)
    assert not g.matches("dcsync", "10.1.0.4", 1_000_000)
    assert not g.matches("dcsync", "corp\\bob", 1_000_000 + 3 * 3_600_000)
    # evidence that started earlier but overlaps the attack time matches
    assert g.matches("dcsync", "corp\\bob", 1_000_000 - 5 * 3_600_000, 1_000_000 + 1000)
    # an entity display that contains the entity
    s = InjectedAttack("suspicious-service", "dc02.corp.local", 0, "x")
    assert s.matches("suspicious-service", "PSEXESVC on dc02.corp.local", 0)
    assert not s.matches("suspicious-service", "PSEXESVC on xdc02.corp.local", 0)
    res = match_alerts([g], [
        {"id": "a", "detector": "dcsync", "entity": "corp\\bob", "first_seen_ms": 1_000_000,
         "severity": "high"},
        {"id": "b", "detector": "abnormal-logon", "entity": "corp\\bob",
         "first_seen_ms": 1_000_000, "severity": "medium"},
        {"id": "c", "detector": "dcsync", "entity": "corp\\eve", "first_seen_ms": 1_000_000,
         "severity": "high"}])
    assert res["detected"] == 1 and [a["id"] for a in res["false_positives"]] == ["c"]
    assert [a["id"] for a in res["corroborating"]] == ["b"]
    assert res["attacks"][0]["alert_id"] == "a"


def test_offline_every_attack_detected_and_no_false_positive():
    """The key test: the demo's promise on the exact streaming code path (minus Kafka).

    For detectors not in the registry yet the attack is reported, not asserted; every attack
    whose detector exists must be detected, and no alert may fall outside the ground truth.
    """
    registry = load_catalogue()
    sim = DomainSimulator(seed=7, events=EVENTS)
    alerts, res = scan_simulation(sim)
    not_implemented = sorted({a["detector"] for a in res["missed"]
                              if a["detector"] not in registry})
    missed = [f"{a['detector']} on {a['entity']} at {a['time']}: {a['description']}"
              for a in res["missed"] if a["detector"] in registry]
    fps = [f"{a['detector']} on {a['entity']} at {a['first_seen']}: {a['description']}"
           for a in res["false_positives"]]
    if not_implemented:
        print("detectors not implemented yet (attacks not checked):", not_implemented)
    assert not missed and not fps, (
        f"{len(missed)} injected attack(s) missed:\n  " + "\n  ".join(missed) +
        f"\n{len(fps)} false positive(s):\n  " + "\n  ".join(fps))
    by = Counter(a.detector for a in alerts)
    assert res["detected"] == len(res["attacks"]) - len(
        [a for a in res["missed"] if a["detector"] not in registry])
    assert sum(by.values()) >= res["detected"]


def test_offline_other_seed_also_clean():
    """Another seed and domain size: the result must not depend on one lucky draw."""
    registry = load_catalogue()
    _, res = scan_simulation(DomainSimulator(seed=11, events=30_000, users=60))
    missed = [(a["detector"], a["entity"]) for a in res["missed"]
              if a["detector"] in registry]
    fps = [(a["detector"], a["entity"], a["first_seen"]) for a in res["false_positives"]]
    assert not missed and not fps, (missed, fps)
