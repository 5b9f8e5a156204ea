"""SlotState snapshots: exact (same slots, same rows, same probe positions), sparse (size
follows the occupied slots, not the capacity), earlier dense snapshots still load, and a
snapshot with bad slot indices is a StateError, not a crash."""

from __future__ import annotations

import io

import numpy as np
import pytest

from detectors.kernels.common import slot_of
from detectors.state import SlotState
from stream.errors import StateError

SPEC = {"ring": ("i8", (16,)), "n": ("i4", ()), "last": ("i8", ())}


def _filled(n_keys: int, capacity: int = 1 << 14) -> SlotState:
    st = SlotState(SPEC, capacity)
    rng = np.random.default_rng(7)
    keys = rng.integers(1, 2**63, size=n_keys, dtype=np.int64).astype(np.uint64)
    for i, k in enumerate(keys):
        s = slot_of(st.keys, k)
        st.cols["ring"][s] = np.arange(16) + i
        st.cols["n"][s] = i
        st.cols["last"][s] = 1_700_000_000_000 + i
    return st


def test_round_trip_is_exact_and_sparse():
    st = _filled(300)
    blob = st.to_bytes()
    back = SlotState.from_bytes(SPEC, blob)
    assert back.capacity == st.capacity
    assert np.array_equal(back.keys, st.keys)
    for name in st.cols:
        assert np.array_equal(back.cols[name], st.cols[name]), name
    # lookups find the same slots (positions preserved, not re-inserted)
    for k in st.keys[st.keys != 0][:50]:
        assert back.lookup(int(k)) == st.lookup(int(k))
    # 300 of 16384 slots occupied: the snapshot is about 300 rows, not the capacity
    assert len(blob) < st.nbytes() / 20
    empty = SlotState(SPEC, 1 << 14).to_bytes()
    assert len(empty) < 4096


def test_dense_snapshots_of_earlier_versions_still_load():
    st = _filled(100, 1024)
    buf = io.BytesIO()
    np.savez(buf, __keys__=st.keys, **st.cols)
    back = SlotState.from_bytes(SPEC, buf.getvalue())
    assert np.array_equal(back.keys, st.keys)
    assert np.array_equal(back.cols["ring"], st.cols["ring"])


@pytest.mark.parametrize("cap,idx", [(1000, [1]), (1024, [1024]), (1024, [-1])])
def test_bad_capacity_or_index_is_a_state_error(cap, idx):
    buf = io.BytesIO()
    n = len(idx)
    np.savez(buf, __cap__=np.array([cap]), __idx__=np.array(idx, dtype=np.int64),
             __keys__=np.ones(n, dtype=np.uint64), ring=np.zeros((n, 16), dtype=np.int64),
             n=np.zeros(n, dtype=np.int32), last=np.zeros(n, dtype=np.int64))
    with pytest.raises(StateError):
        SlotState.from_bytes(SPEC, buf.getvalue())


def test_wrong_column_shape_is_a_state_error():
    st = _filled(10, 1024)
    idx = np.flatnonzero(st.keys)
    buf = io.BytesIO()
    np.savez(buf, __cap__=np.array([1024]), __idx__=idx, __keys__=st.keys[idx],
             ring=st.cols["ring"][idx][:, :8], n=st.cols["n"][idx], last=st.cols["last"][idx])
    with pytest.raises(StateError):
        SlotState.from_bytes(SPEC, buf.getvalue())
