"""Wire format v2: exact round trips (property-based), layout, strict validation, restamp."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream import wire
from stream.errors import WireFormatError
from stream.schema import (KEY_SOURCE, NUMERIC_DEFAULTS, NUMERIC_FIELDS, STRING_FIELDS,
                           EventBatch, batch_from_events, key_hash)
from stream.synth import SynthConfig, generate, restamp

NS = len(STRING_FIELDS)


def assert_same(a: EventBatch, b: EventBatch) -> None:
    """Identical in-memory batches: counts, every array with its dtype, the table."""
    assert (a.n, a.key_kind, a.partition) == (b.n, b.key_kind, b.partition)
    assert list(a.numeric) == list(b.numeric) == list(NUMERIC_FIELDS)
    for f, dt in NUMERIC_FIELDS.items():
        assert a.numeric[f].dtype == b.numeric[f].dtype == np.dtype(dt), f
        assert a.numeric[f].shape == b.numeric[f].shape == (a.n,), f
        assert np.array_equal(a.numeric[f], b.numeric[f]), f
    assert a.strcols.dtype == b.strcols.dtype == np.dtype("<u4")
    assert a.strcols.shape == b.strcols.shape == (NS, a.n)
    assert np.array_equal(a.strcols, b.strcols)
    assert a.str_hash.dtype == b.str_hash.dtype == np.dtype("<u8")
    assert np.array_equal(a.str_hash, b.str_hash)
    assert a.str_offsets.dtype == b.str_offsets.dtype == np.dtype("<u4")
    assert np.array_equal(a.str_offsets, b.str_offsets)
    assert bytes(a.str_blob) == bytes(b.str_blob)


def _edge_values(dt: np.dtype) -> list[int]:
    info = np.iinfo(dt)
    return [int(info.min), int(info.min) + 1, -1, 0, 1, 255, 256, 65535, 65536,
            int(info.max) - 1, int(info.max)]


@st.composite
def batches(draw) -> EventBatch:
    """Random EventBatch: any value of each column's dtype (edge values favoured), columns
    absent, constant or varying, random string table (empty and non-ASCII strings)."""
    n = draw(st.integers(0, 70))
    numeric = {}
    for f, dt in NUMERIC_FIELDS.items():
        dt = np.dtype(dt)
        info = np.iinfo(dt)
        mode = draw(st.sampled_from(["default", "const", "small", "any"]))
        vals = st.one_of(st.sampled_from([v for v in _edge_values(dt)
                                          if info.min <= v <= info.max]),
                         st.integers(int(info.min), int(info.max)))
        if mode == "default":
            col = [NUMERIC_DEFAULTS.get(f, 0)] * n
        elif mode == "const":
            col = [draw(vals)] * n
        elif mode == "small":
            lo = draw(vals)
            col = [min(int(info.max), lo + draw(st.integers(0, 300))) for _ in range(n)]
        else:
            col = [draw(vals) for _ in range(n)]
        numeric[f] = np.array(col, dtype=dt)
    table = [""] + draw(st.lists(st.text(max_size=12), unique=True, max_size=40).map(
        lambda xs: [x for x in xs if x]))
    ns = len(table)
    rows = []
    for _ in range(NS):
        mode = draw(st.sampled_from(["absent", "const", "any"]))
        if mode == "absent" or ns == 1:
            rows.append([0] * n)
        elif mode == "const":
            rows.append([draw(st.integers(0, ns - 1))] * n)
        else:
            rows.append([draw(st.integers(0, ns - 1)) for _ in range(n)])
    strcols = np.array(rows, dtype="<u4").reshape(NS, n)
    enc = [s.encode("utf-8", "surrogatepass") for s in table]
    offsets = np.zeros(ns + 1, dtype="<u4")
    offsets[1:] = np.cumsum([len(e) for e in enc])
    str_hash = np.array([key_hash(s) for s in table], dtype="<u8")
    return EventBatch(n, numeric, strcols, str_hash, offsets, b"".join(enc),
                      draw(st.sampled_from([0, 1])), draw(st.integers(-1, 2**31 - 1)))


@settings(max_examples=300, deadline=None)
@given(batches())
def test_property_v2_and_v1_decode_to_the_identical_batch(b):
    for version in (2, 1):
        data = wire.encode(b, version=version)
        assert data[4] == version
        assert len(data) == wire.encoded_size(b, version=version)
        assert_same(b, wire.decode(data))
        assert_same(b, wire.decode(data, validate=False))
    assert wire.encode(wire.decode(wire.encode(b))) == wire.encode(b)   # deterministic


def _one(**kw) -> dict:
    ev = dict(time_ms=1_700_000_000_000, event_id=4624)
    ev.update(kw)
    return ev


def test_decoded_arrays_are_read_only_in_both_versions():
    b = batch_from_events([_one(account=f"a{i}", logon_type=i % 3) for i in range(30)])
    for version in (1, 2):
        d = wire.decode(wire.encode(b, version=version))
        for arr in (*d.numeric.values(), d.strcols, d.str_hash, d.str_offsets):
            assert not arr.flags.writeable
            assert arr.flags.c_contiguous and arr.flags.aligned


def test_all_columns_absent_cost_no_column_bytes():
    b = batch_from_events([{} for _ in range(100)])      # every field at its default
    data = wire.encode(b)
    magic, ver, kind, nn, ns_, _, n, nstr, blob_len, part, lw, _r, nbits, sbits = \
        wire.HEADER2.unpack_from(data, 0)
    assert (magic, ver, n, nstr, blob_len, nbits, sbits) == (wire.MAGIC, 2, 100, 1, 0, 0, 0)
    # header + hash of entry 0 + its length (padded): no column descriptors, no column data
    assert len(data) == wire.HEADER2.size + 8 + 8
    d = wire.decode(data)
    assert_same(b, d)
    assert (d.logon_type == -1).all() and (d.status == 0).all() and not d.strcols.any()


def test_single_event_round_trip():
    b = batch_from_events([_one(account="corp\\alice", src_ip="10.1.2.3", logon_type=3)],
                          key_kind=KEY_SOURCE, partition=7)
    d = wire.decode(wire.encode(b))
    assert_same(b, d)
    assert d.get("account", 0) == "corp\\alice" and d.get("logon_type", 0) == 3


def test_max_widths_and_edge_values_are_exact():
    i8, i4, u4 = np.iinfo(np.int64), np.iinfo(np.int32), np.iinfo(np.uint32)
    evs = [_one(time_ms=0, record_id=int(i8.min), status=0, ticket_encryption=int(i4.min)),
           _one(time_ms=0, record_id=int(i8.max), status=int(u4.max),
                ticket_encryption=int(i4.max))]
    b = batch_from_events(evs)
    b.numeric["time_ms"] = np.array([i8.min, i8.max], dtype="<i8")
    data = wire.encode(b)
    d = wire.decode(data)
    assert_same(b, d)
    assert d.time_ms.tolist() == [i8.min, i8.max]
    assert d.record_id.tolist() == [i8.min, i8.max]
    assert d.status.tolist() == [0, u4.max]
    assert d.ticket_encryption.tolist() == [i4.min, i4.max]


def test_empty_and_non_ascii_strings_round_trip():
    names = ["", "é", "ünïcödé\\bob", "日本語", "emoji 🎉", "x" * 300, "\udc80 lone surrogate"]
    evs = [_one(account=s, object=s[::-1], extra=s * 2) for s in names]
    b = batch_from_events(evs)
    data = wire.encode(b)
    assert data[28] == 2            # a 600-byte string needs 2-byte lengths
    d = wire.decode(data)
    assert_same(b, d)
    assert [d.get("account", i) for i in range(len(names))] == names
    assert wire.decode_strings_checked(d) == b.strings()
    # the engine's bulk decode of a set of table entries gives what string() gives, on a
    # decoded batch (offsets into the blob) and on a built one (its table already decoded)
    idx = np.unique(d.strcols[[0, 1]])
    want = {int(i): d.string(int(i)) for i in idx}
    assert want[int(idx[-1])] in names or want[int(idx[-1])][::-1] in names
    assert wire.decode(data).decode_many(idx) == want
    assert b.decode_many(idx) == {int(i): b.string(int(i)) for i in idx}


def test_large_table_uses_wide_indices():
    evs = [_one(account=f"corp\\u{i}", record_id=i) for i in range(70_000)]
    b = batch_from_events(evs)
    d = wire.decode(wire.encode(b))
    assert_same(b, d)


def test_frame_of_reference_narrows_time_and_record_ids():
    evs = [_one(time_ms=1_700_000_000_000 + i * 37, record_id=9_000_000_000 + i)
           for i in range(1000)]
    b = batch_from_events(evs)
    data = wire.encode(b)
    nbits = wire.HEADER2.unpack_from(data, 0)[12]
    k = bin(nbits).count("1") + bin(wire.HEADER2.unpack_from(data, 0)[13]).count("1")
    off = wire.HEADER2.size
    bases = struct.unpack_from(f"<{k}q", data, off)
    widths = data[off + 8 * k: off + 9 * k]
    assert bases[0] == 1_700_000_000_000 and widths[0] == 2      # span 36963 ms
    assert bases[1] == 9_000_000_000 and widths[1] == 2
    assert_same(b, wire.decode(data))


def test_synth_traffic_v2_is_at_least_twice_smaller_and_identical():
    tr = generate(SynthConfig(events=6000, partitions=2, identities=300, seed=3))
    v1 = v2 = 0
    for _, _, value, n in tr.wire_messages():
        b = wire.decode(value)
        x1, x2 = wire.encode(b, version=1), wire.encode(b)
        v1, v2 = v1 + len(x1), v2 + len(x2)
        assert_same(b, wire.decode(x1))
        assert_same(b, wire.decode(x2))
    assert v2 * 2 <= v1, (v1, v2)


@pytest.mark.parametrize("version", [1, 2])
def test_restamp_sets_every_time_and_keeps_the_version(version):
    b = batch_from_events([_one(time_ms=1_700_000_000_000 + i, account=f"a{i}")
                           for i in range(50)])
    data = wire.encode(b, version=version)
    out = restamp(data, 1_800_000_000_123)
    assert out[4] == version
    d = wire.decode(out)
    assert (d.time_ms == 1_800_000_000_123).all()
    b.numeric["time_ms"] = np.full(50, 1_800_000_000_123, dtype="<i8")
    assert_same(b, d)


# -- strict validation ----------------------------------------------------------------------

def _v2(n=20) -> bytearray:
    evs = [_one(time_ms=1_700_000_000_000 + i * 1000, account=f"corp\\user{i % 7}",
                logon_type=i % 4, status=i, computer="dc1") for i in range(n)]
    return bytearray(wire.encode(batch_from_events(evs)))


def _layout(data: bytes):
    h = wire.HEADER2.unpack_from(data, 0)
    k = bin(h[12]).count("1") + bin(h[13]).count("1")
    off = wire.HEADER2.size
    return h, k, off, off + 8 * k           # header, descriptors, bases offset, widths offset


def _desc(data: bytes, field: str) -> int:
    """Descriptor index of a present column (numeric columns first, then string)."""
    h = wire.HEADER2.unpack_from(data, 0)
    present = [f for i, f in enumerate(NUMERIC_FIELDS) if h[12] >> i & 1]
    present += [f for j, f in enumerate(STRING_FIELDS) if h[13] >> j & 1]
    return present.index(field)


def _patch(data: bytearray, fmt: str, off: int, value) -> bytes:
    struct.pack_into(fmt, data, off, value)
    return bytes(data)


def test_presence_bits_beyond_the_columns_are_rejected():
    data = _v2()
    h = wire.HEADER2.unpack_from(data, 0)
    with pytest.raises(WireFormatError, match="presence bits"):
        wire.decode(_patch(bytearray(data), "<I", 32, h[12] | 1 << 14))
    with pytest.raises(WireFormatError, match="presence bits"):
        wire.decode(_patch(bytearray(data), "<I", 36, h[13] | 1 << 31))


def test_presence_bit_change_is_a_length_mismatch():
    data = _v2()
    h = wire.HEADER2.unpack_from(data, 0)
    with pytest.raises(WireFormatError):
        wire.decode(_patch(bytearray(data), "<I", 32, h[12] | 1 << 13))


@pytest.mark.parametrize("width, reason", [(3, "bad width"), (16, "bad width"),
                                           (8, "bad width")])
def test_invalid_widths_are_rejected(width, reason):
    data = _v2()
    _, k, _, woff = _layout(data)
    # status is a 4-byte column: 8 bytes is too wide for it, 3 and 16 are no width
    data[woff + _desc(data, "status")] = width
    with pytest.raises(WireFormatError, match=reason):
        wire.decode(bytes(data))


def test_string_length_width_and_reserved_bytes_are_checked():
    with pytest.raises(WireFormatError, match="length width"):
        wire.decode(_patch(_v2(), "<B", 28, 3))
    with pytest.raises(WireFormatError, match="reserved"):
        wire.decode(_patch(_v2(), "<B", 30, 1))


def test_string_index_out_of_range_is_rejected_by_base_and_by_value():
    data = _v2()
    h, k, boff, woff = _layout(data)
    ns = h[7]
    widths = data[woff:woff + k]
    n_num = bin(h[12]).count("1")
    c = _desc(data, "computer")                      # constant column (width 0)
    assert widths[c] == 0
    with pytest.raises(WireFormatError, match="out of range"):
        wire.decode(_patch(bytearray(data), "<q", boff + 8 * c, ns))
    with pytest.raises(WireFormatError, match="out of range"):
        wire.decode(_patch(bytearray(data), "<q", boff + 8 * c, -1))
    # a varying string column: push its base so that base + max >= n_strings
    c_var = next(c for c in range(n_num, k) if widths[c])
    with pytest.raises(WireFormatError, match="out of range"):
        wire.decode(_patch(bytearray(data), "<q", boff + 8 * c_var, ns - 1))


def test_numeric_value_outside_its_type_is_rejected():
    data = _v2()
    h, k, boff, woff = _layout(data)
    widths = data[woff:woff + k]
    c = _desc(data, "event_id")                      # int32, constant: the base is the value
    assert widths[c] == 0
    with pytest.raises(WireFormatError, match="out of range"):
        wire.decode(_patch(bytearray(data), "<q", boff + 8 * c, 2**40))
    c = _desc(data, "status")                        # uint32, varying
    assert widths[c] == 1
    with pytest.raises(WireFormatError, match="out of range"):
        wire.decode(_patch(bytearray(data), "<q", boff + 8 * c, -5))
    with pytest.raises(WireFormatError, match="out of range"):
        wire.decode(_patch(bytearray(data), "<q", boff + 8 * c, 2**32 - 2))
    c = _desc(data, "logon_type")                    # int32, varying
    with pytest.raises(WireFormatError, match="out of range"):
        wire.decode(_patch(bytearray(data), "<q", boff + 8 * c, 2**31 - 2))


def test_string_lengths_must_match_the_blob():
    data = _v2()
    with pytest.raises(WireFormatError, match="blob_len"):
        wire.decode(_patch(bytearray(data), "<I", 20, wire.HEADER2.unpack_from(data, 0)[8] + 1)
                    + b"\0")
    # entry 0 must stay the empty string: move one byte of length into entry 0
    h = wire.HEADER2.unpack_from(data, 0)
    ns, blob_len, lw = h[7], h[8], h[10]
    loff = len(data) - blob_len - ((ns * lw + 7) & ~7)
    assert lw == 1
    data[loff] += 1
    data[loff + 1] -= 1
    with pytest.raises(WireFormatError, match="entry 0"):
        wire.decode(bytes(data))


def test_empty_batch_with_present_columns_is_rejected():
    data = bytearray(wire.encode(batch_from_events([])))
    assert len(data) == wire.HEADER2.size + 16
    struct.pack_into("<I", data, 32, 1)
    data[40:40] = struct.pack("<q", 5) + bytes([0]) + bytes(7)
    with pytest.raises(WireFormatError, match="empty batch"):
        wire.decode(bytes(data))


def test_implausible_counts_are_rejected_before_allocating():
    data = _v2()
    with pytest.raises(WireFormatError, match="implausible"):
        wire.decode(_patch(bytearray(data), "<I", 12, wire.MAX_EVENTS + 1))
    with pytest.raises(WireFormatError, match="implausible"):
        wire.decode(_patch(bytearray(data), "<I", 16, wire.MAX_STRINGS + 1))
    with pytest.raises(WireFormatError, match="length mismatch"):
        wire.decode(_patch(bytearray(data), "<I", 12, wire.MAX_EVENTS))


def test_v2_header_truncated():
    with pytest.raises(WireFormatError, match="truncated"):
        wire.decode(bytes(_v2()[:36]))
