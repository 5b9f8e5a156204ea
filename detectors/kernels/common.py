"""Shared numba kernels: open-addressing key table, sliding windows, distinct counts.

Pure ``numba.njit`` functions over numpy arrays: no Python objects, no I/O. Every stateful
detector is built from these so that state layout, expiry and snapshotting are uniform.

Conventions
-----------
* A key set (:func:`slot_of` / :func:`find_slot`) is a ``uint64`` array of power-of-two
  capacity; 0 marks an empty slot (key 0 is remapped to 1 by :func:`norm_key`). Linear probing;
  no deletion. Callers keep the load <= 0.7, so a probe always terminates.
* Per-detector state (:func:`row_of` / :func:`find_row`) maps keys to dense rows of the
  detector's columns through such an index (see ``detectors/state.py``); expiry rebuilds it.
* Times are event-time milliseconds (int64).
* Windows are *true sliding* windows evaluated on event time, independent of arrival order:
  :func:`ring_max_in_window` answers "is there a window of length W containing t with at least
  N events", so out-of-order events inside the retained ring are handled exactly.
"""

from __future__ import annotations

import numpy as np
from numba import njit

EMPTY = np.uint64(0)


@njit(cache=True, inline="always")
def norm_key(k):
    return k if k != 0 else np.uint64(1)


@njit(cache=True)
def slot_of(keys, k):
    """Slot of key ``k`` in table ``keys`` (inserting it if absent)."""
    k = norm_key(k)
    mask = np.uint64(len(keys) - 1)
    i = np.int64((k ^ (k >> np.uint64(29))) & mask)
    n = len(keys)
    while True:
        cur = keys[i]
        if cur == k:
            return i
        if cur == 0:
            keys[i] = k
            return i
        i += 1
        if i == n:
            i = 0


@njit(cache=True)
def find_slot(keys, k):
    """Slot of key ``k`` or -1 if absent (never inserts)."""
    k = norm_key(k)
    mask = np.uint64(len(keys) - 1)
    i = np.int64((k ^ (k >> np.uint64(29))) & mask)
    n = len(keys)
    while True:
        cur = keys[i]
        if cur == k:
            return i
        if cur == 0:
            return -1
        i += 1
        if i == n:
            i = 0


# -- per-detector state index (see detectors/state.py) ----------------------------------------
# A SlotState keeps its per-key columns dense (row r of every column belongs to one key) and
# maps keys to rows with an open-addressing index: ``index`` is a uint64 array of shape
# (cap + 1, 2), cap a power of two; ``index[i] = (key, row)`` (key 0 = empty slot) and the
# extra last line holds ``(rows used, rows allocated)``. The owner guarantees rows allocated
# <= 0.7 * cap, so the index never fills up and a probe always terminates.


@njit(cache=True, inline="always")
def index_probe(index, k):
    """Slot of the (normalized, non-zero) key ``k`` in ``index``: where it is, or the empty
    slot where it would go (linear probing from its hash)."""
    cap = index.shape[0] - 1
    i = np.int64((k ^ (k >> np.uint64(29))) & np.uint64(cap - 1))
    while index[i, 0] != 0 and index[i, 0] != k:
        i += 1
        if i == cap:
            i = 0
    return i


@njit(cache=True)
def row_of(index, k):
    """Row of key ``k`` (allocating the next free row if the key is new)."""
    k = norm_key(k)
    i = index_probe(index, k)
    if index[i, 0] == k:
        return np.int64(index[i, 1])
    cap = index.shape[0] - 1
    r = index[cap, 0]
    if r >= index[cap, 1]:
        # reserve() was given too small a bound: refuse instead of writing out of bounds
        # (numba does not check array bounds)
        raise IndexError("detector state: no free row (reserve bound too small)")
    index[i, 0] = k
    index[i, 1] = r
    index[cap, 0] = r + np.uint64(1)
    return np.int64(r)


@njit(cache=True)
def find_row(index, k):
    """Row of key ``k`` or -1 if absent (never allocates)."""
    k = norm_key(k)
    i = index_probe(index, k)
    if index[i, 0] == k:
        return np.int64(index[i, 1])
    return np.int64(-1)


@njit(cache=True)
def _best_window(buf, m, t, window):
    """Max number of times in ``buf[:m]`` inside one window of length ``window`` that contains
    ``t`` (true sliding window, two pointers over the sorted times) -> (count, first, last)."""
    if m == 0:
        return 0, t, t
    v = np.sort(buf[:m])
    best = 0
    bf = t
    bl = t
    lo = 0
    for hi in range(m):
        while v[hi] - v[lo] > window:
            lo += 1
        if v[lo] <= t and v[hi] >= t:  # the window [v[lo], v[hi]] contains t
            c = hi - lo + 1
            if c > best:
                best = c
                bf = v[lo]
                bl = v[hi]
    return best, bf, bl


@njit(cache=True, inline="always")
def _in_order_window(m, lo, t):
    """:func:`_best_window` when no time in the window lies after ``t`` and ``t`` is one of
    them (the latest): every window containing ``t`` ends at ``t`` at the earliest, so the
    best one holds all ``m`` times, from the earliest ``lo`` to ``t``; none -> (0, t, t)."""
    if m == 0:
        return 0, t, t
    return m, lo, t


@njit(cache=True)
def ring_push(ring_ts, ring_pos, slot, t):
    """Append time ``t`` to the per-slot ring (``ring_ts[slot]`` of width R)."""
    r = ring_ts.shape[1]
    p = ring_pos[slot]
    ring_ts[slot, p % r] = t
    ring_pos[slot] = p + 1


@njit(cache=True)
def ring_max_in_window(ring_ts, ring_pos, slot, t, window):
    """Max number of ring events in any window of length ``window`` that contains ``t``.

    Evaluated on event time (order-independent). Returns (count, first_ts, last_ts) of the
    best window.
    """
    filled = min(ring_pos[slot], ring_ts.shape[1])
    row = ring_ts[slot, :filled]
    return _window_of(row, row, False, t, window)


@njit(cache=True)
def _window_of(ts, vals, only_set, t, window):
    """:func:`_best_window` over the times ``ts[j]`` in ``[t - window, t + window]`` (only
    where ``vals[j] != 0`` when ``only_set``). In-order streams -- no time after ``t`` -- take
    one pass with no buffer and no sort (see _in_order_window)."""
    n = len(ts)
    m = 0
    lo = t
    hi = np.int64(-1 << 62)
    for j in range(n):
        if only_set and vals[j] == 0:
            continue
        x = ts[j]
        if x >= t - window and x <= t + window:
            m += 1
            if x < lo:
                lo = x
            if x > hi:
                hi = x
    if m == 0 or hi == t:
        return _in_order_window(m, lo, t)
    buf = np.empty(n, dtype=np.int64)
    m = 0
    for j in range(n):
        if only_set and vals[j] == 0:
            continue
        x = ts[j]
        if x >= t - window and x <= t + window:
            buf[m] = x
            m += 1
    return _best_window(buf, m, t, window)


@njit(cache=True)
def distinct_push(d_val, d_ts, slot, value, t):
    """Record ``value`` (uint64) seen at ``t`` in the per-slot distinct set (width D).

    Keeps the latest time per distinct value; when full, replaces the oldest entry.
    Returns True if the value was new to the set.
    """
    width = d_val.shape[1]
    oldest = 0
    oldest_ts = d_ts[slot, 0]
    for j in range(width):
        v = d_val[slot, j]
        if v == value:
            if t > d_ts[slot, j]:
                d_ts[slot, j] = t
            return False
        if v == 0:
            d_val[slot, j] = value
            d_ts[slot, j] = t
            return True
        if d_ts[slot, j] < oldest_ts:
            oldest_ts = d_ts[slot, j]
            oldest = j
    d_val[slot, oldest] = value
    d_ts[slot, oldest] = t
    return True


@njit(cache=True)
def distinct_in_window(d_val, d_ts, slot, t, window):
    """Distinct values whose (latest) time lies in ``[t - window, t + window]``, the max over
    windows of length ``window`` containing ``t``. Returns (count, first_ts, last_ts)."""
    return _window_of(d_ts[slot], d_val[slot], True, t, window)


@njit(cache=True)
def set_contains(keys, k):
    return find_slot(keys, k) >= 0


@njit(cache=True)
def mix(a, b):
    """Combine two 64-bit keys into one (entity keys for pairs)."""
    x = a ^ (b + np.uint64(0x9E3779B97F4A7C15) + (a << np.uint64(6)) + (a >> np.uint64(2)))
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    return x


def id_table(ids) -> np.ndarray:
    """Lookup table for :func:`in_table`: ``table[v]`` is True for each (non-negative) id."""
    ids = np.asarray(ids, dtype=np.int64)
    t = np.zeros(int(ids.max()) + 1 if len(ids) else 1, dtype=np.bool_)
    t[ids] = True
    return t


@njit(cache=True)
def in_table(values, table):
    """``np.isin(values, ids)`` for a small set of small ids (event ids) as one pass over
    ``values`` with a lookup table from :func:`id_table`."""
    n = len(values)
    out = np.zeros(n, dtype=np.bool_)
    L = len(table)
    for i in range(n):
        v = values[i]
        if v >= 0 and v < L and table[v]:
            out[i] = True
    return out
