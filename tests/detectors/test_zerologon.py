"""zerologon: DC account password set by ANONYMOUS LOGON; Netlogon 5805/5827-5829."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.settings import DetectionSettings, DetectorOverride, Exclusions
from _harness import ev, run_detector, scan_sample_for

DID = "zerologon"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"
DC = "dc01.corp.local"


def run(events, **kw):
    return run_detector(DID, events, **kw)


def scan_sample(rel):
    return scan_sample_for(DID, rel)


needs_samples = pytest.mark.skipif(not SAMPLES.exists(),
                                   reason="../shared/samples not available")


def anon_4742(t, target="corp\\dc01$", computer=DC):
    return ev(t, 4742, computer=computer, account="nt authority\\anonymous logon",
              account_sid="S-1-5-7", target_account=target, flags=4 | 8,
              properties="PasswordLastSet=9/15/2020 12:31:04 PM")


def netlogon(t, eid, **kw):
    kw.setdefault("account", "")
    return ev(t, eid, channel="system", **kw)


def test_positive_dc_password_set_by_anonymous():
    alerts = run([anon_4742(0)])
    assert len(alerts) == 1
    assert alerts[0].entity == DC and "ANONYMOUS LOGON" in alerts[0].description


def test_fires_on_5805_claiming_to_be_the_dc_and_vulnerable_channel_events():
    evs = [netlogon(0, 5805, src_host="dc01"),
           netlogon(1, 5805, src_host="kali", computer="dc02.corp.local"),
           netlogon(2, 5829, account="corp\\nas01$", value="%%5")]
    alerts = run(evs)
    assert len(alerts) == 3


def test_negative_member_computer_and_ordinary_5805():
    evs = [anon_4742(0, target="corp\\ws01$"),        # workstation password via netlogon
           netlogon(1, 5805, src_host="ws17"),        # stale machine password
           ev(2, 4742, target_account="corp\\dc01$", flags=8,
              properties="PasswordLastSet=1/1/2024")]  # the DC changing its own password
    assert run(evs) == []


def test_low_sensitivity_any_machine_and_any_5805():
    evs = [anon_4742(0, target="corp\\ws01$"), netlogon(1, 5805, src_host="ws17")]
    assert len(run(evs, sensitivity="low")) == 2


def test_excluded_legacy_host():
    e = netlogon(2, 5829, account="corp\\nas01$", computer="dc03.corp.local")
    assert len(run([e])) == 1
    assert run([e], exclude=Exclusions(accounts=["corp\\nas01$"])) == []


@pytest.mark.samples
@needs_samples
def test_positive_samples():
    a = scan_sample("evtx-attack-samples/Credential Access/Zerologon_VoidSec_CVE-2020-1472_"
                    "4626_LT3_Anonym_follwedby_4742_DC_Anony_DC.evtx")
    assert a and a[0].evidence.event_ids == [4742]
    b = scan_sample("evtx-attack-samples/Credential Access/Zerologon_CVE-2020-1472_DFIR_System_"
                    "NetLogon_Error_EventID_5805.evtx")
    assert b and b[0].evidence.event_ids == [5805]
