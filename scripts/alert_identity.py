"""Identity check for engine changes that must not change output: runs the detection engine
(no Kafka) over fixed synthetic scenarios and writes every alert version (JSON, one per line,
prefixed by the scenario) to OUT, then prints per scenario the number of versions, a hash of
them and a hash of the engines' final snapshots. Run it on two commits and compare::

    git worktree add /tmp/base HEAD~1
    (cd /tmp/base && python scripts/alert_identity.py /tmp/base.jsonl)
    python scripts/alert_identity.py /tmp/new.jsonl && cmp /tmp/base.jsonl /tmp/new.jsonl

Scenarios: ``dense`` (two hours of a 20k-account domain), ``storm`` (its first hour replayed
compressed into 30 s), ``low`` (low sensitivity with global and per-detector exclusions),
``lat`` (a 1M-event hour, the next hour, then the first replayed at 60 batches/s, as the alert
storm of ``itdr bench stream``), ``latlow`` (that storm at low sensitivity with exclusions).
About a minute; numba kernels compile on the first run.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.engine import Engine  # noqa: E402
from stream import wire  # noqa: E402
from stream.settings import DetectionSettings  # noqa: E402
from stream.synth import SynthConfig, generate, restamp, shift  # noqa: E402

BASE_MS = 1_767_225_600_000
HOUR_MS = 3_600_000


def run(out, name: str, msgs, settings: DetectionSettings) -> None:
    engines: dict = {}
    h = hashlib.sha256()
    n = 0
    t = time.perf_counter()
    for kind, part, value, _ in msgs:
        e = engines.get((kind, part))
        if e is None:
            e = engines[(kind, part)] = Engine(settings, kind, part)
        for a in e.process(wire.decode(value)):
            s = a.model_dump_json()
            h.update(s.encode())
            n += 1
            out.write(f"{name} {s}\n")
    snaps = hashlib.sha256()
    for k in sorted(engines):
        snaps.update(engines[k].snapshot())
    print(f"{name:7s} {n:7d} versions  alerts {h.hexdigest()[:16]}  snapshots "
          f"{snaps.hexdigest()[:16]}  {time.perf_counter() - t:.2f}s", flush=True)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    low = DetectionSettings(sensitivity="low",
                            exclude={"accounts": ["corp\\user00001*"],
                                     "subnets": ["10.0.1.0/24"]},
                            detectors={"brute-force": {"exclude": {"hosts": ["ws0001*"]}}})
    with open(sys.argv[1], "w") as out:
        tr = generate(SynthConfig(events=300_000, partitions=4, identities=20_000, seed=11,
                                  time_base_ms=BASE_MS))
        msgs = tr.wire_messages()
        h2 = [(k, p, shift(v, HOUR_MS), n) for k, p, v, n in msgs]
        run(out, "dense", msgs + h2, DetectionSettings())
        t0 = BASE_MS + 2 * HOUR_MS
        st = [(k, p, restamp(v, t0 + (j // 8) * 250), n) for j, (k, p, v, n) in enumerate(msgs)]
        run(out, "storm", msgs + st, DetectionSettings())
        run(out, "low", msgs + h2, low)
        tr = generate(SynthConfig(events=1_000_000, partitions=4, identities=25_000, seed=11,
                                  time_base_ms=BASE_MS))
        msgs = tr.wire_messages()
        h2 = [(k, p, shift(v, HOUR_MS), n) for k, p, v, n in msgs]
        t0 = BASE_MS + 2 * HOUR_MS + 60_000
        st = [(k, p, restamp(v, t0 + (j // 60) * 1000), n) for j, (k, p, v, n) in enumerate(msgs)]
        run(out, "lat", msgs + h2 + st, DetectionSettings())
        run(out, "latlow", msgs + st, low)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
