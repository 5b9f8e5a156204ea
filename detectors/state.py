"""Per-entity detector state: dense per-key rows of named numpy columns plus a key index.

Every stateful detector declares its columns (``STATE`` spec) and gets a :class:`SlotState`:

    STATE = {"last": ("i8", ()), "ring": ("i8", (16,)), "pos": ("i8", ())}

* The columns are *dense*: row ``r`` of every column belongs to one key, rows ``0 .. used-1``
  are in use, and the columns are only slightly larger than the number of keys (they grow by
  1/8 when full, plus whatever :meth:`reserve` was asked for). Memory per key is therefore the
  row size, not the row size divided by the load factor of a power-of-two table.
* ``index`` maps keys to rows (open addressing, power-of-two capacity, load <= 0.7; layout in
  ``kernels/common.py``). Kernels get a key's row with :func:`row_of` (allocates a row for a
  new key) or :func:`find_row` (-1 if absent). Only the 16-byte index entries pay for the
  load factor.
* :meth:`reserve` makes sure ``n`` more keys fit (rows and index); the engine calls it before
  every batch with an upper bound of the keys the detector can add in that batch, so kernels
  never run out of rows (if they did, :func:`row_of` raises instead of corrupting memory).
* :meth:`expire` drops rows whose ``last`` column (event-time ms, required) is older than a
  cutoff and compacts the rest; this is how state expires.
* :meth:`to_bytes` / :meth:`from_bytes` give an exact, versioned snapshot (used rows only).

Which row a key gets is an implementation detail: no kernel depends on row order, so a state
restored from a snapshot (rows renumbered) behaves exactly like the original.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import orjson
from numba import njit

from stream.errors import StateError

from .kernels.common import find_row, index_probe, norm_key

_MIN_ROWS = 64
_MIN_CAP = 128
MAX_LOAD = 0.7  # index load; linear probing stays short at 0.7
_FORMAT = 2     # npz snapshot of dense rows (read; 1: sparse power-of-two table, no longer read)
# Snapshot layout written since format 3: magic, u32 header length, JSON header (format, rows,
# [name, dtype, row shape] per column), the row keys, then each column's used rows (C order).
# One copy of the state (np.savez zipped and CRC'd it: ~4x slower at 1M identities).
_RAW_FORMAT = 3
_MAGIC = b"ITDRSLT\x03"
_FIX = "delete the state topic entry; the worker will rebuild state from the retained events"


def _corrupt(why: str) -> StateError:
    return StateError(f"corrupt detector state snapshot: {why}", fix=_FIX)


def _check_keys(keys: np.ndarray) -> None:
    if np.any(keys == 0) or len(np.unique(keys)) != len(keys):
        raise StateError("detector state snapshot has zero or duplicate keys", fix=_FIX)


@njit(cache=True)
def _index_insert(index, keys, rows):
    """Insert ``keys[j] -> rows[j]`` into an empty index (keys distinct, non-zero)."""
    for j in range(len(keys)):
        k = norm_key(keys[j])
        i = index_probe(index, k)
        index[i, 0] = k
        index[i, 1] = rows[j]


def _index_cap(rows: int) -> int:
    cap = _MIN_CAP
    while cap * MAX_LOAD < rows:
        cap *= 2
    return cap


class SlotState:
    """Key index + dense per-key columns for one detector (one engine / partition)."""

    def __init__(self, spec: dict[str, tuple[str, tuple]], capacity: int = _MIN_ROWS):
        if "last" not in spec:
            spec = {**spec, "last": ("i8", ())}
        self.spec = spec
        rows = max(int(capacity), _MIN_ROWS)
        self.cols = {name: np.zeros((rows, *shape), dtype=dt)
                     for name, (dt, shape) in spec.items()}
        self.index = self._new_index(_index_cap(rows), rows)

    @staticmethod
    def _new_index(cap: int, rows: int, used: int = 0) -> np.ndarray:
        index = np.zeros((cap + 1, 2), dtype=np.uint64)
        index[cap, 0] = used
        index[cap, 1] = rows
        return index

    # -- sizes -------------------------------------------------------------------------------
    @property
    def used(self) -> int:
        """Rows in use (= keys)."""
        return int(self.index[-1, 0])

    @property
    def rows(self) -> int:
        """Rows allocated in every column."""
        return int(self.index[-1, 1])

    @property
    def capacity(self) -> int:
        """Slots of the key index."""
        return len(self.index) - 1

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]

    def count(self) -> int:
        return self.used

    def nbytes(self) -> int:
        return self.index.nbytes + sum(c.nbytes for c in self.cols.values())

    # -- growth ------------------------------------------------------------------------------
    def reserve(self, n_new: int) -> None:
        """Ensure ``n_new`` more keys fit: rows in every column and index load <= MAX_LOAD.

        Columns grow to ``max(used + n_new, rows + rows / 8)`` (amortised O(1) per key, at
        most ~1/8 slack); the index doubles when the rows would exceed its load limit."""
        used = self.used
        need = used + int(n_new)
        if need <= self.rows:
            return
        rows = max(need, self.rows + self.rows // 8, _MIN_ROWS)
        self._set_rows(rows)

    def _set_rows(self, rows: int) -> None:
        used = self.used
        assert rows >= used
        new_cols = {}
        for name, col in self.cols.items():
            nc = np.zeros((rows, *col.shape[1:]), dtype=col.dtype)
            nc[:used] = col[:used]
            new_cols[name] = nc
        self.cols = new_cols
        cap = self.capacity
        if rows > cap * MAX_LOAD:
            self._reindex(self.row_keys(), _index_cap(rows), rows)
        else:
            self.index[-1, 1] = rows

    def row_keys(self) -> np.ndarray:
        """Key of every used row (uint64, in row order)."""
        ix = self.index[:-1]
        live = ix[:, 0] != 0
        out = np.zeros(self.used, dtype=np.uint64)
        out[ix[live, 1].astype(np.int64)] = ix[live, 0]
        return out

    def _reindex(self, keys: np.ndarray, cap: int, rows: int) -> None:
        index = self._new_index(cap, rows, len(keys))
        _index_insert(index, keys, np.arange(len(keys), dtype=np.uint64))
        self.index = index

    def expire(self, cutoff_ms: int) -> int:
        """Drop rows last touched before ``cutoff_ms``; returns how many were dropped."""
        used = self.used
        stale = self.cols["last"][:used] < cutoff_ms
        n = int(np.count_nonzero(stale))
        if n == 0:
            return 0
        keep = ~stale
        keys = self.row_keys()[keep]
        remaining = len(keys)
        rows = max(remaining, _MIN_ROWS)
        new_cols = {}
        for name, col in self.cols.items():
            nc = np.zeros((rows, *col.shape[1:]), dtype=col.dtype)
            nc[:remaining] = col[:used][keep]
            new_cols[name] = nc
        self.cols = new_cols
        self._reindex(keys, _index_cap(rows), rows)
        return n

    @classmethod
    def _from_raw(cls, spec: dict[str, tuple[str, tuple]], data: bytes) -> "SlotState":
        mv = memoryview(data)
        try:
            off = len(_MAGIC)
            (hl,) = struct.unpack_from("<I", mv, off)
            off += 4
            head = orjson.loads(bytes(mv[off:off + hl]))
            off += hl
            if head.get("format") != _RAW_FORMAT:
                raise _corrupt(f"format {head.get('format')!r}, expected {_RAW_FORMAT}")
            n = int(head["rows"])
            cols = head["cols"]
        except (struct.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise _corrupt(f"bad header ({e})") from e
        # everything is checked against the detector's columns and the data's length before
        # the state is allocated (a damaged header must not ask for terabytes)
        proto = cls(spec, capacity=0).cols
        try:
            layout = [(str(name), np.dtype(dt), tuple(int(x) for x in tail))
                      for name, dt, tail in cols]
        except (TypeError, ValueError) as e:
            raise _corrupt(f"bad column list ({e})") from e
        if sorted(name for name, _, _ in layout) != sorted(proto):
            raise _corrupt(f"columns {[name for name, _, _ in layout]} do not match the "
                          f"detector's {sorted(proto)}")
        for name, dt, tail in layout:
            if dt != proto[name].dtype or tail != proto[name].shape[1:]:
                raise _corrupt(f"state column {name} has wrong shape or type")
        size = 8 * n + sum(n * int(np.prod(tail, dtype=np.int64)) * dt.itemsize
                           for _, dt, tail in layout)
        if n < 0 or off + size != len(mv):
            raise _corrupt(f"{n} rows need {size} bytes of data, the snapshot has "
                          f"{len(mv) - off}")
        st = cls(spec, capacity=n)
        keys = np.frombuffer(mv[off:off + 8 * n], dtype=np.uint64)
        off += 8 * n
        _check_keys(keys)
        for name, dt, tail in layout:
            col = st.cols[name]
            nb = n * int(np.prod(tail, dtype=np.int64)) * dt.itemsize
            col[:n] = np.frombuffer(mv[off:off + nb], dtype=dt).reshape((n, *tail))
            off += nb
        st._reindex(keys.copy(), _index_cap(st.rows), st.rows)
        return st

    def lookup(self, key: int) -> int:
        """Row of ``key`` or -1."""
        return int(find_row(self.index, np.uint64(key)))

    # -- snapshots ---------------------------------------------------------------------------
    def buffers(self) -> list:
        """The snapshot as a list of buffers (``b"".join`` of them is :meth:`to_bytes`): used
        rows only -- the keys in row order and every column's first ``used`` rows."""
        used = self.used
        head = orjson.dumps({"format": _RAW_FORMAT, "rows": used,
                             "cols": [[k, c.dtype.str, list(c.shape[1:])]
                                      for k, c in self.cols.items()]})
        return [_MAGIC, struct.pack("<I", len(head)), head, self.row_keys(),
                *(c[:used] for c in self.cols.values())]

    def to_bytes(self) -> bytes:
        return b"".join(self.buffers())

    @classmethod
    def from_bytes(cls, spec: dict[str, tuple[str, tuple]], data: bytes) -> "SlotState":
        if bytes(data[:len(_MAGIC)]) == _MAGIC:
            return cls._from_raw(spec, data)
        try:
            z = np.load(io.BytesIO(data), allow_pickle=False)
            if "__format__" not in z.files or int(z["__format__"][0]) != _FORMAT:
                raise StateError("detector state snapshot has an unsupported format", fix=_FIX)
            keys = z["__rowkeys__"].astype(np.uint64)
            n = len(keys)
            _check_keys(keys)
            st = cls(spec, capacity=n)
            for name, col in st.cols.items():
                v = z[name]
                if v.shape != (n, *col.shape[1:]) or v.dtype != col.dtype:
                    raise StateError(f"state column {name} has wrong shape or type")
                col[:n] = v
            st._reindex(keys, _index_cap(st.rows), st.rows)
            return st
        except (KeyError, ValueError, OSError, struct.error) as e:
            raise _corrupt(str(e)) from e
