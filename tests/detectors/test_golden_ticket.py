"""golden-ticket: TGS without a TGT in the lifetime (after warm-up), forged realm/domain strings."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.schema import FLAG_DELEGATED

from stream.settings import DetectionSettings, DetectorOverride, Exclusions
from _harness import ev, run_detector, scan_sample_for

DID = "golden-ticket"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"
DC = "dc01.corp.local"


def run(events, **kw):
    return run_detector(DID, events, **kw)


def scan_sample(rel):
    return scan_sample_for(DID, rel)


needs_samples = pytest.mark.skipif(not SAMPLES.exists(),
                                   reason="../shared/samples not available")

H = 3600


def tgt(t, account="corp\\bob", realm="CORP.LOCAL", ip="10.0.0.5"):
    return ev(t, 4768, account=account, account_domain=realm, src_ip=ip, service="krbtgt",
              status=0, ticket_encryption=0x12)


def tgs(t, account="corp\\bob", realm="CORP.LOCAL", ip="10.0.0.5", service="cifs/fs01",
        extra="", flags=0):
    return ev(t, 4769, account=account, account_domain=realm, src_ip=ip, service=service,
              status=0, ticket_encryption=0x12, extra=extra, flags=flags)


def warmup(until_h=11):
    # other accounts' traffic: the engine has seen more than one TGT lifetime
    out = []
    for k in range(until_h + 1):
        for u in range(8):
            out.append(tgt(k * H + u, account=f"corp\\u{u}"))
            out.append(tgs(k * H + u + 1, account=f"corp\\u{u}"))
    return out


def test_positive_tgs_without_tgt_after_warmup():
    evs = warmup() + [tgs(12 * H, account="corp\\administrator", ip="10.0.0.66"),
                      tgs(12 * H + 5, account="corp\\administrator", ip="10.0.0.66",
                          service="ldap/dc01")]
    alerts = run(evs)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.entity == "corp\\administrator" and a.evidence.count == 2
    assert "no TGT" in a.description


def test_fires_when_tgt_older_than_lifetime_and_on_forged_realm_strings():
    evs = warmup(22) + [tgt(0, account="corp\\eve"), tgs(12 * H, account="corp\\eve")]
    evs += [tgs(1, account="corp\\mallory", realm="corp.local"),           # lower-case realm
            ev(2, 4624, account="corp\\x", account_domain="eo.oe.kiwi :)", protocol="kerberos",
               logon_type=3)]
    alerts = {a.entity: a for a in run(evs)}
    assert set(alerts) == {"corp\\eve", "corp\\mallory", "corp\\x"}
    assert "lower case" in alerts["corp\\mallory"].description


def test_negative_warmup_renewal_delegation_and_foreign_realm():
    evs = warmup()
    # no TGT seen but the engine has not seen a full lifetime yet
    evs.append(tgs(60, account="corp\\early"))
    # TGT renewed (4770 krbtgt) 9 h after issue: the later TGS is covered
    evs += [tgt(1 * H, account="corp\\carol"),
            ev(9 * H, 4770, account="corp\\carol", service="krbtgt", account_domain="CORP.LOCAL"),
            tgs(12 * H, account="corp\\carol")]
    # S4U2Proxy (constrained delegation): the user never asked for a TGT itself
    # (the normalizer sets FLAG_DELEGATED when TransmittedServices is present)
    evs.append(tgs(12 * H, account="corp\\webuser", extra='{"TransmittedServices":"http/web"}',
                   flags=FLAG_DELEGATED))
    # trusted-domain user: realm never seen in a local TGT
    evs.append(tgs(12 * H, account="other\\bob", realm="OTHER.LOCAL"))
    # normal user with a fresh TGT; NTLM logon with 'NT AUTHORITY' domain
    evs += [tgt(11 * H, account="corp\\dave"), tgs(11 * H + 60, account="corp\\dave"),
            ev(100, 4624, account="nt authority\\system", account_domain="NT AUTHORITY",
               protocol="negotiate", logon_type=5)]
    assert run(evs) == []


def test_param_lifetime_override():
    evs = warmup(22) + [tgt(0, account="corp\\eve"), tgs(12 * H, account="corp\\eve")]
    over = {DID: DetectorOverride(params={"tgt_lifetime_h": 13})}
    assert run(evs, detectors=over) == []


def test_excluded_account():
    evs = warmup() + [tgs(12 * H, account="corp\\administrator")]
    assert run(evs, exclude=Exclusions(accounts=["corp\\administrator"])) == []
