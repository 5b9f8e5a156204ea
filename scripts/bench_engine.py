"""In-process detection engine throughput (no Kafka, no Faust): the synthetic traffic of
``itdr bench stream`` as wire batches, decoded and run through one Engine per (key kind,
partition) with the full catalogue, on this process's core, after the worker's own kernel
warm-up. Two hours of the same domain, as in ``itdr bench stream``: the first (cold caches,
new state) and the second (steady state). ``--profile`` adds a cProfile top of the second.

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
from stream.settings import Settings  # noqa: E402
from stream.synth import SynthConfig, generate, shift  # noqa: E402
from stream.worker import warm_up  # noqa: E402


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
    hour2 = [(k, p, shift(v, 3_600_000), n) for k, p, v, n in msgs]
    settings = DetectionSettings()
    warm_up(Settings(detection=settings))   # what the worker does before consuming
    engines: dict = {}
    out = {}
    for name, batch in (("cold_events_per_s", msgs), ("events_per_s", hour2)):
        t = time.perf_counter()
        if a.profile and name == "events_per_s":
            prof = cProfile.Profile()
            n = prof.runcall(run, batch, settings, engines)
        else:
            n = run(batch, settings, engines)
        out[name] = round(n / (time.perf_counter() - t))
    print(json.dumps({"events": n, **out, "engines": len(engines),
                      "detectors": len(enabled_detectors(settings))}))
    if a.profile:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
