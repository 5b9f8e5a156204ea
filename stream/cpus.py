"""CPU placement and speed probe for the benchmarks (a light module: ``itdr bench collect``
uses it too, and collectors never import Faust or numba).

Placement: the measured process gets one core to itself (:func:`split_cores`), everything
else (the embedded broker, every thread of it: :func:`pin_process`) the others.

Speed: how fast each core ran while a figure was measured.

On these machines the same fixed piece of work takes anywhere from 1x to ~2x its best time on
the same core a few seconds apart, with no steal time reported (session 7: a pure-Python loop
of 72 ms in one second, 135 ms in the next, on either core, not in step with the other core).
A throughput figure is only readable next to the speed the core had while it was measured,
so the benchmarks start one probe process per core: it is pinned to its core, wakes every
``interval_s``, times a fixed workload (~1 ms) in *thread CPU time* (time the probe was on the
CPU: a probe that the benchmarked process delays is not counted as slow) and prints
``monotonic_ns cpu_ns`` per sample. :meth:`CpuProbe.median_ms` gives a core's median time
of the workload over a time window (~0.7 ms when a core of this machine runs at its best,
~1.4 ms in its slow phase), :meth:`CpuProbe.best_ms` the core's fast time in the whole run. It
costs the benchmarked core ~1 % (under 1 ms every 100 ms).
"""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import threading
import time

log = logging.getLogger(__name__)

_PROBE = r"""
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
interval = float(sys.argv[2])
n = int(sys.argv[3])
out = sys.stdout
while True:
    c0 = time.thread_time_ns()
    s = 0
    for i in range(n):
        s += i
    c1 = time.thread_time_ns()
    try:
        out.write(f"{time.monotonic_ns()} {c1 - c0}\n")
        out.flush()
    except (BrokenPipeError, ValueError):
        break
    time.sleep(interval)
"""


def pin_process(pid: int, cpus: set[int]) -> int:
    """Pin every thread of process ``pid`` to ``cpus`` (a thread's affinity is its own: new
    threads inherit their creator's). Returns the threads pinned (0 where not permitted)."""
    n = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tids = [str(pid)]
    for tid in tids:
        try:
            os.sched_setaffinity(int(tid), cpus)
            n += 1
        except OSError:
            pass
    return n


def split_cores() -> tuple[set[int], set[int]]:
    """(the measured process's core, the others): the worker (``bench stream``) or the
    collector pipeline (``bench collect``) gets one core to itself; the embedded broker and
    the bench's own helpers run on the rest (on a one-core machine they share it)."""
    cpus = sorted(os.sched_getaffinity(0))
    worker = {cpus[-1]}
    return worker, (set(cpus[:-1]) or worker)


class CpuProbe:
    """One probe process per CPU in ``cpus``; use as a context manager."""

    def __init__(self, cpus, interval_s: float = 0.1, loop: int = 8_000):
        self.cpus = sorted(cpus)
        self.interval_s = interval_s
        self.loop = loop
        self.samples: dict[int, list[tuple[int, int]]] = {c: [] for c in self.cpus}
        self._procs: list[subprocess.Popen] = []
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> "CpuProbe":
        for c in self.cpus:
            try:
                p = subprocess.Popen([sys.executable, "-c", _PROBE, str(c), str(self.interval_s),
                                      str(self.loop)], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
            except OSError as e:     # the figures are still measured, only not annotated
                log.warning("cpu probe not started on CPU %d: %s", c, e)
                continue
            self._procs.append(p)
            t = threading.Thread(target=self._read, args=(p, self.samples[c]), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    @staticmethod
    def _read(p: subprocess.Popen, into: list) -> None:
        for line in p.stdout:
            try:
                t, c = line.split()
                into.append((int(t), int(c)))
            except ValueError:
                continue

    def __exit__(self, *exc) -> None:
        for p in self._procs:
            p.kill()
        for p in self._procs:
            p.wait(5)
        for t in self._threads:
            t.join(2)

    @staticmethod
    def now() -> int:
        """A window bound (the probes' clock)."""
        return time.monotonic_ns()

    def median_ms(self, cpu: int, t0: int | None = None, t1: int | None = None) -> float | None:
        """Median time of the probe's workload on ``cpu`` (ms of CPU time) over the samples
        taken in ``[t0, t1]`` (the whole run without bounds); None without samples."""
        got = [c for t, c in list(self.samples.get(cpu, ()))
               if (t0 is None or t >= t0) and (t1 is None or t <= t1)]
        return round(statistics.median(got) / 1e6, 3) if got else None

    def best_ms(self, cpu: int) -> float | None:
        """The core's fast-phase time of the workload in this run (5th percentile of its
        samples: one unusually quick sample does not set the scale)."""
        got = sorted(c for _, c in list(self.samples.get(cpu, ())))
        return round(got[len(got) // 20] / 1e6, 3) if got else None
