"""Where a collector record's time goes, stage by stage: the records of ``itdr bench
collect``'s assembled input (from ../shared/samples) run through the Rust parser alone, then
with each stage of the collector's EVTX path added in turn (event-id peek, JSON -> flat
record, normalization, batching + column build + wire encode), on one core. Prints the
added microseconds per record of each stage. No broker: the producer is not included.

    .venv/bin/python scripts/collector_stages.py [--events 200000] [--passes 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evtx  # noqa: E402
from collectors.batcher import Batcher  # noqa: E402
from collectors.bench import build_input, default_files  # noqa: E402
from collectors import native  # noqa: E402
from collectors.evtx_source import NORMALIZED_EVENT_IDS, flat_evtx, peek_event_id  # noqa: E402
from collectors.normalize import Normalizer  # noqa: E402

STAGES = ["parse (the ceiling)", "+ event-id peek", "+ JSON -> flat record",
          "+ normalize", "+ batcher, build, encode"]


def run(path: str, upto: int) -> tuple[float, int]:
    norm, batcher = Normalizer(), Batcher(4)
    n = 0
    t = time.perf_counter()
    for r in evtx.PyEvtxParser(path, number_of_threads=1).records_json():
        n += 1
        if upto < 1:
            continue
        data = r["data"]
        eid = peek_event_id(data)
        if (eid is not None and eid not in NORMALIZED_EVENT_IDS) or upto < 2:
            continue
        rec = flat_evtx(data)
        if upto < 3:
            continue
        ev = norm.normalize(rec)
        if ev is None or upto < 4:
            continue
        batcher.add(ev, n)
    if upto >= 4:
        batcher.flush()
    return time.perf_counter() - t, n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--passes", type=int, default=2)
    a = ap.parse_args()
    samples = default_files()
    if not samples:
        print("no input: ../shared/samples is absent", file=sys.stderr)
        return 2
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[-1]})
    print(f"hot path: {native.status()} (ITDR_NATIVE=0 for the Python path)")
    with tempfile.TemporaryDirectory() as tmp:
        path, _, _ = build_input(samples, a.events, tmp)
        for _ in range(a.passes):
            prev = 0.0
            for k, name in enumerate(STAGES):
                dt, n = run(path, k)
                print(f"{name:26s} {n / dt:9,.0f} records/s  +{(dt - prev) * 1e6 / n:5.2f} "
                      f"us/record", flush=True)
                prev = dt
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
