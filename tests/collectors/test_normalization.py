"""Normalization per event-id family on hand-written fixtures in the three forwarded formats
(Windows Event XML, NXLog im_msvistalog JSON, Winlogbeat JSON)."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.files import iter_file_records
from collectors.normalize import Normalizer
from collectors.records import from_xml, parse_json_record, split_xml_events
from stream.errors import ParseError
from stream.schema import (ALL_FIELDS, FLAG_ANONYMOUS, FLAG_FAILURE, FLAG_MACHINE,
                           FLAG_TARGET_MACHINE, IdentityEvent)

FIX = Path(__file__).parents[1] / "fixtures" / "collectors"


def _events(name: str) -> dict[int, dict]:
    n = Normalizer()
    out = {}
    for rec, err, origin in iter_file_records(FIX / name):
        assert err is None, f"{origin}: {err}"
        ev = n.normalize(rec)
        if ev is not None:
            IdentityEvent.model_validate({k: v for k, v in ev.items() if k in ALL_FIELDS})
            out[ev["event_id"]] = ev
    return out


def test_xml_logon_kerberos_directory_group_service():
    evs = _events("wef_batch.xml")
    assert set(evs) == {4624, 4769, 4662, 4728, 7045, 5136}
    e = evs[4624]
    assert (e["account"], e["src_ip"], e["logon_type"], e["protocol"], e["computer"]) == (
        "corp\\alice", "10.0.0.5", 3, "kerberos", "dc01.corp.local")
    assert e["time_ms"] == 1709287200123 and e["record_id"] == 1001
    e = evs[4769]     # user@REALM and FQDN realm reduce to the NetBIOS label
    assert e["account"] == "corp\\alice" and e["service"] == "svc_sql"
    assert e["ticket_encryption"] == 0x17 and e["ticket_options"] == 0x40810000
    assert e["status"] == 0 and not e["flags"] & FLAG_FAILURE
    e = evs[4662]
    assert e["account"] == "corp\\mallory" and e["access_mask"] == 0x100
    assert "1131f6aa-9c07-11d1-f79f-00c04fc2dcd2" in e["properties"]
    e = evs[4728]
    assert (e["action"], e["group"], e["member_sid"]) == (
        "group_member_added", "domain admins", "S-1-5-21-1-2-3-1106")
    e = evs[7045]
    assert (e["service_name"], e["image_path"], e["channel"]) == (
        "PSEXESVC", "%SystemRoot%\\PSEXESVC.exe", "system")
    assert e["account_sid"] == "S-1-5-21-1-2-3-500"
    e = evs[5136]
    assert e["attribute"] == "msDS-AllowedToActOnBehalfOfOtherIdentity"
    assert e["object"].startswith("CN=SRV01")


def test_nxlog_failures_ntlm_and_anonymous_machine_change():
    n = Normalizer()
    evs = {}
    for rec, err, _ in iter_file_records(FIX / "nxlog.jsonl"):
        assert err is None
        ev = n.normalize(rec)
        if ev:
            evs[ev["event_id"]] = ev
    assert n.unknown_ids == {5156: 1}          # unknown ids are counted, not normalized
    e = evs[4625]
    assert e["flags"] & FLAG_FAILURE and e["status"] == 0xC000006D
    assert e["sub_status"] == 0xC000006A and e["src_host"] == "wks07"
    assert e["protocol"] == "ntlm" and e["channel"] == "security"
    e = evs[4776]
    assert e["account"] == "corp\\bob", "domain-less 4776 takes the DC's domain label"
    assert e["flags"] & FLAG_FAILURE and e["status"] == 0xC000006A
    e = evs[4768]
    assert e["account"] == "corp\\carol" and e["ticket_encryption"] == 0x12
    assert e["preauth_type"] == 2 and e["src_ip"] == "10.0.0.9"
    e = evs[4742]
    assert e["target_account"] == "corp\\dc01$" and e["flags"] & FLAG_TARGET_MACHINE
    assert e["flags"] & FLAG_ANONYMOUS and e["uac_new"] == 0x2080


def test_winlogbeat_kerberos_preauth_share_and_netlogon():
    n = Normalizer()
    evs = {}
    for line in (FIX / "winlogbeat.jsonl").read_bytes().splitlines():
        ev = n.normalize(parse_json_record(line))
        evs[ev["event_id"]] = ev
    e = evs[4771]
    assert e["account"] == "corp\\dave" and e["status"] == 0x18
    assert e["flags"] & FLAG_FAILURE and e["src_ip"] == "10.0.0.66"
    assert e["time_ms"] == 1709287320250 and e["record_id"] == 4001
    e = evs[5145]
    assert e["share"] == "\\\\*\\IPC$" and e["relative_target"] == "lsarpc"
    e = evs[5805]     # classic unnamed data (param1..) -> Data0..
    assert e["src_host"] == "wks99" and e["flags"] & FLAG_FAILURE


def test_machine_flag_and_same_event_in_three_formats_normalizes_identically():
    xml = split_xml_events((FIX / "wef_batch.xml").read_text())[0]
    flat = from_xml(xml)
    import orjson
    nx = {"EventID": 4624, "EventTime": "2024-03-01T10:00:00.1234567Z",
          "Hostname": "DC01.corp.local", "Channel": "Security",
          "SourceName": "Microsoft-Windows-Security-Auditing", "RecordNumber": 1001,
          **{k: v for k, v in flat.items() if not k.startswith("_")}}
    wlb = {"@timestamp": "2024-03-01T10:00:00.123Z",
           "winlog": {"channel": "Security", "computer_name": "DC01.corp.local",
                      "event_id": 4624, "record_id": 1001,
                      "provider_name": "Microsoft-Windows-Security-Auditing",
                      "event_data": {k: v for k, v in flat.items() if not k.startswith("_")}}}
    n = Normalizer()
    a = n.normalize(flat)
    b = n.normalize(parse_json_record(orjson.dumps(nx)))
    c = n.normalize(parse_json_record(orjson.dumps(wlb)))
    assert a == b == c
    flat2 = dict(flat, TargetUserName="WKS01$")
    assert n.normalize(flat2)["flags"] & FLAG_MACHINE


@pytest.mark.parametrize("bad, why", [
    (b"{not json", "invalid JSON"),
    (b"[1,2]", "must be an object"),
    (b'{"EventID": 4624}', "missing event time"),
    (b'{"EventID": "x", "EventTime": "2024-01-01 00:00:00"}', "not an integer"),
])
def test_malformed_json_raises_parse_error_with_reason(bad, why):
    with pytest.raises(ParseError, match=why):
        parse_json_record(bad)


def test_hostile_xml_is_refused_not_expanded():
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
              b"<Event><System><EventID>&lol2;</EventID></System></Event>")
    xxe = (b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b"<Event><System><EventID>4624</EventID><Computer>&x;</Computer></System></Event>")
    for x in (laughs, xxe):
        with pytest.raises(ParseError, match="hostile XML refused"):
            from_xml(x)


def test_live_channel_source_parses_rendered_xml_and_refuses_off_windows():
    import sys

    from collectors.wineventlog import WinEventLogSource, parse_rendered
    from stream.errors import ConfigError

    rendered = split_xml_events((FIX / "wef_batch.xml").read_text())[1]   # EvtRender output
    ev = Normalizer().normalize(parse_rendered(rendered))
    assert ev["event_id"] == 4769 and ev["account"] == "corp\\alice"
    if sys.platform != "win32":
        with pytest.raises(ConfigError, match="need Windows"):
            WinEventLogSource(["Security"])


@pytest.mark.parametrize("op,deleted", [("%%14675", True), ("%%14674", False),
                                        ("Value Deleted", True), ("Value Added", False),
                                        ("", False)])
def test_5136_value_deleted_is_a_flag(op, deleted):
    """Directory-change detectors ignore the "value deleted" half of a 5136 modification: the
    normalizer sets FLAG_VALUE_DELETED from OperationType (coded or rendered text), on both
    the compiled and the reference path."""
    from collectors.normalize import normalize_reference
    from stream.schema import FLAG_VALUE_DELETED

    rec = {"_eid": 5136, "_time_ms": 1_700_000_000_000, "_computer": "dc01.corp.local",
           "_channel": "Security", "SubjectUserName": "bob", "SubjectDomainName": "CORP",
           "ObjectDN": "CN=AdminSDHolder,CN=System,DC=corp,DC=local",
           "AttributeLDAPDisplayName": "nTSecurityDescriptor", "AttributeValue": "O:BA",
           "OperationType": op}
    for ev in (Normalizer().normalize(dict(rec)), normalize_reference(dict(rec))):
        assert bool(ev["flags"] & FLAG_VALUE_DELETED) is deleted
