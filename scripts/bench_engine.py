"""In-process detection engine throughput (no Kafka, no Faust): the synthetic traffic of
``itdr bench stream`` as wire batches, decoded and run through one Engine per (key kind,
partition) with the full catalogue, on this process's core. ``--profile`` adds a cProfile top.

    .venv/bin/python scripts/bench_engine.py [--events 1000000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.engine import Engine, enabled_detectors  # noqa: E402
from stream import wire  # noqa: E402
from stream.settings import DetectionSettings  # noqa: E402
from stream.synth import SynthConfig, generate  # noqa: E402


def run(msgs, settings, engines) -> int:
    n = 0
    for kind, part, value, _ in msgs:
        b = wire.decode(value)
        e = engines.get((kind, part))
        if e is None:
            e = engines[(kind, part)] = Engine(settings, kind, part)
        e.process(b)
        n += b.n
    return n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    traffic = generate(SynthConfig(events=a.events, partitions=4,
                                   identities=max(1000, a.events // 40), seed=11))
    msgs = traffic.wire_messages()
    settings = DetectionSettings()
    run(msgs[:20], settings, {})            # numba cache load / compile outside the clock
    engines: dict = {}
    t = time.perf_counter()
    n = run(msgs, settings, engines)
    el = time.perf_counter() - t
    print(json.dumps({"events": n, "events_per_s": round(n / el), "engines": len(engines),
                      "detectors": len(enabled_detectors(settings))}))
    if a.profile:
        engines = {}
        cProfile.runctx("run(msgs, settings, engines)", globals(), locals(), "/tmp/engine.prof")
        pstats.Stats("/tmp/engine.prof").sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
