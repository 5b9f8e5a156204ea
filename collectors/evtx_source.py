"""File source of the collector: EVTX logs (and JSON-lines / XML event files), one shot or
followed, resumable from per-source checkpoints.

Paths may be files, directories (recursive) or globs. In follow mode the paths are expanded
again on every poll, so new files (rotated archives such as ``Archive-Security-*.evtx``, a
forwarder's daily JSON files) are picked up, and files that changed since the last pass are
read again from their checkpoint:

* **EVTX**: position = last delivered ``EventRecordID``; records with an id at or below it are
  skipped. The first record id of the file is stored too: if it goes *back*, the log was
  cleared (ids restart) or replaced by an older copy and the file is read from its start; if it
  moves forward (the oldest records rolled off a full log), reading goes on after the
  checkpoint, and records that rolled off unread are reported as lost upstream. A followed log is read up to its last
  *settled* chunk: a partial 64 KiB chunk at the end of the file (being appended), or a last
  chunk whose header and records checksums disagree (being filled in place: its header can be
  ahead of its records), is left for a later pass -- reading it would dead-letter records that
  are only half there and move the checkpoint past them. The last chunk is parsed from the copy
  whose checksums were verified, so a write racing the parse cannot slip in either. An end that
  stays unsettled for ``settle_s`` (a truncated copy; a log left dirty, whose last chunk's
  checksums are stale) is read as it is, as in one-shot mode: a partial chunk is reported as
  ``truncated EVTX``, records that do not parse are dead-lettered.
* **JSON lines / XML events** (plain text): position = byte offset after the last delivered
  record; only complete records (ending with a newline, or ``</Event>`` for XML) are read from
  a growing file. A file that shrank or changed inode is read from the start.
* **.gz / .zip archives**: read once; position = number of records delivered, ``done`` at end.

Every item the source yields is ``(flat_record | None, error | None, origin, raw_bytes,
source_id, position)``; bad records come out as errors with their raw bytes (for the
dead-letter topic) while the rest of the file keeps flowing.
"""

from __future__ import annotations

import bisect
import io
import logging
import os
import re
import struct
import time
import zlib
from pathlib import Path
from typing import Iterator

import orjson

from stream.errors import ITDRError, ParseError

from . import native
from .files import EVTX_MAGIC, expand_paths, iter_file_records
from .normalize import NORMALIZED_EVENT_IDS
from .records import MAX_RECORD_BYTES, from_evtx_json, from_xml, parse_json_record

log = logging.getLogger(__name__)

Item = tuple  # (rec|None, err|None, origin, raw, source_id, position)

MAX_CONSECUTIVE_ERRORS = 10_000


_EID_RE = re.compile(r'"EventID":\s*(?:\{[^}]*\}\s*,\s*"#text":\s*|\{"#text":\s*)?(\d+)')


def peek_event_id_py(data: str) -> int | None:
    """EventID of an ``evtx`` JSON record without parsing it (System comes first):
    ``"EventID":4624`` or ``"EventID":{"#attributes":{...},"#text":7045}``."""
    m = _EID_RE.search(data, 0, 2000)
    return int(m.group(1)) if m else None


_NATIVE_PEEK = native.ext.peek_event_id if native.AVAILABLE else None
_NATIVE_FLAT = native.ext.flat_from_evtx_json if native.AVAILABLE else None


def peek_event_id(data: str) -> int | None:
    """:func:`peek_event_id_py`, in C when the extension is built (-1 = no match, None =
    not handled there: the regex decides)."""
    if _NATIVE_PEEK is not None:
        r = _NATIVE_PEEK(data)
        if r is not None:
            return r if r >= 0 else None
    return peek_event_id_py(data)


def flat_evtx(data: str) -> dict:
    """``from_evtx_json(orjson.loads(data))``: in C for the common shape when the extension is
    built; anything else (and every malformed record, with its exact error) takes the Python
    path."""
    if _NATIVE_FLAT is not None:
        rec = _NATIVE_FLAT(data)
        if rec is not None:
            return rec
    return from_evtx_json(orjson.loads(data))


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


EVTX_FILE_HEADER = 4096
EVTX_CHUNK = 65536


def chunk_settled(c: bytes) -> bool:
    """A complete chunk whose header CRC and records CRC hold (what the writer finished)."""
    if len(c) != EVTX_CHUNK or c[:8] != b"ElfChnk\0":
        return False
    free = struct.unpack_from("<I", c, 48)[0]
    if not 512 <= free <= EVTX_CHUNK:
        return False
    return (struct.unpack_from("<I", c, 124)[0] == zlib.crc32(c[128:512], zlib.crc32(c[:120]))
            and struct.unpack_from("<I", c, 52)[0] == zlib.crc32(c[512:free]))


class EvtxTail:
    """The end of an EVTX file as a follower sees it: ``partial`` bytes of an incomplete chunk
    (at ``partial_at``) after the last whole one; ``start`` / ``data``: offset and bytes of the
    last non-empty whole chunk (all-zero chunks, preallocated, are skipped), ``settled``
    whether its checksums hold; ``end``: where that chunk ends (the file header's end when
    there is none)."""

    def __init__(self, path: Path, size: int):
        self.partial = (size - EVTX_FILE_HEADER) % EVTX_CHUNK if size > EVTX_FILE_HEADER else 0
        self.partial_at = size - self.partial if self.partial else None
        self.start = self.end = EVTX_FILE_HEADER
        self.data = b""
        self.settled = True
        n = (size - EVTX_FILE_HEADER) // EVTX_CHUNK if size > EVTX_FILE_HEADER else 0
        with open(path, "rb") as f:
            for k in range(n - 1, -1, -1):
                at = EVTX_FILE_HEADER + k * EVTX_CHUNK
                f.seek(at)
                c = f.read(EVTX_CHUNK)
                if len(c) < EVTX_CHUNK:           # shrank meanwhile: what is left is read
                    continue
                if c.count(0) == EVTX_CHUNK:
                    continue
                self.start, self.end, self.data = at, at + EVTX_CHUNK, c
                self.settled = chunk_settled(c)
                break


class _EvtxView(io.RawIOBase):
    """Read-only view of an EVTX file up to ``end``; the bytes from ``snap_at`` on come from
    ``snap`` (the last chunk as it was verified), the rest from the file.

    With ``skip_through`` (a checkpointed record id), whole chunks whose header says every
    record is at or below it are left out of the view (the file header, then the remaining
    chunks back to back: records address their chunk relatively, and the parser reads chunks
    until the end of what it is given). A followed log is then parsed from the chunk of the
    checkpoint on, not from its start on every poll."""

    def __init__(self, path: str, end: int, snap_at: int | None = None, snap: bytes = b"",
                 skip_through: int = 0):
        super().__init__()
        self._f = open(path, "rb", buffering=0)
        self._snap_at = end if snap_at is None else snap_at
        self._snap = snap
        self._pos = 0
        # segments: (virtual start, real start or -1 for the snapshot, length)
        segs = [(0, 0, min(end, EVTX_FILE_HEADER))]
        v = segs[0][2]
        for at in range(EVTX_FILE_HEADER, end, EVTX_CHUNK):
            ln = min(EVTX_CHUNK, end - at)
            if skip_through and ln == EVTX_CHUNK and self._chunk_done(at, skip_through):
                continue
            real = -1 - (at - self._snap_at) if at >= self._snap_at else at
            pv, pr, pl = segs[-1]
            if real >= 0 and pr >= 0 and pr + pl == real:
                segs[-1] = (pv, pr, pl + ln)      # contiguous in the file: one segment
            else:
                segs.append((v, real, ln))
            v += ln
        self._segs = segs
        self._vstarts = [sg[0] for sg in segs]
        self._end = v
        self.skipped_chunks = (end - v) // EVTX_CHUNK     # bytes left out of the view

    def _chunk_done(self, at: int, last: int) -> bool:
        if at >= self._snap_at:
            head = self._snap[at - self._snap_at:at - self._snap_at + 40]
        else:
            self._f.seek(at)
            head = self._f.read(40)
        if len(head) < 40 or head[:8] != b"ElfChnk\0":
            return False                  # not a chunk header we can trust: let the parser see it
        first_id, last_id = struct.unpack_from("<QQ", head, 24)
        return 0 < first_id <= last_id <= last

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, off: int, whence: int = 0) -> int:
        base = (0, self._pos, self._end)[whence]
        self._pos = max(0, base + off)
        return self._pos

    def readinto(self, b) -> int:
        n = min(len(b), self._end - self._pos)
        if n <= 0:
            return 0
        mv = memoryview(b)
        vstart, real, ln = self._segs[bisect.bisect_right(self._vstarts, self._pos) - 1]
        k = self._pos - vstart
        want = min(n, ln - k)
        if real >= 0:
            self._f.seek(real + k)
            got = self._f.readinto(mv[:want]) or 0
        else:
            so = -1 - real + k        # offset inside the snapshot
            piece = self._snap[so:so + want]
            got = len(piece)
            mv[:got] = piece
        self._pos += got
        return got

    def close(self) -> None:
        self._f.close()
        super().close()


def _records_json(path, threads: int):
    """The ``evtx`` parser's JSON record iterator over a path or a binary file object."""
    import evtx

    try:
        parser = evtx.PyEvtxParser(path if isinstance(path, io.IOBase) else str(path),
                                   number_of_threads=threads)
    except Exception as e:  # noqa: BLE001 - the parser raises plain RuntimeError/OSError
        raise ParseError(f"cannot open EVTX: {e}") from None
    return parser.records_json()


def iter_evtx_records(path, start_record: int = 0, threads: int = 1) -> Iterator[tuple]:
    """``(record_id, json_str | None, error | None)`` for an EVTX file (a path, or a binary
    file object); corrupt chunks and records become errors, the iteration continues with the
    next chunk."""
    try:
        it = _records_json(path, threads)
    except ParseError as e:
        yield 0, None, e
        return
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


def evtx_item(data: str, origin: str, rid: int, sid: str, p: dict) -> Item:
    """The pipeline item of one EVTX record (JSON text): a flat record, the stub of an id the
    product does not consume (counted, not parsed), or a parse error with the record."""
    eid = peek_event_id(data)
    if eid is not None and eid not in NORMALIZED_EVENT_IDS:
        return {"_eid": eid, "_time_ms": 0}, None, origin, None, sid, p
    o = f"{origin}#{rid}"
    try:
        rec = flat_evtx(data)
    except ParseError as e:
        return None, e, o, data.encode("utf-8", "replace"), sid, p
    except orjson.JSONDecodeError as e:
        return None, ParseError(f"evtx JSON: {e}"), o, data.encode("utf-8", "replace"), sid, p
    return rec, None, o, None, sid, p


class EvtxBlock:
    """Consecutive records of one EVTX file, handed whole to the pipeline's native path
    (``FileSource.native_blocks``): their JSON texts and record ids. The item that carries a
    block has the position of its last record."""

    __slots__ = ("datas", "rids")

    def __init__(self):
        self.datas: list[str] = []
        self.rids: list[int] = []

    def __len__(self) -> int:
        return len(self.datas)


BLOCK_RECORDS = 512


def iter_evtx_blocks(path, start_record: int = 0, threads: int = 1,
                     size: int = BLOCK_RECORDS) -> Iterator[tuple]:
    """:func:`iter_evtx_records` by blocks, the parser's iterator drained in C
    (``_native.take_records``): ``(EvtxBlock, None)`` or ``(None, error)``, in record order,
    with the same errors (and the same give-up after consecutive ones)."""
    try:
        it = _records_json(path, threads)
    except ParseError as e:
        yield None, e
        return
    take = native.ext.take_records
    errors = 0
    while True:
        blk = EvtxBlock()
        status, exc = take(it, size, start_record, blk.datas, blk.rids)
        if blk.datas:
            errors = 0
            yield blk, None
        if status == 0:
            continue
        if status == 1:
            return
        errors += 1                                  # the iterator raised: a corrupt record
        yield None, ParseError(f"corrupt EVTX record: {str(exc)[:300]}")
        if errors >= MAX_CONSECUTIVE_ERRORS:
            yield None, ParseError("too many consecutive EVTX errors; file abandoned")
            return


class EvtxChunk:
    """The records ``lo .. hi-1`` of one 64 KiB EVTX chunk, for the pipeline's binary-XML path
    (:meth:`collectors.pipeline.CollectorPipeline._process_chunk`): the chunk's bytes as they
    are on disk, read in C; ``header`` is the file's header, so that a record the C reader
    declines can be taken from the ``evtx`` crate (the chunk parsed on its own,
    :meth:`crate_item`). The item that carries a chunk has the position of its last record."""

    __slots__ = ("data", "header", "lo", "hi", "rids", "_crate")

    def __init__(self, data: bytes, header: bytes, lo: int, rids: list[int]):
        self.data = data
        self.header = header
        self.lo = lo
        self.hi = len(rids)
        self.rids = rids
        self._crate: list | None = None

    def __len__(self) -> int:
        return self.hi - self.lo

    def crate_item(self, i: int) -> tuple:
        """``(record_id, json_str | None, error | None)`` of record ``i`` as the crate gives
        it: the chunk is parsed once by the crate (after the file header, as a file of its
        own), which yields one record or one error per record of a chunk whose layout the C
        reader checked; record ``i`` is the crate's ``i``-th item."""
        if self._crate is None:
            self._crate = [(rid, data, err) for rid, data, err in
                           iter_evtx_records(io.BytesIO(self.header + self.data))]
        items = self._crate
        if len(items) == len(self.rids) and (items[i][2] is not None
                                             or items[i][0] == self.rids[i]):
            return items[i]
        rid = self.rids[i]          # the crate saw the chunk otherwise: find the record by id
        for it in items:
            if it[0] == rid and it[2] is None:
                return it
        return rid, None, ParseError(f"corrupt EVTX record: record {rid} not readable")

    def declined_item(self, i: int, origin: str) -> Item:
        """The per-record item of record ``i``, which the C normalizer declined: the flat
        record the reader gives (``chunk_flat``; non-ASCII text decoded), else what the crate
        gives (:meth:`crate_item`: a flat record, a dropped id's stub, or the error)."""
        rec = native.ext.chunk_flat(self.data, i)
        if rec is not None:
            return rec, None, f"{origin}#{self.rids[i]}", None, None, None
        rid, data, err = self.crate_item(i)
        if err is not None:
            return None, err, origin, b"", None, None      # as on the crate's path
        return evtx_item(data, origin, rid, None, None)


class FileSource:
    """EVTX / text files, one shot or followed.

    ``native_blocks`` (set by the pipeline when the C extension is there and no transform is
    configured): EVTX records come as :class:`EvtxBlock` items instead of one flat record per
    item; every other consumer gets one flat record per item."""

    kind = "evtx"
    native_blocks = False

    def __init__(self, paths: list[str], checkpoints: dict[str, dict] | None = None,
                 follow: bool = False, evtx_threads: int = 1, settle_s: float = 30.0):
        self.paths = list(paths)
        self.follow = follow
        self.evtx_threads = evtx_threads
        self.settle_s = settle_s
        self.positions: dict[str, dict] = {k: dict(v) for k, v in (checkpoints or {}).items()}
        self._seen: dict[str, tuple] = {}     # source id -> (size, mtime_ns, inode) at last pass
        # followed EVTX whose end was left unread: source id -> (what is unsettled, since)
        self._unsettled: dict[str, tuple[tuple, float]] = {}
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
                # unchanged; but an EVTX end left unread is read as it is after settle_s
                pend = self._unsettled.get(sid)
                if pend is None or time.monotonic() - pend[1] < self.settle_s:
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
    def _evtx_source(self, path: Path, sid: str):
        """``(open, truncation_error | None)``: ``open()`` gives what to parse -- following, a
        view of the file up to its last settled chunk, that chunk from the copy verified here
        (see the module docstring); one-shot, or an end taken as it is, the path. The
        truncation error is for a file taken as it is that ends inside a chunk."""
        try:
            tail = EvtxTail(path, path.stat().st_size)
        except OSError:
            return (lambda skip=0: str(path)), None
        if self.follow:
            if not tail.partial and tail.settled:
                self._unsettled.pop(sid, None)
                return (lambda skip=0: _EvtxView(str(path), tail.end, tail.start, tail.data,
                                                  skip)), None
            what = (tail.partial_at, None if tail.settled else tail.start)
            pend = self._unsettled.get(sid)
            since = pend[1] if pend is not None and pend[0] == what else time.monotonic()
            if time.monotonic() - since < self.settle_s:
                self._unsettled[sid] = (what, since)
                log.debug("%s: end of the log not settled (partial chunk of %d bytes, last "
                          "chunk checksums %s): read up to the last settled chunk", path,
                          tail.partial, "ok" if tail.settled else "pending")
                if tail.settled:
                    return (lambda skip=0: _EvtxView(str(path), tail.end, tail.start, tail.data,
                                                     skip)), None
                return (lambda skip=0: _EvtxView(str(path), tail.start, skip_through=skip)), None
            log.warning("%s: end of the log unsettled for %.0f s (partial chunk of %d bytes, "
                        "last chunk checksums %s): read as it is", path, self.settle_s,
                        tail.partial, "ok" if tail.settled else "wrong")
            self._unsettled.pop(sid, None)
        return (lambda skip=0: str(path)), self._truncated(tail)

    @staticmethod
    def _truncated(tail: "EvtxTail") -> ParseError | None:
        if not tail.partial:
            return None
        # EVTX files hold whole 64 KiB chunks: a partial one is a truncated copy; the parser
        # skips it silently, so say so (dead-letter) once per file version
        return ParseError(f"truncated EVTX: file ends {tail.partial} bytes into a chunk; the "
                          "records of that chunk cannot be read")

    def _evtx(self, path: Path, sid: str) -> Iterator[Item]:
        pos = self.positions.get(sid, {})
        last = int(pos.get("record_id", 0))
        first_known = pos.get("first_record_id")
        first = None
        open_src, trunc = self._evtx_source(path, sid)
        if last:
            # was the log cleared / replaced? (first record id changed)
            src = open_src()
            it = iter_evtx_records(src, 0, self.evtx_threads)
            try:
                for rid, _data, err in it:
                    if err is None:
                        first = rid
                        break
            finally:
                it.close()
                if isinstance(src, io.IOBase):
                    src.close()
            if first_known is not None and first is not None and first < first_known:
                # record ids only grow in a log; a smaller first id means a new log (cleared:
                # ids restart at 1, or replaced by an older copy)
                log.warning("%s: first record id went back (%s -> %s): log cleared or "
                            "replaced, reading it from the start", path, first_known, first)
                last = 0
            elif first is not None and first > last + 1:
                # the oldest records rolled off (a full log overwriting as needed, a re-export)
                # before they were read: they are gone, say how many
                log.warning("%s: records %d..%d rolled off the log before they were read "
                            "(%d records lost upstream; read the log more often or make it "
                            "larger)", path, last + 1, first - 1, first - 1 - last)
        if trunc is not None:
            yield None, trunc, str(path), b"", sid, None
        src = open_src(last)
        if getattr(src, "skipped_chunks", 0):
            log.debug("%s: %d chunks at or below record %d skipped", path, src.skipped_chunks,
                      last)
        try:
            yield from self._evtx_records(src, path, sid, last, first)
        finally:
            if isinstance(src, io.IOBase):
                src.close()

    def _evtx_records(self, src, path: Path, sid: str, last: int,
                      first: int | None) -> Iterator[Item]:
        origin = str(path)
        if self.native_blocks and native.BINXML:
            yield from self._evtx_chunks(src, origin, sid, last, first)
            return
        if self.native_blocks and _NATIVE_FLAT is not None:
            yield from self._evtx_blocks(src, origin, sid, last, first)
            return
        yield from self._record_items(iter_evtx_records(src, last, self.evtx_threads), origin,
                                      sid, first)

    def _record_items(self, records, origin: str, sid: str, first: int | None):
        """Pipeline items of ``(record_id, json | None, error | None)`` triples, positions
        kept; returns the first record id (``yield from``'s value)."""
        for rid, data, err in records:
            if err is not None:
                yield None, err, origin, b"", sid, None
                continue
            if first is None:
                first = rid
            self.records_read += 1
            p = {"record_id": rid, "first_record_id": first}
            self.positions[sid] = p
            yield evtx_item(data, origin, rid, sid, p)
        return first

    def _evtx_blocks(self, src, origin: str, sid: str, last: int,
                     first: int | None) -> Iterator[Item]:
        for blk, err in iter_evtx_blocks(src, last, self.evtx_threads):
            if err is not None:
                yield None, err, origin, b"", sid, None
                continue
            if first is None:
                first = blk.rids[0]
            self.records_read += len(blk)
            p = {"record_id": blk.rids[-1], "first_record_id": first}
            self.positions[sid] = p
            yield blk, None, origin, None, sid, p

    def _evtx_chunks(self, src, origin: str, sid: str, last: int,
                     first: int | None) -> Iterator[Item]:
        """The file's chunks, each an :class:`EvtxChunk` for the C reader; a chunk whose
        layout it does not take is parsed by the crate on its own, its records (and errors)
        yielded one by one as :meth:`_evtx_records` does. What the crate skips is skipped
        too: all-zero (preallocated) chunks, and the partial chunk a truncated copy ends
        with (reported by :meth:`_evtx_source`)."""
        if not isinstance(src, str):
            src.seek(0)
        # buffered: read(n) gives n bytes short of the end (a view's raw reads stop at its
        # segment boundaries)
        f = open(src, "rb") if isinstance(src, str) else io.BufferedReader(src, EVTX_CHUNK)
        try:
            header = f.read(EVTX_FILE_HEADER)
            if len(header) < EVTX_FILE_HEADER or not header.startswith(EVTX_MAGIC):
                if not isinstance(src, str):
                    src.seek(0)         # a header the crate judges: its path, its errors
                yield from self._evtx_blocks(src, origin, sid, last, first)
                return
            chunk_records = native.ext.chunk_records
            k = -1
            while True:
                c = f.read(EVTX_CHUNK)
                k += 1
                if len(c) < EVTX_CHUNK:
                    return
                r = chunk_records(c, last)
                if r is None:
                    if c.count(0) == EVTX_CHUNK:
                        continue
                    # the chunk's number in the crate's errors: in the file, not in the copy
                    recs = ((rid, data, err if err is None or not k else ParseError(
                        str(err).replace("chunk number 0:", f"chunk number {k}:", 1)))
                            for rid, data, err in iter_evtx_records(io.BytesIO(header + c),
                                                                    last))
                    first = yield from self._record_items(recs, origin, sid, first)
                    continue
                n, lo, rids = r
                if lo >= n:
                    continue
                if first is None:
                    first = rids[lo]
                blk = EvtxChunk(c, header, lo, rids)
                self.records_read += len(blk)
                p = {"record_id": rids[-1], "first_record_id": first}
                self.positions[sid] = p
                yield blk, None, origin, None, sid, p
        finally:
            if isinstance(src, str):
                f.close()           # a view is closed by its opener (_evtx)

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
