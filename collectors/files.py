"""Reading recorded events from files: EVTX, JSON lines (every forwarded format), Windows
Event XML; plain, ``.gz`` or ``.zip`` compressed. Used by ``itdr scan``, ``itdr replay`` and
the EVTX collector.

:func:`iter_file_records` yields ``(flat_record | None, error | None, origin)`` so that the
caller decides what to do with a bad record (dead-letter topic, counter) while good records
keep flowing: a truncated EVTX chunk, a garbage JSON line or hostile XML never stops a file.
"""

from __future__ import annotations

import glob
import gzip
import io
import logging
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Iterator

import orjson

from stream.errors import ITDRError, ParseError

from .records import from_evtx_json, from_xml, parse_json_record, split_xml_events

log = logging.getLogger(__name__)

EVTX_MAGIC = b"ElfFile\0"
Item = tuple[dict | None, Exception | None, str]


def expand_paths(paths: list[str]) -> list[Path]:
    """Files, directories (recursive) and globs -> sorted list of files."""
    out: list[Path] = []
    for p in paths:
        matches = glob.glob(p, recursive=True) if any(c in p for c in "*?[") else [p]
        if not matches:
            raise ITDRError(f"no such file or pattern: {p}", fix="check the path")
        for m in matches:
            mp = Path(m)
            if mp.is_dir():
                out.extend(sorted(x for x in mp.rglob("*") if x.is_file()))
            elif mp.exists():
                out.append(mp)
            else:
                raise ITDRError(f"no such file: {m}", fix="check the path")
    return out


def iter_evtx(path: str | os.PathLike, start_record: int = 0) -> Iterator[Item]:
    """EVTX via the Rust ``evtx`` parser. Corrupt chunks/records become errors, not crashes."""
    import evtx

    origin = str(path)
    try:
        parser = evtx.PyEvtxParser(str(path))
    except Exception as e:  # noqa: BLE001 - the parser raises plain RuntimeError
        yield None, ParseError(f"cannot open EVTX: {e}"), origin
        return
    it = parser.records_json()
    while True:
        try:
            r = next(it)
        except StopIteration:
            return
        except Exception as e:  # noqa: BLE001
            yield None, ParseError(f"corrupt EVTX record: {e}"), origin
            # the iterator may be unusable after a hard error
            try:
                continue
            except Exception:  # pragma: no cover
                return
        if start_record and r.get("event_record_id", 0) <= start_record:
            continue
        try:
            rec = from_evtx_json(orjson.loads(r["data"]))
            yield rec, None, f"{origin}#{r.get('event_record_id')}"
        except (ParseError, orjson.JSONDecodeError) as e:
            yield None, e if isinstance(e, ParseError) else ParseError(str(e)), \
                f"{origin}#{r.get('event_record_id')}"


def _iter_text_lines(data: bytes, origin: str) -> Iterator[Item]:
    text_start = data.lstrip()[:200]
    if text_start.startswith(b"<"):
        try:
            text = data.decode("utf-8", "replace")
            parts = split_xml_events(text)
        except ParseError as e:
            yield None, e, origin
            return
        for i, x in enumerate(parts, 1):
            try:
                yield from_xml(x), None, f"{origin}:{i}"
            except ParseError as e:
                yield None, e, f"{origin}:{i}"
        return
    for lineno, line in enumerate(data.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            if line.startswith(b"<"):
                yield from_xml(line), None, f"{origin}:{lineno}"
            else:
                yield parse_json_record(line), None, f"{origin}:{lineno}"
        except ParseError as e:
            yield None, e, f"{origin}:{lineno}"


#: Largest decompressed content of one ``.gz`` file or of one ``.zip`` (all members together).
#: Larger is refused with a ParseError (decompression bomb) instead of filling the memory.
MAX_DECOMPRESSED_BYTES = 1 << 30

# what a corrupt or hostile archive can raise while being opened or read
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error,
                   NotImplementedError, RuntimeError, ValueError, OverflowError,
                   UnicodeDecodeError)


def _too_big(what: str, limit: int) -> ParseError:
    return ParseError(f"{what} expands beyond the {limit}-byte decompression limit "
                      "(decompression bomb?); refused",
                      fix="split the archive or raise collectors.files.MAX_DECOMPRESSED_BYTES")


def _read_bounded(f, limit: int) -> bytes | None:
    """Up to ``limit`` bytes of a (decompressing) file object, read in chunks; None when it
    holds more (the excess is never decompressed beyond one chunk)."""
    buf = bytearray()
    while True:
        chunk = f.read(min(1 << 20, limit + 1 - len(buf)))
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            return None


def _read_gzip(p: Path, limit: int) -> bytes:
    with gzip.open(p, "rb") as g:
        data = _read_bounded(g, limit)
    if data is None:
        raise _too_big(f"gzip file {p.name}", limit)
    return data


def iter_file_records(path: str | os.PathLike) -> Iterator[Item]:
    """All records of one file, whatever its format/compression. Never raises for bad
    content: corrupt archives, decompression bombs (:data:`MAX_DECOMPRESSED_BYTES`), garbage
    and hostile records are yielded as errors."""
    p = Path(path)
    origin = str(p)
    with open(p, "rb") as f:
        head = f.read(8)
    if head.startswith(EVTX_MAGIC):
        yield from iter_evtx(p)
        return
    limit = MAX_DECOMPRESSED_BYTES
    if head[:2] == b"\x1f\x8b":
        try:
            data = _read_gzip(p, limit)
        except ParseError as e:
            yield None, e, origin
            return
        except _ARCHIVE_ERRORS as e:
            yield None, ParseError(f"corrupt gzip: {e}"), origin
            return
        yield from _iter_bytes(data, origin)
        return
    if head[:4] == b"PK\x03\x04":
        try:
            zf = zipfile.ZipFile(p)
            members = [i for i in zf.infolist() if not i.is_dir()]
        except _ARCHIVE_ERRORS as e:
            yield None, ParseError(f"corrupt zip: {e}"), origin
            return
        budget = limit
        with zf:
            for info in members:
                where = f"{origin}!{info.filename}"
                if info.file_size > budget:        # declared size: refuse before inflating
                    yield None, _too_big(f"zip {p.name}", limit), where
                    return
                try:
                    with zf.open(info) as m:
                        data = _read_bounded(m, budget)  # the declared size may lie
                except _ARCHIVE_ERRORS as e:
                    yield None, ParseError(f"corrupt zip member {info.filename}: {e}"), where
                    continue
                if data is None:
                    yield None, _too_big(f"zip {p.name}", limit), where
                    return
                budget -= len(data)
                yield from _iter_bytes(data, where)
        return
    yield from _iter_text_lines(p.read_bytes(), origin)


def _iter_bytes(data: bytes, origin: str) -> Iterator[Item]:
    if data[:8] == EVTX_MAGIC:
        with tempfile.NamedTemporaryFile(suffix=".evtx") as tf:
            tf.write(data)
            tf.flush()
            yield from iter_evtx(tf.name)
        return
    yield from _iter_text_lines(data, origin)


def iter_paths(paths: list[str]) -> Iterator[Item]:
    for p in expand_paths(paths):
        yield from iter_file_records(p)


def read_json_lines_bytes(data: bytes, origin: str = "<bytes>") -> Iterator[Item]:
    """Parse a blob of JSON lines / XML events (gateway request bodies)."""
    return _iter_text_lines(data, origin)


__all__ = ["expand_paths", "iter_evtx", "iter_file_records", "iter_paths",
           "read_json_lines_bytes", "io"]
