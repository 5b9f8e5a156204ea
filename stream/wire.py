"""Binary columnar wire format for the events topics (v2 written, v1 and v2 read).

Both versions share the first 28 header bytes (all little-endian; full layout tables in
``docs/wire-format.md``)::

    offset size  field
    0      4     magic  b"ITDB"
    4      1     version (1 or 2)
    5      1     key kind (0 = by account, 1 = by source)
    6      2     number of numeric columns (must equal len(NUMERIC_FIELDS))
    8      2     number of string columns (must equal len(STRING_FIELDS))
    10     2     reserved (0)
    12     4     n_events
    16     4     n_strings (>= 1; entry 0 is the empty string)
    20     4     blob_len (bytes of UTF-8 string data)
    24     4     partition the batch was produced for (-1 unknown)

v1 (dense, zero-copy)::

    28     4     reserved (0)
    32     ...   numeric columns in NUMERIC_FIELDS order, each n_events * itemsize bytes,
                 each padded to a multiple of 8 bytes
           ...   string index columns: n_str_cols * n_events * u4 (padded to 8)
           ...   string hashes: n_strings * u8
           ...   string offsets: (n_strings + 1) * u4 (padded to 8)
           ...   blob: blob_len bytes of UTF-8

v2 (column presence + frame of reference; ~2.2x smaller on typical traffic)::

    28     1     width of the string length entries (1, 2 or 4 bytes)
    29     3     reserved (0)
    32     4     numeric presence bitmap (bit i = NUMERIC_FIELDS[i] stored; bits >= 14 zero)
    36     4     string presence bitmap (bit j = STRING_FIELDS[j] stored; bits >= 31 zero)
    40     ...   one int64 base per present column (numeric columns first, then string)
           ...   one uint8 width per present column: 0, 1, 2, 4 or 8 bytes (padded to 8)
           ...   string hashes: n_strings * u8
           ...   per present column: n_events unsigned ints of its width holding
                 ``value - base`` (padded to 8); width 0 = every value equals the base
           ...   string lengths: n_strings unsigned ints of the header width (padded to 8)
           ...   blob: blob_len bytes of UTF-8
    total length must match exactly (both versions).

An absent column holds its default everywhere (``NUMERIC_DEFAULTS``, else 0; string index 0
= the empty string) and is materialized on decode. Both versions decode to the same
:class:`~stream.schema.EventBatch` (same dtypes, ``strcols`` (31, n) uint32). v1 decoding
is zero-copy; v2 decoding copies the columns (widening) and keeps the string hashes and blob
as views. Decoding validates structure: lengths, widths, presence bits, string offsets /
lengths, string indices within the table, numeric values within their column's type, entry
0 empty. Any violation raises :class:`~stream.errors.WireFormatError` with the reason;
nothing is silently dropped.
"""

from __future__ import annotations

import struct

import numpy as np

from .errors import WireFormatError
from .schema import NUMERIC_DEFAULTS, NUMERIC_FIELDS, STRING_FIELDS, EventBatch

MAGIC = b"ITDB"
VERSION = 2                      # written by default
VERSIONS = (1, 2)                # read
HEADER = struct.Struct("<4sBBHHHIIIii")        # v1 header
assert HEADER.size == 32
HEADER2 = struct.Struct("<4sBBHHHIIIiB3sII")   # v2 header
assert HEADER2.size == 40

_NUM_DTYPES = [(f, np.dtype(dt)) for f, dt in NUMERIC_FIELDS.items()]
_N_NUM = len(_NUM_DTYPES)
_N_STR = len(STRING_FIELDS)
_NUM_DEFAULT = [NUMERIC_DEFAULTS.get(f, 0) for f, _ in _NUM_DTYPES]
_NUM_RANGE = [(int(np.iinfo(dt).min), int(np.iinfo(dt).max)) for _, dt in _NUM_DTYPES]
_STR_DTYPE = np.dtype("<u4")
_NUM_MASK = (1 << _N_NUM) - 1
_STR_MASK = (1 << _N_STR) - 1
_UNSIGNED = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}
_U64 = 1 << 64
MAX_EVENTS = 1 << 20
MAX_STRINGS = 1 << 22


def _pad8(n: int) -> int:
    return (n + 7) & ~7


def _width_for(span: int) -> int:
    """Narrowest width (bytes) holding ``0..span``; 0 for a constant column."""
    if span == 0:
        return 0
    if span < 1 << 8:
        return 1
    if span < 1 << 16:
        return 2
    if span < 1 << 32:
        return 4
    return 8


# -------------------------------------------------------------------------------- encoding --

def _column(a: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, int, int]:
    """``(values, base, width)``: base = the minimum when that narrows the column (or it is
    constant), else 0 (decoding a zero-based column is a plain widening copy)."""
    w = _width_for(hi - lo)
    if w and lo > 0 and _width_for(hi) == w:
        lo = 0
    return a, lo, w


def _plan(batch: EventBatch) -> tuple[int, int, list[tuple[np.ndarray, int, int]], int]:
    """v2 column plan: presence bitmaps and ``(values, base, width)`` per present column
    (numeric first, then string), plus the string length width."""
    n = batch.n
    num_bits = str_bits = 0
    cols: list[tuple[np.ndarray, int, int]] = []
    if n:
        for i, (f, dt) in enumerate(_NUM_DTYPES):
            a = np.ascontiguousarray(batch.numeric[f], dtype=dt)
            lo, hi = int(a.min()), int(a.max())
            if lo == hi == _NUM_DEFAULT[i]:
                continue
            num_bits |= 1 << i
            cols.append(_column(a, lo, hi))
        sc = np.ascontiguousarray(batch.strcols, dtype=_STR_DTYPE)
        his = sc.max(axis=1).tolist()
        for j in range(_N_STR):
            if his[j] == 0:
                continue
            a = sc[j]
            lo = int(a.min())
            str_bits |= 1 << j
            cols.append(_column(a, lo, his[j]))
    lens_max = int(np.diff(np.asarray(batch.str_offsets, dtype=np.int64)).max(initial=0))
    lw = 1 if lens_max < 1 << 8 else 2 if lens_max < 1 << 16 else 4
    return num_bits, str_bits, cols, lw


def _size2(n: int, ns: int, blob_len: int, widths: list[int], lw: int) -> int:
    k = len(widths)
    return (HEADER2.size + 8 * k + _pad8(k) + 8 * ns + _pad8(n * sum(widths))
            + _pad8(ns * lw) + blob_len)


def encoded_size(batch: EventBatch, version: int = VERSION) -> int:
    n = batch.n
    ns = len(batch.str_hash)
    if version == 2:
        _, _, cols, lw = _plan(batch)
        return _size2(n, ns, len(batch.str_blob), [w for _, _, w in cols], lw)
    size = HEADER.size
    for _, dt in _NUM_DTYPES:
        size += _pad8(n * dt.itemsize)
    size += _pad8(_N_STR * n * 4)
    size += ns * 8 + _pad8((ns + 1) * 4) + len(batch.str_blob)
    return size


def encode(batch: EventBatch, version: int = VERSION) -> bytes:
    """Encode a batch to bytes (v2 unless ``version=1`` is asked for)."""
    if version == 2:
        return _encode2(batch)
    if version != 1:
        raise ValueError(f"unknown wire version {version}")
    n = batch.n
    ns = len(batch.str_hash)
    parts = [HEADER.pack(MAGIC, 1, batch.key_kind, len(_NUM_DTYPES), _N_STR, 0, n, ns,
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


def _padded(b: bytes, parts: list) -> None:
    parts.append(b)
    pad = _pad8(len(b)) - len(b)
    if pad:
        parts.append(b"\0" * pad)


def _encode2(batch: EventBatch) -> bytes:
    n = batch.n
    ns = len(batch.str_hash)
    num_bits, str_bits, cols, lw = _plan(batch)
    parts = [HEADER2.pack(MAGIC, 2, batch.key_kind, _N_NUM, _N_STR, 0, n, ns,
                          len(batch.str_blob), batch.partition, lw, b"\0\0\0",
                          num_bits, str_bits)]
    parts.append(np.array([lo for _, lo, _ in cols], dtype="<i8").tobytes())
    _padded(bytes(w for _, _, w in cols), parts)
    parts.append(np.ascontiguousarray(batch.str_hash, dtype="<u8").tobytes())
    data = []
    for w in (8, 4, 2, 1):      # widest first: every group stays aligned to its width
        for a, lo, cw in cols:
            if cw == w:
                # value - base in modular uint64 arithmetic: exact for int64/int32/uint32
                d = a.astype(np.int64).view(np.uint64) - np.uint64(lo % _U64)
                data.append(d.astype(_UNSIGNED[w]).tobytes())
    _padded(b"".join(data), parts)
    lens = np.diff(np.asarray(batch.str_offsets, dtype=np.int64))
    _padded(lens.astype(_UNSIGNED[lw]).tobytes(), parts)
    parts.append(bytes(batch.str_blob))
    return b"".join(parts)


# -------------------------------------------------------------------------------- decoding --

def decode(data: bytes | bytearray | memoryview, *, validate: bool = True) -> EventBatch:
    """Decode bytes (v1 or v2) to an :class:`EventBatch`.

    v1: zero-copy views into ``data``; v2: widened column copies, hashes and blob as views.
    Raises :class:`WireFormatError` on any structural problem.
    """
    mv = memoryview(data)
    total = len(mv)
    if total < HEADER.size:
        raise WireFormatError(f"batch truncated: {total} bytes, header needs {HEADER.size}",
                              fix="the message is not an OpenITDR batch or was cut short")
    (magic, version, kind, n_num, n_str, _r0, n, ns, blob_len, partition,
     _r1) = HEADER.unpack_from(mv, 0)
    if magic != MAGIC:
        raise WireFormatError(f"bad magic {bytes(magic)!r} (expected {MAGIC!r})",
                              fix="only OpenITDR collectors may write to the events topics")
    if version not in VERSIONS:
        raise WireFormatError(f"unsupported wire version {version} (this build reads "
                              f"{', '.join(map(str, VERSIONS))})",
                              fix="upgrade the stream workers to the collectors' version")
    if kind not in (0, 1):
        raise WireFormatError(f"bad key kind {kind}")
    if n_num != _N_NUM or n_str != _N_STR:
        raise WireFormatError(f"column count mismatch: {n_num}/{n_str}, expected "
                              f"{_N_NUM}/{_N_STR}")
    if n > MAX_EVENTS or ns < 1 or ns > MAX_STRINGS:
        raise WireFormatError(f"implausible counts: n_events={n} n_strings={ns}")
    if version == 2:
        return _decode2(mv, total, kind, n, ns, blob_len, partition, validate)
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


def _decode2(mv: memoryview, total: int, kind: int, n: int, ns: int, blob_len: int,
             partition: int, validate: bool) -> EventBatch:
    if total < HEADER2.size:
        raise WireFormatError(f"batch truncated: {total} bytes, v2 header needs {HEADER2.size}",
                              fix="the message was cut short")
    lw, reserved, num_bits, str_bits = HEADER2.unpack_from(mv, 0)[10:]
    if reserved != b"\0\0\0":
        raise WireFormatError("v2 reserved header bytes are not zero")
    if lw not in (1, 2, 4):
        raise WireFormatError(f"bad string length width {lw} (1, 2 or 4)")
    if num_bits & ~_NUM_MASK or str_bits & ~_STR_MASK:
        raise WireFormatError(f"presence bits beyond the column count: numeric "
                              f"{num_bits:#x}, string {str_bits:#x}")
    # present columns in descriptor order: (field index, is_string)
    present = [(i, False) for i in range(_N_NUM) if num_bits >> i & 1]
    present += [(j, True) for j in range(_N_STR) if str_bits >> j & 1]
    k = len(present)
    if n == 0 and k:
        raise WireFormatError("an empty batch cannot have present columns")
    off = HEADER2.size
    if total < off + 8 * k + _pad8(k):
        raise WireFormatError(f"length mismatch: {total} bytes cannot hold {k} column "
                              f"descriptors", fix="the batch is truncated or corrupt")
    bases = np.frombuffer(mv, dtype="<i8", count=k, offset=off).tolist()
    off += 8 * k
    widths = bytes(mv[off:off + k])
    off += _pad8(k)
    for c, w in enumerate(widths):
        i, is_str = present[c]
        if w not in (0, 1, 2, 4, 8) or w > (4 if is_str else _NUM_DTYPES[i][1].itemsize):
            raise WireFormatError(f"bad width {w} for column "
                                  f"{STRING_FIELDS[i] if is_str else _NUM_DTYPES[i][0]}")
        if is_str and not 0 <= bases[c] < ns:
            raise WireFormatError(f"string index {bases[c]} out of range "
                                  f"(table has {ns} entries)")
    expected = _size2(n, ns, blob_len, list(widths), lw)
    if expected != total:
        raise WireFormatError(f"length mismatch: header implies {expected} bytes, got {total}",
                              fix="the batch is truncated or corrupt")
    str_hash = np.frombuffer(mv, dtype="<u8", count=ns, offset=off)
    off += 8 * ns

    numeric: dict[str, np.ndarray] = {}
    strcols = np.empty((_N_STR, n), dtype=_STR_DTYPE)   # every row is written below
    absent = [j for j in range(_N_STR) if not str_bits >> j & 1]
    if absent:
        strcols[absent] = 0
    for c, w in enumerate(widths):          # constant columns
        if w == 0:
            i, is_str = present[c]
            base = bases[c]
            if is_str:
                strcols[i] = base
                continue
            f, dt = _NUM_DTYPES[i]
            lo, hi = _NUM_RANGE[i]
            if not lo <= base <= hi:
                raise WireFormatError(f"column {f}: value {base} out of range for {dt}")
            numeric[f] = np.full(n, base, dtype=dt)
    for w in (8, 4, 2, 1):                  # width groups, widest first, numeric rows first
        group = [c for c, cw in enumerate(widths) if cw == w]
        if not group:
            continue
        m = np.frombuffer(mv, dtype=_UNSIGNED[w], count=len(group) * n,
                          offset=off).reshape(len(group), n)
        off += len(group) * n * w
        tops = m.max(axis=1).tolist() if validate else None
        srows: list[int] = []
        for r, c in enumerate(group):
            i, is_str = present[c]
            base = bases[c]
            if is_str:
                srows.append(r)
                if validate and base + tops[r] >= ns:
                    raise WireFormatError(f"string index {base + tops[r]} out of range "
                                          f"(table has {ns} entries)")
                continue
            f, dt = _NUM_DTYPES[i]
            if validate:
                lo, hi = _NUM_RANGE[i]
                if base < lo or base + tops[r] > hi:
                    raise WireFormatError(f"column {f}: values {base}..{base + tops[r]} out "
                                          f"of range for {dt}")
            # base + (value - base) in the unsigned type of the column's size: exact
            work = _UNSIGNED[dt.itemsize]
            if base:
                numeric[f] = np.add(m[r], work.type(base % (1 << (8 * dt.itemsize))),
                                    dtype=work).view(dt)
            else:
                numeric[f] = m[r].astype(dt)
        if srows:
            r0 = srows[0]                   # string rows follow the numeric rows
            strcols[[present[c][0] for c in group[r0:]]] = m[r0:]
            for c in group[r0:]:
                if bases[c]:
                    strcols[present[c][0]] += np.uint32(bases[c])
    for i, (f, dt) in enumerate(_NUM_DTYPES):  # absent numeric columns
        if f not in numeric:
            numeric[f] = np.full(n, _NUM_DEFAULT[i], dtype=dt)
    numeric = {f: numeric[f] for f, _ in _NUM_DTYPES}     # wire order, as v1
    off = _pad8(off)

    lens = np.frombuffer(mv, dtype=_UNSIGNED[lw], count=ns, offset=off)
    off += _pad8(ns * lw)
    offsets = np.zeros(ns + 1, dtype="<u8")
    np.cumsum(lens, dtype=np.uint64, out=offsets[1:])
    if int(offsets[-1]) != blob_len:
        raise WireFormatError(f"string lengths sum to {int(offsets[-1])}, header blob_len "
                              f"is {blob_len}")
    offsets = offsets.astype("<u4")
    blob = mv[off:off + blob_len]
    if validate:
        if lens[0] != 0:
            raise WireFormatError("string table entry 0 must be the empty string")
        if str_hash[0] != 0:
            raise WireFormatError("string table entry 0 must hash to 0")
    # read-only like v1's views of the message: the same numba array types (no second
    # specialization of every kernel) and the same "a decoded batch is immutable" contract
    for arr in (*numeric.values(), strcols, offsets):
        arr.flags.writeable = False
    return EventBatch(n, numeric, strcols, str_hash, offsets, blob, kind, partition)


def decode_strings_checked(batch: EventBatch) -> list[str]:
    """Decode the string table, turning bad UTF-8 into a WireFormatError."""
    try:
        return batch.strings()
    except UnicodeDecodeError as e:
        raise WireFormatError(f"string table is not valid UTF-8: {e}") from e
