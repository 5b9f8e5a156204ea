"""The collector loop: sources -> normalization -> wire batches -> producer (spool,
delivery-confirmed checkpoints), with linger-timer flushes, backpressure and heartbeats.

Used by ``itdr collect`` (file/EVTX sources, live channels), ``itdr replay`` and
``itdr bench collect``. Single-threaded: librdkafka delivery callbacks run inside
:meth:`BatchProducer.service`, on this thread.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterator

from stream.dlq import dlq_headers
from stream.errors import NormalizationError
from stream.metrics import (COLLECTOR_CHECKPOINT_LAG, COLLECTOR_EVENTS_DEAD_LETTERED,
                            COLLECTOR_EVENTS_NORMALIZED, COLLECTOR_EVENTS_READ,
                            COLLECTOR_EVENTS_UNKNOWN)
from stream.settings import DEFAULT_BATCH_EVENTS, TopicSettings

from .batcher import Batcher
from .evtx_source import EvtxBlock, EvtxChunk, evtx_item
from .checkpoint import CheckpointStore
from .normalize import Normalizer
from .producer import BatchProducer

log = logging.getLogger(__name__)


def reason_label(err: Exception) -> str:
    """Bounded metric label for a rejected record."""
    m = str(err).lower()
    if "hostile" in m:
        return "hostile_xml"
    if "exceeds" in m or "too large" in m:
        return "too_large"
    if "corrupt evtx" in m or "cannot open evtx" in m or "evtx" in m:
        return "corrupt_evtx"
    if "invalid json" in m or "json record must" in m:
        return "invalid_json"
    if "invalid xml" in m or "xml" in m:
        return "invalid_xml"
    if isinstance(err, NormalizationError):
        return "normalization"
    return "parse"


class CollectorStats:
    """Counters reported in heartbeats and the final report."""

    def __init__(self):
        self.read = 0
        self.normalized = 0
        self.unknown = 0
        self.dead_lettered = 0
        self.batches = 0
        self.backpressure_waits = 0
        self.started = time.time()
        self.event_ids: dict[int, int] = {}     # records read per event id since start


class CollectorPipeline:
    """Pumps sources into Kafka. ``sources`` are objects with ``poll() -> iterator of
    (rec, err, origin, raw, source_id, position)`` and a ``kind`` attribute."""

    def __init__(self, producer: BatchProducer, topics: TopicSettings, *, sources: list,
                 checkpoints: CheckpointStore | None = None, batch_events: int = DEFAULT_BATCH_EVENTS,
                 linger_ms: float = 200.0, dual_key: bool = True, follow: bool = False,
                 poll_interval_s: float = 1.0, sensor_id: str = "",
                 transform: Callable[[dict], dict] | None = None,
                 on_tick: Callable[["CollectorPipeline"], None] | None = None,
                 budget: int = 8192, time_offset_ms: int = 0,
                 on_events: Callable[[int], None] | None = None):
        self.producer = producer
        self.topics = topics
        self.dlq_topic = topics.name("dlq")
        self.sources = sources
        self.checkpoints = checkpoints
        self.batcher = Batcher(topics.partitions, batch_events, dual_key)
        self.normalizer = Normalizer()
        # replay: ms added to every event's time (--rebase-time), and a callback with the
        # number of events normalized so far in each step of work (pacing, progress); both
        # keep the C path, unlike a transform
        self.time_offset_ms = int(time_offset_ms)
        self.on_events = on_events
        if self.batcher.native is not None:
            self.batcher.native.time_offset = self.time_offset_ms
        # EVTX records in blocks, straight to events and batches in C (the same events and
        # batches as the per-record path; records the C path declines take that path)
        self._native_blocks = self.batcher.native and transform is None
        for src in sources:
            if hasattr(src, "native_blocks"):
                src.native_blocks = self._native_blocks
        self.linger_s = linger_ms / 1000.0
        self.follow = follow
        self.poll_interval_s = poll_interval_s
        self.sensor_id = sensor_id
        self.transform = transform
        self.on_tick = on_tick
        self.budget = budget
        self.stats = CollectorStats()
        self._positions: dict[str, dict] = {}
        self._epoch_read = 0
        self._iters: dict[int, Iterator | None] = {}
        self._next_pass: dict[int, float] = {}
        self._last_flush = time.monotonic()
        self._seq = 0

    # -- processing --------------------------------------------------------------------------
    def _dead_letter(self, err: Exception, origin: str, raw: bytes | None) -> None:
        label = reason_label(err)
        COLLECTOR_EVENTS_DEAD_LETTERED.labels(reason=label).inc()
        self.stats.dead_lettered += 1
        self.producer.send_raw(self.dlq_topic, raw or origin.encode("utf-8", "replace"),
                               headers=dlq_headers(str(err), type(err).__name__,
                                                   f"collector:{self.sensor_id}", origin))

    def process_item(self, rec, err, origin, raw, sid, pos, kind: str = "evtx") -> None:
        if pos is not None and sid is not None:
            self._positions[sid] = pos
        if err is not None:
            self.stats.read += 1
            COLLECTOR_EVENTS_READ.labels(source_kind=kind).inc()
            self._dead_letter(err, origin, raw)
            return
        if rec is None:
            return
        self.stats.read += 1
        self._epoch_read += 1
        eids = self.stats.event_ids
        eid = rec.get("_eid")
        eids[eid] = eids.get(eid, 0) + 1
        try:
            ev = self.normalizer.normalize(rec)
        except NormalizationError as e:
            self._dead_letter(e, origin, raw)
            return
        if ev is None:
            self.stats.unknown += 1
            return
        if self.time_offset_ms:
            ev["time_ms"] = ev["time_ms"] + self.time_offset_ms
        if self.transform is not None:
            ev = self.transform(ev)
        self.stats.normalized += 1
        if self.on_events is not None:
            self.on_events(1)
        self._seq += 1
        for m in self.batcher.add(ev, self._seq):
            self.producer.send_batch(m)
            self.stats.batches += 1

    def _count_run(self, k: int, n_norm: int, n_unk: int, out) -> None:
        """A run of records the C path took (add_evtx / add_chunk): counters, and its full
        batches to the producer."""
        st, nz = self.stats, self.normalizer
        st.read += k
        self._epoch_read += k
        st.normalized += n_norm
        nz.normalized += n_norm
        st.unknown += n_unk
        nz.unknown += n_unk
        if out is not None:
            for x in out:
                self.producer.send_batch(self.batcher.message(*x))
                st.batches += 1
        if n_norm and self.on_events is not None:
            self.on_events(n_norm)

    def _process_block(self, blk: EvtxBlock, err, origin: str, raw, sid: str, pos) -> None:
        """The records of a block in order: runs of them in C (NativeBatcher.add_evtx), each
        record the C path declines through :meth:`process_item` (flat record, normalizer,
        errors to the dead-letter topic)."""
        if pos is not None and sid is not None:
            self._positions[sid] = pos
        datas = blk.datas
        n = len(datas)
        nb = self.batcher.native
        st, nz = self.stats, self.normalizer
        i = 0
        while i < n:
            stop, self._seq, n_norm, n_unk, out = nb.add_evtx(
                datas, i, self._seq, st.event_ids, nz.unknown_ids)
            self._count_run(stop - i, n_norm, n_unk, out)
            if stop >= n:
                break
            self.process_item(*evtx_item(datas[stop], origin, blk.rids[stop], None, None))
            i = stop + 1

    def _process_chunk(self, blk: EvtxChunk, err, origin: str, raw, sid: str, pos) -> None:
        """The records of an EVTX chunk in order: runs of them read in C from the chunk's
        binary XML (NativeBatcher.add_chunk). A record the C normalizer declines (a value it
        does not fold, such as a non-ASCII name) goes through :meth:`process_item` as
        :meth:`EvtxChunk.declined_item` gives it (the reader's flat record, else the
        crate's)."""
        if pos is not None and sid is not None:
            self._positions[sid] = pos
        nb = self.batcher.native
        st, nz = self.stats, self.normalizer
        data, hi = blk.data, blk.hi
        i = blk.lo
        while i < hi:
            stop, self._seq, k, n_norm, n_unk, out = nb.add_chunk(
                data, i, hi, self._seq, st.event_ids, nz.unknown_ids)
            self._count_run(k, n_norm, n_unk, out)
            if stop >= hi:
                break
            self.process_item(*blk.declined_item(stop, origin))
            i = stop + 1

    def _pump(self, i: int, src, now: float) -> tuple[int, bool]:
        """Pull up to ``budget`` items from source ``i``. Returns (items, pass_finished)."""
        it = self._iters.get(i)
        if it is None:
            if now < self._next_pass.get(i, 0.0):
                return 0, True
            it = self._iters[i] = iter(src.poll())
        n = 0
        kind = getattr(src, "kind", "evtx")
        proc = self.process_item
        for item in it:
            rec = item[0]
            if rec.__class__ is EvtxChunk:
                self._process_chunk(*item)
                n += len(rec)
            elif rec.__class__ is EvtxBlock:
                self._process_block(*item)
                n += len(rec)
            else:
                proc(*item, kind=kind)
                n += 1
            if n >= self.budget:
                return n, False
        self._iters[i] = None
        self._next_pass[i] = now + self.poll_interval_s
        return n, True

    def flush_epoch(self) -> None:
        """Flush partial batches (linger) and close the checkpoint epoch."""
        for m in self.batcher.flush():
            self.producer.send_batch(m)
            self.stats.batches += 1
        # counters by kind are updated in bulk here (cheaper than per event)
        n_norm = self.normalizer.normalized
        n_unk = self.normalizer.unknown
        COLLECTOR_EVENTS_NORMALIZED.labels(source_kind="evtx").inc(
            max(0, n_norm - getattr(self, "_c_norm", 0)))
        COLLECTOR_EVENTS_UNKNOWN.labels(source_kind="evtx").inc(
            max(0, n_unk - getattr(self, "_c_unk", 0)))
        self._c_norm, self._c_unk = n_norm, n_unk
        if self._positions or self._epoch_read:
            self.producer.close_epoch(self._positions, self._epoch_read)
            self._positions = {}
            self._epoch_read = 0
        self._last_flush = time.monotonic()
        COLLECTOR_CHECKPOINT_LAG.labels(source_kind="evtx").set(self.producer.epochs.lag_events())

    def commit(self, force: bool = False) -> None:
        if self.checkpoints is not None:
            self.checkpoints.maybe_write(force)

    def step(self) -> int:
        """One iteration: serve the producer, read a budget from each source, flush on
        linger. Returns the number of items read (0 = idle or backpressure)."""
        p = self.producer
        p.service(0)
        self.commit()
        if self.on_tick is not None:
            self.on_tick(self)
        if p.backpressure:
            self.stats.backpressure_waits += 1
            if time.monotonic() - self._last_flush >= self.linger_s:
                self.flush_epoch()
            p.service(0.05)
            return 0
        now = time.monotonic()
        n = 0
        finished = True
        for i, src in enumerate(self.sources):
            k, fin = self._pump(i, src, now)
            n += k
            finished = finished and fin
        if n == 0 or time.monotonic() - self._last_flush >= self.linger_s:
            self.flush_epoch()
        return n

    def all_passes_done(self) -> bool:
        return all(self._iters.get(i) is None for i in range(len(self.sources)))

    def run(self, stop: threading.Event | None = None, flush_timeout: float = 30.0) -> dict:
        """Run until the sources are exhausted (no follow) or ``stop`` is set."""
        stop = stop or threading.Event()
        while not stop.is_set():
            n = self.step()
            if n == 0:
                if not self.follow and self.all_passes_done() and not self.producer.backpressure:
                    break
                self.producer.service(min(self.poll_interval_s, 0.1))
        self.flush_epoch()
        ok = self.producer.flush(flush_timeout)
        self.commit(force=True)
        out = self.report()
        out["flushed"] = ok
        return out

    def report(self) -> dict:
        s = self.stats
        el = max(time.time() - s.started, 1e-9)
        r = {"read": s.read, "normalized": s.normalized, "unknown": s.unknown,
             "dead_lettered": s.dead_lettered, "batches": s.batches,
             "backpressure_waits": s.backpressure_waits, "elapsed_s": round(el, 3),
             "events_per_s": round(s.read / el, 1)}
        r.update(self.producer.stats())
        return r
