"""Property-based fuzzing of the raw-record parsers (Windows Event XML, Winlogbeat / EVTX-JSON
/ NXLog JSON) and of normalization.

Contract under test (collectors/records.py, collectors/normalize.py): a parser returns a flat
record or raises :class:`ParseError`; the normalizer returns an event dict, ``None`` or raises
:class:`NormalizationError`. Nothing else ever escapes (an AttributeError or OverflowError
would kill a gateway connection or a collector loop and lose the records buffered with it),
and whatever both accept can be encoded into a wire batch.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from collectors.batcher import BatchBuilder
from collectors.normalize import EVENT_TABLE, EXTRA_KEYS, Normalizer
from collectors.records import (MAX_RECORD_BYTES, from_evtx_json, from_winlogbeat, from_xml,
                                parse_json_record, parse_time_ms, split_xml_events)
from stream import wire
from stream.errors import NormalizationError, ParseError

from ._strategies import (FUZZ, SMALL, event_xml, field_text, json_scalars, json_values,
                          mutated, names)

FIX = Path(__file__).parents[1] / "fixtures" / "collectors"
WEF = (FIX / "wef_batch.xml").read_text()
WEF_EVENTS = split_xml_events(WEF)
JSON_LINES = [x for f in ("winlogbeat.jsonl", "nxlog.jsonl")
              for x in (FIX / f).read_bytes().splitlines() if x.strip()]
MAX_TIME_MS = 253402300799999          # 9999-12-31T23:59:59.999Z
INT64 = (-2**63, 2**63 - 1)


def _dumps(v) -> bytes:
    """JSON text of ``v`` (stdlib: integers beyond 64 bits are written as they are)."""
    return json.dumps(v).encode()


def _check_flat(rec: dict) -> None:
    """What every parser promises about a flat record."""
    assert isinstance(rec, dict)
    assert type(rec["_eid"]) is int
    assert type(rec["_time_ms"]) is int and 0 <= rec["_time_ms"] <= MAX_TIME_MS, rec["_time_ms"]
    assert type(rec["_record"]) is int
    for k, v in rec.items():
        assert isinstance(k, str)
        if not k.startswith("_"):
            assert isinstance(v, str), (k, v)


def _parse_or_error(fn, *a):
    try:
        rec = fn(*a)
    except ParseError as e:
        assert str(e)                                  # a reason, always
        return None
    _check_flat(rec)
    return rec


def _normalize_and_encode(rec: dict) -> dict | None:
    """normalize -> dict / None / NormalizationError, and an accepted event must encode."""
    try:
        ev = Normalizer().normalize(rec)
    except NormalizationError as e:
        assert str(e)
        return None
    if ev is None:
        return None
    assert isinstance(ev, dict)
    b = BatchBuilder()
    b.add(ev)
    batch = b.build()
    assert wire.decode(wire.encode(batch)).n == 1
    return ev


# -- XML ------------------------------------------------------------------------------------
@FUZZ
@given(event_xml())
def test_generated_event_xml_round_trips_or_is_refused(doc):
    xml, want = doc
    rec = _parse_or_error(from_xml, xml)
    if rec is None:
        return
    assert rec["_eid"] == want["eid"]
    assert rec["_computer"] == want["computer"].replace("\r\n", "\n").replace("\r", "\n") or \
        rec["_computer"] == want["computer"]
    for k, v in want["data"].items():
        if k.startswith("Data") or k.startswith("_"):
            continue                                   # may collide with unnamed/system keys
        assert k in rec
    _normalize_and_encode(rec)


@FUZZ
@given(st.sampled_from(WEF_EVENTS).flatmap(lambda x: mutated(x.encode())))
def test_mutated_event_xml(xml):
    rec = _parse_or_error(from_xml, xml)
    if rec is not None:
        _normalize_and_encode(rec)


@FUZZ
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300),
                 st.text(alphabet="<>/=\"'&;!?[]EventSystmDaN xmlns:#%", max_size=300)))
def test_arbitrary_text_as_xml(data):
    _parse_or_error(from_xml, data)


@FUZZ
@given(st.one_of(st.text(max_size=400),
                 st.lists(st.sampled_from(["<Event>", "</Event>", "<Events>", "</Events>",
                                           "<Event ", "x", "<", ">", "\n"]),
                          max_size=40).map("".join)))
def test_split_xml_events_returns_strings_or_parse_error(text):
    try:
        parts = split_xml_events(text)
    except ParseError:
        return
    assert all(isinstance(p, str) and p.startswith("<Event") and p.endswith("</Event>")
               for p in parts)


# hostile documents: each must be refused (ParseError naming it hostile), fast, without
# expanding anything (peak memory bounded by a small multiple of the input)
_LOL = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">'
                  for i in range(1, 10))
        + ']><Event><System><EventID>&lol9;</EventID></System></Event>')
_QUAD_ENTITY = "A" * 100_000
_QUADRATIC = (f'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "{_QUAD_ENTITY}">]><Event><System>'
              f'<Computer>{"&a;" * 200_000}</Computer></System></Event>')
HOSTILE = {
    "billion_laughs": _LOL,
    "quadratic_blowup": _QUADRATIC,
    "external_entity_file": '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM '
                            '"file:///etc/passwd">]><Event><System><EventID>4624</EventID>'
                            '<Computer>&x;</Computer></System></Event>',
    "external_entity_http": '<!DOCTYPE e [<!ENTITY x SYSTEM "http://127.0.0.1:1/x">]>'
                            '<Event><System><Computer>&x;</Computer></System></Event>',
    "external_dtd": '<!DOCTYPE Event SYSTEM "http://127.0.0.1:1/evil.dtd"><Event><System>'
                    '<EventID>1</EventID></System></Event>',
    "parameter_entity": '<!DOCTYPE e [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>'
                        '<Event><System/></Event>',
    "internal_dtd_only": '<!DOCTYPE Event [<!ELEMENT Event ANY>]><Event><System>'
                         '<EventID>4624</EventID></System></Event>',
    "utf16_billion_laughs": _LOL.replace('version="1.0"?', 'version="1.0" encoding="UTF-16"?'
                                         ).encode("utf-16"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_xml_refused_without_expansion(name):
    doc = HOSTILE[name]
    size = len(doc)
    assert size <= MAX_RECORD_BYTES
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ParseError) as ei:
            from_xml(doc)
        elapsed = time.perf_counter() - t0
        _cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "hostile" in str(ei.value) or "invalid XML" in str(ei.value), str(ei.value)
    assert elapsed < 2.0, f"{name}: {elapsed:.2f}s"
    assert peak < 20 * size + (8 << 20), f"{name}: peak {peak} bytes for {size} input bytes"
    assert "root:" not in str(ei.value)              # no /etc/passwd content in the reason


def test_hostile_xml_is_reported_as_hostile_not_as_syntax():
    for name in ("billion_laughs", "quadratic_blowup", "external_entity_file", "external_dtd"):
        with pytest.raises(ParseError, match="hostile XML refused"):
            from_xml(HOSTILE[name])


def test_oversize_xml_refused_before_parsing():
    big = "<Event><System>" + "x" * (MAX_RECORD_BYTES + 1) + "</System></Event>"
    t0 = time.perf_counter()
    with pytest.raises(ParseError, match="exceeds the limit"):
        from_xml(big)
    assert time.perf_counter() - t0 < 0.5


# -- JSON -----------------------------------------------------------------------------------
@FUZZ
@given(json_values)
def test_random_json_values(v):
    _parse_or_error(parse_json_record, _dumps(v))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_as_json(b):
    _parse_or_error(parse_json_record, b)


@FUZZ
@given(st.sampled_from(JSON_LINES).flatmap(lambda x: mutated(x)))
def test_mutated_forwarder_json(line):
    rec = _parse_or_error(parse_json_record, line)
    if rec is not None:
        _normalize_and_encode(rec)


_slot = st.one_of(json_values, iso_like := st.sampled_from(
    ["2024-03-01T10:00:00.250Z", "2024-03-01 10:00:00", 1709287200, 1709287200250, 1e30,
     -5, 2**64, True, "2024-03-01T10:00:00.1234567+01:00"]))
_eid_slot = st.one_of(st.sampled_from([4624, 4625, "4769", "0x1", {"#text": "4768"}, None]),
                      json_scalars)


@FUZZ
@given(st.fixed_dictionaries({
    "@timestamp": _slot, "event": st.one_of(json_values, st.fixed_dictionaries(
        {"code": _eid_slot, "created": _slot})),
    "host": st.one_of(json_values, st.fixed_dictionaries({"name": json_values})),
    "winlog": st.one_of(json_values, st.fixed_dictionaries({
        "event_id": _eid_slot, "channel": json_values, "computer_name": json_values,
        "provider_name": json_values, "record_id": st.one_of(_eid_slot, json_values),
        "user": st.one_of(json_values, st.fixed_dictionaries({"identifier": json_values})),
        "event_data": st.one_of(json_values, st.dictionaries(
            st.one_of(names, st.sampled_from(["param1", "param2", "param0", "param99"])),
            json_values, max_size=5)),
        "user_data": json_values}))}))
def test_winlogbeat_shaped_records_with_wrong_types(d):
    rec = _parse_or_error(parse_json_record, _dumps(d))
    if rec is not None:
        _normalize_and_encode(rec)


@FUZZ
@given(st.fixed_dictionaries({"Event": st.one_of(json_values, st.fixed_dictionaries({
    "System": st.one_of(json_values, st.fixed_dictionaries({
        "EventID": _eid_slot, "Computer": json_values, "Channel": json_values,
        "EventRecordID": st.one_of(_eid_slot, json_values),
        "Provider": st.one_of(json_values, st.fixed_dictionaries({"#attributes": json_values})),
        "TimeCreated": st.one_of(json_values, st.fixed_dictionaries(
            {"#attributes": st.one_of(json_values, st.fixed_dictionaries(
                {"SystemTime": _slot}))})),
        "Security": json_values})),
    "EventData": json_values, "UserData": json_values}))}))
def test_evtx_json_shaped_records_with_wrong_types(d):
    rec = _parse_or_error(parse_json_record, _dumps(d))
    if rec is not None:
        _normalize_and_encode(rec)
    _parse_or_error(from_evtx_json, d)                  # the EVTX reader calls it directly


@FUZZ
@given(st.dictionaries(st.one_of(names, st.sampled_from(
    ["EventID", "EventTime", "TimeCreated", "Hostname", "Channel", "RecordNumber", "UserID",
     "EventData", "TargetUserName", "IpAddress", "Status"])), _slot, max_size=10),
    st.sampled_from([4624, 4625, 4768, 4769, 4771, 4776, 7045, 5805, "4624", None]))
def test_flat_records_with_wrong_types(d, eid):
    if eid is not None:
        d.setdefault("EventID", eid)
    d.setdefault("Channel", "Security")
    rec = _parse_or_error(parse_json_record, _dumps(d))
    if rec is not None:
        _normalize_and_encode(rec)


# named regressions found by the fuzzers above (each crashed with a non-ParseError before
# the fixes in collectors/records.py and collectors/normalize.py)
_GOOD_SYSTEM = {"EventID": 4624, "Channel": "Security",
                "TimeCreated": {"#attributes": {"SystemTime": "2024-03-01T10:00:00Z"}}}
REGRESSIONS = {
    "evtx_system_not_object": b'{"Event": {"System": 5}}',
    "evtx_timecreated_attrs_not_object": orjson.dumps(
        {"Event": {"System": {**_GOOD_SYSTEM, "TimeCreated": {"#attributes": [1]}}}}),
    "winlogbeat_event_not_object": b'{"winlog": {"event_id": 1}, "event": "x"}',
    "winlogbeat_user_not_object": b'{"winlog": {"event_id": 4624, "user": 3}, '
                                  b'"@timestamp": "2024-03-01T10:00:00Z"}',
    "winlogbeat_host_not_object": b'{"winlog": {"event_id": 4624}, "host": [1], '
                                  b'"@timestamp": "2024-03-01T10:00:00Z"}',
    "winlogbeat_event_data_param_x": b'{"winlog": {"event_id": 4624, "event_data": '
                                     b'{"param\xc2\xb2": "x"}}, "@timestamp": 1709287200}',
    "time_1e300": b'{"EventID": 4625, "Channel": "Security", "EventTime": 1e300}',
    "time_huge_int": b'{"EventID": 4625, "Channel": "Security", '
                     b'"EventTime": 123456789012345678901234567890}',
    "time_negative": b'{"EventID": 4625, "Channel": "Security", "EventTime": -1e15}',
    "time_bool": b'{"EventID": 4625, "Channel": "Security", "EventTime": true}',
    "time_year_10000": b'{"EventID": 4625, "Channel": "Security", '
                       b'"EventTime": "10000-01-01T00:00:00Z"}',
    "record_id_over_int64": b'{"EventID": 4625, "Channel": "Security", "EventTime": '
                            b'"2024-03-01T10:00:00Z", "RecordNumber": 18446744073709551615}',
    "eventdata_nested_1000_deep": (b'{"Event": {"System": ' + orjson.dumps(_GOOD_SYSTEM)
                                   + b', "EventData": ' + b'{"a":' * 1000 + b'"x"'
                                   + b"}" * 1000 + b"}}"),
    "json_nested_100000_deep": b"[" * 100_000 + b"]" * 100_000,
    "oversize_record": b'{"EventID": 4624, "x": "' + b"A" * MAX_RECORD_BYTES + b'"}',
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression_inputs(name):
    rec = _parse_or_error(parse_json_record, REGRESSIONS[name])
    if rec is not None:
        _normalize_and_encode(rec)


@pytest.mark.parametrize("name", ["time_1e300", "time_huge_int", "time_negative", "time_bool",
                                  "time_year_10000"])
def test_out_of_range_times_are_parse_errors(name):
    with pytest.raises(ParseError, match="event time"):
        parse_json_record(REGRESSIONS[name])


@pytest.mark.parametrize("v", [float("inf"), float("-inf"), float("nan"), 10**400, True,
                               -1, "1e999"])
def test_parse_time_ms_rejects_non_finite_and_out_of_range(v):
    with pytest.raises(ParseError):
        parse_time_ms(v)


def test_winlogbeat_called_directly_with_wrong_types():
    with pytest.raises(ParseError, match="event time"):      # no time anywhere
        from_winlogbeat({"winlog": {"event_id": 4624}, "event": 7})
    # a wrong-typed optional section is ignored, the record is kept
    rec = from_winlogbeat({"winlog": {"event_id": 4624, "user": "x"}, "host": 5,
                           "@timestamp": "2024-03-01T10:00:00Z"})
    assert (rec["_eid"], rec["_user_sid"], rec["_computer"]) == (4624, "", "")


# -- normalization of arbitrary flat records ------------------------------------------------
_RAW_KEYS = sorted({k for spec in EVENT_TABLE.values()
                    for part in (spec.get("account") or (), spec.get("target") or ())
                    for k in part if k}
                   | {k for spec in EVENT_TABLE.values() for v in spec.get("fields", {}).values()
                      for k in ((v,) if isinstance(v, str) else v)}
                   | {k for spec in EVENT_TABLE.values() for k in spec.get("ints", {}).values()}
                   | {k for ks in EXTRA_KEYS.values() for k in ks}
                   | {"UserAccountControl", "ServicePrincipalNames", "SamAccountName",
                      "SidHistory", "SubjectUserSid", "Status", "LogonType"})
_any = st.one_of(field_text, json_scalars, st.sampled_from(
    ["0xC000006A", "0xffffffffffffffffffff", "-", "%%1793", "::ffff:10.0.0.1", "127.0.0.1",
     "ANONYMOUS LOGON", "a@b.c", "a\\b", "S-1-5-7", "9" * 5000, "0x" + "f" * 5000]),
    json_values)


@FUZZ
@given(st.fixed_dictionaries(
    {"_eid": st.one_of(st.sampled_from(sorted(EVENT_TABLE)), json_scalars, json_values),
     "_time_ms": st.one_of(st.integers(-2**70, 2**70), st.integers(0, MAX_TIME_MS), json_scalars),
     "_record": st.one_of(st.integers(-2**70, 2**70), _any),
     "_computer": _any, "_channel": st.one_of(st.sampled_from(["Security", "System", ""]), _any),
     "_provider": _any, "_user_sid": _any},
    optional={k: _any for k in _RAW_KEYS}))
@example({"_eid": 4625, "_time_ms": 2**80, "_record": 0, "_computer": "", "_channel": "Security",
          "_provider": "", "_user_sid": ""})
@example({"_eid": 4625, "_time_ms": 1, "_record": 2**64, "_computer": "", "_channel": "Security",
          "_provider": "", "_user_sid": ""})
@example({"_eid": [4625], "_time_ms": 1, "_record": 0, "_computer": "", "_channel": "",
          "_provider": "", "_user_sid": ""})
@example({"_eid": 4625, "_time_ms": 1, "_record": "abc", "_computer": "", "_channel": "Security",
          "_provider": "", "_user_sid": ""})
def test_normalize_arbitrary_flat_records(rec):
    _normalize_and_encode(rec)


@SMALL
@given(st.dictionaries(st.one_of(names, st.sampled_from(["_eid", "_time_ms", "_record"])),
                       _any, max_size=6))
def test_normalize_records_missing_system_keys(rec):
    _normalize_and_encode(rec)


def test_normalize_rejects_out_of_range_numbers_with_reason():
    base = {"_eid": 4625, "_time_ms": 1709287200000, "_record": 1, "_computer": "dc01",
            "_channel": "Security", "_provider": "", "_user_sid": "", "TargetUserName": "a"}
    assert Normalizer().normalize(base)["time_ms"] == 1709287200000
    with pytest.raises(NormalizationError, match="event time"):
        Normalizer().normalize({**base, "_time_ms": 2**63})
    with pytest.raises(NormalizationError, match="record"):
        Normalizer().normalize({**base, "_record": 2**63})
