"""Synthetic EVTX for tests: valid 64 KiB chunks of Security records, built from scratch (no
recorded log is copied into the repository).

Each chunk is laid out like the ones the Windows event log service writes: a 512-byte chunk
header (record number/id ranges, last-record and free-space offsets, records CRC, header CRC,
the 64-bucket common-string table and the 32-bucket template table), then records (``**\\0\\0``,
size, EventRecordID, FILETIME, BinXML, size copy). Every record is a BinXML fragment holding a
*template instance*: the first record of an event id in a chunk carries the template
definition inline (``<Event><System>...</System><EventData><Data Name=...>`` with
substitutions), the later ones reference it by chunk offset and carry only their values. Element
and attribute names are defined inline once per chunk and referenced by offset afterwards, as in
real logs.

:func:`security_events` gives a deterministic mix of 4624 / 4625 / 4768 / 4769 / 4776 (consumed
by the normalizer) and 4688 / 5156 (not consumed: counted and dropped by the collector);
:func:`build_chunks` packs events into chunks with record ids ``first_id, first_id+1, ...``;
:func:`file_header` writes the EVTX file header for ``n`` chunks.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass, field

FILE_HEADER_SIZE = 4096
CHUNK_SIZE = 65536
_CHUNK_HEADER = 512
EVENT_NS = "http://schemas.microsoft.com/win/2004/08/events/event"
SECURITY_PROVIDER = "Microsoft-Windows-Security-Auditing"
SECURITY_GUID = uuid.UUID("54849625-5478-4994-a5ba-3e3b0328c30d")

# BinXML tokens
_EOF, _OPEN, _CLOSE_START, _CLOSE_EMPTY, _END, _VALUE, _ATTR = 0x00, 0x01, 0x02, 0x03, 0x04, \
    0x05, 0x06
_TEMPLATE_INSTANCE, _SUBST, _OPT_SUBST, _START_OF_STREAM = 0x0C, 0x0D, 0x0E, 0x0F
_HAS_MORE = 0x40            # OpenStartElement with attributes / Attribute followed by another
# value types
T_NULL, T_STRING, T_UINT8, T_UINT16, T_UINT32, T_UINT64 = 0x00, 0x01, 0x04, 0x06, 0x08, 0x0A
T_GUID, T_FILETIME, T_SID, T_HEX64 = 0x0F, 0x11, 0x13, 0x15
T_BINXML = 0x21             # a nested fragment (a template instance), see Nested

_FILETIME_EPOCH = 116444736000000000      # 1970-01-01 in 100 ns ticks since 1601


def filetime(ms: int) -> int:
    return _FILETIME_EPOCH + ms * 10_000


def _utf16(s: str) -> bytes:
    return s.encode("utf-16-le")


def name_hash(s: str) -> int:
    h = 0
    for ch in s.encode("utf-16-le")[::2]:
        h = (h * 65599 + ch) & 0xFFFFFFFF
    return h & 0xFFFF


def sid_bytes(sid: str) -> bytes:
    parts = sid.split("-")
    rev, auth, subs = int(parts[1]), int(parts[2]), [int(x) for x in parts[3:]]
    return bytes([rev, len(subs)]) + auth.to_bytes(6, "big") + b"".join(
        struct.pack("<I", x) for x in subs)


def encode_value(vtype: int, v) -> bytes:
    if v is None or vtype == T_NULL:
        return b""
    if isinstance(v, (bytes, bytearray)):           # raw bytes, for any type (tests)
        return bytes(v)
    if vtype == T_STRING:
        return _utf16(v)
    if vtype == T_UINT8:
        return struct.pack("<B", v)
    if vtype == T_UINT16:
        return struct.pack("<H", v)
    if vtype == T_UINT32:
        return struct.pack("<I", v)
    if vtype in (T_UINT64, T_FILETIME, T_HEX64):
        return struct.pack("<Q", v)
    if vtype == T_GUID:
        return v.bytes_le
    if vtype == T_SID:
        return sid_bytes(v)
    raise ValueError(f"value type {vtype:#x}")


# -- template definitions: element trees with substitutions -------------------------------------
@dataclass
class Sub:
    """A substitution: value ``index`` of the record's value array (optional: omitted when
    the value is null)."""
    index: int
    vtype: int
    optional: bool = True


@dataclass
class El:
    name: str
    attrs: list[tuple[str, str | Sub]] = field(default_factory=list)
    children: list = field(default_factory=list)       # El, Sub or str


@dataclass
class Nested:
    """A BinXml value (type 0x21): a fragment holding an instance of template ``tid``
    (``tpl``) with its own ``values`` -- how the event log writes EventData / UserData, inside
    the outer template's ``<Event>`` (or ``<UserData>``)."""
    tid: int
    tpl: "El"
    values: list


# System values: (index, type) shared by every template
SYSTEM_FIELDS = ["ProviderName", "ProviderGuid", "EventID", "Version", "Level", "Task",
                 "Opcode", "Keywords", "SystemTime", "EventRecordID", "ProcessID", "ThreadID",
                 "Channel", "Computer", "UserID"]
_SYS_TYPES = {"ProviderName": T_STRING, "ProviderGuid": T_GUID, "EventID": T_UINT16,
              "Version": T_UINT8, "Level": T_UINT8, "Task": T_UINT16, "Opcode": T_UINT8,
              "Keywords": T_HEX64, "SystemTime": T_FILETIME, "EventRecordID": T_UINT64,
              "ProcessID": T_UINT32, "ThreadID": T_UINT32, "Channel": T_STRING,
              "Computer": T_STRING, "UserID": T_SID}


def _sys(name: str) -> Sub:
    return Sub(SYSTEM_FIELDS.index(name), _SYS_TYPES[name])


def event_template(data_fields: list[tuple[str, int]]) -> El:
    """``<Event>`` with the standard System part and ``<Data Name=...>`` substitutions."""
    base = len(SYSTEM_FIELDS)
    system = El("System", children=[
        El("Provider", attrs=[("Name", _sys("ProviderName")), ("Guid", _sys("ProviderGuid"))]),
        El("EventID", children=[_sys("EventID")]),
        El("Version", children=[_sys("Version")]),
        El("Level", children=[_sys("Level")]),
        El("Task", children=[_sys("Task")]),
        El("Opcode", children=[_sys("Opcode")]),
        El("Keywords", children=[_sys("Keywords")]),
        El("TimeCreated", attrs=[("SystemTime", _sys("SystemTime"))]),
        El("EventRecordID", children=[_sys("EventRecordID")]),
        El("Correlation"),
        El("Execution", attrs=[("ProcessID", _sys("ProcessID")),
                               ("ThreadID", _sys("ThreadID"))]),
        El("Channel", children=[_sys("Channel")]),
        El("Computer", children=[_sys("Computer")]),
        El("Security", attrs=[("UserID", _sys("UserID"))]),
    ])
    data = El("EventData", children=[
        El("Data", attrs=[("Name", name)], children=[Sub(base + i, t)])
        for i, (name, t) in enumerate(data_fields)])
    return El("Event", attrs=[("xmlns", EVENT_NS)], children=[system, data])


# -- chunk builder ------------------------------------------------------------------------------
class ChunkFull(Exception):
    pass


class ChunkBuilder:
    """One 64 KiB chunk filled record by record."""

    def __init__(self):
        self.buf = bytearray(_CHUNK_HEADER)
        self.names: dict[str, int] = {}              # name -> offset of its definition
        self.string_buckets: dict[int, int] = {}     # bucket -> offset of the last name in it
        self.templates: dict[int, int] = {}          # template id -> definition offset
        self.template_buckets: dict[int, int] = {}
        self.ids: list[int] = []
        self.last_record = 0

    # names: defined inline at first use, chained from the chunk's string table
    def _name(self, out: bytearray, base: int, name: str) -> None:
        off = self.names.get(name)
        pos = base + len(out)
        if off is not None:
            out += struct.pack("<I", off)
            return
        out += struct.pack("<I", pos + 4)
        off = pos + 4
        self.names[name] = off
        h = name_hash(name)
        out += struct.pack("<IHH", 0, h, len(name)) + _utf16(name) + b"\0\0"
        bucket = h % 64
        prev = self.string_buckets.get(bucket)
        if prev is None:
            struct.pack_into("<I", self.buf, 128 + 4 * bucket, off)
        else:                                         # chain: previous name -> this one
            self._pending_links.append((prev, off))
        self.string_buckets[bucket] = off

    def _value_tokens(self, out: bytearray, v) -> None:
        if isinstance(v, Sub):
            out += struct.pack("<BHB", _OPT_SUBST if v.optional else _SUBST, v.index, v.vtype)
        else:
            out += struct.pack("<BBH", _VALUE, T_STRING, len(v)) + _utf16(v)

    def _element(self, out: bytearray, base: int, el: El) -> None:
        start = len(out)
        out += struct.pack("<BHI", _OPEN | (_HAS_MORE if el.attrs else 0), 0xFFFF, 0)
        self._name(out, base, el.name)
        if el.attrs:
            a0 = len(out)
            out += b"\0\0\0\0"
            for i, (an, av) in enumerate(el.attrs):
                more = i + 1 < len(el.attrs)
                out.append(_ATTR | (_HAS_MORE if more else 0))
                self._name(out, base, an)
                self._value_tokens(out, av)
            struct.pack_into("<I", out, a0, len(out) - a0 - 4)
        if el.children:
            out.append(_CLOSE_START)
            for c in el.children:
                if isinstance(c, El):
                    self._element(out, base, c)
                else:
                    self._value_tokens(out, c)
            out.append(_END)
        else:
            out.append(_CLOSE_EMPTY)
        struct.pack_into("<I", out, start + 3, len(out) - start - 7)

    def _template_instance(self, out: bytearray, base: int, tid: int, tpl: El) -> None:
        out += struct.pack("<BBI", _TEMPLATE_INSTANCE, 1, tid)
        off = self.templates.get(tid)
        if off is not None:
            out += struct.pack("<I", off)
            return
        off = base + len(out) + 4
        out += struct.pack("<I", off)
        self.templates[tid] = off
        out += struct.pack("<I", 0) + struct.pack("<I", tid) + uuid.UUID(int=tid).bytes[4:]
        size_at = len(out)
        out += b"\0\0\0\0"
        out += bytes([_START_OF_STREAM, 1, 1, 0])
        self._element(out, base, tpl)
        out.append(_EOF)
        struct.pack_into("<I", out, size_at, len(out) - size_at - 4)
        bucket = tid % 32
        prev = self.template_buckets.get(bucket)
        if prev is None:
            struct.pack_into("<I", self.buf, 384 + 4 * bucket, off)
        else:
            self._pending_links.append((prev, off))           # next-template field of prev
        self.template_buckets[bucket] = off

    def _value_array(self, out: bytearray, base: int, values: list) -> None:
        """Count, descriptors (size, type), then the values; a :class:`Nested` value is a
        fragment whose template definition (inline at its first use in the chunk) and names
        are addressed by their chunk offsets, so it is laid out where it lands."""
        out += struct.pack("<I", len(values))
        pos = base + len(out) + 4 * len(values)
        vals = []
        for t, v in values:
            if isinstance(v, Nested):
                b = bytearray([_START_OF_STREAM, 1, 1, 0])
                self._template_instance(b, pos, v.tid, v.tpl)
                self._value_array(b, pos, v.values)
                b.append(_EOF)
                b = bytes(b)
            else:
                b = b"" if v is None else encode_value(t, v)
            vals.append(b)
            pos += len(b)
        for (t, v), b in zip(values, vals):
            out += struct.pack("<HBB", len(b), T_NULL if v is None else t, 0)
        for b in vals:
            out += b

    def add(self, record_id: int, written_ms: int, tid: int, tpl: El, values: list) -> None:
        """Append one record; raises :class:`ChunkFull` (chunk unchanged) if it does not
        fit."""
        saved = (dict(self.names), dict(self.string_buckets), dict(self.templates),
                 dict(self.template_buckets), bytes(self.buf[128:512]))
        self._pending_links: list[tuple[int, int]] = []
        base = len(self.buf)
        out = bytearray(struct.pack("<IIQQ", 0x00002A2A, 0, record_id, filetime(written_ms)))
        out += bytes([_START_OF_STREAM, 1, 1, 0])
        self._template_instance(out, base, tid, tpl)
        self._value_array(out, base, values)
        out.append(_EOF)
        out += b"\0" * (-(len(out) + 4) % 8)
        size = len(out) + 4
        struct.pack_into("<I", out, 4, size)
        out += struct.pack("<I", size)
        if base + size > CHUNK_SIZE:
            (self.names, self.string_buckets, self.templates, self.template_buckets, tables) = \
                saved
            self.buf[128:512] = tables
            raise ChunkFull
        self.buf += out
        for at, off in self._pending_links:
            struct.pack_into("<I", self.buf, at, off)
        self.ids.append(record_id)
        self.last_record = base

    def finish(self) -> bytes:
        """The chunk as written to disk (header CRCs set, zero-filled to 64 KiB)."""
        b = bytearray(self.buf)
        free = len(b)
        first, last = self.ids[0], self.ids[-1]
        b[:8] = b"ElfChnk\0"
        struct.pack_into("<QQQQIII", b, 8, first, last, first, last, 128, self.last_record,
                         free)
        struct.pack_into("<I", b, 52, zlib.crc32(b[512:free]))
        struct.pack_into("<I", b, 120, 0)
        struct.pack_into("<I", b, 124, zlib.crc32(b[128:512], zlib.crc32(b[:120])))
        return bytes(b) + b"\0" * (CHUNK_SIZE - free)


def file_header(n_chunks: int, next_record_id: int, dirty: bool = False) -> bytes:
    """EVTX file header: version 3.1, ``n_chunks`` chunks, next record id."""
    h = bytearray(FILE_HEADER_SIZE)
    h[:8] = b"ElfFile\0"
    struct.pack_into("<QQQIHHHH", h, 8, 0, max(n_chunks - 1, 0), next_record_id, 128, 1, 3,
                     FILE_HEADER_SIZE, n_chunks)
    struct.pack_into("<I", h, 120, 1 if dirty else 0)
    struct.pack_into("<I", h, 124, zlib.crc32(h[:120]))
    return bytes(h)


# -- events -------------------------------------------------------------------------------------
S, U32, H64 = T_STRING, T_UINT32, T_HEX64
EVENT_FIELDS: dict[int, list[tuple[str, int]]] = {
    4624: [("SubjectUserSid", T_SID), ("SubjectUserName", S), ("SubjectDomainName", S),
           ("TargetUserSid", T_SID), ("TargetUserName", S), ("TargetDomainName", S),
           ("LogonType", U32), ("LogonProcessName", S), ("AuthenticationPackageName", S),
           ("WorkstationName", S), ("IpAddress", S), ("IpPort", S)],
    4625: [("TargetUserName", S), ("TargetDomainName", S), ("Status", S), ("SubStatus", S),
           ("LogonType", U32), ("LogonProcessName", S), ("AuthenticationPackageName", S),
           ("WorkstationName", S), ("IpAddress", S), ("IpPort", S)],
    4768: [("TargetUserName", S), ("TargetDomainName", S), ("TargetSid", T_SID),
           ("ServiceName", S), ("TicketOptions", S), ("Status", S),
           ("TicketEncryptionType", S), ("PreAuthType", S), ("IpAddress", S), ("IpPort", S)],
    4769: [("TargetUserName", S), ("TargetDomainName", S), ("ServiceName", S),
           ("ServiceSid", T_SID), ("TicketOptions", S), ("TicketEncryptionType", S),
           ("IpAddress", S), ("IpPort", S), ("Status", S)],
    4776: [("PackageName", S), ("TargetUserName", S), ("Workstation", S), ("Status", S)],
    4688: [("SubjectUserName", S), ("NewProcessName", S), ("CommandLine", S)],
    5156: [("ProcessID", U32), ("Application", S), ("SourceAddress", S), ("DestAddress", S)],
}
_TEMPLATES = {eid: (0x1000 + eid, event_template(f)) for eid, f in EVENT_FIELDS.items()}
# a DC's Security log, roughly: Kerberos and logons dominate, a share of ids the product drops
MIX = [4624, 4769, 4624, 4768, 4769, 4625, 4624, 4776, 4769, 4688, 4624, 5156]


def _event_data(eid: int, i: int) -> dict:
    user = f"user{i % 37}"
    ip = f"10.1.{(i // 250) % 250}.{i % 250}"
    dom = "CORP"
    port = str(49152 + i % 10000)
    sid = f"S-1-5-21-1004336348-1177238915-682003330-{1100 + i % 37}"
    return {
        4624: {"SubjectUserSid": "S-1-5-18", "SubjectUserName": "DC01$",
               "SubjectDomainName": dom, "TargetUserSid": sid, "TargetUserName": user,
               "TargetDomainName": dom, "LogonType": 3, "LogonProcessName": "Kerberos",
               "AuthenticationPackageName": "Kerberos", "WorkstationName": "-",
               "IpAddress": ip, "IpPort": port},
        4625: {"TargetUserName": user, "TargetDomainName": dom, "Status": "0xc000006d",
               "SubStatus": "0xc000006a", "LogonType": 3, "LogonProcessName": "NtLmSsp",
               "AuthenticationPackageName": "NTLM", "WorkstationName": f"WS{i % 13:02d}",
               "IpAddress": ip, "IpPort": port},
        4768: {"TargetUserName": user, "TargetDomainName": "corp.local", "TargetSid": sid,
               "ServiceName": "krbtgt", "TicketOptions": "0x40810010", "Status": "0x0",
               "TicketEncryptionType": "0x12", "PreAuthType": "2", "IpAddress": f"::ffff:{ip}",
               "IpPort": port},
        4769: {"TargetUserName": f"{user}@CORP.LOCAL", "TargetDomainName": "CORP.LOCAL",
               "ServiceName": f"svc{i % 5}", "ServiceSid": f"{sid[:-4]}{2000 + i % 5}",
               "TicketOptions": "0x40810000", "TicketEncryptionType": "0x12",
               "IpAddress": f"::ffff:{ip}", "IpPort": port, "Status": "0x0"},
        4776: {"PackageName": "MICROSOFT_AUTHENTICATION_PACKAGE_V1_0",
               "TargetUserName": user, "Workstation": f"WS{i % 13:02d}", "Status": "0x0"},
        4688: {"SubjectUserName": "DC01$", "NewProcessName": r"C:\Windows\System32\cmd.exe",
               "CommandLine": f"cmd.exe /c echo {i}"},
        5156: {"ProcessID": 4, "Application": "System", "SourceAddress": ip,
               "DestAddress": "10.0.0.1"},
    }[eid]


@dataclass
class Event:
    eid: int
    time_ms: int
    data: dict
    computer: str = "DC01.corp.local"


def security_events(n: int, start_ms: int = 1_704_103_200_000) -> list[Event]:
    """``n`` deterministic Security events, one per 250 ms from ``start_ms``."""
    return [Event(MIX[i % len(MIX)], start_ms + 250 * i, _event_data(MIX[i % len(MIX)], i))
            for i in range(n)]


def _values(ev: Event, record_id: int) -> list:
    sysv = {"ProviderName": SECURITY_PROVIDER, "ProviderGuid": SECURITY_GUID,
            "EventID": ev.eid, "Version": 2, "Level": 0, "Task": 12544, "Opcode": 0,
            "Keywords": 0x8020000000000000, "SystemTime": filetime(ev.time_ms),
            "EventRecordID": record_id, "ProcessID": 636, "ThreadID": 4 + record_id % 997,
            "Channel": "Security", "Computer": ev.computer, "UserID": None}
    out = [(_SYS_TYPES[k], sysv[k]) for k in SYSTEM_FIELDS]
    out += [(t, ev.data.get(name)) for name, t in EVENT_FIELDS[ev.eid]]
    return out


def build_chunks(events: list[Event], first_id: int = 1, per_chunk: int | None = None
                 ) -> list[bytes]:
    """Pack ``events`` into chunks (full ones, or ``per_chunk`` records each), record ids
    ``first_id, first_id + 1, ...`` in order."""
    chunks: list[bytes] = []
    cb = ChunkBuilder()
    rid = first_id
    for ev in events:
        tid, tpl = _TEMPLATES[ev.eid]
        if per_chunk is not None and len(cb.ids) >= per_chunk:
            chunks.append(cb.finish())
            cb = ChunkBuilder()
        try:
            cb.add(rid, ev.time_ms, tid, tpl, _values(ev, rid))
        except ChunkFull:
            chunks.append(cb.finish())
            cb = ChunkBuilder()
            cb.add(rid, ev.time_ms, tid, tpl, _values(ev, rid))
        rid += 1
    if cb.ids:
        chunks.append(cb.finish())
    return chunks


def evtx_bytes(chunks: list[bytes], next_record_id: int) -> bytes:
    return file_header(len(chunks), next_record_id) + b"".join(chunks)

