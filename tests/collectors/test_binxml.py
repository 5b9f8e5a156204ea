"""The binary-XML chunk reader of ``collectors/_native.c`` against the ``evtx`` crate.

The reader takes a 64 KiB EVTX chunk as it is on disk and gives, per record, the flat record
(``chunk_flat``) and the event (``chunk_event``) that the crate's JSON gives through
``records.from_evtx_json`` and the normalizer -- or declines the record, which then takes that
path. These tests hold the two side by side on generated logs (random templates: System
variants, EventData inline and nested, UserData, unnamed Data, string arrays, Binary, every
value type the reader renders and some it declines, odd strings), on damaged chunks, on every
sample when ``../shared/samples`` is there, and through the pipeline (batches byte for byte
against the crate-JSON block path and the per-record path).
"""

from __future__ import annotations

import io
import os
import random
import struct
import uuid
from pathlib import Path

import evtx
import orjson
import pytest

from collectors import native
from collectors.evtx_source import peek_event_id_py
from collectors.normalize import NORMALIZED_EVENT_IDS, Normalizer
from collectors.records import from_evtx_json
from stream.errors import ParseError

from . import evtx_gen as g
from .evtx_gen import El, Nested, Sub

SAMPLES = Path("/work/shared/samples")

pytestmark = pytest.mark.skipif(
    os.environ.get("ITDR_NATIVE", "1") == "0" or not native.BINXML,
    reason="the C extension (or its binary-XML reader) is turned off on purpose")

X = native.ext if native.AVAILABLE else None


# -- the comparison -----------------------------------------------------------------------------

def _crate(path: str) -> dict:
    """record id -> (the event id the per-record path peeks, the crate's flat record or the
    ParseError from_evtx_json raises)."""
    out = {}
    it = evtx.PyEvtxParser(str(path), number_of_threads=1).records_json()
    while True:
        try:
            r = next(it)
        except StopIteration:
            return out
        except RuntimeError:            # a record the crate cannot read: absent here
            continue
        pe = peek_event_id_py(r["data"])
        try:
            out[r["event_record_id"]] = pe, from_evtx_json(orjson.loads(r["data"]))
        except ParseError as e:
            out[r["event_record_id"]] = pe, e


def _reference_event(peeked, flat):
    """What the per-record path makes of the record: the id it peeks when the product does
    not consume it (the record is then never parsed), else the normalizer's event."""
    if peeked is not None and peeked not in NORMALIZED_EVENT_IDS:
        return peeked
    if isinstance(flat, Exception):
        return flat
    try:
        return Normalizer().normalize(flat)
    except Exception as e:  # noqa: BLE001 - compared as "not answered in C"
        return e


def _compare(path: str) -> dict:
    """Every record of every chunk the reader takes: C == crate whenever C answers (flat
    record: keys, order, types; event: the normalizer's dict, or the id of an id the product
    does not consume). Returns counters."""
    data = Path(path).read_bytes()
    crate = _crate(path)
    st = {"records": 0, "flat": 0, "event": 0, "unconsumed": 0, "chunks_declined": 0,
          "crate_failed": 0}
    for off in range(g.FILE_HEADER_SIZE, len(data) - g.CHUNK_SIZE + 1, g.CHUNK_SIZE):
        c = data[off:off + g.CHUNK_SIZE]
        r = X.chunk_records(c, 0)
        if r is None:
            st["chunks_declined"] += 1
            continue
        n, lo, rids = r
        assert lo == 0 and len(rids) == n
        for i in range(n):
            st["records"] += 1
            peeked, want = crate.get(rids[i], (None, None))
            got = X.chunk_flat(c, i)
            if want is None:                # the crate cannot read it: C must decline it too
                st["crate_failed"] += 1
                assert got is None and X.chunk_event(c, i) is None, rids[i]
                continue
            if got is not None:
                st["flat"] += 1
                assert isinstance(want, dict), (rids[i], got, want)
                assert got == want, (rids[i], {k: (got.get(k), want.get(k))
                                               for k in set(got) | set(want)
                                               if got.get(k) != want.get(k)})
                assert list(got) == list(want), rids[i]
                assert [type(v) for v in got.values()] == [type(v) for v in want.values()]
            ev = X.chunk_event(c, i)
            if ev is None:
                continue
            ref = _reference_event(peeked, want)
            if isinstance(ev, int):
                st["unconsumed"] += 1
                assert ev == ref, (rids[i], ev, ref)
            else:
                st["event"] += 1
                assert isinstance(ref, dict) and ev == ref, (rids[i], ev, ref)
                assert list(ev) == list(ref)
                assert [type(v) for v in ev.values()] == [type(v) for v in ref.values()]
    return st


# -- generated logs: random templates ----------------------------------------------------------

_WORDS = ["DC01$", "alice", "CORP", "corp.local", "-", " padded ", "%%1833", "0x3e7", "NULL",
          "Kerberos", "NtLmSsp ", "krbtgt", "svc_sql", "10.0.0.5", "::ffff:10.1.2.3",
          "fe80::1%12", "127.0.0.1", "WS07", "\\\\DC01", "admin@CORP.LOCAL", "",
          "cn=Domain Admins,cn=Users,dc=corp,dc=local", "%%14593", "S-1-5-18"]
_ODD = ["Bj\u00f6rn", "\u00c5SA", "\u0130stanbul", "caf\u00e9\u00a0", "\u2003space\u2003",
        "\U0001F600x", "na\u00efve\u0085"]
_NAMES = ["SubjectUserSid", "SubjectUserName", "SubjectDomainName", "SubjectLogonId",
          "TargetUserSid", "TargetUserName", "TargetDomainName", "TargetSid", "LogonType",
          "LogonProcessName", "AuthenticationPackageName", "WorkstationName", "Workstation",
          "IpAddress", "IpPort", "Status", "SubStatus", "ServiceName", "ServiceSid",
          "TicketOptions", "TicketEncryptionType", "PreAuthType", "PackageName", "ObjectName",
          "ObjectServer", "ProcessName", "PrivilegeList", "OperationType", "AccessMask",
          "Properties", "ObjectDN", "AttributeLDAPDisplayName", "AttributeValue",
          "UserAccountControl", "SamAccountName", "ServicePrincipalNames", "SidHistory",
          "AllowedToDelegateTo", "ImagePath", "ServiceFileName", "ServiceType",
          "AccountName", "MemberName", "MemberSid", "Extra1", "Extra2"]
_EIDS = [4624, 4625, 4768, 4769, 4776, 4661, 4662, 5136, 4738, 4742, 4720, 4732, 4728, 4672,
         7045, 4697, 1102, 104, 5805, 4688, 5156, 4663]
_SYSTEM_IDS = {104, 7045, 5805}


def _string(rnd: random.Random):
    k = rnd.random()
    if k < 0.70:
        return g.T_STRING, rnd.choice(_WORDS)
    if k < 0.80:
        return g.T_STRING, rnd.choice(_ODD)
    if k < 0.86:
        return g.T_STRING, (rnd.choice(_WORDS) + "\0").encode("utf-16-le")   # trailing NUL
    if k < 0.90:
        return g.T_STRING, "ab\0cd".encode("utf-16-le")                       # NUL inside
    if k < 0.93:
        return g.T_STRING, b"a\x00\x00\xd8b\x00"                               # lone surrogate
    if k < 0.96:
        return g.T_STRING, b"abc"                                              # odd size
    return g.T_STRING, None                                                    # null


def _value(rnd: random.Random, kind: str):
    """(value type, value: python value, raw bytes or None) of a field of this kind."""
    if kind == "str":
        return _string(rnd)
    if kind == "u8":
        return 0x04, rnd.randrange(256)
    if kind == "u16":
        return 0x06, rnd.randrange(65536)
    if kind == "u32":
        return 0x08, rnd.choice([0, 3, 10, 0xFFFFFFFF, rnd.randrange(1 << 32)])
    if kind == "u64":
        return 0x0A, rnd.choice([0, 1, (1 << 64) - 1, 1 << 63, rnd.randrange(1 << 64)])
    if kind == "i8":
        return 0x03, struct.pack("<b", rnd.randrange(-128, 128))
    if kind == "i16":
        return 0x05, struct.pack("<h", rnd.randrange(-32768, 32768))
    if kind == "i32":
        return 0x07, struct.pack("<i", rnd.choice([-1, -(1 << 31), 5, rnd.randrange(-9, 9)]))
    if kind == "i64":
        return 0x09, struct.pack("<q", rnd.choice([-1, -(1 << 63), (1 << 63) - 1, 42]))
    if kind == "bool":
        return 0x0D, struct.pack("<I", rnd.choice([0, 1, 1, 2]))
    if kind == "guid":
        return 0x0F, uuid.UUID(int=rnd.randrange(1 << 128))
    if kind == "hex32":
        return 0x14, struct.pack("<I", rnd.choice([0, 0x3E7, 0x1FC, 0xFFFFFFFF, 0x10]))
    if kind == "hex64":
        return 0x15, struct.pack("<Q", rnd.choice([0, 0x3E7, 0x8020000000000000, 1 << 40]))
    if kind == "sid":
        if rnd.random() < 0.1:                                   # authority >= 2^32
            return 0x13, bytes([1, 1, 0, 1, 0, 0, 0, 5]) + struct.pack("<I", 18)
        return 0x13, rnd.choice(["S-1-5-18", "S-1-0-0", "S-1-5-7",
                                 f"S-1-5-21-1004336348-1177238915-682003330-{rnd.randrange(2000)}"])
    if kind == "ft":
        return 0x11, struct.pack("<Q", rnd.choice([0, 1, g.filetime(0), g.filetime(1_700_000_000_123),
                                                   rnd.randrange(1 << 62)]))
    if kind == "real":
        return 0x0C, struct.pack("<d", 1.5)
    if kind == "ansi":
        return 0x02, b"abc"
    if kind == "arr":
        items = [rnd.choice(_WORDS) for _ in range(rnd.randrange(1, 4))]
        return 0x81, "".join(x + "\0" for x in items).encode("utf-16-le")
    if kind == "bin":
        return 0x0E, bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 9)))
    raise AssertionError(kind)


_KINDS = ["str"] * 12 + ["u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "bool", "guid",
                         "hex32", "hex64", "sid", "sid", "ft", "real", "ansi", "arr", "bin"]


class _Shape:
    """A random template (outer, and maybe nested) and how to fill its values."""

    def __init__(self, rnd: random.Random, tid: int):
        self.tid, self.rnd = tid, rnd
        self.kinds: list[str] = []          # outer substitution i -> value kind
        self.eid = rnd.choice(_EIDS)
        system = self._system()
        body = self._body()
        self.tpl = El("Event", attrs=[("xmlns", g.EVENT_NS)], children=[system] + body)

    def _sub(self, kind: str, kinds=None, optional=True) -> Sub:
        kinds = self.kinds if kinds is None else kinds
        kinds.append(kind)
        return Sub(len(kinds) - 1, 0x01, optional)

    def _system(self) -> El:
        rnd = self.rnd
        chan = "System" if self.eid in _SYSTEM_IDS else "Security"
        if rnd.random() < 0.05:
            chan = "Application"                               # the channel guard declines
        prov = [("Name", self._sub("provider"))]
        if rnd.random() < 0.2:
            prov.append(("Guid", "{54849625-5478-4994-a5ba-3e3b0328c30d}"))
        if rnd.random() < 0.2:
            prov.append(("EventSourceName", self._sub("esn")))
        eid_el = El("EventID", children=[self._sub("eid")])
        if rnd.random() < 0.3:
            eid_el.attrs = [("Qualifiers", self._sub("u16"))]
        kids = [El("Provider", attrs=prov), eid_el,
                El("Version", children=[self._sub("u8")]),
                El("Keywords", children=[self._sub("hex64")]),
                El("TimeCreated", attrs=[("SystemTime", self._sub("time"))]),
                El("EventRecordID", children=[self._sub("rid")]),
                El("Correlation", attrs=[("ActivityID", self._sub("guid"))]),
                El("Channel", children=[chan if rnd.random() < 0.3 else self._sub("chan:" + chan)]),
                El("Computer", children=["DC01.corp.local" if rnd.random() < 0.3
                                         else self._sub("computer")])]
        if rnd.random() < 0.8:
            kids.append(El("Security", attrs=[("UserID", self._sub("uid"))]))
        rnd.shuffle(kids)
        return El("System", children=kids)

    def _fields(self) -> list[tuple[str, str]]:
        rnd = self.rnd
        base = [n for n, _ in g.EVENT_FIELDS.get(self.eid, [])]
        names = base + rnd.sample(_NAMES, rnd.randrange(2, 9))
        names = list(dict.fromkeys(names))
        if rnd.random() < 0.04:
            names.append(names[0])                             # a repeated Name: declined
        return [(n, "str" if rnd.random() < 0.75 else rnd.choice(_KINDS)) for n in names]

    def _body(self) -> list:
        rnd = self.rnd
        k = rnd.random()
        self.inner_kinds: list[str] = []
        self.nested = None
        if k < 0.15:                                          # EventData in the outer template
            return [self._eventdata(self.kinds)]
        if k < 0.60:                                          # nested EventData (the usual)
            self.nested = El("EventData", children=self._eventdata(self.inner_kinds).children)
            return [self._sub("nested")]
        if k < 0.72:                                          # nested UserData with a wrapper
            self.nested = El("UserData", children=[self._wrapper(self.inner_kinds)])
            return [self._sub("nested")]
        if k < 0.82:                                          # UserData holding the nested wrapper
            self.nested = self._wrapper(self.inner_kinds)
            return [El("UserData", children=[self._sub("nested")])]
        if k < 0.95:                                          # unnamed Data
            kids = []
            for _ in range(rnd.randrange(1, 4)):
                kind = rnd.choice(["str", "str", "u32", "arr", "bool", "hex32"])
                kids.append(El("Data", children=[self._sub(kind, self.inner_kinds)]))
            if rnd.random() < 0.5:
                kids.append(El("Binary", children=[self._sub("bin", self.inner_kinds)]))
            self.nested = El("EventData", children=kids)
            return [self._sub("nested")]
        return []                                             # no body

    def _eventdata(self, kinds) -> El:
        kids = [El("Data", attrs=[("Name", n)], children=[self._sub(kind, kinds)])
                for n, kind in self._fields()]
        if self.rnd.random() < 0.1:
            kids.append(El("Data", attrs=[("Name", "EmptyOne")]))      # no content
        if self.rnd.random() < 0.15:
            kids.append(El("Binary", children=[self._sub("bin", kinds)]))
        return El("EventData", children=kids)

    def _wrapper(self, kinds) -> El:
        leaf = [El(n, children=[self._sub(kind, kinds)]) for n, kind in self._fields()]
        if self.rnd.random() < 0.3:         # a leaf with an attribute (declined), maybe empty
            leaf.append(El("Flagged", attrs=[("kind", "x")],
                           children=[] if self.rnd.random() < 0.5 else ["text"]))
        return El("LogFileCleared", attrs=[("xmlns", "http://manifests.microsoft.com/win/2004/08/windows/eventlog")],
                  children=leaf)

    def values(self, rid: int, i: int) -> list:
        out = []
        for kind in self.kinds:
            out.append(self._one(kind, rid, i))
        return out

    def _one(self, kind: str, rid: int, i: int):
        rnd = self.rnd
        if kind == "provider":
            return g.T_STRING, ("Microsoft-Windows-Security-Auditing" if rnd.random() < 0.9
                                else rnd.choice(["Service Control Manager", "NETLOGON", ""]))
        if kind == "esn":
            return g.T_STRING, rnd.choice(["Service Control Manager", "", "NETLOGON"])
        if kind == "eid":
            return g.T_UINT16, self.eid
        if kind == "time":
            if rnd.random() < 0.03:
                return 0x11, struct.pack("<Q", rnd.choice([0, g.filetime(-5000)]))
            return 0x11, g.filetime(1_704_103_200_000 + 250 * i + rnd.randrange(1000))
        if kind == "rid":
            if rnd.random() < 0.05:
                return g.T_NULL, None
            return g.T_UINT64, rid if rnd.random() < 0.9 else rid + 1_000_000
        if kind.startswith("chan:"):
            return g.T_STRING, kind[5:]
        if kind == "computer":
            return g.T_STRING, rnd.choice(["DC01.corp.local", "\\\\DC02", "dc03", "DC\u00d8.corp"])
        if kind == "uid":
            return (g.T_SID, "S-1-5-18") if rnd.random() < 0.5 else (g.T_NULL, None)
        if kind == "nested":
            vals = [self._one(k, rid, i) for k in self.inner_kinds]
            return g.T_BINXML, Nested(self.tid + 1, self.nested, vals)
        if kind in ("u8", "u16", "guid", "hex64") and rnd.random() < 0.1:
            return g.T_NULL, None
        return _value(rnd, kind)


def _random_log(tmp_path, seed: int, n: int = 1500, shapes: int = 30) -> str:
    rnd = random.Random(seed)
    sh = [_Shape(rnd, 0x100 + 2 * k) for k in range(shapes)]
    chunks, cb, rid = [], g.ChunkBuilder(), 1
    for i in range(n):
        s = rnd.choice(sh)
        vals = s.values(rid, i)
        try:
            cb.add(rid, 0, s.tid, s.tpl, vals)
        except g.ChunkFull:
            chunks.append(cb.finish())
            cb = g.ChunkBuilder()
            cb.add(rid, 0, s.tid, s.tpl, vals)
        rid += 1
    chunks.append(cb.finish())
    path = tmp_path / f"random{seed}.evtx"
    path.write_bytes(g.evtx_bytes(chunks, rid))
    return str(path)


def test_the_common_shape_is_read_in_c_entirely(tmp_path):
    """The generator's Security log (the outer template with EventData inline): every
    record answered in C, flat records and events equal to the crate's."""
    path = tmp_path / "sec.evtx"
    events = g.security_events(1200)
    path.write_bytes(g.evtx_bytes(g.build_chunks(events, first_id=7), 1207))
    st = _compare(str(path))
    assert st["records"] == 1200 and st["chunks_declined"] == 0
    assert st["flat"] == 1200
    assert st["event"] + st["unconsumed"] == 1200 and st["unconsumed"] == 200


@pytest.mark.parametrize("seed", range(6))
def test_random_templates_match_the_crate(tmp_path, seed):
    """Random templates and values: whatever C answers equals the crate's record, and C
    answers most records (the declines are the listed oddities)."""
    st = _compare(_random_log(tmp_path, seed))
    assert st["records"] == 1500 and st["chunks_declined"] == 0
    assert st["flat"] > 0.35 * st["records"], st
    assert st["event"] > 0.1 * st["records"], st
    assert st["unconsumed"] > 0, st


def test_nested_templates_and_userdata_are_read_in_c(tmp_path):
    """The shapes real logs have (EventData and UserData in a nested BinXml value, a lone
    unnamed Data with a string array, Binary) answered in C, not declined."""
    base = len(g.SYSTEM_FIELDS)
    sysv = lambda eid, rid, chan="Security": [  # noqa: E731
        (g._SYS_TYPES[k], v) for k, v in zip(g.SYSTEM_FIELDS, [
            "Microsoft-Windows-Eventlog" if eid == 1102 else "NETLOGON" if eid == 5805
            else g.SECURITY_PROVIDER, g.SECURITY_GUID, eid, 0, 4, 104, 0, 0x4020000000000000,
            g.filetime(1_704_103_200_000 + rid), rid, 820, 608, chan, "DC01.corp.local",
            None])]

    def outer(sub_el):
        t = g.event_template([])
        t.children[1] = sub_el                 # EventData -> the nested value's place
        return t

    cleared = El("UserData", children=[El("LogFileCleared", attrs=[("xmlns", "x")], children=[
        El("SubjectUserSid", children=[Sub(0, g.T_SID)]),
        El("SubjectUserName", children=[Sub(1, g.T_STRING)]),
        El("SubjectDomainName", children=[Sub(2, g.T_STRING)]),
        El("SubjectLogonId", children=[Sub(3, g.T_HEX64)])])])
    netlogon = El("EventData", children=[El("Data", children=[Sub(0, 0x81)]),
                                         El("Binary", children=[Sub(1, 0x0E)])])
    cb = g.ChunkBuilder()
    for rid in range(1, 41):
        if rid % 2:
            inner = Nested(0x501, cleared, [(g.T_SID, "S-1-5-21-1-2-3-500"),
                                            (g.T_STRING, "Administrator"), (g.T_STRING, "CORP"),
                                            (g.T_HEX64, 0x3E7 + rid)])
            cb.add(rid, 0, 0x500, outer(Sub(base, g.T_BINXML)), sysv(1102, rid) +
                   [(g.T_BINXML, inner)])
        else:
            inner = Nested(0x503, netlogon, [(0x81, "WS01\0%%5\0".encode("utf-16-le")),
                                             (0x0E, b"\x22\x00\x00\xc0")])
            cb.add(rid, 0, 0x502, outer(Sub(base, g.T_BINXML)), sysv(5805, rid, "System") +
                   [(g.T_BINXML, inner)])
    path = tmp_path / "nested.evtx"
    path.write_bytes(g.evtx_bytes([cb.finish()], 41))
    st = _compare(str(path))
    assert st == {"records": 40, "flat": 40, "event": 40, "unconsumed": 0,
                  "chunks_declined": 0, "crate_failed": 0}
    c = path.read_bytes()[g.FILE_HEADER_SIZE:]
    assert X.chunk_flat(c, 1)["Data0"] == "WS01" and X.chunk_flat(c, 1)["Binary"] == "220000C0"
    assert X.chunk_flat(c, 0)["SubjectLogonId"] == "0x3e8"


def test_odd_but_valid_system_parts_are_read_in_c(tmp_path):
    """System without Security, a null EventRecordID, Computer and Channel as template
    literals, a provider named only by EventSourceName: answered in C, as the crate reads
    them."""
    base = len(g.SYSTEM_FIELDS)
    fields = g.EVENT_FIELDS[4624]
    tpl = g.event_template(fields)
    system = tpl.children[0]
    system.children = [c for c in system.children if c.name != "Security"]
    for c in system.children:
        if c.name == "Computer":
            c.children = ["DC09.corp.local"]
        elif c.name == "Channel":
            c.children = ["Security"]
        elif c.name == "Provider":
            c.attrs = [("EventSourceName", Sub(0, g.T_STRING))]
    cb = g.ChunkBuilder()
    for rid in range(1, 31):
        data = g._event_data(4624, rid)
        vals = [(g._SYS_TYPES[k], v) for k, v in zip(g.SYSTEM_FIELDS, [
            g.SECURITY_PROVIDER, g.SECURITY_GUID, 4624, 2, 0, 12544, 0, 0x8020000000000000,
            g.filetime(1_704_103_200_000 + rid), None if rid % 3 == 0 else rid, 636, 4,
            "Security", "DC01", None])]
        vals += [(t, data.get(n)) for n, t in fields]
        assert len(vals) == base + len(fields)
        cb.add(rid, 0, 0x777, tpl, vals)
    path = tmp_path / "odd.evtx"
    path.write_bytes(g.evtx_bytes([cb.finish()], 31))
    st = _compare(str(path))
    assert st["records"] == st["flat"] == st["event"] == 30, st
    c = path.read_bytes()[g.FILE_HEADER_SIZE:]
    assert X.chunk_flat(c, 2)["_record"] == 0 and X.chunk_flat(c, 2)["_computer"] == "DC09.corp.local"


def test_damaged_chunks_never_disagree_with_the_crate(tmp_path):
    """Byte mutations of generated chunks: the reader either declines a record (or the whole
    chunk) or gives what the crate gives for it; it never reads out of the chunk (the
    sanitizer test runs this file too)."""
    rnd = random.Random(11)
    base = Path(_random_log(tmp_path, 3, n=600, shapes=12)).read_bytes()
    hdr, chunks = base[:g.FILE_HEADER_SIZE], base[g.FILE_HEADER_SIZE:]
    answered = both = 0
    for trial in range(60):
        b = bytearray(chunks[:g.CHUNK_SIZE])
        free = struct.unpack_from("<I", b, 48)[0]
        for _ in range(rnd.choice([1, 2, 4, 16])):
            b[rnd.randrange(512, free)] = rnd.randrange(256)
        c = bytes(b)
        r = X.chunk_records(c, 0)
        if r is None:
            continue
        n, _, rids = r
        items = []                          # the crate's items in order: one per record
        it = evtx.PyEvtxParser(io.BytesIO(hdr + c), number_of_threads=1).records_json()
        while True:
            try:
                rec = next(it)
            except StopIteration:
                break
            except RuntimeError as e:
                items.append(e)
                continue
            try:
                items.append(from_evtx_json(orjson.loads(rec["data"])))
            except (ParseError, orjson.JSONDecodeError) as e:
                items.append(e)
        for i in range(n):
            got = X.chunk_flat(c, i)
            X.chunk_event(c, i)
            if got is None:
                continue
            answered += 1
            if len(items) != n:
                continue                    # the crate stopped early: no record to hold up
            if isinstance(items[i], dict):
                both += 1
                assert got == items[i], (trial, i)
    assert answered > 1000 and both > 0.9 * answered


# -- the pipeline -------------------------------------------------------------------------------

def _digests(path: str) -> dict:
    """The pipeline's batches and dead letters over an EVTX file (test_native._digests), with
    the binary-XML reader, the crate's JSON scanned in C (ITDR_BINXML=0), and the Python path
    (ITDR_NATIVE=0)."""
    from .test_native import _digests as digests
    out = digests(path, (("binxml", {}), ("crate-json", {"ITDR_BINXML": "0"}),
                         ("python", {"ITDR_NATIVE": "0"})))
    for name, got in out.items():
        assert got["reader"] == name
    return out


def _damaged(tmp_path, path: str) -> str:
    """A copy with: a chunk whose record layout is broken (the crate reads it), a chunk whose
    header ends it early (its last record id is a middle record's: the crate stops there), a
    chunk of garbage, an all-zero chunk, and a partial chunk at the end."""
    data = bytearray(Path(path).read_bytes())
    H, C = g.FILE_HEADER_SIZE, g.CHUNK_SIZE
    first = H + 1 * C
    data[first + 512 + 4:first + 512 + 8] = struct.pack("<I", 3)      # first record's size
    third = H + 2 * C
    lo_id, hi_id = struct.unpack_from("<QQ", data, third + 24)
    assert hi_id - lo_id > 20
    struct.pack_into("<Q", data, third + 32, lo_id + 10)
    garbage = bytes(random.Random(5).randrange(256) for _ in range(C))
    out = bytes(data[:H + 3 * C]) + garbage + bytes(C) + bytes(data[H + 3 * C:]) + b"\1" * 900
    p = tmp_path / "damaged.evtx"
    p.write_bytes(out)
    return str(p)


def test_the_pipeline_gives_the_same_batches_with_every_reader(tmp_path):
    """Random templates (declines of every kind: to the reader's flat record, to the crate's
    parse of the chunk) and damaged chunks: byte-identical batches, dead letters and
    counters from the binary-XML reader, the crate-JSON block path and the Python path."""
    path = _damaged(tmp_path, _random_log(tmp_path, 21, n=2500))
    out = _digests(path)
    assert out["binxml"]["counts"] == out["crate-json"]["counts"] == out["python"]["counts"]
    read, norm, unk, dead = out["binxml"]["counts"]
    assert read > 2000 and norm > 300 and unk > 100 and dead > 0
    assert out["binxml"]["unknown_ids"] == out["crate-json"]["unknown_ids"] == \
        out["python"]["unknown_ids"]
    assert out["binxml"]["digest"] == out["crate-json"]["digest"] == out["python"]["digest"]


def test_a_time_offset_gives_the_same_batches_on_every_path(tmp_path):
    """Replay's --rebase-time without a transform: the offset added to the rows in C
    (chunk path, and its declined records in Python) equals the per-record path's."""
    from collectors.evtx_source import FileSource
    from collectors.pipeline import CollectorPipeline
    from stream.settings import TopicSettings

    from .helpers import RecordingProducer
    from .test_native import _mixed_evtx

    path = _mixed_evtx(tmp_path)
    runs = []
    for native_path in (True, False):
        prod, seen = RecordingProducer(), []
        src = FileSource([path])
        pipe = CollectorPipeline(prod, TopicSettings(partitions=3), sources=[src],
                                 batch_events=300, budget=700, linger_ms=3_600_000,
                                 time_offset_ms=86_400_000 * 365, on_events=seen.append)
        if not native_path:
            pipe._native_blocks = src.native_blocks = False
        rep = pipe.run()
        runs.append(([(m.partition, m.key, m.value, m.n_events) for m in prod.batches],
                     sum(seen), rep["normalized"]))
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[0][2] == runs[1][1] == 1250
    from stream import wire
    times = [t for b in runs[0][0] for t in wire.decode(b[2]).numeric["time_ms"].tolist()]
    assert min(times) >= 1_704_103_200_000 + 86_400_000 * 365      # every event shifted


def test_replay_pre_pass_reads_chunks_as_the_per_record_path(tmp_path):
    """replay's pre-pass (last event time, events) through the chunk reader, declines
    included, equals the per-record path's."""
    from collectors.evtx_source import FileSource
    from collectors.replay import _last_time
    path = _damaged(tmp_path, _random_log(tmp_path, 8, n=1200))
    norm = Normalizer()
    evs = []
    for rec, *_ in FileSource([path]).poll():
        if rec is not None:
            try:
                ev = norm.normalize(rec)
            except Exception:  # noqa: BLE001 - dead-lettered by the pipeline
                continue
            if ev is not None:
                evs.append(ev["time_ms"])
    assert len(evs) > 200
    assert _last_time([path]) == (max(evs), len(evs))


def test_a_checkpoint_inside_a_chunk_starts_after_it(tmp_path):
    """chunk_records(start_record): the records above a checkpoint are the chunk's suffix;
    the source yields exactly those (resumed collectors re-read nothing)."""
    from collectors.evtx_source import EvtxChunk, FileSource
    path = tmp_path / "s.evtx"
    path.write_bytes(g.evtx_bytes(g.build_chunks(g.security_events(700), first_id=1), 701))
    c = path.read_bytes()[g.FILE_HEADER_SIZE:g.FILE_HEADER_SIZE + g.CHUNK_SIZE]
    n, lo, rids = X.chunk_records(c, 0)
    assert lo == 0 and rids == list(range(1, n + 1))
    assert X.chunk_records(c, 37)[1] == 37 and X.chunk_records(c, n)[1] == n
    sid = str(path.resolve())
    src = FileSource([str(path)], checkpoints={sid: {"record_id": 37, "first_record_id": 1}})
    src.native_blocks = True
    got = []
    for item in src.poll():
        assert item[0].__class__ is EvtxChunk
        got += item[0].rids[item[0].lo:item[0].hi]
    assert got == list(range(38, 701))
    assert src.positions[sid] == {"record_id": 700, "first_record_id": 1}


@pytest.mark.samples
@pytest.mark.skipif(not SAMPLES.exists(), reason="../shared/samples not present")
def test_every_sample_record_matches_the_crate():
    """Every record of every sample EVTX the reader answers: equal to the crate's."""
    import glob
    tot = {"records": 0, "flat": 0, "event": 0}
    for f in sorted(glob.glob(str(SAMPLES / "**" / "*.evtx"), recursive=True)):
        st = _compare(f)
        for k in tot:
            tot[k] += st[k]
    assert tot["records"] > 8000
    assert tot["flat"] > 0.99 * tot["records"], tot
