"""Raw record parsers: every accepted input format -> one *flat record*.

A flat record is a plain ``dict[str, object]`` with the System fields under fixed keys and the
EventData / UserData fields under their own names::

    {"_eid": 4625, "_time_ms": 1595449776414, "_computer": "DC01.corp.local",
     "_channel": "Security", "_provider": "Microsoft-Windows-Security-Auditing",
     "_record": 887107, "_user_sid": "S-1-5-18",   # System/Security UserID when present
     "TargetUserName": "alice", "IpAddress": "10.0.0.5", ...}

Unnamed ``<Data>`` elements become ``Data0``, ``Data1``, ... (classic System-log events such
as Netlogon 5805). Formats:

* EVTX (``evtx`` Rust parser JSON output) -- :func:`from_evtx_json`
* Windows Event XML (WEF / live channel rendering) -- :func:`from_xml` (defusedxml: no entity
  expansion, no external entities)
* Winlogbeat / ECS JSON (``winlog.*``) -- :func:`from_winlogbeat`
* NXLog ``im_msvistalog`` JSON and JSON lines of raw EventData (flattened) -- :func:`from_flat`

:func:`parse_json_record` autodetects among the JSON ones. Parsers raise
:class:`~stream.errors.ParseError` with the reason on malformed input; they never crash.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import orjson

from stream.errors import ParseError

MAX_RECORD_BYTES = 1 << 20  # 1 MiB per record: larger ones are rejected (DLQ)
MAX_TIME_MS = 253402300799999  # 9999-12-31T23:59:59.999Z: event times must fit the int64 column
MAX_DATA_DEPTH = 32  # nesting of EventData/UserData objects (deeper: ParseError, not recursion)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_tcache: dict[str, int] = {}


def _time_in_range(ms: int, v: Any) -> int:
    if not 0 <= ms <= MAX_TIME_MS:
        raise ParseError(f"event time {str(v)[:60]!r} is out of range (1970-01-01 .. "
                         "9999-12-31 UTC)")
    return ms


def parse_time_ms(v: Any) -> int:
    """ISO 8601 / 'YYYY-MM-DD HH:MM:SS' (taken as UTC) / epoch number -> ms since epoch.

    Raises :class:`ParseError` for a missing, unparseable, non-finite or out-of-range time
    (before 1970 or after 9999): the result always fits the wire format's int64 column."""
    if v is None or v == "" or isinstance(v, bool):
        raise ParseError("missing event time" if not isinstance(v, bool)
                         else f"event time {v!r} is not a time")
    if isinstance(v, (int, float)):
        try:
            x = float(v)
        except OverflowError:
            x = math.inf
        if not math.isfinite(x):
            raise ParseError(f"event time {str(v)[:60]!r} is out of range (1970-01-01 .. "
                             "9999-12-31 UTC)")
        return _time_in_range(int(x if x > 1e11 else x * 1000), v)
    s = str(v).strip()
    # fast path: "YYYY-MM-DDTHH:MM:SS[.fffffff]Z" (EVTX, WEF, Winlogbeat): the whole-second
    # prefix is cached, the fraction parsed by hand
    if len(s) >= 20 and s[-1] == "Z" and s[4] == "-" and s[10] in "T ":
        base = _tcache.get(s[:19])
        if base is None:
            try:
                dt = datetime.fromisoformat(s[:19].replace(" ", "T"))
            except ValueError:
                dt = None
            if dt is not None:
                base = int((dt.replace(tzinfo=timezone.utc) - _EPOCH).total_seconds()) * 1000
                if len(_tcache) > 100_000:
                    _tcache.clear()
                _tcache[s[:19]] = base
        if base is not None:
            frac = s[20:-1] if s[19] == "." else ""
            if s[19] in ".Z" and (not frac or (frac.isascii() and frac.isdigit())):
                return _time_in_range(base + (int((frac + "000")[:3]) if frac else 0), v)
    try:
        if s.endswith("Z"):
            s2 = s[:-1]
        else:
            s2 = s
        # trim fractional seconds beyond microseconds (Windows gives 7 digits)
        if "." in s2:
            head, frac = s2.split(".", 1)
            tz = ""
            for sep in ("+", "-"):
                if sep in frac:
                    frac, tz = frac.split(sep, 1)
                    tz = sep + tz
                    break
            s2 = f"{head}.{frac[:6]}{tz}"
        dt = datetime.fromisoformat(s2.replace(" ", "T", 1))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return _time_in_range(int((dt - _EPOCH).total_seconds() * 1000), v)
    except (ValueError, OverflowError) as e:
        raise ParseError(f"unparseable event time {str(v)[:60]!r}: {e}") from None


def _to_int(v: Any, what: str) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, dict):
        v = v.get("#text", v.get("value"))
    try:
        return int(str(v).strip())
    except (TypeError, ValueError):
        raise ParseError(f"{what} is not an integer: {str(v)[:40]!r}") from None


def _flatten_data(data: Any, out: dict, depth: int = 0) -> None:
    """EVTX-JSON EventData/UserData -> flat keys."""
    if data is None:
        return
    if depth > MAX_DATA_DEPTH:
        raise ParseError(f"EventData/UserData nested deeper than {MAX_DATA_DEPTH} levels")
    if isinstance(data, dict):
        for k, v in data.items():
            tv = type(v)
            if tv is str and k != "Data":          # fast path: named scalar field
                out[k] = v
                continue
            if tv is int and k != "Data":
                out[k] = str(v)
                continue
            if k == "#attributes":
                continue
            if k == "Data":
                # unnamed data: list or {"#text": [...]}
                if isinstance(v, dict) and "#text" in v:
                    v = v["#text"]
                if isinstance(v, list):
                    for i, x in enumerate(v):
                        out[f"Data{i}"] = "" if x is None else str(x)
                elif v is not None:
                    out["Data0"] = str(v)
                continue
            if k == "Binary":
                continue
            if isinstance(v, dict):
                if "#text" in v:
                    out[k] = "" if v["#text"] is None else str(v["#text"])
                else:
                    # UserData wrapper like {"LogFileCleared": {...}}
                    _flatten_data(v, out, depth + 1)
            elif isinstance(v, list):
                out[k] = ", ".join("" if x is None else str(x) for x in v)
            else:
                out[k] = "" if v is None else str(v)
    elif isinstance(data, list):
        for i, x in enumerate(data):
            out[f"Data{i}"] = "" if x is None else str(x)
    else:
        out["Data0"] = str(data)


def _obj(v: Any) -> dict:
    """``v`` if it is a JSON object, else an empty one (wrong-typed optional sections)."""
    return v if isinstance(v, dict) else {}


def from_evtx_json(ev: dict) -> dict:
    """The ``evtx`` package's JSON (``{"Event": {"System": ..., "EventData": ...}}``)."""
    try:
        e = ev["Event"]
        sysd = e["System"]
    except (KeyError, TypeError):
        raise ParseError("not a Windows event: missing Event.System") from None
    if not isinstance(sysd, dict):
        raise ParseError(f"not a Windows event: Event.System is a {type(sysd).__name__}, "
                         "not an object")
    eid = sysd.get("EventID")
    if isinstance(eid, dict):
        eid = eid.get("#text")
    prov = sysd.get("Provider") or {}
    pattrs = _obj(prov.get("#attributes")) if isinstance(prov, dict) else {}
    tc = sysd.get("TimeCreated") or {}
    tattrs = _obj(tc.get("#attributes")) if isinstance(tc, dict) else {}
    sec = sysd.get("Security") or {}
    sattrs = _obj(sec.get("#attributes")) if isinstance(sec, dict) else {}
    rec = {
        "_eid": _to_int(eid, "EventID"),
        "_time_ms": parse_time_ms(tattrs.get("SystemTime")),
        "_computer": str(sysd.get("Computer") or ""),
        "_channel": str(sysd.get("Channel") or ""),
        "_provider": str(pattrs.get("Name") or pattrs.get("EventSourceName") or ""),
        "_record": _to_int(sysd.get("EventRecordID") or 0, "EventRecordID"),
        "_user_sid": str(sattrs.get("UserID") or ""),
    }
    ed = e.get("EventData")
    if ed.__class__ is dict and "Data" not in ed and "#attributes" not in ed \
            and "Binary" not in ed and _STR_ONLY.issuperset(map(type, ed.values())):
        rec.update(ed)      # fast path (Security events): named string fields only
    else:
        _flatten_data(ed, rec)
    _flatten_data(e.get("UserData"), rec)
    return rec


_STR_ONLY = frozenset({str})


def from_winlogbeat(d: dict) -> dict:
    """Winlogbeat / ECS: ``winlog.event_id``, ``winlog.event_data``, ``@timestamp``."""
    w = d.get("winlog")
    if not isinstance(w, dict):
        raise ParseError("not a Winlogbeat record: missing winlog object")
    ecs_event = _obj(d.get("event"))
    eid = w.get("event_id", ecs_event.get("code"))
    if eid is None:
        raise ParseError("Winlogbeat record without winlog.event_id")
    t = d.get("@timestamp") or ecs_event.get("created")
    rec = {
        "_eid": _to_int(eid, "winlog.event_id"),
        "_time_ms": parse_time_ms(t),
        "_computer": str(w.get("computer_name") or _obj(d.get("host")).get("name") or ""),
        "_channel": str(w.get("channel") or ""),
        "_provider": str(w.get("provider_name") or ""),
        "_record": _to_int(w.get("record_id") or 0, "winlog.record_id"),
        "_user_sid": str(_obj(w.get("user")).get("identifier") or ""),
    }
    for sect in ("event_data", "user_data"):
        ed = w.get(sect)
        if isinstance(ed, dict):
            for k, v in ed.items():
                if k.startswith("param") and k[5:].isascii() and k[5:].isdigit():
                    rec[f"Data{int(k[5:]) - 1}"] = str(v)
                rec[k] = "" if v is None else (", ".join(map(str, v)) if isinstance(v, list)
                                                else str(v))
    return rec


_FLAT_SYSTEM = {"EventID", "EventTime", "TimeCreated", "Hostname", "Computer", "Channel",
                "SourceName", "ProviderName", "Provider", "RecordNumber", "EventRecordID",
                "UserID", "@timestamp", "EventReceivedTime", "Message", "host", "port",
                "@version", "tags", "Keywords", "SeverityValue", "Severity", "EventType",
                "Opcode", "OpcodeValue", "Task", "Version", "ExecutionProcessID", "ThreadID",
                "SourceModuleName", "SourceModuleType", "ProviderGuid", "Category",
                "ERROR_EVT_UNRESOLVED", "AccountName_sys", "Domain", "AccountType"}


def from_flat(d: dict) -> dict:
    """NXLog ``im_msvistalog`` JSON / raw EventData JSON lines (fields at top level)."""
    eid = d.get("EventID", d.get("event_id", d.get("EventId")))
    if eid is None:
        raise ParseError("JSON record without EventID")
    t = d.get("EventTime") or d.get("TimeCreated") or d.get("SystemTime") or d.get("@timestamp") \
        or d.get("time")
    if isinstance(t, dict):
        t = t.get("SystemTime")
    rec = {
        "_eid": _to_int(eid, "EventID"),
        "_time_ms": parse_time_ms(t),
        "_computer": str(d.get("Hostname") or d.get("Computer") or d.get("computer") or ""),
        "_channel": str(d.get("Channel") or d.get("channel") or ""),
        "_provider": str(d.get("SourceName") or d.get("ProviderName") or d.get("Provider")
                         or ""),
        "_record": _to_int(d.get("RecordNumber") or d.get("EventRecordID") or 0, "RecordNumber"),
        "_user_sid": str(d.get("UserID") or ""),
    }
    for k, v in d.items():
        if k in _FLAT_SYSTEM or k in rec:
            continue
        if isinstance(v, (dict, list)):
            if k == "EventData" and isinstance(v, dict):
                _flatten_data(v, rec)
            continue
        rec[k] = "" if v is None else str(v)
    # NXLog names classic-event data fields "EventData" strings sometimes; keep as Data0
    return rec


def parse_json_record(line: bytes | str | dict) -> dict:
    """Autodetect a JSON record's format (Winlogbeat, EVTX-JSON, NXLog/flat)."""
    if isinstance(line, dict):
        d = line
    else:
        if len(line) > MAX_RECORD_BYTES:
            raise ParseError(f"record of {len(line)} bytes exceeds the {MAX_RECORD_BYTES} "
                             "byte limit")
        try:
            d = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise ParseError(f"invalid JSON: {e}") from None
    if not isinstance(d, dict):
        raise ParseError(f"JSON record must be an object, got {type(d).__name__}")
    if "winlog" in d:
        return from_winlogbeat(d)
    if isinstance(d.get("Event"), dict):
        return from_evtx_json(d)
    return from_flat(d)


# -- XML --------------------------------------------------------------------------------------
_NS = "{http://schemas.microsoft.com/win/2004/08/events/event}"


def from_xml(xml: str | bytes) -> dict:
    """One ``<Event>`` element (WEF / live channel rendering). Safe parser: DTDs, entities
    and external references are refused."""
    from defusedxml import ElementTree as DET
    from defusedxml.common import DefusedXmlException

    if len(xml) > MAX_RECORD_BYTES:
        raise ParseError(f"XML record of {len(xml)} bytes exceeds the limit")
    try:
        root = DET.fromstring(xml, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as e:
        raise ParseError(f"hostile XML refused: {type(e).__name__}") from None
    except Exception as e:  # ParseError of expat
        raise ParseError(f"invalid XML: {e}") from None
    return _xml_event(root)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml_event(root) -> dict:
    if _local(root.tag) != "Event":
        raise ParseError(f"XML root is <{_local(root.tag)}>, expected <Event>")
    sysd = None
    data = []
    for child in root:
        name = _local(child.tag)
        if name == "System":
            sysd = child
        elif name in ("EventData", "UserData"):
            data.append(child)
    if sysd is None:
        raise ParseError("XML event without <System>")
    rec: dict[str, Any] = {"_eid": None, "_time_ms": None, "_computer": "", "_channel": "",
                           "_provider": "", "_record": 0, "_user_sid": ""}
    for el in sysd:
        n = _local(el.tag)
        if n == "EventID":
            rec["_eid"] = _to_int(el.text, "EventID")
        elif n == "TimeCreated":
            rec["_time_ms"] = parse_time_ms(el.get("SystemTime"))
        elif n == "Computer":
            rec["_computer"] = el.text or ""
        elif n == "Channel":
            rec["_channel"] = el.text or ""
        elif n == "Provider":
            rec["_provider"] = el.get("Name") or el.get("EventSourceName") or ""
        elif n == "EventRecordID":
            rec["_record"] = _to_int(el.text or 0, "EventRecordID")
        elif n == "Security":
            rec["_user_sid"] = el.get("UserID") or ""
    if rec["_eid"] is None:
        raise ParseError("XML event without <EventID>")
    if rec["_time_ms"] is None:
        raise ParseError("XML event without <TimeCreated SystemTime=...>")
    for d in data:
        if _local(d.tag) == "EventData":
            i = 0
            for el in d:
                if _local(el.tag) != "Data":
                    continue
                nm = el.get("Name")
                if nm:
                    rec[nm] = el.text or ""
                else:
                    rec[f"Data{i}"] = el.text or ""
                    i += 1
        else:  # UserData: one wrapper element with named children
            for wrapper in d:
                for el in wrapper:
                    rec[_local(el.tag)] = el.text or ""
    return rec


def split_xml_events(text: str) -> list[str]:
    """Split a WEF batch (several ``<Event>`` elements, optionally in ``<Events>``) into
    single-event XML strings."""
    out = []
    pos = 0
    while True:
        i = text.find("<Event", pos)
        if i < 0:
            break
        # skip "<Events>"
        if text.startswith("<Events", i):
            pos = i + 7
            continue
        j = text.find("</Event>", i)
        if j < 0:
            raise ParseError("unterminated <Event> element in XML batch")
        out.append(text[i:j + 8])
        pos = j + 8
    return out
