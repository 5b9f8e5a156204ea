"""``itdr replay FILES... [--rate N] [--speed X] [--loop] [--rebase-time] [--json]``: recorded
EVTX / JSON-lines / XML files into Kafka through the collector pipeline, at a controlled rate.

* order is preserved (files in the order given, records in file order; per-partition order
  in Kafka follows);
* ``--rate N``: at most N events per second (token bucket); ``--speed X``: X times the
  recorded pace (event-time gaps divided by X); neither: as fast as possible;
* ``--rebase-time``: every timestamp is shifted so that the last event of the recording is
  "now" (recomputed at the start of each ``--loop`` round, so looped data stays current);
* a progress line on stderr; a final report (events, seconds, rate achieved), one JSON object
  on stdout with ``--json``.

The tool people use to load-test the stream workers and detectors.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

from stream.cli import settings_from_args
from stream.errors import ITDRError

from .evtx_source import FileSource
from .files import expand_paths


class _Pacer:
    """Paces normalized events and prints progress: :meth:`events` (the pipeline's
    ``on_events``: ``--rate`` and unpaced replay keep the C path, the time offset applied by
    the pipeline) or, for ``--speed`` (event-time pacing, per event), the transform hook that
    also rebases times."""

    def __init__(self, pipe_ref, rate: float, speed: float, offset_ms: int, total: int,
                 progress: bool):
        self.pipe_ref = pipe_ref
        self.rate = rate
        self.speed = speed
        self.offset_ms = offset_ms
        self.n = 0
        self.t0 = time.monotonic()
        self.ev_t0: int | None = None
        self.total = total
        self.progress = progress
        self._last_print = 0.0
        self._next_wait = 64

    def _wait_until(self, t: float) -> None:
        prod = self.pipe_ref[0].producer
        while True:
            d = t - time.monotonic()
            if d <= 0:
                return
            prod.poll(min(d, 0.05))

    def events(self, k: int) -> None:
        """``k`` more events normalized (pipeline ``on_events``)."""
        self.n += k
        n = self.n
        if self.rate > 0 and n >= self._next_wait:
            self._next_wait = n + 64
            self._wait_until(self.t0 + n / self.rate)
        if self.progress:
            self._print(n)

    def _print(self, n: int) -> None:
        now = time.monotonic()
        if now - self._last_print >= 0.5:
            self._last_print = now
            el = max(now - self.t0, 1e-9)
            tot = f"/{self.total:,}" if self.total else ""
            sys.stderr.write(f"\rreplay: {n:,}{tot} events  {n / el:,.0f}/s   ")
            sys.stderr.flush()

    def __call__(self, ev: dict) -> dict:
        if self.offset_ms:
            ev["time_ms"] = ev["time_ms"] + self.offset_ms
        self.n += 1
        n = self.n
        if self.rate > 0 and n % 64 == 0:
            self._wait_until(self.t0 + n / self.rate)
        elif self.speed > 0:
            t = ev["time_ms"]
            if self.ev_t0 is None:
                self.ev_t0 = t
            target = self.t0 + (t - self.ev_t0) / 1000.0 / self.speed
            if target - time.monotonic() > 0.002:
                self._wait_until(target)
        if self.progress and n % 1024 == 0:
            self._print(n)
        return ev


def _last_time(paths: list[str]) -> tuple[int, int]:
    """(max event time, normalized events) over the files -- one pre-pass. EVTX chunks are
    read by the C chunk reader (``chunk_event``; a record it declines through the reader's
    flat record or the crate, as in the pipeline), everything else record by record."""
    from . import native
    from .evtx_source import EvtxChunk
    from .normalize import Normalizer

    norm = Normalizer()
    mx = 0
    n = 0

    def event(rec):
        try:
            return norm.normalize(rec)
        except ITDRError:
            return None

    def chunk_events(blk: EvtxChunk):
        for i in range(blk.lo, blk.hi):
            ev = native.ext.chunk_event(blk.data, i)
            if ev is None:                      # declined: as the pipeline takes it
                rec = blk.declined_item(i, "")[0]
                ev = None if rec is None else event(rec)
            if ev is not None and not isinstance(ev, int):
                yield ev

    src = FileSource(paths, follow=False)
    src.native_blocks = native.BINXML
    for rec, _err, *_ in src.poll():
        if rec is None:
            continue
        evs = chunk_events(rec) if rec.__class__ is EvtxChunk else (event(rec),)
        for ev in evs:
            if ev is not None:
                n += 1
                if ev["time_ms"] > mx:
                    mx = ev["time_ms"]
    return mx, n


def run_replay(settings, paths: list[str], *, rate: float = 0, speed: float = 0,
               loop: bool = False, rebase: bool = False, progress: bool = True,
               stop: threading.Event | None = None, max_rounds: int | None = None) -> dict:
    from .pipeline import CollectorPipeline
    from .producer import BatchProducer
    from .settings import collector_settings, kafka_for
    from .spool import Spool

    cs = collector_settings(settings)
    files = [str(p) for p in expand_paths(paths)]
    last_ms, total = _last_time(files) if (rebase or progress) else (0, 0)
    stop = stop or threading.Event()
    with tempfile.TemporaryDirectory(prefix="itdr-replay-") as tmp:
        prod = BatchProducer(kafka_for(settings, cs), settings.topics,
                             Spool(Path(tmp) / "spool", cs.spool_max_bytes),
                             compression=cs.compression,
                             delivery_timeout_s=cs.delivery_timeout_s,
                             sensor_id=f"replay:{cs.resolved_sensor_id()}",
                             client_suffix="replay")
        t0 = time.monotonic()
        totals = {"read": 0, "normalized": 0, "unknown": 0, "dead_lettered": 0,
                  "delivered_events": 0}
        rounds = 0
        ref: list = [None]
        pacer = _Pacer(ref, rate, speed, 0, total * (0 if loop else 1), progress)
        ok = True
        while not stop.is_set():
            rounds += 1
            pacer.offset_ms = int(time.time() * 1000) - last_ms if rebase and last_ms else 0
            pacer.ev_t0 = None
            if speed > 0:
                pacer.t0 = time.monotonic()
            # --speed paces each event by its time: a transform (the per-record path); --rate
            # and unpaced replay pace runs of events and keep the C path
            per_event = speed > 0
            pipe = CollectorPipeline(prod, settings.topics,
                                     sources=[FileSource(files, follow=False)],
                                     batch_events=cs.batch_events, linger_ms=cs.linger_ms,
                                     dual_key=cs.dual_key,
                                     transform=pacer if per_event else None,
                                     time_offset_ms=0 if per_event else pacer.offset_ms,
                                     on_events=None if per_event else pacer.events,
                                     sensor_id=f"replay:{cs.resolved_sensor_id()}")
            ref[0] = pipe
            rep = pipe.run(stop, flush_timeout=cs.delivery_timeout_s)
            ok = ok and rep["flushed"]
            for k in ("read", "normalized", "unknown", "dead_lettered"):
                totals[k] += rep[k]
            if not loop or (max_rounds and rounds >= max_rounds):
                break
        el = time.monotonic() - t0
        totals["delivered_events"] = prod.delivered_events
    if progress:
        sys.stderr.write("\n")
    return {**totals, "rounds": rounds, "elapsed_s": round(el, 3),
            "events_per_s": round(totals["normalized"] / el, 1) if el > 0 else 0.0,
            "records_per_s": round(totals["read"] / el, 1) if el > 0 else 0.0,
            "target_rate": rate, "speed": speed, "rebased": rebase, "flushed": ok}


def cmd_replay(args) -> int:
    import signal

    settings = settings_from_args(args)
    if args.rate and args.speed:
        raise ITDRError("--rate and --speed are exclusive", location="itdr replay",
                        fix="choose a fixed rate or a multiple of the recorded pace")
    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *a: stop.set())
    rep = run_replay(settings, args.files, rate=args.rate, speed=args.speed, loop=args.loop,
                     rebase=args.rebase_time, progress=sys.stderr.isatty() or not args.json,
                     stop=stop)
    if args.json:
        sys.stdout.write(orjson.dumps(rep).decode() + "\n")
    else:
        print(f"replayed {rep['normalized']:,} events ({rep['read']:,} records, "
              f"{rep['unknown']:,} unknown ids, {rep['dead_lettered']:,} dead-lettered) in "
              f"{rep['elapsed_s']:.1f}s: {rep['events_per_s']:,.0f} events/s")
    return 0 if rep["flushed"] else 1
