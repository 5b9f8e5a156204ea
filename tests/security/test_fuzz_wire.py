"""Property-based fuzzing of the wire decoder (v1 and v2) with mutated real batches.

Contract under test (stream/wire.py): ``decode`` returns a batch every downstream consumer
can index safely or raises :class:`WireFormatError` (the worker dead-letters it). Nothing else
escapes: an IndexError, OverflowError or MemoryError would kill a worker's partition loop.
"""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stream import wire
from stream.errors import WireFormatError
from stream.schema import NUMERIC_FIELDS, STRING_FIELDS
from stream.synth import SynthConfig, generate

from ._strategies import FUZZ, mutated

#: the decoder is fast: a larger budget than the other fuzz tests, still a few seconds
WIRE = settings(FUZZ, max_examples=150)

_TRAFFIC = generate(SynthConfig(events=1500, partitions=2, identities=80, seed=5))
_BASES = [wire.encode(b, version=v) for k in (0, 1) for _, b in _TRAFFIC.batches(k)
          for v in (1, 2)]
_BASES = [x for x in _BASES if len(x) < 200_000][:8]


def _check_accepted(data: bytes) -> None:
    try:
        d = wire.decode(data)
    except WireFormatError as e:
        assert str(e)
        return
    # every structural promise an accepted batch makes to the engines
    assert 0 <= d.n <= wire.MAX_EVENTS
    assert d.strcols.shape == (len(STRING_FIELDS), d.n) and d.strcols.dtype == np.uint32
    for f, dt in NUMERIC_FIELDS.items():
        assert d.numeric[f].dtype == np.dtype(dt) and d.numeric[f].shape == (d.n,)
    ns = len(d.str_hash)
    assert len(d.str_offsets) == ns + 1 and int(d.str_offsets[-1]) == len(d.str_blob)
    if d.n:
        assert int(d.strcols.max()) < ns
    d.key_hashes()
    for name in ("account", "src_ip", "computer"):
        d.hashes(name)
    try:
        wire.decode_strings_checked(d)
    except WireFormatError:
        pass


@WIRE
@given(st.data())
def test_mutated_batches_decode_or_raise_wire_format_error(data):
    base = data.draw(st.sampled_from(_BASES))
    _check_accepted(data.draw(mutated(base)))


@WIRE
@given(st.data())
def test_mutated_v2_descriptors_decode_or_raise(data):
    """Targeted: overwrite v2 header fields, bases and widths with hostile values."""
    base = bytearray(data.draw(st.sampled_from([x for x in _BASES if x[4] == 2])))
    h = wire.HEADER2.unpack_from(base, 0)
    k = bin(h[12]).count("1") + bin(h[13]).count("1")
    for _ in range(data.draw(st.integers(1, 4))):
        what = data.draw(st.sampled_from(["base", "width", "bits", "count", "lw"]))
        if what == "base" and k:
            c = data.draw(st.integers(0, k - 1))
            v = data.draw(st.one_of(st.integers(-2**63, 2**63 - 1),
                                    st.sampled_from([-1, 0, 1, h[7] - 1, h[7], 2**31, 2**32])))
            struct.pack_into("<q", base, wire.HEADER2.size + 8 * c, v)
        elif what == "width" and k:
            c = data.draw(st.integers(0, k - 1))
            base[wire.HEADER2.size + 8 * k + c] = data.draw(st.sampled_from([0, 1, 2, 3, 4, 8,
                                                                             255]))
        elif what == "bits":
            struct.pack_into("<I", base, data.draw(st.sampled_from([32, 36])),
                             data.draw(st.integers(0, 2**32 - 1)))
        elif what == "count":
            struct.pack_into("<I", base, data.draw(st.sampled_from([12, 16, 20])),
                             data.draw(st.integers(0, 2**32 - 1)))
        else:
            base[28] = data.draw(st.integers(0, 255))
    _check_accepted(bytes(base))


@WIRE
@given(st.binary(max_size=300))
def test_random_v2_headers_decode_or_raise(tail):
    head = wire.HEADER2.pack(wire.MAGIC, 2, 0, len(NUMERIC_FIELDS), len(STRING_FIELDS), 0,
                             len(tail) % 9, 1 + len(tail) % 3, len(tail) % 5, -1, 1,
                             b"\0\0\0", 0, 0)
    _check_accepted(head + tail)
