"""Binary columnar wire format (v1) for the events topics.

Layout (all little-endian; documented in ``docs/wire-format.md``)::

    offset size  field
    0      4     magic  b"ITDB"
    4      1     version (1)
    5      1     key kind (0 = by account, 1 = by source)
    6      2     number of numeric columns (must equal len(NUMERIC_FIELDS) for v1)
    8      2     number of string columns (must equal len(STRING_FIELDS) for v1)
    10     2     reserved (0)
    12     4     n_events
    16     4     n_strings (>= 1; entry 0 is the empty string)
    20     4     blob_len (bytes of UTF-8 string data)
    24     4     partition the batch was produced for (-1 unknown)
    28     4     reserved (0)
    32     ...   numeric columns in NUMERIC_FIELDS order, each n_events * itemsize bytes,
                 each padded to a multiple of 8 bytes
           ...   string index columns: n_str_cols * n_events * u4 (padded to 8)
           ...   string hashes: n_strings * u8
           ...   string offsets: (n_strings + 1) * u4 (padded to 8)
           ...   blob: blob_len bytes of UTF-8
    total length must match exactly.

Decoding is zero-copy (``np.frombuffer`` views) and validates structure: lengths, monotone
offsets, string indices within the table, entry 0 empty. Any violation raises
:class:`~stream.errors.WireFormatError` with the reason; nothing is silently dropped.
"""

from __future__ import annotations

import struct

import numpy as np

from .errors import WireFormatError
from .schema import NUMERIC_FIELDS, STRING_FIELDS, EventBatch

MAGIC = b"ITDB"
VERSION = 1
HEADER = struct.Struct("<4sBBHHHIIIii")
assert HEADER.size == 32

_NUM_DTYPES = [(f, np.dtype(dt)) for f, dt in NUMERIC_FIELDS.items()]
_N_STR = len(STRING_FIELDS)
MAX_EVENTS = 1 << 20
MAX_STRINGS = 1 << 22


def _pad8(n: int) -> int:
    return (n + 7) & ~7


def encoded_size(batch: EventBatch) -> int:
    n = batch.n
    size = HEADER.size
    for _, dt in _NUM_DTYPES:
        size += _pad8(n * dt.itemsize)
    size += _pad8(_N_STR * n * 4)
    ns = len(batch.str_hash)
    size += ns * 8 + _pad8((ns + 1) * 4) + len(batch.str_blob)
    return size


def encode(batch: EventBatch) -> bytes:
    """Encode a batch to bytes."""
    n = batch.n
    ns = len(batch.str_hash)
    parts = [HEADER.pack(MAGIC, VERSION, batch.key_kind, len(_NUM_DTYPES), _N_STR, 0, n, ns,
                         len(batch.str_blob), batch.partition, 0)]
    for f, dt in _NUM_DTYPES:
        a = np.ascontiguousarray(batch.numeric[f], dtype=dt)
        b = a.tobytes()
        parts.append(b)
        pad = _pad8(len(b)) - len(b)
        if pad:
            parts.append(b"\0" * pad)
    sc = np.ascontiguousarray(batch.strcols, dtype="<u4").tobytes()
    parts.append(sc)
    if _pad8(len(sc)) - len(sc):
        parts.append(b"\0" * (_pad8(len(sc)) - len(sc)))
    parts.append(np.ascontiguousarray(batch.str_hash, dtype="<u8").tobytes())
    ob = np.ascontiguousarray(batch.str_offsets, dtype="<u4").tobytes()
    parts.append(ob)
    if _pad8(len(ob)) - len(ob):
        parts.append(b"\0" * (_pad8(len(ob)) - len(ob)))
    parts.append(bytes(batch.str_blob))
    return b"".join(parts)


def decode(data: bytes | bytearray | memoryview, *, validate: bool = True) -> EventBatch:
    """Decode bytes to an :class:`EventBatch` (zero-copy views into ``data``).

    Raises :class:`WireFormatError` on any structural problem.
    """
    mv = memoryview(data)
    total = len(mv)
    if total < HEADER.size:
        raise WireFormatError(f"batch truncated: {total} bytes, header needs {HEADER.size}",
                              fix="the message is not an OpenITDR v1 batch or was cut short")
    (magic, version, kind, n_num, n_str, _r0, n, ns, blob_len, partition,
     _r1) = HEADER.unpack_from(mv, 0)
    if magic != MAGIC:
        raise WireFormatError(f"bad magic {bytes(magic)!r} (expected {MAGIC!r})",
                              fix="only OpenITDR collectors may write to the events topics")
    if version != VERSION:
        raise WireFormatError(f"unsupported wire version {version} (this build reads {VERSION})",
                              fix="upgrade the stream workers to the collectors' version")
    if kind not in (0, 1):
        raise WireFormatError(f"bad key kind {kind}")
    if n_num != len(_NUM_DTYPES) or n_str != _N_STR:
        raise WireFormatError(f"column count mismatch: {n_num}/{n_str}, expected "
                              f"{len(_NUM_DTYPES)}/{_N_STR}")
    if n > MAX_EVENTS or ns < 1 or ns > MAX_STRINGS:
        raise WireFormatError(f"implausible counts: n_events={n} n_strings={ns}")
    expected = HEADER.size
    for _, dt in _NUM_DTYPES:
        expected += _pad8(n * dt.itemsize)
    expected += _pad8(_N_STR * n * 4) + ns * 8 + _pad8((ns + 1) * 4) + blob_len
    if expected != total:
        raise WireFormatError(f"length mismatch: header implies {expected} bytes, got {total}",
                              fix="the batch is truncated or corrupt")
    off = HEADER.size
    numeric = {}
    for f, dt in _NUM_DTYPES:
        numeric[f] = np.frombuffer(mv, dtype=dt, count=n, offset=off)
        off += _pad8(n * dt.itemsize)
    strcols = np.frombuffer(mv, dtype="<u4", count=_N_STR * n, offset=off).reshape(_N_STR, n)
    off += _pad8(_N_STR * n * 4)
    str_hash = np.frombuffer(mv, dtype="<u8", count=ns, offset=off)
    off += ns * 8
    offsets = np.frombuffer(mv, dtype="<u4", count=ns + 1, offset=off)
    off += _pad8((ns + 1) * 4)
    blob = mv[off:off + blob_len]
    if validate:
        if offsets[0] != 0 or offsets[-1] != blob_len or offsets[1] != 0:
            raise WireFormatError("string table offsets are inconsistent "
                                  "(entry 0 must be the empty string)")
        if ns > 1 and np.any(np.diff(offsets.astype(np.int64)) < 0):
            raise WireFormatError("string table offsets are not monotone")
        if n and int(strcols.max()) >= ns:
            raise WireFormatError(f"string index {int(strcols.max())} out of range "
                                  f"(table has {ns} entries)")
        if str_hash[0] != 0:
            raise WireFormatError("string table entry 0 must hash to 0")
    return EventBatch(n, numeric, strcols, str_hash, offsets, blob, kind, partition)


def decode_strings_checked(batch: EventBatch) -> list[str]:
    """Decode the string table, turning bad UTF-8 into a WireFormatError."""
    try:
        return batch.strings()
    except UnicodeDecodeError as e:
        raise WireFormatError(f"string table is not valid UTF-8: {e}") from e
