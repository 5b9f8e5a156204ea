"""``itdr bench collect``: EVTX -> normalized -> wire batches -> Kafka, events/s on one core,
against the raw ``evtx`` parse ceiling of the same input measured in the same run.

Input: the EVTX files given on the command line; by default every ``*.evtx`` under
``../shared/samples`` (read in place, never copied). The file set is replayed as often as
needed to reach ``--events`` records. The pipeline runs exactly like ``itdr collect``
(:class:`~collectors.evtx_source.FileSource` with the event-id fast path, Normalizer,
partition-aware dual-keyed Batcher, idempotent lz4 producer) against an embedded broker the
bench starts; the clock stops when the broker has acknowledged every batch. The ceiling is a
bare ``PyEvtxParser(f, number_of_threads=1).records_json()`` loop over the same records (best
of two runs, one before and one after the pipeline, to even out machine noise).

JSON keys: ``events_per_s`` (records read per second through the whole pipeline),
``ceiling_events_per_s``, ``ratio``, ``normalized_per_s`` (events the product consumes), plus
the input mix.
"""

from __future__ import annotations

import glob
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson

from stream.errors import ITDRError

DEFAULT_SAMPLES = [Path(__file__).resolve().parents[2] / "shared" / "samples",
                   Path("/work/shared/samples")]


def default_files() -> list[str]:
    for d in DEFAULT_SAMPLES:
        files = sorted(glob.glob(str(d / "**" / "*.evtx"), recursive=True))
        if files:
            return files
    return []


class RepeatSource:
    """EVTX files read over and over until ``target`` records (bench / load tests)."""

    kind = "evtx"

    def __init__(self, files: list[str], target: int):
        from .evtx_source import FileSource

        self.files = [Path(f) for f in files]
        self.target = target
        self.fs = FileSource([], follow=False)
        self.read = 0

    def poll(self):
        rnd = 0
        while self.read < self.target:
            rnd += 1
            for f in self.files:
                self.fs.positions = {}
                for item in self.fs._evtx(f, f"{f}#{rnd}"):
                    yield item
                    self.read += 1
                    if self.read >= self.target:
                        return


def ceiling(files: list[str], target: int) -> tuple[int, float]:
    import evtx

    n = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    while n < target:
        for f in files:
            for _r in evtx.PyEvtxParser(f, number_of_threads=1).records_json():
                n += 1
                if n >= target:
                    break
            if n >= target:
                break
    return n, time.perf_counter() - t0, time.process_time() - c0


def run_bench(files: list[str], events: int, bootstrap: str | None = None) -> dict:
    from stream.broker import EmbeddedBroker, ensure_topics
    from stream.settings import KafkaSettings, TopicSettings

    from .pipeline import CollectorPipeline
    from .producer import BatchProducer
    from .spool import Spool

    broker = None
    if bootstrap:
        kafka = KafkaSettings(bootstrap_servers=bootstrap)
    else:
        broker = EmbeddedBroker().start()
        kafka = broker.kafka_settings()
    try:
        topics = TopicSettings(prefix=f"bench{int(time.time())}.", partitions=4)
        ensure_topics(kafka, topics)
        n1, t1, c1 = ceiling(files, events)
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
        ceil = max(n1 / t1, n2 / t2)
        rate = rep["read"] / el
        return {"events_per_s": round(rate), "ceiling_events_per_s": round(ceil),
                "ratio": round(rate / ceil, 3),
                "events_per_cpu_s": round(rep["read"] / cpu),
                "ceiling_events_per_cpu_s": round(max(n1 / c1, n2 / c2)),
                "ratio_cpu": round((rep["read"] / cpu) / max(n1 / c1, n2 / c2), 3), "normalized_per_s": round(rep["normalized"] / el),
                "records": rep["read"], "normalized": rep["normalized"],
                "unknown": rep["unknown"], "dead_lettered": rep["dead_lettered"],
                "batches": rep["batches"], "delivered_events": rep["delivered_events"],
                "elapsed_s": round(el, 3), "process_cpu_s": round(cpu, 3),
                "files": len(files), "flushed": rep["flushed"],
                "loadavg_1m": round(os.getloadavg()[0], 2)}
    finally:
        if broker is not None:
            broker.cleanup()


def cmd_bench_collect(args) -> int:
    from stream.cli import settings_from_args

    files = []
    if args.files:
        from .files import expand_paths

        files = [str(p) for p in expand_paths(args.files) if str(p).lower().endswith(".evtx")]
    else:
        files = default_files()
    if not files:
        raise ITDRError("no EVTX input", fix="pass EVTX files/dirs (`itdr bench collect "
                        "DIR`), or provide ../shared/samples")
    bootstrap = None
    if getattr(args, "bootstrap", None):
        bootstrap = settings_from_args(args).kafka.bootstrap_servers
    res = run_bench(files, args.events, bootstrap)
    if args.json:
        sys.stdout.write(orjson.dumps(res).decode() + "\n")
    else:
        print(f"collect: {res['events_per_s']:,} records/s through EVTX->normalize->wire->Kafka "
              f"({res['normalized_per_s']:,} normalized events/s); evtx parse ceiling "
              f"{res['ceiling_events_per_s']:,}/s; ratio {res['ratio']}")
    return 0
