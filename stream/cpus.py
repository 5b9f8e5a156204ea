"""CPU placement for the benchmarks (a light module: ``itdr bench collect`` uses it too, and
collectors never import Faust or numba): the measured process gets one core to itself
(:func:`split_cores`), everything else -- the embedded broker, every thread of it
(:func:`pin_process`) -- the others."""

from __future__ import annotations

import os


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
