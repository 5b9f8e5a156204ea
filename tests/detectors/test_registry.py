"""The registry walk: every detector is valid, documented in the contract and tested."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from detectors.base import REGISTRY, Detector, Registry, load_catalogue
from stream.errors import DuplicateDetectorError

HERE = Path(__file__).parent

load_catalogue()
IDS = REGISTRY.ids()


def test_catalogue_not_empty():
    assert len(IDS) >= 2


@pytest.mark.parametrize("did", IDS)
def test_detector_metadata_valid(did):
    assert REGISTRY[did].validate() == []


@pytest.mark.parametrize("did", IDS)
def test_detector_has_its_own_tests(did):
    path = HERE / f"test_{did.replace('-', '_')}.py"
    assert path.exists(), f"detector {did} has no tests ({path.name})"
    text = path.read_text()
    assert re.search(r"def test_\w*(positive|fires|detect)", text), \
        f"{path.name} has no positive test"
    assert re.search(r"def test_\w*(negative|benign|no_alert|quiet|excluded)", text), \
        f"{path.name} has no negative test"


@pytest.mark.parametrize("did", IDS)
@pytest.mark.parametrize("sens", ["high", "medium", "low"])
def test_detector_instantiates_at_every_sensitivity(did, sens):
    det = REGISTRY[did](sens)
    assert set(det.p) == {p.name for p in det.params}


def test_registry_rejects_duplicate_ids():
    reg = Registry()

    class A(Detector):
        id = "dup-test"

    class B(Detector):
        id = "dup-test"

    reg.register(A)
    with pytest.raises(DuplicateDetectorError):
        reg.register(B)


def test_detector_reference_doc_is_current():
    from detectors.cli import catalogue_markdown

    doc = Path(__file__).parents[2] / "docs" / "detectors.md"
    assert doc.read_text() == catalogue_markdown(), \
        "docs/detectors.md is stale: run `python -m detectors.cli > docs/detectors.md`"


def test_catalogue_matches_the_contract_ids():
    contract = {
        "account-enumeration", "samr-recon", "ldap-recon", "smb-session-enumeration",
        "honeytoken-activity", "brute-force", "password-spray", "kerberoasting",
        "asrep-roasting", "dcsync", "dpapi-backup-key", "shadow-credentials",
        "samaccountname-spoofing", "pass-the-hash", "overpass-the-hash", "pass-the-ticket",
        "remote-execution", "suspicious-service", "coercion", "ntlm-relay", "golden-ticket",
        "dcshadow", "sensitive-group-change", "sid-history-injection", "adminsdholder-change",
        "domain-acl-change", "rbcd-change", "delegation-change", "risky-account-change",
        "dsrm-password-change", "zerologon", "audit-tampering", "abnormal-logon",
        "lateral-movement-fanout"}
    assert len(contract) == 34
    assert set(IDS) == contract
