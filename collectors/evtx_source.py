"""File source of the collector: EVTX logs (and JSON-lines / XML event files), one shot or
followed, resumable from per-source checkpoints.

Paths may be files, directories (recursive) or globs. In follow mode the paths are expanded
again on every poll, so new files (rotated archives such as ``Archive-Security-*.evtx``, a
forwarder's daily JSON files) are picked up, and files that changed since the last pass are
read again from their checkpoint:

* **EVTX**: position = last delivered ``EventRecordID``; records with an id at or below it are
  skipped. The first record id of the file is stored too: if it changes, the log was cleared
  or replaced and the file is read from its start.
* **JSON lines / XML events** (plain text): position = byte offset after the last delivered
  record; only complete records (ending with a newline, or ``</Event>`` for XML) are read from
  a growing file. A file that shrank or changed inode is read from the start.
* **.gz / .zip archives**: read once; position = number of records delivered, ``done`` at end.

Every item the source yields is ``(flat_record | None, error | None, origin, raw_bytes,
source_id, position)``; bad records come out as errors with their raw bytes (for the
dead-letter topic) while the rest of the file keeps flowing.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Iterator

import orjson

from stream.errors import ITDRError, ParseError

from .files import EVTX_MAGIC, expand_paths, iter_file_records
from .normalize import NORMALIZED_EVENT_IDS
from .records import MAX_RECORD_BYTES, from_evtx_json, from_xml, parse_json_record

log = logging.getLogger(__name__)

Item = tuple  # (rec|None, err|None, origin, raw, source_id, position)

MAX_CONSECUTIVE_ERRORS = 10_000


_EID_RE = re.compile(r'"EventID":\s*(?:\{[^}]*\}\s*,\s*"#text":\s*|\{"#text":\s*)?(\d+)')


def peek_event_id(data: str) -> int | None:
    """EventID of an ``evtx`` JSON record without parsing it (System comes first):
    ``"EventID":4624`` or ``"EventID":{"#attributes":{...},"#text":7045}``."""
    m = _EID_RE.search(data, 0, 2000)
    return int(m.group(1)) if m else None


def _kind(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return "unreadable"
    if head.startswith(EVTX_MAGIC):
        return "evtx"
    if head[:2] == b"\x1f\x8b" or head[:4] == b"PK\x03\x04":
        return "archive"
    if not head:
        return "empty"
    return "text"


def iter_evtx_records(path: str, start_record: int = 0, threads: int = 1) -> Iterator[tuple]:
    """``(record_id, json_str | None, error | None)`` for an EVTX file; corrupt chunks and
    records become errors, the iteration continues with the next chunk."""
    import evtx

    try:
        parser = evtx.PyEvtxParser(str(path), number_of_threads=threads)
    except Exception as e:  # noqa: BLE001 - the parser raises plain RuntimeError/OSError
        yield 0, None, ParseError(f"cannot open EVTX: {e}")
        return
    it = parser.records_json()
    errors = 0
    while True:
        try:
            r = next(it)
        except StopIteration:
            return
        except Exception as e:  # noqa: BLE001 - corrupt chunk/record
            errors += 1
            yield 0, None, ParseError(f"corrupt EVTX record: {str(e)[:300]}")
            if errors >= MAX_CONSECUTIVE_ERRORS:
                yield 0, None, ParseError("too many consecutive EVTX errors; file abandoned")
                return
            continue
        errors = 0
        rid = r.get("event_record_id", 0)
        if rid <= start_record:
            continue
        yield rid, r["data"], None


class FileSource:
    """EVTX / text files, one shot or followed."""

    kind = "evtx"

    def __init__(self, paths: list[str], checkpoints: dict[str, dict] | None = None,
                 follow: bool = False, evtx_threads: int = 1):
        self.paths = list(paths)
        self.follow = follow
        self.evtx_threads = evtx_threads
        self.positions: dict[str, dict] = {k: dict(v) for k, v in (checkpoints or {}).items()}
        self._seen: dict[str, tuple] = {}     # source id -> (size, mtime_ns, inode) at last pass
        self.records_read = 0
        self.files_read = 0

    def _files(self) -> list[Path]:
        try:
            return expand_paths(self.paths)
        except ITDRError as e:
            if self.follow:          # a followed glob may match nothing yet
                log.debug("%s", e)
                out = []
                for p in self.paths:
                    try:
                        out.extend(expand_paths([p]))
                    except ITDRError:
                        pass
                return out
            raise

    def poll(self) -> Iterator[Item]:
        """One pass over every file that is new or changed since the last pass."""
        for path in self._files():
            sid = str(path.resolve())
            try:
                st = path.stat()
            except OSError:
                continue
            sig = (st.st_size, st.st_mtime_ns, st.st_ino)
            if self._seen.get(sid) == sig:
                continue
            kind = _kind(path)
            if kind == "evtx":
                yield from self._evtx(path, sid)
            elif kind == "text":
                yield from self._text(path, sid, st)
            elif kind == "archive":
                yield from self._archive(path, sid)
            self._seen[sid] = sig
            self.files_read += 1

    # -- EVTX --------------------------------------------------------------------------------
    def _evtx(self, path: Path, sid: str) -> Iterator[Item]:
        pos = self.positions.get(sid, {})
        last = int(pos.get("record_id", 0))
        first_known = pos.get("first_record_id")
        first = None
        origin = str(path)
        if last:
            # was the log cleared / replaced? (first record id changed)
            for rid, _data, err in iter_evtx_records(str(path), 0, self.evtx_threads):
                if err is None:
                    first = rid
                    break
            if first_known is not None and first is not None and first != first_known:
                log.warning("%s: first record id changed (%s -> %s): log cleared or replaced, "
                            "reading it from the start", path, first_known, first)
                last = 0
        try:
            size = path.stat().st_size
        except OSError:
            size = 4096
        if size > 4096 and (size - 4096) % 65536:
            # EVTX files hold whole 64 KiB chunks: a partial one is a truncated copy; the
            # parser skips it silently, so say so (dead-letter) once per file version
            part = (size - 4096) % 65536
            yield None, ParseError(f"truncated EVTX: file ends {part} bytes into a chunk; the "
                                   "records of that chunk cannot be read"), origin, b"", sid, None
        for rid, data, err in iter_evtx_records(str(path), last, self.evtx_threads):
            if first is None and err is None:
                first = rid
            if err is not None:
                yield None, err, origin, b"", sid, None
                continue
            self.records_read += 1
            p = {"record_id": rid, "first_record_id": first}
            eid = peek_event_id(data)
            if eid is not None and eid not in NORMALIZED_EVENT_IDS:
                # fast path: an id the product does not consume -> counted, not parsed
                self.positions[sid] = p
                yield {"_eid": eid, "_time_ms": 0}, None, origin, None, sid, p
                continue
            o = f"{origin}#{rid}"
            try:
                rec = from_evtx_json(orjson.loads(data))
            except ParseError as e:
                self.positions[sid] = p
                yield None, e, o, data.encode("utf-8", "replace"), sid, p
                continue
            except orjson.JSONDecodeError as e:
                self.positions[sid] = p
                yield None, ParseError(f"evtx JSON: {e}"), o, data.encode("utf-8", "replace"), \
                    sid, p
                continue
            self.positions[sid] = p
            yield rec, None, o, None, sid, p

    # -- text --------------------------------------------------------------------------------
    def _text(self, path: Path, sid: str, st: os.stat_result) -> Iterator[Item]:
        pos = self.positions.get(sid, {})
        offset = int(pos.get("offset", 0))
        if pos.get("inode") not in (None, st.st_ino) or st.st_size < offset:
            log.warning("%s was truncated or replaced; reading it from the start", path)
            offset = 0
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
        if not data:
            return
        is_xml = data.lstrip()[:1] == b"<"
        term = b"</Event>" if is_xml else b"\n"
        end = data.rfind(term)
        if end < 0:
            if self.follow:
                return          # no complete record yet
            end = len(data)
        else:
            end += len(term)
        if not self.follow:
            end = len(data)
        chunk = data[:end]
        origin = str(path)
        start = 0
        lineno = 0
        while start < len(chunk):
            j = chunk.find(term, start)
            stop = len(chunk) if j < 0 else j + len(term)
            raw = chunk[start:stop]
            start = stop
            lineno += 1
            p = {"offset": offset + stop, "inode": st.st_ino}
            line = raw.strip()
            if is_xml:
                k = line.find(b"<Event")
                while k >= 0 and line.startswith(b"<Events", k):
                    k = line.find(b"<Event", k + 7)
                line = line[k:] if k >= 0 else b""
            if not line:
                self.positions[sid] = p
                continue
            o = f"{origin}@{offset + stop - len(raw)}"
            self.records_read += 1
            try:
                if len(line) > MAX_RECORD_BYTES:
                    raise ParseError(f"record of {len(line)} bytes exceeds the "
                                     f"{MAX_RECORD_BYTES} byte limit")
                rec = from_xml(line) if line[:1] == b"<" else parse_json_record(line)
            except ParseError as e:
                self.positions[sid] = p
                yield None, e, o, line[:MAX_RECORD_BYTES], sid, p
                continue
            self.positions[sid] = p
            yield rec, None, o, None, sid, p

    # -- compressed archives -----------------------------------------------------------------
    def _archive(self, path: Path, sid: str) -> Iterator[Item]:
        pos = self.positions.get(sid, {})
        if pos.get("done"):
            return
        skip = int(pos.get("index", 0))
        i = 0
        for rec, err, origin in iter_file_records(path):
            i += 1
            if i <= skip:
                continue
            p = {"index": i}
            self.records_read += 1
            yield rec, err, origin, b"" if err else None, sid, p
        yield None, None, str(path), None, sid, {"index": i, "done": True}
