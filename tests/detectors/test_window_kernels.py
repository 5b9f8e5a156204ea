"""The sliding-window kernels (detectors/kernels/common.py) against a plain-Python reference of
their contract: the max number of times inside one window of length ``window`` that contains
``t``, with that window's first and last time. The kernels take a one-pass path when no time
lies after ``t``; both paths must give the reference answer, in order or not."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.kernels.common import (distinct_in_window, distinct_push, ring_max_in_window,
                                      ring_push)


def reference(times: list[int], t: int, window: int) -> tuple[int, int, int]:
    v = sorted(x for x in times if t - window <= x <= t + window)
    best, bf, bl = 0, t, t
    lo = 0
    for hi in range(len(v)):
        while v[hi] - v[lo] > window:
            lo += 1
        if v[lo] <= t <= v[hi] and hi - lo + 1 > best:
            best, bf, bl = hi - lo + 1, v[lo], v[hi]
    return best, bf, bl


WINDOW = 100
times_st = st.lists(st.integers(1_000, 1_400), min_size=0, max_size=40)


@settings(max_examples=300, deadline=None)
@given(times=times_st, t=st.integers(1_000, 1_400), in_order=st.booleans())
def test_ring_window_matches_reference(times, t, in_order):
    if in_order:                       # the common case: nothing after the current event
        times = [x for x in times if x <= t]
    ring = np.zeros((1, 16), dtype=np.int64)
    pos = np.zeros(1, dtype=np.int64)
    for x in times + [t]:              # the current event is pushed before the query
        ring_push(ring, pos, 0, x)
    kept = ring[0, :min(int(pos[0]), 16)].tolist()
    got = tuple(int(x) for x in ring_max_in_window(ring, pos, 0, t, WINDOW))
    assert got == reference(kept, t, WINDOW)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.integers(1, 12), min_size=0, max_size=40), times=times_st,
       t=st.integers(1_000, 1_400), in_order=st.booleans())
def test_distinct_window_matches_reference(values, times, t, in_order):
    pairs = list(zip(values, times))
    if in_order:
        pairs = [(v, x) for v, x in pairs if x <= t]
    d_val = np.zeros((1, 8), dtype=np.uint64)
    d_ts = np.zeros((1, 8), dtype=np.int64)
    for v, x in pairs + [(99, t)]:
        distinct_push(d_val, d_ts, 0, np.uint64(v), x)
    kept = [int(x) for v, x in zip(d_val[0].tolist(), d_ts[0].tolist()) if v != 0]
    got = tuple(int(x) for x in distinct_in_window(d_val, d_ts, 0, t, WINDOW))
    assert got == reference(kept, t, WINDOW)


def test_query_time_absent_is_not_the_fast_path():
    # a ring whose times all precede t (t itself never pushed): no window contains t and a
    # time, exactly as the sorting path says
    ring = np.zeros((1, 8), dtype=np.int64)
    pos = np.zeros(1, dtype=np.int64)
    for x in (950, 960, 970):
        ring_push(ring, pos, 0, x)
    assert tuple(int(x) for x in ring_max_in_window(ring, pos, 0, 1_000, WINDOW)) == \
        reference([950, 960, 970], 1_000, WINDOW) == (0, 1_000, 1_000)
