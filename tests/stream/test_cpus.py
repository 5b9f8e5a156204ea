"""The benchmarks' CPU speed probe: real probe processes pinned to a core, sampled windows."""

import os
import time

from stream.cpus import CpuProbe


def test_probe_samples_each_core_and_answers_per_window():
    cpu = min(os.sched_getaffinity(0))
    with CpuProbe({cpu}, interval_s=0.02) as probe:
        before = probe.now()
        time.sleep(0.05)
        t0 = probe.now()
        time.sleep(0.6)
        t1 = probe.now()
        procs = list(probe._procs)
    samples = probe.samples[cpu]
    assert len(samples) >= 5
    assert all(c > 0 for _, c in samples)
    # the probe processes are gone after the block
    assert all(p.poll() is not None for p in procs)
    whole, window = probe.median_ms(cpu), probe.median_ms(cpu, t0, t1)
    assert whole is not None and window is not None and 0 < window < 100
    assert 0 < probe.best_ms(cpu) <= whole
    # a window holding no sample has no figure (not a zero); an unknown core neither
    assert probe.median_ms(cpu, before - 10**9, before - 1) is None
    assert probe.median_ms(cpu + 1000) is None and probe.best_ms(cpu + 1000) is None

