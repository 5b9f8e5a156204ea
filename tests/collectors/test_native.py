"""The C hot path (``collectors/_native.c``) gives what the Python path gives.

* ``flat_from_evtx_json`` against ``from_evtx_json(orjson.loads(...))``: on records of a
  generated EVTX file read by the ``evtx`` parser, on hand-made variants (escapes, non-ASCII,
  the EventID object form, nulls, ints, UserData, bad times), and on thousands of truncated and
  byte-mutated records: whenever the C function returns a record, the Python path returns an
  equal one (same keys in the same order, same value types); ``None`` sends the record to the
  Python path, which also raises the error of a malformed one;
* ``peek_event_id`` against the regex on the same inputs;
* ``build_columns`` (via ``BatchBuilder.build``) against ``BatchBuilder.build_python``, and
  ``NativeBatcher`` (``Batcher``) against the Python ``Batcher``: the batches, partitions
  and wire bytes are identical, and values the normalizer never produces make them hand the
  batch to the Python build;
* every record of every EVTX sample file (when ../shared/samples is there).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import evtx
import orjson
import pytest

from collectors import native
from collectors.batcher import _LAYOUT, Batcher, BatchBuilder
from collectors.evtx_source import flat_evtx, peek_event_id, peek_event_id_py
from collectors.records import from_evtx_json
from stream import wire
from stream.errors import ParseError
from stream.schema import KEY_SOURCE

from . import evtx_gen as g
from .helpers import RecordingProducer

SAMPLES = Path("/work/shared/samples")

pytestmark = pytest.mark.skipif(
    os.environ.get("ITDR_NATIVE", "1") == "0",
    reason="ITDR_NATIVE=0: the C extension is turned off on purpose")


def _python(data: str):
    try:
        return from_evtx_json(orjson.loads(data))
    except (ParseError, orjson.JSONDecodeError) as e:
        return e


def _check(data: str) -> bool:
    """C result == Python result whenever C answers; True when C answered."""
    got = native.ext.flat_from_evtx_json(data)
    ref = _python(data)
    if got is not None:
        assert isinstance(ref, dict), (data, got, ref)
        assert got == ref, data
        assert list(got) == list(ref), data
        assert [type(v) for v in got.values()] == [type(v) for v in ref.values()], data
    pk = native.ext.peek_event_id(data)
    if pk is not None:
        assert (pk if pk >= 0 else None) == peek_event_id_py(data), data
    assert peek_event_id(data) == peek_event_id_py(data)
    if isinstance(ref, dict):
        assert flat_evtx(data) == ref
    else:
        with pytest.raises(type(ref)):
            flat_evtx(data)
    return got is not None


def _generated(tmp_path, n=400) -> list[str]:
    events = g.security_events(n)
    path = tmp_path / "gen.evtx"
    path.write_bytes(g.evtx_bytes(g.build_chunks(events, first_id=10), 10 + n))
    return [r["data"] for r in evtx.PyEvtxParser(str(path), number_of_threads=1).records_json()]


def test_the_extension_is_built():
    # CI installs with a compiler: a missing extension there is a build failure, not a skip
    assert native.AVAILABLE, "collectors._native did not build (pip install -e . with gcc)"
    assert native.status() == "native"
    from collectors.health import Heartbeat
    hb = Heartbeat("dc01", "collect", [], 30, "health").build(
        read=0, delivered=0, checkpoint_lag=0, spool_bytes=0, spool_batches=0, dropped=0,
        dead_lettered=0, backpressure=False, unknown_ids={}, event_counts={},
        last_delivery_ms=0)
    assert hb["hot_path"] == "native"           # operators see a collector on the slow path
    assert hb["evtx_reader"] == native.evtx_reader()
    assert native.evtx_reader() == "binxml" or os.environ.get("ITDR_BINXML") == "0"


def test_generated_evtx_records_take_the_c_path_and_match(tmp_path):
    datas = _generated(tmp_path)
    assert len(datas) == 400
    answered = sum(_check(d) for d in datas)
    assert answered == len(datas)           # the common shape never needs the Python path


def _record(system_extra: str = "", event_data: str | None = None, **sysf) -> str:
    sysd = {
        "Provider": '{"#attributes":{"Name":"Microsoft-Windows-Security-Auditing",'
                    '"Guid":"{54849625-5478-4994-a5ba-3e3b0328c30d}"}}',
        "EventID": "4624", "Version": "2",
        "TimeCreated": '{"#attributes":{"SystemTime":"2024-01-01T10:00:00.123456Z"}}',
        "EventRecordID": "77", "Correlation": "null",
        "Channel": '"Security"', "Computer": '"DC01.corp.local"',
        "Security": "null",
    }
    sysd.update(sysf)
    body = ",".join(f'"{k}":{v}' for k, v in sysd.items() if v is not None) + system_extra
    ed = event_data if event_data is not None else (
        '{"TargetUserName":"alice","TargetDomainName":"CORP","LogonType":"3",'
        '"IpAddress":"10.0.0.5"}')
    return ('{"Event":{"#attributes":{"xmlns":"http://schemas.microsoft.com/win/2004/08/'
            'events/event"},"System":{' + body + '},"EventData":' + ed + "}}")


VARIANTS = [
    _record(),
    _record(EventID='{"#attributes":{"Qualifiers":16384},"#text":7045}', Channel='"System"'),
    _record(EventID='{"#text":4769,"#attributes":{"Qualifiers":0}}'),
    _record(Provider='{"#attributes":{"Name":"","EventSourceName":"Service Control Manager"}}'),
    _record(Provider='{"#attributes":{"EventSourceName":"x"}}'),
    _record(Provider="null"),
    _record(Provider='{"#attributes":null}'),
    _record(Security='{"#attributes":{"UserID":"S-1-5-18"}}'),
    _record(Computer="null", Channel="null"),
    _record(Computer=None, EventRecordID=None),
    _record(EventRecordID="null"),
    _record(EventRecordID="0"),
    _record(EventRecordID='"12"'),                          # a string id: Python path
    _record(EventID='"4624"'),
    _record(EventID=None),                                  # missing id: ParseError
    _record(TimeCreated=None),
    _record(TimeCreated='{"#attributes":{"SystemTime":"2024-01-01T10:00:00Z"}}'),
    _record(TimeCreated='{"#attributes":{"SystemTime":"2024-01-01 10:00:00.5Z"}}'),
    _record(TimeCreated='{"#attributes":{"SystemTime":"2024-02-30T10:00:00.1Z"}}'),
    _record(TimeCreated='{"#attributes":{"SystemTime":"2024-02-29T23:59:59.9999999Z"}}'),
    _record(TimeCreated='{"#attributes":{"SystemTime":"1969-12-31T23:59:59.999Z"}}'),
    _record(TimeCreated='{"#attributes":{"SystemTime":"2024-01-01T10:00:00.Z"}}'),
    _record(TimeCreated='{"#attributes":{"SystemTime":"2024-01-01T10:00:00ZZ"}}'),
    _record(TimeCreated='{"#attributes":{"SystemTime":"2024-01-01T10:00:00+00:00"}}'),
    _record(TimeCreated='{"#attributes":{"SystemTime":" 2024-01-01T10:00:00Z"}}'),
    _record(TimeCreated='{"#attributes":{"SystemTime":"9999-12-31T23:59:59.999Z"}}'),
    _record(TimeCreated='{"#attributes":{"SystemTime":1704103200}}'),
    _record(Keywords='"0x8020000000000000"', Level="0", Task="12544", Opcode="0.5"),
    _record(Execution='{"#attributes":{"ProcessID":636,"ThreadID":1e3}}'),
    _record(Execution='{"#attributes":{"ProcessID":99999999999999999999}}'),
    _record(event_data='{"TargetUserName":"caf\\u00e9","Path":"C:\\\\Windows\\\\x",'
                       '"Q":"a\\"b\\/c\\b\\f\\n\\r\\t","E":"\\ud83d\\ude00"}'),
    _record(event_data='{"TargetUserName":"\\ud83d"}'),     # lone surrogate: JSON error
    _record(event_data='{"TargetUserName":"\\ude00x"}'),
    _record(event_data='{"TargetUserName":"bj\u00f6rn","W":"\u6f22\u5b57"}'),
    _record(event_data='{"LogonType":3,"Neg":-5,"Zero":0,"N":null,"E":""}'),
    _record(event_data='{"LogonType":-0}'),
    _record(event_data='{"LogonType":3.0}'),
    _record(event_data='{"LogonType":true}'),
    _record(event_data='{"Data":{"#text":["a","b"]}}'),
    _record(event_data='{"#attributes":{"Name":"x"},"A":"b"}'),
    _record(event_data='{"Binary":"00FF","A":"b"}'),
    _record(event_data='{"_eid":"1","A":"b"}'),
    _record(event_data='{"A":"1","A":"2"}'),
    _record(event_data='{"A":{"#text":"x"}}'),
    _record(event_data='{"A":["x","y"]}'),
    _record(event_data="null"),
    _record(event_data="{}"),
    _record(event_data='"text"'),
    _record(event_data='{"A":"b"},"UserData":{"LogFileCleared":{"SubjectUserName":"x"}}'),
    _record(event_data='{"A":"b"},"UserData":null'),
    _record(system_extra=',"EventID":4625'),                # duplicate key
    _record(system_extra=',"Computer":"other"'),
    _record(event_data='{"A":"b"},"System":{}'),
    '{"Event":{"System":{"EventID":4624,"TimeCreated":{"#attributes":{"SystemTime":'
    '"2024-01-01T10:00:00Z"}}}}}',
    ' {"Event" : { "System" : { "EventID" : 4624 , "TimeCreated" : { "#attributes" : '
    '{ "SystemTime" : "2024-01-01T10:00:00Z" } } } , "EventData" : { "A" : "b" } } }\n',
    '{"Event":{"System":{"EventID":4624,"TimeCreated":{"#attributes":{"SystemTime":'
    '"2024-01-01T10:00:00Z"}}}},"Event":{"System":{}}}',
    '{"Other":1}',
    "[1,2]",
    '{"Event":null}',
    '{"Event":{"System":null}}',
    "",
    "{",
    '{"Event":{"System":{"EventID":4624}}} trailing',
    '"EventID": {"a":1}, "#text": 5',
    '"EventID":{"#text":  9}',
    '"EventID":\x1c 12',
    '"EventID":1234567890123456789012',
]


def test_variants_match_the_python_path():
    answered = [_check(v) for v in VARIANTS]
    # the C path takes the plain cases (and declines the odd ones: checked by _check)
    assert answered[0] and answered[1] and answered[2] and answered[30] and answered[33]
    assert not answered[12] and not answered[38] and not answered[48]


def test_time_parsing_matches_on_many_dates():
    rnd = random.Random(7)
    for _ in range(3000):
        y, mo, d = rnd.randint(1969, 2100), rnd.randint(1, 12), rnd.randint(1, 31)
        h, mi, s = rnd.randint(0, 24), rnd.randint(0, 59), rnd.randint(0, 60)
        frac = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(0, 9)))
        t = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}" + (f".{frac}" if frac else "")
        _check(_record(TimeCreated='{"#attributes":{"SystemTime":"' + t + 'Z"}}'))


def test_truncated_and_mutated_records_never_disagree(tmp_path):
    rnd = random.Random(11)
    base = _generated(tmp_path, 20) + VARIANTS[:1] + VARIANTS[30:36]
    n = answered = 0
    for data in base:
        for cut in range(0, len(data), max(1, len(data) // 60)):
            answered += _check(data[:cut])
            n += 1
        for _ in range(150):
            b = list(data)
            for _ in range(rnd.randint(1, 3)):
                i = rnd.randrange(len(b))
                b[i] = rnd.choice('{}[]",:\\0123456789 abnltru\x00\x1f\u00e9-.eE')
            answered += _check("".join(b))
            n += 1
    assert n > 3000 and 0 < answered < n


def _events(n: int) -> list[dict]:
    rnd = random.Random(3)
    out = []
    for i in range(n):
        ev = {"time_ms": 1_704_103_200_000 + i, "record_id": i, "event_id": 4624,
              "computer": "dc01.corp.local", "channel": "security",
              "action": rnd.choice(["logon", "tgs_request"]),
              "account": f"corp\\user{rnd.randrange(50)}",
              "src_ip": rnd.choice(["", "10.0.0.5", "10.0.0.6", None]),
              "ticket_encryption": rnd.choice([None, 18, 23]),
              "status": rnd.choice([0, 0xC000006D, 0xFFFFFFFF]),
              "flags": rnd.choice([0, 1, True, False]),
              "value": rnd.choice(["", "x", "caf\u00e9", "\U0001f600", "user1", "s\ud800"]),
              "not_a_field": object()}
        if i % 7 == 0:
            del ev["computer"]
            ev["extra"] = '{"a":"b"}'
        out.append(ev)
    return out


@pytest.mark.parametrize("n", [1, 2, 37, 1000, 1025, 8192])
def test_build_columns_gives_the_python_build(n):
    b = BatchBuilder(KEY_SOURCE, 3)
    b.events = _events(n)
    native_batch = b.build()
    assert native.ext.build_columns(b.events, _LAYOUT)[0] != "events"
    assert wire.encode(native_batch) == wire.encode(b.build_python())
    assert wire.encode(native_batch, 1) == wire.encode(b.build_python(), 1)
    assert native_batch.strings() == b.build_python().strings()


@pytest.mark.parametrize("bad", [
    {"time_ms": 1.5}, {"status": -1}, {"event_id": 2**31}, {"time_ms": 2**63},
    {"account": 5}, {"computer": b"dc"}, {"logon_type": "3"},
])
def test_build_columns_declines_what_the_normalizer_never_produces(bad):
    evs = _events(10)
    evs[4].update(bad)
    r = native.ext.build_columns(evs, _LAYOUT)
    assert r[0] == "events" and r[1] == evs
    b = BatchBuilder()
    b.events = evs
    try:                                     # the Python build decides (value or error)
        ref = wire.encode(b.build_python())
    except Exception as e:  # noqa: BLE001
        with pytest.raises(type(e)):
            b.build()
    else:
        assert wire.encode(b.build()) == ref


def _messages(batcher: Batcher, evs: list, flush_every: int = 0) -> list:
    out = []
    for i, ev in enumerate(evs):
        out += batcher.add(ev, i + 1)
        if flush_every and i % flush_every == flush_every - 1:
            out += batcher.flush()
    out += batcher.flush()
    return out


@pytest.mark.parametrize("partitions,max_events,dual,flush_every", [
    (1, 8192, True, 0), (4, 100, True, 0), (12, 37, False, 0), (3, 1000, True, 777),
    (7, 64, True, 50)])
def test_native_batcher_gives_the_python_batches(partitions, max_events, dual, flush_every):
    evs = _events(3000)
    rnd = random.Random(partitions)
    for ev in evs:
        ev.pop("not_a_field")
        ev["src_host"] = rnd.choice(["", "ws01", None, "WS02"])
        ev["event_id"] = rnd.choice([4624, 4688, 4720, 5145])
        if rnd.random() < 0.1:
            ev["account"] = rnd.choice(["", None])
    nat = Batcher(partitions, max_events, dual, native=True)
    py = Batcher(partitions, max_events, dual, native=False)
    a = _messages(nat, evs, flush_every)
    b = _messages(py, evs, flush_every)
    assert len(a) == len(b) > 1
    assert a == b                       # kind, partition, key, bytes, count, last_seq
    assert nat.pending == py.pending == 0


def test_native_batcher_pending_max_events_and_a_tainted_batch():
    evs = _events(50)
    for ev in evs:
        ev.pop("not_a_field")
    evs[20]["time_ms"] = 1.5                # only the Python build takes a float
    nat, py = Batcher(2, 1000, native=True), Batcher(2, 1000, native=False)
    for i, ev in enumerate(evs[:30]):
        assert nat.add(ev, i) == py.add(ev, i) == []
    assert nat.pending == py.pending > 30   # dual-keyed events count twice
    nat.max_events = py.max_events = 10     # as the gateway test does: takes effect
    a, b = nat.add(evs[30], 30), py.add(evs[30], 30)
    assert a == b and len(a) >= 1
    assert nat.flush() == py.flush()
    assert nat.pending == py.pending == 0


@pytest.mark.samples
@pytest.mark.skipif(not SAMPLES.exists(), reason="../shared/samples not present")
def test_every_sample_record_matches():
    files = sorted(SAMPLES.rglob("*.evtx"))
    assert len(files) > 250
    n = answered = 0
    for f in files:
        try:
            datas = [r["data"] for r in evtx.PyEvtxParser(str(f), number_of_threads=1)
                     .records_json()]
        except (OSError, RuntimeError):
            continue
        for d in datas:
            n += 1
            answered += _check(d)
    assert n > 8000 and answered > n * 0.7


# -- the normalizer ---------------------------------------------------------------------------

_VOCAB = [None, "", "-", " - ", "%%1793", "NULL", "N/A", "none ", "0x0", "0X1F", "0x", "0x-1",
          "-5", "+7", "007", "4294967296", "99999999999999999999", "-2147483649", "2147483647",
          "0xffffffff", "0x1ffffffff", "18446744073709551617", "0x10000000000000005",
          "1_000", "0x_1", "5.0", "DOMAIN\\User$", "\\alice",
          " corp \\Bob", "user@REALM.LOCAL", "svc$@corp.local", "a\\b@c", "\\\\HOST01",
          "\\\\", "::ffff:10.0.0.1", "::FFFF:", "127.0.0.1", "::1", "127.5.5.5", "localhost",
          "10.0.0.5", "Kerberos", "NtLmSsp ", "Negotiate", "MICROSOFT_AUTHENTICATION_PACKAGE_V1_0",
          "ANONYMOUS LOGON", "anonymous", "S-1-5-7", "s-1-0-0", "S-1-5-21-1-2-3-1104",
          "%%14675", "Value Deleted", "%%14674", "caf\u00e9", "\tx\n", "\x1c y \x1f", "\x0bz",
          'q"uo\\te', "ctl\x01\x1f\x7f", "x" * 5000, 5, 0.5, True]

_COMPUTERS = ["DC01.CORP.LOCAL", "\\\\dc01.corp.local", "dc01", "a.b", "a..b", "", None, " - ",
              "srv.x.y.z", "DC\u00e9.corp.local"]


def _random_flat(rnd: random.Random, eid: int) -> dict:
    from collectors.normalize import EVENT_TABLE, EXTRA_KEYS
    spec = EVENT_TABLE[eid]
    keys = set(EXTRA_KEYS.get(eid, ())) | {"SubjectUserSid", "TransmittedServices",
                                            "OperationType", "Status",
                                            "AuthenticationPackageName", "LogonProcessName"}
    for part in ("account", "target"):
        if spec.get(part):
            keys |= {k for k in spec[part] if k}
    keys |= set(spec.get("fields", {}).values()) | set(spec.get("ints", {}).values())
    keys |= {"UserAccountControl", "ServicePrincipalNames", "SamAccountName", "SidHistory",
             "AllowedToDelegateTo", "PasswordLastSet", "UserPrincipalName", "DnsHostName"}
    rec = {"_eid": eid, "_time_ms": rnd.randrange(0, 2**41), "_record": rnd.randrange(2**40),
           "_computer": rnd.choice(_COMPUTERS),
           "_channel": rnd.choice(["Security", "SECURITY", "System"]),
           "_provider": rnd.choice(["Microsoft-Windows-Security-Auditing", "",
                                    "Service Control Manager"]),
           "_user_sid": rnd.choice(["", "S-1-5-18", "s-1-5-18 ", None])}
    if rnd.random() < 0.2:
        del rec["_computer"]
    for k in sorted(keys):
        if rnd.random() < 0.85:
            rec[k] = rnd.choice(_VOCAB) if rnd.random() < 0.6 else rnd.choice(
                [v for v in _VOCAB if isinstance(v, str) and v.isascii() and len(v) < 50])
    return rec


def test_normalize_matches_the_compiled_python_functions():
    from collectors import normalize as nz
    table = nz.native_table()
    assert set(table) == set(nz.EVENT_TABLE)
    rnd = random.Random(5)
    n = answered = 0
    for eid in sorted(table):
        for _ in range(400):
            rec = _random_flat(rnd, eid)
            t, rid = rec["_time_ms"], rec["_record"]
            ref = nz._COMPILED[eid](dict(rec), eid, t, rid)
            got = native.ext.normalize(rec, eid, t, rid)
            n += 1
            if got is None:
                continue
            answered += 1
            assert got == ref, (eid, rec, got, ref)
            assert list(got) == list(ref), (eid, rec)
            assert [type(v) for v in got.values()] == [type(v) for v in ref.values()]
    # plain-ASCII records are answered; non-ASCII / non-str values and '_' ints are declined
    assert n == 400 * len(table) and 0.15 * n < answered < n


def test_normalizer_with_the_c_path_equals_the_reference_walk():
    from collectors.normalize import EVENT_TABLE, Normalizer
    rnd = random.Random(9)
    fast, ref = Normalizer(), Normalizer()
    for eid in sorted(EVENT_TABLE):
        for _ in range(60):
            rec = _random_flat(rnd, eid)
            try:
                a = orjson.dumps(fast.normalize(dict(rec)))
            except Exception as e:  # noqa: BLE001 - compare the errors too
                a = (type(e).__name__, str(e))
            try:
                b = orjson.dumps(ref.normalize_reference(dict(rec)))
            except Exception as e:  # noqa: BLE001
                b = (type(e).__name__, str(e))
            assert a == b, (eid, rec)


def test_normalize_declines_outside_its_table():
    assert native.ext.normalize({"_eid": 4688}, 4688, 0, 0) is None
    assert native.ext.normalize({"x": 1}, 99999, 0, 0) is None
    assert native.ext.normalize({"TargetUserName": "caf\u00e9"}, 4624, 0, 0) is None
    ev = native.ext.normalize({"TargetUserName": "Alice", "TargetDomainName": "CORP.LOCAL",
                               "IpAddress": "::ffff:10.0.0.5", "LogonType": "3",
                               "_computer": "DC01.corp.local", "_channel": "Security"},
                              4624, 1000, 7)
    assert ev["account"] == "corp\\alice" and ev["src_ip"] == "10.0.0.5"
    assert ev["logon_type"] == 3 and ev["computer"] == "dc01.corp.local"


# -- records straight to events (evtx_event) and the pipeline's block path ----------------------

def _reference_event(data: str):
    """What the per-record path makes of one evtx JSON record."""
    from collectors.evtx_source import NORMALIZED_EVENT_IDS
    from collectors.normalize import Normalizer
    pe = peek_event_id_py(data)
    if pe is not None and pe not in NORMALIZED_EVENT_IDS:
        return pe
    try:
        return Normalizer().normalize(from_evtx_json(orjson.loads(data)))
    except Exception as e:  # noqa: BLE001 - compared as "not answered in C"
        return e


def _check_event(data: str) -> bool:
    got = native.ext.evtx_event(data)
    if got is None:
        return False
    ref = _reference_event(data)
    if isinstance(got, int):
        assert got == ref, data
    else:
        assert isinstance(ref, dict) and got == ref, (data, got, ref)
        assert list(got) == list(ref), data
        assert [type(v) for v in got.values()] == [type(v) for v in ref.values()], data
    return True


def _as_json_record(rec: dict) -> str:
    """A flat record written back as the evtx parser's JSON."""
    sysd = {"Provider": {"#attributes": {"Name": rec.get("_provider")}},
            "EventID": rec["_eid"], "Version": 0,
            "TimeCreated": {"#attributes": {"SystemTime": "2024-03-01T10:00:00.25Z"}},
            "EventRecordID": rec["_record"], "Channel": rec.get("_channel"),
            "Computer": rec.get("_computer"),
            "Security": {"#attributes": {"UserID": rec["_user_sid"]}}
            if rec.get("_user_sid") else None}
    ed = {k: v for k, v in rec.items() if not k.startswith("_")
          and (v is None or isinstance(v, (str, int)))}
    return orjson.dumps({"Event": {"System": sysd, "EventData": ed}}).decode()


def test_evtx_event_matches_the_per_record_path(tmp_path):
    from collectors.normalize import EVENT_TABLE
    datas = _generated(tmp_path)
    assert sum(_check_event(d) for d in datas) == len(datas)
    answered = sum(_check_event(v) for v in VARIANTS)
    assert answered >= 15
    rnd = random.Random(13)
    n = answered = 0
    for eid in sorted(EVENT_TABLE):
        for _ in range(150):
            data = _as_json_record(_random_flat(rnd, eid))
            answered += _check_event(data)
            n += 1
            if rnd.random() < 0.2:                      # and a damaged copy
                b = list(data)
                b[rnd.randrange(len(b))] = rnd.choice('{}",:\\0 n\u00e9')
                _check_event("".join(b))
    assert 0.1 * n < answered < n


def _mixed_evtx(tmp_path) -> str:
    """Generated Security events with records the C path declines in the middle of blocks
    (non-ASCII names), ids it does not consume, and enough records for several blocks."""
    events = g.security_events(1500)
    for i, ev in enumerate(events):
        if i % 97 == 5 and "TargetUserName" in ev.data:
            ev.data = dict(ev.data, TargetUserName=f"bj\u00f6rn{i}")
        elif ev.eid == 4769 and (i // 12) % 3 == 0:  # no source: dual-keyed by its event id
            ev.data = dict(ev.data, IpAddress="-")
        elif ev.eid == 4625 and (i // 12) % 2 == 0:  # one-character values
            ev.data = dict(ev.data, WorkstationName="W", TargetUserName="a")
    path = tmp_path / "mixed.evtx"
    path.write_bytes(g.evtx_bytes(g.build_chunks(events, first_id=1), 1501))
    return str(path)


def _run_pipeline(path: str, blocks: bool, partitions: int = 3):
    """The collector pipeline over an EVTX file; batches close when full or at the end only
    (no linger timer: batch boundaries do not depend on how fast the path is)."""
    from collectors.evtx_source import FileSource
    from collectors.pipeline import CollectorPipeline
    from stream.settings import TopicSettings
    prod = RecordingProducer()
    src = FileSource([path])
    pipe = CollectorPipeline(prod, TopicSettings(partitions=partitions), sources=[src],
                             batch_events=300, budget=700, linger_ms=3_600_000)
    if not blocks:
        pipe._native_blocks = src.native_blocks = False
    rep = pipe.run()
    return prod, pipe, rep


def test_pipeline_block_path_equals_the_per_record_path(tmp_path):
    path = _mixed_evtx(tmp_path)
    pa, a, ra = _run_pipeline(path, True)
    pb, b, rb = _run_pipeline(path, False)
    assert a._native_blocks and not b._native_blocks
    key = [(m.topic_kind, m.partition, m.key, m.value, m.n_events, m.last_seq)
           for m in pa.batches]
    assert key == [(m.topic_kind, m.partition, m.key, m.value, m.n_events, m.last_seq)
                   for m in pb.batches]
    assert len(pa.batches) > 5
    assert pa.raw == pb.raw
    assert (ra["read"], ra["normalized"], ra["unknown"]) == (rb["read"], rb["normalized"],
                                                             rb["unknown"]) == (1500, 1250, 250)
    assert a.stats.event_ids == b.stats.event_ids
    assert a.normalizer.unknown_ids == b.normalizer.unknown_ids == {4688: 125, 5156: 125}
    assert a.normalizer.normalized == b.normalizer.normalized == 1250
    assert a.normalizer.unknown == b.normalizer.unknown == 250
    # the epochs carry the same final position; the block path closes fewer epochs
    assert pa.epochs_closed[-1][0] == pb.epochs_closed[-1][0] != {}
    assert sum(n for _, n in pa.epochs_closed) == sum(n for _, n in pb.epochs_closed) == 1500


_DIGEST = """
import hashlib, json, sys
sys.path.insert(0, {root!r})
from tests.collectors.test_native import _run_pipeline
from collectors import native
prod, pipe, rep = _run_pipeline({path!r}, True)
h = hashlib.sha256()
for m in prod.batches:
    h.update(repr((m.topic_kind, m.partition, m.key, m.n_events, m.last_seq)).encode())
    h.update(m.value)
for topic, value, headers in prod.raw:      # dead letters, without the time they were sent
    h.update(repr((topic, value, sorted((k, v) for k, v in headers.items()
                                        if k != "itdr-time-ms"))).encode())
print(json.dumps({{"hot_path": native.status(), "reader": native.evtx_reader(),
                  "digest": h.hexdigest(),
                  "counts": [rep["read"], rep["normalized"], rep["unknown"],
                             rep["dead_lettered"]],
                  "unknown_ids": sorted(pipe.normalizer.unknown_ids.items())}}))
"""

NATIVE_AND_PYTHON = (("1", {"ITDR_NATIVE": "1"}), ("0", {"ITDR_NATIVE": "0"}))


def _digests(path: str, variants=NATIVE_AND_PYTHON) -> dict:
    """The pipeline's batches and dead letters over an EVTX file, in a subprocess per
    variant (name, environment): hot path, EVTX reader, a digest of every batch and dead
    letter, counters. By default with the extension ("1") and without it ("0")."""
    import json
    import subprocess
    import sys
    root = str(Path(__file__).resolve().parents[2])
    out = {}
    for name, env in variants:
        r = subprocess.run([sys.executable, "-c", _DIGEST.format(root=root, path=path)],
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, **env}, cwd=root)
        assert r.returncode == 0, r.stderr[-2000:]
        out[name] = json.loads(r.stdout.splitlines()[-1])
    if variants is NATIVE_AND_PYTHON:
        assert out["1"]["hot_path"] == "native" and out["0"]["hot_path"] == "python"
    return out


def test_the_whole_collector_path_gives_the_same_batches_without_the_extension(tmp_path):
    """ITDR_NATIVE=0 (a collector built without a compiler): orjson + the Python flattening,
    the compiled Python normalizers and the Python batcher; byte for byte the batches of the
    C path."""
    out = _digests(_mixed_evtx(tmp_path))
    assert out["1"]["counts"] == out["0"]["counts"] == [1500, 1250, 250, 0]
    assert out["1"]["unknown_ids"] == out["0"]["unknown_ids"]
    assert out["1"]["digest"] == out["0"]["digest"]


@pytest.mark.samples
@pytest.mark.skipif(not SAMPLES.exists(), reason="../shared/samples not present")
def test_the_sample_mix_gives_the_same_batches_without_the_extension(tmp_path):
    """As above on the bench's input: 20k records assembled from the Security/System chunks of
    every sample (5145, 4624, 5136, 4662, 4661, 4768, 4776 ... and the ids the product
    skips)."""
    from collectors.bench import build_input, default_files
    path, _, _ = build_input(default_files(), 20_000, str(tmp_path))
    out = _digests(path)
    assert out["1"]["counts"] == out["0"]["counts"] and out["1"]["counts"][0] >= 20_000
    assert out["1"]["unknown_ids"] == out["0"]["unknown_ids"]
    assert out["1"]["digest"] == out["0"]["digest"]


def _flat_records(it_blocks) -> list:
    out = []
    for blk, err in it_blocks:
        if err is not None:
            out.append(("error", str(err)))
        else:
            out.extend(zip(blk.rids, blk.datas))
    return out


@pytest.mark.parametrize("damage", ["none", "record", "chunk-header", "start"])
def test_evtx_blocks_read_what_the_record_iterator_reads(tmp_path, damage):
    """iter_evtx_blocks (the parser's iterator drained in C) against iter_evtx_records:
    the same records, errors and order, on a clean file, damaged records and chunks, and a
    checkpoint to start after."""
    from collectors.evtx_source import iter_evtx_blocks, iter_evtx_records
    events = g.security_events(900)
    chunks = [bytearray(c) for c in g.build_chunks(events, first_id=1)]
    if damage == "record":
        chunks[1][600:640] = b"\xff" * 40            # inside a record of the second chunk
    elif damage == "chunk-header":
        chunks[2][0:8] = b"NotAChnk"
    path = tmp_path / "d.evtx"
    path.write_bytes(g.evtx_bytes([bytes(c) for c in chunks], 901))
    start = 250 if damage == "start" else 0
    ref = [("error", str(err)) if err is not None else (rid, data)
           for rid, data, err in iter_evtx_records(str(path), start)]
    got = _flat_records(iter_evtx_blocks(str(path), start, size=64))
    assert got == ref
    if damage != "none":
        assert damage == "start" or any(r[0] == "error" for r in ref) or len(ref) < 900
    assert _flat_records(iter_evtx_blocks(str(tmp_path / "missing.evtx"))) == \
        [("error", str(e)) for _, _, e in iter_evtx_records(str(tmp_path / "missing.evtx"))]
