"""``itdr bench collect``: EVTX -> normalized -> wire batches -> Kafka, events/s on one core,
against the raw ``evtx`` parse ceiling of the same input measured in the same run.

Input: by default one EVTX file assembled at bench time in a temporary directory (never in
the repository) from the 64 KiB chunks of ``../shared/samples`` that hold Security/System
records, each chunk's free space filled with verified copies of its own records (production
logs have full chunks), replicated until ``--events`` records, renumbered, CRCs and file
header rewritten (:func:`build_input`). EVTX / JSON-lines FILES given on the command line are
used as they are (replayed until ``--events``). The pipeline runs exactly like ``itdr collect``
(:class:`~collectors.evtx_source.FileSource` with the event-id fast path, Normalizer,
partition-aware dual-keyed Batcher, idempotent lz4 producer) against an embedded broker the
bench starts; the clock stops when the broker has acknowledged every batch. The ceiling is a
bare ``PyEvtxParser(f, number_of_threads=1).records_json()`` loop over the same records (best
of three runs, two before and one after the pipeline, to even out machine noise).

JSON keys: ``events_per_s`` (records read per second through the whole pipeline),
``ceiling_events_per_s``, ``ratio``, ``normalized_per_s`` (events the product consumes),
``hot_path`` (``native``: the C path of ``collectors/_native.c``; ``python``: the extension is
not built or ``ITDR_NATIVE=0``), ``evtx_reader`` (``binxml``: the pipeline reads the chunks'
binary XML in C and never asks the crate for JSON, so ``ratio`` can exceed 1; ``crate-json``
with ``ITDR_BINXML=0``; ``python``), ``reader_ceiling_events_per_s`` (the binary-XML reader
alone over the same input: every record read into the view, nothing built), plus the input
mix.
"""

from __future__ import annotations

import glob
import io
import os
import re
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

import orjson

from stream.errors import ITDRError

from . import native
from .files import EVTX_MAGIC

DEFAULT_SAMPLES = [Path(__file__).resolve().parents[2] / "shared" / "samples",
                   Path("/work/shared/samples")]


def default_files() -> list[str]:
    for d in DEFAULT_SAMPLES:
        files = sorted(glob.glob(str(d / "**" / "*.evtx"), recursive=True))
        if files:
            return files
    return []


# -- bench input: one big EVTX assembled from the Security/System chunks of the samples ------
_FILE_HDR = 4096
_CHUNK = 65536


def _file_chunks(path: str) -> list[bytes]:
    """The valid 64 KiB chunks of an EVTX file (header chunk count; magic and header CRC
    checked)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != EVTX_MAGIC or len(data) < _FILE_HDR + _CHUNK:
        return []
    n = struct.unpack_from("<H", data, 42)[0]
    out = []
    for i in range(n):
        c = data[_FILE_HDR + i * _CHUNK:_FILE_HDR + (i + 1) * _CHUNK]
        if len(c) < _CHUNK or c[:8] != b"ElfChnk\0":
            continue
        if zlib.crc32(c[128:512], zlib.crc32(c[:120])) != struct.unpack_from("<I", c, 124)[0]:
            continue
        out.append(c)
    return out


def _renumber_chunk(c: bytes, first_id: int) -> tuple[bytes, int]:
    """Chunk with its records renumbered from ``first_id`` (record headers, chunk header
    ranges, records CRC and header CRC rewritten). Returns (chunk, records in it)."""
    b = bytearray(c)
    free = struct.unpack_from("<I", b, 48)[0]
    rid = first_id
    for off, _size in _records(c):
        struct.pack_into("<Q", b, off + 8, rid)
        rid += 1
    n = rid - first_id
    if n == 0:
        return bytes(b), 0
    struct.pack_into("<QQQQ", b, 8, first_id, rid - 1, first_id, rid - 1)
    struct.pack_into("<I", b, 52, zlib.crc32(b[512:free]))
    struct.pack_into("<I", b, 124, zlib.crc32(b[128:512], zlib.crc32(b[:120])))
    return bytes(b), n


def _records(c: bytes) -> list[tuple[int, int]]:
    """(offset, size) of the records of a chunk."""
    free = struct.unpack_from("<I", c, 48)[0]
    out = []
    off = 512
    while off + 24 <= free and c[off:off + 4] == b"\x2a\x2a\x00\x00":
        size = struct.unpack_from("<I", c, off + 4)[0]
        if size < 28 or off + size > free:
            break
        out.append((off, size))
        off += size
    return out


_RID_RE = re.compile(r'"EventRecordID":\s*\d+')


def _parse_chunk(c: bytes) -> dict[int, str]:
    """record id -> JSON (EventRecordID blanked) of a chunk renumbered 1..n; records the
    parser refuses are left out."""
    import evtx

    c1, n = _renumber_chunk(c, 1)
    out = {}
    try:
        it = evtx.PyEvtxParser(io.BytesIO(_file_header(1, n + 1) + c1),
                               number_of_threads=1).records_json()
    except Exception:  # noqa: BLE001
        return out
    for _ in range(n + 1):
        try:
            r = next(it)
        except StopIteration:
            break
        except Exception:  # noqa: BLE001 - a corrupt record
            continue
        out[r["event_record_id"]] = _RID_RE.sub("", r["data"])
    return out


def _with_copies(c: bytes, recs: list[tuple[int, int]], order: list[int]) -> bytes:
    b = bytearray(c)
    free = recs[-1][0] + recs[-1][1]
    last = recs[-1][0]
    for i in order:
        off, size = recs[i]
        b[free:free + size] = c[off:off + size]
        last = free
        free += size
    struct.pack_into("<II", b, 44, last, free)
    return bytes(b[:_CHUNK])


def _densify(c: bytes) -> bytes:
    """Fill a chunk's free space with copies of its own records, round robin (a production
    Security log has full chunks of ~100 records; most chunks of the samples are nearly
    empty, and the parser's cost per chunk then dominates). A copy is valid in the same chunk
    when the record does not carry an inline template or name definition (its references
    are chunk offsets); which records can be copied is found by parsing trial copies, and
    the densified chunk is checked against the originals record by record (the chunk is
    kept as it was if anything differs)."""
    recs = _records(c)
    if not recs:
        return c
    orig = _parse_chunk(c)
    n = len(recs)
    if len(orig) != n:
        return c
    room = _CHUNK - (recs[-1][0] + recs[-1][1])
    copyable = []
    pending = list(range(n))
    while pending:
        batch, used = [], 0
        for i in pending:
            if used + recs[i][1] <= room:
                batch.append(i)
                used += recs[i][1]
        if not batch:
            break
        pending = [i for i in pending if i not in batch]
        got = _parse_chunk(_with_copies(c, recs, batch))
        copyable += [i for j, i in enumerate(batch) if got.get(n + 1 + j) == orig[i + 1]]
    copyable.sort()
    if not copyable:
        return c
    order, used, k, misses = [], 0, 0, 0
    while misses < len(copyable):
        i = copyable[k % len(copyable)]
        k += 1
        if used + recs[i][1] > room:
            misses += 1
            continue
        misses = 0
        order.append(i)
        used += recs[i][1]
    d = _with_copies(c, recs, order)
    got = _parse_chunk(d)
    want = [orig[i + 1] for i in range(n)] + [orig[i + 1] for i in order]
    if [got.get(j + 1) for j in range(len(want))] != want:
        return c
    return d


def _file_header(n_chunks: int, next_record_id: int) -> bytes:
    h = bytearray(_FILE_HDR)
    h[:8] = EVTX_MAGIC
    # first chunk, last chunk, next record id, header size, minor 1, major 3,
    # header block size, chunk count
    struct.pack_into("<QQQIHHHH", h, 8, 0, n_chunks - 1, next_record_id, 128, 1, 3,
                     _FILE_HDR, n_chunks)
    struct.pack_into("<I", h, 120, 0)          # flags: clean, not full
    struct.pack_into("<I", h, 124, zlib.crc32(h[:120]))
    return bytes(h)


SECURITY_CHANNELS = ("security", "system")
_CHAN_RE = re.compile(r'"Channel":\s*"([^"]*)"')


def security_chunks(files: list[str]) -> list[bytes]:
    """Chunks of ``files`` holding Security/System records (what a DC's collector reads)."""
    import evtx

    out = []
    for f in files:
        chunks = _file_chunks(f)
        if not chunks:
            continue
        # each chunk parsed on its own (a one-chunk EVTX), so the selection is per chunk
        for c in chunks:
            c1, n = _renumber_chunk(c, 1)
            if not n:
                continue
            try:
                p = evtx.PyEvtxParser(io.BytesIO(_file_header(1, n + 1) + c1),
                                      number_of_threads=1)
                chans = [_CHAN_RE.search(r["data"], 0, 4000) for r in p.records_json()]
            except Exception:  # noqa: BLE001 - a chunk the parser refuses is left out
                continue
            if any(m and m.group(1).lower() in SECURITY_CHANNELS for m in chans):
                out.append(_densify(c))
    return out


def build_input(files: list[str], events: int, out_dir: str) -> tuple[str, int, int]:
    """Write ``out_dir/bench-security.evtx``: the Security/System chunks of ``files``
    replicated (records renumbered 1..n) until at least ``events`` records. Returns
    (path, records, chunks)."""
    src = security_chunks(files)
    if not src:
        raise ITDRError("no Security/System EVTX chunks in the bench input",
                        fix="pass EVTX files with Security or System events")
    path = os.path.join(out_dir, "bench-security.evtx")
    rid = 1
    chunks = []
    while rid - 1 < events:
        for c in src:
            nc, n = _renumber_chunk(c, rid)
            if n:
                chunks.append(nc)
                rid += n
            if rid - 1 >= events:
                break
        if len(chunks) >= 0xFFFF:
            raise ITDRError(f"--events {events} needs more than 65535 EVTX chunks",
                            fix="use a smaller --events")
    with open(path, "wb") as f:
        f.write(_file_header(len(chunks), rid))
        for c in chunks:
            f.write(c)
    return path, rid - 1, len(chunks)


class RepeatSource:
    """EVTX (or JSON-lines / XML) files read over and over until ``target`` records (bench /
    load tests)."""

    kind = "evtx"

    def __init__(self, files: list[str], target: int):
        from .evtx_source import FileSource

        self.files = [Path(f) for f in files]
        self.target = target
        self.fs = FileSource([], follow=False)
        self.read = 0

    @property
    def native_blocks(self) -> bool:
        return self.fs.native_blocks

    @native_blocks.setter
    def native_blocks(self, v: bool) -> None:
        self.fs.native_blocks = v

    def poll(self):
        from .evtx_source import EvtxBlock, EvtxChunk, _kind

        rnd = 0
        while self.read < self.target:
            rnd += 1
            n0 = self.read
            for f in self.files:
                self.fs.positions = {}
                if _kind(f) == "evtx":
                    it = self.fs._evtx(f, f"{f}#{rnd}")
                else:
                    it = self.fs._text(f, f"{f}#{rnd}", f.stat())
                for item in it:
                    rec = item[0]
                    if rec.__class__ is EvtxChunk:
                        room = self.target - self.read
                        if len(rec) > room:             # exactly `target` records
                            rec.hi = rec.lo + room
                        self.read += len(rec)
                    elif rec.__class__ is EvtxBlock:
                        room = self.target - self.read
                        if len(rec) > room:             # exactly `target` records
                            del rec.datas[room:], rec.rids[room:]
                        self.read += len(rec)
                    else:
                        self.read += 1
                    yield item
                    if self.read >= self.target:
                        return
            if self.read == n0:
                return          # no records at all


def ceiling(files: list[str], target: int) -> tuple[int, float, float]:
    """Bare parse of the same records: ``PyEvtxParser(f, 1).records_json()`` for EVTX,
    line split + ``orjson.loads`` for JSON lines."""
    import evtx

    n = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    while n < target:
        n0 = n
        for f in files:
            if str(f).lower().endswith(".evtx"):
                it = evtx.PyEvtxParser(str(f), number_of_threads=1).records_json()
            else:
                it = (orjson.loads(x) for x in Path(f).read_bytes().splitlines() if x.strip())
            for _r in it:
                n += 1
                if n >= target:
                    break
            if n >= target:
                break
        if n == n0:
            break
    return n, time.perf_counter() - t0, time.process_time() - c0


def reader_ceiling(files: list[str], target: int) -> tuple[int, float] | None:
    """The binary-XML reader's own ceiling: every chunk of the same EVTX input read (its
    records' System fields and EventData values rendered into the view), nothing built, up to
    ``target`` records; None without the reader (or for JSON-lines input)."""
    if not native.BINXML or not all(str(f).lower().endswith(".evtx") for f in files):
        return None
    chunk_records, chunk_read = native.ext.chunk_records, native.ext.chunk_read
    n = 0
    t0 = time.perf_counter()
    while n < target:
        n0 = n
        for f in files:
            with open(f, "rb") as fh:
                fh.seek(_FILE_HDR)
                while n < target:
                    c = fh.read(_CHUNK)
                    if len(c) < _CHUNK:
                        break
                    if chunk_records(c, 0) is None:
                        continue
                    ok, declined = chunk_read(c)
                    n += ok + declined
        if n == n0:
            break
    return n, time.perf_counter() - t0


def run_bench(files: list[str], events: int, bootstrap: str | None = None,
              info: dict | None = None) -> dict:
    from stream.broker import EmbeddedBroker, ensure_topics
    from stream.settings import KafkaSettings, TopicSettings

    from .pipeline import CollectorPipeline
    from .producer import BatchProducer
    from .spool import Spool

    from stream.cpus import pin_process, split_cores

    # the pipeline (and its producer's threads, created by this thread) on one core of its
    # own, the embedded broker on the others; the ceiling reads run on the same core
    core, others = split_cores()
    affinity = os.sched_getaffinity(0)
    broker = None
    if bootstrap:
        kafka = KafkaSettings(bootstrap_servers=bootstrap)
    else:
        broker = EmbeddedBroker().start()
        kafka = broker.kafka_settings()
        pin_process(broker.proc.pid, others)
    os.sched_setaffinity(0, core)
    try:
        topics = TopicSettings(prefix=f"bench{int(time.time())}.", partitions=4)
        ensure_topics(kafka, topics)
        n1, t1, c1 = ceiling(files, events)
        n1b, t1b, c1b = ceiling(files, events)
        with tempfile.TemporaryDirectory(prefix="itdr-bench-") as tmp:
            prod = BatchProducer(kafka, topics, Spool(Path(tmp) / "spool"),
                                 client_suffix="bench")
            src = RepeatSource(files, events)
            pipe = CollectorPipeline(prod, topics, sources=[src], linger_ms=200.0,
                                     budget=50_000)
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            rep = pipe.run(flush_timeout=120)
            el = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
        n2, t2, c2 = ceiling(files, events)
        rc = [reader_ceiling(files, events) for _ in range(3)]
        ceil = max(n1 / t1, n1b / t1b, n2 / t2)
        ceil_cpu = max(n1 / c1, n1b / c1b, n2 / c2)
        rate = rep["read"] / el
        return {"events_per_s": round(rate), "ceiling_events_per_s": round(ceil),
                "ratio": round(rate / ceil, 3),
                "events_per_cpu_s": round(rep["read"] / cpu),
                "ceiling_events_per_cpu_s": round(ceil_cpu),
                "ratio_cpu": round((rep["read"] / cpu) / ceil_cpu, 3),
                "normalized_per_s": round(rep["normalized"] / el),
                "records": rep["read"], "normalized": rep["normalized"],
                "unknown": rep["unknown"], "dead_lettered": rep["dead_lettered"],
                "batches": rep["batches"], "delivered_events": rep["delivered_events"],
                "elapsed_s": round(el, 3), "process_cpu_s": round(cpu, 3),
                "reader_ceiling_events_per_s": (round(max(n / t for n, t in rc))
                                                if rc[0] is not None else None),
                "files": len(files), "flushed": rep["flushed"], "hot_path": native.status(),
                "evtx_reader": native.evtx_reader(),
                **(info or {}),
                "loadavg_1m": round(os.getloadavg()[0], 2)}
    finally:
        os.sched_setaffinity(0, affinity)
        if broker is not None:
            broker.cleanup()


def cmd_bench_collect(args) -> int:
    from stream.cli import settings_from_args

    bootstrap = None
    if getattr(args, "bootstrap", None):
        bootstrap = settings_from_args(args).kafka.bootstrap_servers
    with tempfile.TemporaryDirectory(prefix="itdr-bench-input-") as tmp:
        if args.files:
            from .files import expand_paths

            files = [str(p) for p in expand_paths(args.files)
                     if str(p).lower().endswith((".evtx", ".json", ".jsonl", ".ndjson"))]
            if not files:
                raise ITDRError("no EVTX / JSON-lines input among the given files",
                                fix="pass .evtx or .jsonl files or directories holding them")
            info = {"input": "files"}
        else:
            samples = default_files()
            if not samples:
                raise ITDRError(
                    "no bench input: ../shared/samples (the shared EVTX samples) is absent",
                    fix="pass EVTX or JSON-lines files/dirs: `itdr bench collect FILES...`")
            t0 = time.perf_counter()
            path, n, chunks = build_input(samples, args.events, tmp)
            files = [path]
            info = {"input": "assembled", "input_sample_files": len(samples),
                    "input_chunks": chunks, "input_records": n,
                    "input_build_s": round(time.perf_counter() - t0, 2)}
        res = run_bench(files, args.events, bootstrap, info)
    if args.json:
        sys.stdout.write(orjson.dumps(res).decode() + "\n")
    else:
        print(f"collect: {res['events_per_s']:,} records/s through EVTX->normalize->wire->Kafka "
              f"({res['normalized_per_s']:,} normalized events/s; "
              f"{res['events_per_cpu_s']:,} per CPU-second); evtx parse ceiling "
              f"{res['ceiling_events_per_s']:,}/s ({res['ceiling_events_per_cpu_s']:,} per "
              f"CPU-second); ratio {res['ratio']} (CPU {res['ratio_cpu']})")
    return 0
