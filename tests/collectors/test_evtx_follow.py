"""Follow mode on a growing EVTX log, source level (no broker): a chunk still being appended at
the end of the file, or being filled in place with its header ahead of its records, is left for
a later pass -- not dead-lettered, and the position never moves past records that are only half
written. Regressions: both used to be read as they were (a ``truncated EVTX`` dead letter on
every pass that saw a partial chunk; a half-written record dead-lettered with its record id
checkpointed, so the record was skipped once complete: lost)."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

from collectors.evtx_source import FileSource

from . import evtx_gen as g

HDR, CHUNK = g.FILE_HEADER_SIZE, g.CHUNK_SIZE


def _log(n: int = 400):
    """(full chunks, half-filled versions of them) of ``n`` synthetic records, ids 1..n."""
    events = g.security_events(n)
    full = g.build_chunks(events)
    halves = []
    for c in full:
        first, last = struct.unpack_from("<QQ", c, 24)
        (h,) = g.build_chunks(events[first - 1:first - 1 + (last - first + 1) // 2], first)
        halves.append(h)
    return full, halves


def _ids(c: bytes) -> list[int]:
    first, last = struct.unpack_from("<QQ", c, 24)
    return list(range(first, last + 1))


def _drain(src: FileSource) -> tuple[list[int], list[str]]:
    """Record ids delivered (position of each record) and errors of one poll."""
    ids, errs = [], []
    for _rec, err, _origin, _raw, _sid, pos in src.poll():
        if err is not None:
            errs.append(str(err))
        if pos is not None:
            ids.append(pos["record_id"])
    return ids, errs


def _write(path: Path, at: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(data)


def _touch(path: Path) -> None:
    """A new mtime even on coarse-timestamp filesystems (the source skips unchanged files)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_partial_chunk_at_end_of_followed_log_waits(tmp_path):
    full, _ = _log()
    path = tmp_path / "Security.evtx"
    path.write_bytes(g.file_header(1, 2) + full[0] + full[1][:20000])
    src = FileSource([str(path)], follow=True)
    ids, errs = _drain(src)
    assert errs == [] and ids == _ids(full[0])
    _write(path, HDR + CHUNK + 20000, full[1][20000:])
    ids, errs = _drain(src)
    assert errs == [] and ids == _ids(full[1])
    # one-shot, the same partial chunk is a truncated copy: reported
    path.write_bytes(g.file_header(1, 2) + full[0] + full[1][:20000])
    ids, errs = _drain(FileSource([str(path)]))
    assert ids == _ids(full[0]) and len(errs) == 1 and errs[0].startswith("truncated EVTX")


def test_chunk_header_ahead_of_its_records_waits(tmp_path):
    full, halves = _log()
    path = tmp_path / "Security.evtx"
    path.write_bytes(g.file_header(2, 2) + full[0] + halves[1])
    src = FileSource([str(path)], follow=True)
    ids, errs = _drain(src)
    assert errs == [] and ids == _ids(full[0]) + _ids(halves[1])
    # the chunk is filled in place, its header first: the header announces records whose
    # bytes are not all there (the first new one cut in its middle)
    free = struct.unpack_from("<I", halves[1], 48)[0]
    _write(path, HDR + CHUNK, full[1][:512])
    _write(path, HDR + CHUNK + free, full[1][free:free + 300])
    _touch(path)
    ids, errs = _drain(src)
    assert errs == [] and ids == []
    assert src.positions[str(path.resolve())]["record_id"] == _ids(halves[1])[-1]
    _write(path, HDR + CHUNK + free + 300, full[1][free + 300:])
    _touch(path)
    ids, errs = _drain(src)
    assert errs == [] and ids == _ids(full[1])[len(_ids(halves[1])):]


def test_last_chunk_is_parsed_as_verified(tmp_path):
    """A write into the last chunk while the file is being parsed does not reach the parser:
    the chunk comes from the copy whose checksums were verified."""
    full, _ = _log(600)
    assert len(full) >= 3
    path = tmp_path / "Security.evtx"
    path.write_bytes(g.file_header(len(full), 601) + b"".join(full))
    src = FileSource([str(path)], follow=True)
    it = src.poll()
    first = next(it)
    assert first[1] is None and first[5]["record_id"] == 1
    last_at = HDR + (len(full) - 1) * CHUNK
    _write(path, last_at + 512, b"\xff" * 4000)        # garbage over the last chunk's records
    rest = [item for item in it]
    assert [e for _r, e, *_ in rest if e is not None] == []
    assert [item[5]["record_id"] for item in rest] == list(range(2, 601))


def test_unsettled_end_taken_as_is_after_settle_s(tmp_path):
    full, halves = _log()
    path = tmp_path / "Security.evtx"
    path.write_bytes(g.file_header(1, 2) + full[0] + full[1][:20000])
    src = FileSource([str(path)], follow=True, settle_s=0.3)
    ids, errs = _drain(src)
    assert errs == [] and ids == _ids(full[0])
    assert _drain(src) == ([], [])                  # unchanged, not settled yet
    time.sleep(0.35)
    ids, errs = _drain(src)                         # unchanged for settle_s: as it is
    assert ids == [] and len(errs) == 1 and errs[0].startswith("truncated EVTX")
    time.sleep(0.35)
    assert _drain(src) == ([], [])                  # reported once per file version
    # a last chunk whose checksums do not come right (a log left dirty) is read as it is
    # after settle_s, even if the file keeps changing meanwhile: bounded delay
    free = struct.unpack_from("<I", halves[1], 48)[0]
    path.write_bytes(g.file_header(2, 2) + full[0] + full[1][:free] + bytes(CHUNK - free))
    src = FileSource([str(path)], follow=True, settle_s=0.3)
    ids, errs = _drain(src)
    assert errs == [] and ids == _ids(full[0])
    _touch(path)
    assert _drain(src) == ([], [])
    time.sleep(0.35)
    _touch(path)
    ids, errs = _drain(src)
    assert ids[:len(_ids(halves[1]))] == _ids(halves[1])


def test_preallocated_empty_chunks_and_resume(tmp_path):
    """All-zero chunks after the last one (preallocated) are no unsettled end; a source
    resumed from a checkpoint reads only the records after it."""
    full, _ = _log()
    path = tmp_path / "Security.evtx"
    path.write_bytes(g.file_header(2, 2) + full[0] + full[1] + bytes(2 * CHUNK))
    src = FileSource([str(path)], follow=True, settle_s=0)
    ids, errs = _drain(src)
    assert errs == [] and ids == _ids(full[0]) + _ids(full[1])
    assert _drain(src) == ([], []) and src.files_read == 1     # nothing to settle: no re-read
    sid = str(path.resolve())
    resumed = FileSource([str(path)], {sid: {"record_id": 100, "first_record_id": 1}},
                         follow=True)
    ids, errs = _drain(resumed)
    assert errs == [] and ids == list(range(101, _ids(full[1])[-1] + 1))


def test_oldest_records_rolling_off_do_not_resend_the_log_but_a_cleared_log_is_read(tmp_path):
    """A full log overwriting its oldest records (first record id moves forward) goes on after
    the checkpoint; a cleared log (ids restart at 1) is read from its start."""
    events = g.security_events(1200)
    path = tmp_path / "Archive-Security.evtx"
    chunks = g.build_chunks(events[:600])
    path.write_bytes(g.evtx_bytes(chunks, 601))
    src = FileSource([str(path)], follow=True)
    ids, errs = _drain(src)
    assert errs == [] and ids == list(range(1, 601))
    # records 1..300 rolled off, 601..900 arrived
    chunks = g.build_chunks(events[300:900], 301)
    path.write_bytes(g.evtx_bytes(chunks, 901))
    _touch(path)
    ids, errs = _drain(src)
    assert errs == [] and ids == list(range(601, 901)), "only the new records are read"
    # a gap: 901..1000 rolled off before they were read -> the rest is read, nothing re-sent
    chunks = g.build_chunks(events[1000:1200], 1001)
    path.write_bytes(g.evtx_bytes(chunks, 1201))
    _touch(path)
    ids, errs = _drain(src)
    assert errs == [] and ids == list(range(1001, 1201))
    # cleared: ids restart at 1 -> everything is new
    chunks = g.build_chunks(events[:50])
    path.write_bytes(g.evtx_bytes(chunks, 51))
    _touch(path)
    ids, errs = _drain(src)
    assert errs == [] and ids == list(range(1, 51))


def test_a_followed_log_is_parsed_from_the_checkpoint_chunk_not_from_its_start(tmp_path,
                                                                                monkeypatch):
    """Each poll of a growing log parses the chunks after the checkpoint only (a 1 GB
    Security.evtx must not be re-parsed every second); records and positions unchanged."""
    import collectors.evtx_source as es

    rendered = []
    real = es.iter_evtx_records

    def counting(src, start_record=0, threads=1):
        for rid, data, err in real(src, 0, threads):
            rendered.append(rid)
            if err is not None or rid > start_record:
                yield rid, data, err

    monkeypatch.setattr(es, "iter_evtx_records", counting)
    events = g.security_events(1300)
    chunks = g.build_chunks(events[:1200])
    assert len(chunks) >= 9
    path = tmp_path / "Security.evtx"
    path.write_bytes(g.evtx_bytes(chunks, 1201))
    src = FileSource([str(path)], follow=True)
    ids, errs = _drain(src)
    assert errs == [] and ids == list(range(1, 1201))
    # the log grows by one chunk of 100 records
    (new,) = g.build_chunks(events[1200:1300], 1201)
    path.write_bytes(g.evtx_bytes(chunks + [new], 1301))
    _touch(path)
    rendered.clear()
    ids, errs = _drain(src)
    assert errs == [] and ids == list(range(1201, 1301))
    # parsed: the first record (cleared-log probe), the checkpoint's chunk and the new one
    first_chunk = struct.unpack_from("<QQ", chunks[-1], 24)
    assert len(rendered) <= 1 + (first_chunk[1] - first_chunk[0] + 1) + 100, len(rendered)
    assert min(r for r in rendered if r > 1) >= first_chunk[0]
