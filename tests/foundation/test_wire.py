"""Wire format: round trip, zero-copy decode, corrupt input raises WireFormatError."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream import wire
from stream.errors import WireFormatError
from stream.schema import (ALL_FIELDS, KEY_SOURCE, NUMERIC_FIELDS, STRING_FIELDS, IdentityEvent,
                           batch_from_events, key_hash)


def _events(n=50):
    out = []
    for i in range(n):
        out.append(dict(time_ms=1_700_000_000_000 + i, record_id=i, event_id=4624 + (i % 3),
                        status=0xC000006A if i % 2 else 0, ticket_encryption=0x17,
                        account=f"corp\\user{i % 7}", computer="dc01.corp.local",
                        src_ip=f"10.0.0.{i % 5}", service="krbtgt", extra='{"a":"é"}',
                        object="CN=Ünïcode,DC=corp"))
    return out


@pytest.mark.parametrize("version", [1, 2])
def test_round_trip_preserves_every_field(version):
    evs = _events()
    b = batch_from_events(evs, key_kind=KEY_SOURCE, partition=3)
    data = wire.encode(b, version=version)
    assert data[4] == version
    assert len(data) == wire.encoded_size(b, version=version)
    d = wire.decode(data)
    assert d.n == len(evs) and d.partition == 3 and d.key_kind == KEY_SOURCE
    for i, ev in enumerate(evs):
        got = d.event(i)
        for f in ALL_FIELDS:
            exp = ev.get(f, IdentityEvent.model_fields[f].default)
            assert getattr(got, f) == exp, f


def test_decode_is_zero_copy():
    data = bytearray(wire.encode(batch_from_events(_events(10)), version=1))
    d = wire.decode(data)
    assert not d.time_ms.flags.owndata
    assert np.shares_memory(d.time_ms, np.frombuffer(data, dtype=np.uint8))


def test_v2_decode_keeps_hashes_and_blob_zero_copy():
    data = bytearray(wire.encode(batch_from_events(_events(10))))
    d = wire.decode(data)
    raw = np.frombuffer(data, dtype=np.uint8)
    assert np.shares_memory(d.str_hash, raw)
    assert np.shares_memory(np.frombuffer(d.str_blob, dtype=np.uint8), raw)
    assert d.str_hash.flags.aligned


def test_v2_is_the_default_and_much_smaller():
    b = batch_from_events(_events(500))
    v1, v2 = wire.encode(b, version=1), wire.encode(b)
    assert v2[4] == wire.VERSION == 2 and v1[4] == 1
    assert len(v2) * 2 < len(v1)
    with pytest.raises(ValueError):
        wire.encode(b, version=3)


def test_string_hashes_are_the_documented_key_hash():
    d = wire.decode(wire.encode(batch_from_events(_events(5))))
    for i in range(d.n):
        assert int(d.hashes("account")[i]) == key_hash(d.get("account", i))
    assert d.str_hash[0] == 0


def test_empty_batch_round_trip():
    d = wire.decode(wire.encode(batch_from_events([])))
    assert d.n == 0


@pytest.mark.parametrize("mutate, reason", [
    (lambda b: b"XXXX" + b[4:], "bad magic"),
    (lambda b: b[:4] + bytes([9]) + b[5:], "unsupported wire version"),
    (lambda b: b[:-1], "length mismatch"),
    (lambda b: b[:40], "length mismatch"),
    (lambda b: b[:10], "truncated"),
    (lambda b: b + b"\0", "length mismatch"),
    (lambda b: b[:5] + bytes([7]) + b[6:], "bad key kind"),
])
@pytest.mark.parametrize("version", [1, 2])
def test_corrupt_batches_raise_specific_error(mutate, reason, version):
    data = wire.encode(batch_from_events(_events(20)), version=version)
    with pytest.raises(WireFormatError, match=reason):
        wire.decode(mutate(data))


def test_out_of_range_string_index_is_rejected():
    b = batch_from_events(_events(20))
    data = bytearray(wire.encode(b, version=1))
    # first string column, first entry -> huge index
    off = wire.HEADER.size
    for dt in NUMERIC_FIELDS.values():
        size = 20 * np.dtype(dt).itemsize
        off += (size + 7) & ~7
    struct.pack_into("<I", data, off, 10_000)
    with pytest.raises(WireFormatError, match="out of range"):
        wire.decode(bytes(data))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_never_crash(blob):
    try:
        d = wire.decode(blob)
    except WireFormatError:
        return
    d.strings()  # a structurally valid batch must also decode its strings or raise cleanly


@settings(max_examples=200, deadline=None)
@given(st.data(), st.sampled_from([1, 2]))
def test_fuzz_bitflips_raise_or_decode(data, version):
    raw = bytearray(wire.encode(batch_from_events(_events(8)), version=version))
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    try:
        d = wire.decode(bytes(raw))
        try:
            wire.decode_strings_checked(d)
        except WireFormatError:
            pass
    except WireFormatError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "time_ms": st.integers(0, 2**62), "event_id": st.integers(0, 65535),
    "status": st.integers(0, 2**32 - 1), "account": st.text(max_size=30),
    "src_ip": st.text(max_size=15), "extra": st.text(max_size=50)}), max_size=30),
    st.sampled_from([1, 2]))
def test_fuzz_round_trip(evs, version):
    d = wire.decode(wire.encode(batch_from_events(evs), version=version))
    assert d.n == len(evs)
    for i, ev in enumerate(evs):
        assert d.get("account", i) == ev["account"]
        assert d.get("status", i) == ev["status"]
        assert d.get("time_ms", i) == ev["time_ms"]


def test_schema_fields_documented_in_json_schema():
    props = IdentityEvent.model_json_schema()["properties"]
    for f in ALL_FIELDS:
        assert f in props and props[f].get("description"), f
    assert len(STRING_FIELDS) == 31
