"""Detector state layout (detectors/state.py): dense rows + key index, growth, expiry,
snapshots, and the per-batch row reservation bound of every stateful detector."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pytest
from numba import njit

from detectors.engine import SNAPSHOT_VERSION, Engine
from detectors.kernels.common import row_of
from detectors.state import MAX_LOAD, SlotState
from stream.errors import StateError
from stream.schema import KEY_ACCOUNT, KEY_SOURCE
from stream.settings import DetectionSettings

SPEC = {"v": ("i8", ()), "ring": ("u8", (4,))}


@njit(cache=True)
def _touch(index, keys, t, v, ring, last):
    for j in range(len(keys)):
        r = row_of(index, keys[j])
        v[r] += 1
        ring[r, v[r] % 4] = keys[j]
        if t[j] > last[r]:
            last[r] = t[j]


def _feed(st: SlotState, keys, t) -> None:
    keys = np.asarray(keys, dtype=np.uint64)
    st.reserve(len(keys))
    _touch(st.index, keys, np.asarray(t, dtype=np.int64), st["v"], st["ring"], st["last"])


def _as_dict(st: SlotState) -> dict[int, tuple]:
    out = {}
    for r, k in enumerate(st.row_keys().tolist()):
        assert st.lookup(k) == r
        out[k] = tuple(tuple(np.atleast_1d(c[r]).tolist()) for c in st.cols.values())
    return out


def _check_invariants(st: SlotState) -> None:
    assert st.used <= st.rows <= st.capacity * MAX_LOAD
    assert st.capacity & (st.capacity - 1) == 0
    for c in st.cols.values():
        assert len(c) == st.rows
        assert not c[st.used:].any()  # unused rows stay zero (kernels rely on fresh rows = 0)
    keys = st.row_keys()
    assert len(np.unique(keys)) == st.used and (keys != 0).all()


def test_rows_are_dense_and_survive_growth():
    st = SlotState(SPEC)
    rng = np.random.default_rng(1)
    keys = rng.integers(1, 2**63, size=5000, dtype=np.uint64)
    ref: dict[int, int] = {}
    for lo in range(0, 5000, 700):
        chunk = np.concatenate([keys[lo:lo + 700], keys[:50]])  # new keys + repeats
        _feed(st, chunk, np.full(len(chunk), lo, np.int64))
        for k in chunk.tolist():
            ref[k] = ref.get(k, 0) + 1
        _check_invariants(st)
    assert st.used == len(ref)
    for k, n in ref.items():
        assert st["v"][st.lookup(k)] == n
    assert st.lookup(12345) == -1
    # memory follows the keys: columns are at most 1/8 (or one reservation) above the keys
    assert st.rows <= st.used + max(st.used // 8, 750)


def test_key_zero_and_one_share_a_row_like_before():
    st = SlotState(SPEC)
    _feed(st, [0, 1, 2], [1, 1, 1])
    assert st.used == 2
    assert st.lookup(0) == st.lookup(1)


def test_row_of_refuses_to_write_past_the_reservation():
    st = SlotState(SPEC)  # 64 rows, nothing reserved beyond
    keys = np.arange(1, 200, dtype=np.uint64)
    with pytest.raises(IndexError):
        _touch(st.index, keys, np.zeros(len(keys), np.int64), st["v"], st["ring"], st["last"])
    assert st.used == st.rows == 64


def test_expire_drops_stale_rows_and_keeps_the_rest_exactly():
    st = SlotState(SPEC)
    keys = np.arange(1, 3001, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    t = np.arange(3000, dtype=np.int64)
    _feed(st, keys, t)
    _feed(st, keys[::3], t[::3] + 10_000)  # every third key touched again, later
    before = _as_dict(st)
    dropped = st.expire(5000)
    kept = set(keys[::3].tolist())
    assert dropped == 3000 - len(kept)
    _check_invariants(st)
    after = _as_dict(st)
    assert set(after) == kept
    assert all(after[k] == before[k] for k in kept)
    assert st.expire(5000) == 0
    # the table keeps working after compaction
    _feed(st, keys[:10], np.full(10, 20_000, np.int64))
    _check_invariants(st)


def test_snapshot_roundtrip_is_exact():
    st = SlotState(SPEC)
    rng = np.random.default_rng(2)
    keys = rng.integers(1, 2**63, size=1500, dtype=np.uint64)
    _feed(st, keys, rng.integers(0, 10**12, size=1500))
    st2 = SlotState.from_bytes(SPEC, st.to_bytes())
    _check_invariants(st2)
    assert _as_dict(st2) == _as_dict(st)
    # and it continues identically
    more = rng.integers(1, 2**63, size=300, dtype=np.uint64)
    both = np.concatenate([more, keys[:300]])
    tt = np.full(len(both), 7, np.int64)
    _feed(st, both, tt)
    _feed(st2, both, tt)
    assert _as_dict(st2) == _as_dict(st)


def _npz_format2(st: SlotState) -> bytes:
    """What SlotState.to_bytes wrote before format 3 (sessions 2-5): np.savez of the used
    rows, the row keys and a __format__ of 2."""
    buf = io.BytesIO()
    np.savez(buf, __format__=np.array([2], dtype=np.int64), __rowkeys__=st.row_keys(),
             **{k: c[:st.used] for k, c in st.cols.items()})
    return buf.getvalue()


def test_format_2_snapshots_written_by_earlier_versions_still_restore():
    st = SlotState(SPEC)
    rng = np.random.default_rng(3)
    _feed(st, rng.integers(1, 2**63, size=900, dtype=np.uint64), rng.integers(0, 10**12, 900))
    old = SlotState.from_bytes(SPEC, _npz_format2(st))
    new = SlotState.from_bytes(SPEC, st.to_bytes())
    _check_invariants(old)
    assert _as_dict(old) == _as_dict(new) == _as_dict(st)
    assert old.rows == new.rows and old.capacity == new.capacity
    assert st.to_bytes()[:8] == b"ITDRSLT\x03" and st.to_bytes() != _npz_format2(st)


def test_a_damaged_format_3_snapshot_is_a_state_error_not_a_wrong_state():
    st = SlotState(SPEC)
    _feed(st, np.arange(1, 51, dtype=np.uint64), np.full(50, 5, np.int64))
    good = st.to_bytes()
    hl = int.from_bytes(good[8:12], "little")
    head = orjson.loads(good[12:12 + hl])
    body = good[12 + hl:]

    def with_head(h: dict) -> bytes:
        hb = orjson.dumps(h)
        return good[:8] + len(hb).to_bytes(4, "little") + hb + body

    bad = {
        "truncated": good[:-3],
        "trailing bytes": good + b"\0",
        "header cut": good[:14],
        "other format": with_head({**head, "format": 4}),
        "missing column": with_head({**head, "cols": head["cols"][:-1]}),
        "wrong dtype": with_head({**head, "cols": [[n, "<f8" if n == "v" else d, t]
                                                   for n, d, t in head["cols"]]}),
        "wrong row shape": with_head({**head, "cols": [[n, d, [8] if n == "ring" else t]
                                                       for n, d, t in head["cols"]]}),
        "more rows than data": with_head({**head, "rows": head["rows"] + 1}),
        # refused before allocating (10**12 rows would be terabytes)
        "absurd row count": with_head({**head, "rows": 10**12}),
        "negative row count": with_head({**head, "rows": -1}),
        "column list not a list": with_head({**head, "cols": 5}),
        "column entry malformed": with_head({**head, "cols": [["v"]] + head["cols"][1:]}),
        "unknown dtype": with_head({**head, "cols": [[n, "nonsense", t]
                                                     for n, d, t in head["cols"]]}),
    }
    for what, data in bad.items():
        with pytest.raises(StateError):
            SlotState.from_bytes(SPEC, data)
            pytest.fail(what)
    assert _as_dict(SlotState.from_bytes(SPEC, good)) == _as_dict(st)


def test_snapshot_size_follows_the_used_rows_not_the_capacity():
    st = SlotState(SPEC, capacity=1 << 14)
    keys = np.arange(1, 101, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    _feed(st, keys, np.full(100, 5, np.int64))
    assert len(st.to_bytes()) < st.nbytes() / 20


def test_old_state_format_is_rejected_cleanly():
    buf = io.BytesIO()  # format 1: a sparse table with a __keys__ array per slot
    np.savez(buf, __keys__=np.zeros(64, np.uint64), v=np.zeros(64, np.int64),
             ring=np.zeros((64, 4), np.uint64), last=np.zeros(64, np.int64))
    with pytest.raises(StateError):
        SlotState.from_bytes(SPEC, buf.getvalue())
    with pytest.raises(StateError):
        SlotState.from_bytes(SPEC, b"garbage")


def test_engine_rejects_a_version_1_snapshot():
    eng = Engine(DetectionSettings(), KEY_ACCOUNT, 0)
    data = eng.snapshot()
    (ln,) = np.frombuffer(data[:4], dtype="<u4")
    head = orjson.loads(data[4:4 + ln])
    assert head["v"] == SNAPSHOT_VERSION == 2
    head["v"] = 1
    h = orjson.dumps(head)
    old = len(h).to_bytes(4, "little") + h + data[4 + ln:]
    with pytest.raises(StateError):
        Engine(DetectionSettings(), KEY_ACCOUNT, 0).restore(old)


def _synth(n_ident: int, seed: int, batch_events: int = 4096):
    from stream.synth import SynthConfig, generate

    return generate(SynthConfig(events=3 * n_ident, partitions=1, identities=n_ident,
                                hosts=max(100, n_ident // 4), seed=seed, cover_all=True,
                                duration_s=3600.0, attacks=3, batch_events=batch_events))


@pytest.mark.parametrize("kind", [KEY_ACCOUNT, KEY_SOURCE])
def test_every_stateful_detector_stays_within_its_reservation(kind, monkeypatch):
    """All detectors on traffic that touches every identity kind, with reservations made
    exact (no growth slack): no kernel ever needs more rows than ``max_new_keys`` reserved
    (row_of would raise IndexError), and the rows track the keys."""
    def exact_reserve(self, n_new):
        self._set_rows(self.used + int(n_new))

    monkeypatch.setattr(SlotState, "reserve", exact_reserve)
    traffic = _synth(3000, 5, batch_events=1024)
    eng = Engine(DetectionSettings(), kind, 0)
    for _, b in traffic.batches(kind):
        before = {d.id: d.state.used for d in eng.detectors if d.state is not None}
        eng.process(b)
        ids, cnt = np.unique(b.event_id, return_counts=True)
        counts = dict(zip(ids.tolist(), cnt.tolist()))
        for d in eng.detectors:
            if d.state is not None:
                assert d.state.used - before[d.id] <= d.max_new_keys(counts) or \
                    d.state.used < before[d.id]  # expired in this batch
                _check_invariants(d.state)


@pytest.mark.parametrize("kind", [KEY_ACCOUNT, KEY_SOURCE])
def test_engine_snapshot_mid_stream_gives_identical_alerts(kind):
    """Snapshot right after the first expiry pass (batch 64) and restore into a new engine: the rest
    of the stream gives exactly the alerts of an uninterrupted run."""
    traffic = _synth(16000, 9, batch_events=512)
    batches = [b for _, b in traffic.batches(kind)]
    half = 64
    assert len(batches) >= half + 16
    ref = Engine(DetectionSettings(), kind, 0)
    a_ref = [a.model_dump() for b in batches for a in ref.process(b)]
    e1 = Engine(DetectionSettings(), kind, 0)
    a1 = [a.model_dump() for b in batches[:half] for a in e1.process(b)]
    e2 = Engine(DetectionSettings(), kind, 0)
    e2.restore(e1.snapshot())
    a2 = [a.model_dump() for b in batches[half:] for a in e2.process(b)]
    assert a_ref and a2, "the synthetic attacks should raise alerts (also after restore)"
    assert a1 + a2 == a_ref


@pytest.mark.parametrize("did", ["golden-ticket", "coercion"])
def test_worst_case_keys_per_event_fit_the_reservation(did, monkeypatch):
    """Detectors that create two keys for one event (golden-ticket: account + realm,
    coercion: source + print-server client set), every event new on both: the declared
    ``keys_per_event`` covers it with exact reservations."""
    from stream.scan import OfflinePipeline

    def exact_reserve(self, n_new):
        self._set_rows(self.used + int(n_new))

    monkeypatch.setattr(SlotState, "reserve", exact_reserve)
    t0 = 1_700_000_000_000
    if did == "golden-ticket":
        events = [{"time_ms": t0 + i, "event_id": 4768, "computer": "dc01.corp.local",
                   "channel": "security", "account": f"corp\\u{i}",
                   "account_domain": f"REALM{i}.LOCAL", "src_ip": "10.0.0.1",
                   "service": "krbtgt", "status": 0} for i in range(3000)]
    else:
        events = [{"time_ms": t0 + i, "event_id": 5145, "computer": f"srv{i}.corp.local",
                   "channel": "security", "account": "corp\\bob",
                   "src_ip": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                   "share": "\\\\*\\IPC$", "relative_target": "spoolss",
                   "access_mask": 0x12019F} for i in range(3000)]
    p = OfflinePipeline(DetectionSettings(enabled=[did]), partitions=1)
    p.feed(events)
    p.finish()
    used = [d.state.used for pair in p.engines.values() for e in (pair.account, pair.source)
            for d in e.detectors if d.state is not None]
    assert max(used) >= 2 * 3000  # two new keys per event really happened
