"""Per-entity detector state: a key table plus named per-slot numpy columns.

Every stateful detector declares its columns (``STATE`` spec) and gets a :class:`SlotState`:

    STATE = {"last": ("i8", ()), "ring": ("i8", (16,)), "pos": ("i8", ())}

* ``keys`` is the open-addressing table (see ``kernels/common.py``); each slot has one row in
  every column.
* :meth:`reserve` grows the table (rehash) so that ``n`` more keys fit at load <= 0.7; the
  engine calls it before every batch, so kernels never see a full table.
* :meth:`expire` drops slots whose ``last`` column (event-time ms, required) is older than a
  cutoff; this is how state expires and why 1M active identities stay small.
* :meth:`to_bytes` / :meth:`from_bytes` give an exact, versioned snapshot.
"""

from __future__ import annotations

import io
import struct

import numpy as np
from numba import njit

from stream.errors import StateError

from .kernels.common import find_slot, slot_of

_MIN_CAP = 64
MAX_LOAD = 0.7  # linear probing stays short at 0.7; halves memory vs 0.5 at power-of-2 steps


@njit(cache=True)
def _rehash(old_keys, new_keys, mapping):
    for i in range(len(old_keys)):
        k = old_keys[i]
        if k != 0:
            mapping[i] = slot_of(new_keys, k)
        else:
            mapping[i] = -1


class SlotState:
    """Key table + per-slot columns for one detector (one engine / partition)."""

    def __init__(self, spec: dict[str, tuple[str, tuple]], capacity: int = _MIN_CAP):
        if "last" not in spec:
            spec = {**spec, "last": ("i8", ())}
        self.spec = spec
        cap = _MIN_CAP
        while cap < capacity:
            cap *= 2
        self.keys = np.zeros(cap, dtype=np.uint64)
        self.cols = {name: np.zeros((cap, *shape), dtype=dt) for name, (dt, shape) in spec.items()}
        self.used = 0

    @property
    def capacity(self) -> int:
        return len(self.keys)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]

    def count(self) -> int:
        return int(np.count_nonzero(self.keys))

    def nbytes(self) -> int:
        return self.keys.nbytes + sum(c.nbytes for c in self.cols.values())

    def reserve(self, n_new: int) -> None:
        """Ensure ``n_new`` more keys fit with load factor <= MAX_LOAD.

        Cheap on the hot path: keeps an upper bound of the used slots and only counts the
        table (O(capacity)) when the bound says it might be too full."""
        bound = getattr(self, "_used_bound", None)
        if bound is None:
            bound = self.count()
        if (bound + n_new) <= len(self.keys) * MAX_LOAD:
            self._used_bound = bound + n_new
            return
        used = self.count()
        need = int((used + n_new) / MAX_LOAD) + 1
        if need > len(self.keys):
            cap = len(self.keys)
            while cap < need:
                cap *= 2
            self._resize(cap, keep=None)
        self._used_bound = used + n_new

    def _resize(self, cap: int, keep: np.ndarray | None) -> None:
        old_keys = self.keys
        if keep is not None:
            old_keys = np.where(keep, old_keys, np.uint64(0))
        new_keys = np.zeros(cap, dtype=np.uint64)
        mapping = np.empty(len(old_keys), dtype=np.int64)
        _rehash(old_keys, new_keys, mapping)
        src = np.nonzero(mapping >= 0)[0]
        dst = mapping[src]
        new_cols = {}
        for name, col in self.cols.items():
            nc = np.zeros((cap, *col.shape[1:]), dtype=col.dtype)
            nc[dst] = col[src]
            new_cols[name] = nc
        self.keys = new_keys
        self.cols = new_cols
        self._used_bound = None

    def expire(self, cutoff_ms: int) -> int:
        """Drop slots last touched before ``cutoff_ms``; returns how many were dropped."""
        live = self.keys != 0
        stale = live & (self.cols["last"] < cutoff_ms)
        n = int(np.count_nonzero(stale))
        if n == 0:
            return 0
        remaining = int(np.count_nonzero(live)) - n
        cap = _MIN_CAP
        while cap * MAX_LOAD < remaining:
            cap *= 2
        cap = max(cap, _MIN_CAP)
        self._resize(cap, keep=~stale)
        return n

    def lookup(self, key: int) -> int:
        return int(find_slot(self.keys, np.uint64(key)))

    # -- snapshots ---------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Exact snapshot of the occupied slots only (their table positions, keys and rows):
        a table keeps headroom (load <= 0.7, batch-sized reservations), so the full arrays
        are mostly zeros -- writing them made every snapshot as large as the capacity."""
        idx = np.flatnonzero(self.keys)
        buf = io.BytesIO()
        np.savez(buf, __cap__=np.array([len(self.keys)], dtype=np.int64),
                 __idx__=idx.astype(np.int64), __keys__=self.keys[idx],
                 **{name: col[idx] for name, col in self.cols.items()})
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, spec: dict[str, tuple[str, tuple]], data: bytes) -> "SlotState":
        try:
            z = np.load(io.BytesIO(data), allow_pickle=False)
            st = cls(spec)
            if "__idx__" in z.files:
                # sparse snapshot: the slots go back to the same positions of a table of the
                # same capacity (probe sequences stay exactly as they were)
                cap = int(z["__cap__"][0])
                idx = z["__idx__"]
                if cap < _MIN_CAP or cap & (cap - 1) or (len(idx) and (
                        idx.min() < 0 or idx.max() >= cap)):
                    raise StateError(f"state snapshot has a bad capacity {cap} or slot index")
                keys = np.zeros(cap, dtype=np.uint64)
                keys[idx] = z["__keys__"]
                cols = {}
                for name, col in st.cols.items():
                    v = z[name]
                    if v.shape != (len(idx), *col.shape[1:]) or v.dtype != col.dtype:
                        raise StateError(f"state column {name} has the wrong shape/type")
                    c = np.zeros((cap, *col.shape[1:]), dtype=col.dtype)
                    c[idx] = v
                    cols[name] = c
                st.keys = keys
            else:                                   # dense snapshot (earlier versions)
                st.keys = z["__keys__"].copy()
                cols = {}
                for name in st.cols:
                    cols[name] = z[name].copy()
                    if len(cols[name]) != len(st.keys):
                        raise StateError(f"state column {name} has wrong length")
            st.cols = cols
            st._used_bound = None
            return st
        except (KeyError, ValueError, OSError, struct.error, IndexError) as e:
            raise StateError(f"corrupt detector state snapshot: {e}",
                             fix="delete the state topic entry; the worker will rebuild "
                             "state from the retained events") from e
