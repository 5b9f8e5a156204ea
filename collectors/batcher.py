"""Partition-aware micro-batching of normalized events into wire batches.

Each normalized event (dict of :data:`stream.schema.ALL_FIELDS`) goes to:

* the by-account topic, partition ``key_hash(account_key) % P``;
* the by-source topic, partition ``key_hash(source_key) % P`` (collector-side dual keying:
  source-keyed detectors -- spray, enumeration, recon, coercion, remote execution -- need all
  events of one source host/IP on one partition, and doing it here avoids a stream-side
  repartition hop). Only events that carry a source (IP or host) or whose event id is consumed
  by a source-keyed detector are dual-written (see :data:`SOURCE_EVENT_IDS`).

A batch holds events of ONE partition only (so per-identity ordering and co-partitioning
hold); it is emitted when it reaches ``max_events`` or when :meth:`Batcher.flush` is called
(the caller's linger timer). The Kafka message key is the partition number as text (all
events inside share the partition; the explicit partition is what matters).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from typing import Iterable, Iterator

import numpy as np

from stream import wire
from stream.settings import DEFAULT_BATCH_EVENTS
from stream.schema import (KEY_ACCOUNT, KEY_SOURCE, NUMERIC_DEFAULTS, NUMERIC_FIELDS,
                           STRING_FIELDS, EventBatch, account_key_string, key_hash,
                           source_key_string)

from . import native

_HASHES: dict[str, int] = {}


def cached_key_hash(s: str) -> int:
    """key_hash with a bounded process-wide cache (accounts, hosts, IPs repeat a lot)."""
    h = _HASHES.get(s)
    if h is None:
        if len(_HASHES) > 1_000_000:
            _HASHES.clear()
        h = _HASHES[s] = key_hash(s)
    return h


_NUM = [(f, np.dtype(dt), NUMERIC_DEFAULTS.get(f, 0)) for f, dt in NUMERIC_FIELDS.items()]

# the native column build's layout: numeric columns first, then the string columns
_FIELDMAP = {f: j for j, f in enumerate([f for f, _, _ in _NUM] + list(STRING_FIELDS))}
_LAYOUT = (_FIELDMAP, tuple(d for _, _, d in _NUM),
           tuple(int(np.iinfo(dt).min) for _, dt, _ in _NUM),
           tuple(int(np.iinfo(dt).max) for _, dt, _ in _NUM),
           tuple(dt.itemsize for _, dt, _ in _NUM), len(STRING_FIELDS))
_NATIVE_BUILD = native.ext.build_columns if native.AVAILABLE else None
_NATIVE_BATCHER = native.ext.NativeBatcher if native.AVAILABLE else None


def _native_columns(n: int, cols: tuple) -> dict[str, np.ndarray]:
    return {f: np.frombuffer(b, dtype=dt, count=n) for (f, dt, _), b in zip(_NUM, cols)}


class BatchBuilder:
    """Column-at-a-time builder (same :class:`EventBatch` as ``stream.schema.BatchBuilder``,
    built faster: events are kept as dicts and each column is built in one pass at the end;
    all-empty string columns cost one ``any()``; string hashes are cached across batches)."""

    __slots__ = ("key_kind", "partition", "events")

    def __init__(self, key_kind: int = KEY_ACCOUNT, partition: int = -1, capacity: int = 4096):
        self.key_kind = key_kind
        self.partition = partition
        self.events: list[dict] = []

    def __len__(self) -> int:
        return len(self.events)

    def add(self, ev: dict) -> None:
        self.events.append(ev)

    def build(self) -> EventBatch:
        """The batch: columns built in C when the extension is there (same batch; ``None``
        from it -- a value the normalizer does not produce -- means the Python build)."""
        if _NATIVE_BUILD is not None and self.events:
            r = _NATIVE_BUILD(self.events, _LAYOUT)
            if r[0] != "events":
                return self._native_batch(len(self.events), r)
        return self.build_python()

    def build_python(self) -> EventBatch:
        """Column-at-a-time build in Python (the specification of the native build)."""
        evs = self.events
        n = len(evs)
        present = set().union(*evs) if evs else set()     # fields some event carries
        numeric = {}
        for f, dt, d in _NUM:
            if f not in present:                           # all None -> default
                numeric[f] = np.zeros(n, dtype=dt) if d == 0 else np.full(n, d, dtype=dt)
                continue
            vals = list(map(_get, evs, repeat(f)))
            if None in vals:
                vals = [d if v is None else v for v in vals]
            numeric[f] = np.array(vals, dtype=dt)
        intern: dict[str, int] = {"": 0}
        strcols = np.zeros((len(STRING_FIELDS), n), dtype="<u4")
        ig = intern.get
        for j, f in enumerate(STRING_FIELDS):
            if f not in present:
                continue
            vals = list(map(_get, evs, repeat(f)))
            new = [v for v in dict.fromkeys(vals) if v and v not in intern]
            if new:
                # first-occurrence order, as a per-value setdefault would give
                intern.update(zip(new, range(len(intern), len(intern) + len(new))))
            elif len(intern) == 1:
                continue                                   # all empty
            strcols[j] = list(map(ig, vals, repeat(0)))
        return self._batch(n, numeric, strcols, list(intern))

    def _native_batch(self, n: int, r: tuple) -> EventBatch:
        cols, strc, table = r
        strcols = np.frombuffer(strc, dtype="<u4").reshape(len(STRING_FIELDS), n)
        return self._batch(n, _native_columns(n, cols), strcols, table)

    def _batch(self, n: int, numeric: dict, strcols: np.ndarray, table: list) -> EventBatch:
        enc = [x.encode("utf-8", "surrogatepass") for x in table]
        offsets = np.zeros(len(enc) + 1, dtype="<u4")
        offsets[1:] = np.cumsum([len(b) for b in enc])
        str_hash = np.array([cached_key_hash(x) for x in table], dtype="<u8")
        b = EventBatch(n, numeric, strcols, str_hash, offsets, b"".join(enc), self.key_kind,
                       self.partition)
        b._strings = table
        return b

    def build_reference(self) -> EventBatch:
        """Field-by-field build (reference for :meth:`build`)."""
        evs = self.events
        n = len(evs)
        numeric = {}
        for f, dt, d in _NUM:
            vals = [e.get(f) for e in evs]
            if d == 0:
                if not any(vals):
                    numeric[f] = np.zeros(n, dtype=dt)
                    continue
                vals = [0 if v is None else v for v in vals]
            else:
                vals = [d if v is None else v for v in vals]
            numeric[f] = np.array(vals, dtype=dt)
        intern: dict[str, int] = {"": 0}
        strcols = np.zeros((len(STRING_FIELDS), n), dtype="<u4")
        sd = intern.setdefault
        for j, f in enumerate(STRING_FIELDS):
            vals = [e.get(f) for e in evs]
            if not any(vals):
                continue
            strcols[j] = [sd(v, len(intern)) if v else 0 for v in vals]
        table = list(intern)
        enc = [x.encode("utf-8", "surrogatepass") for x in table]
        offsets = np.zeros(len(enc) + 1, dtype="<u4")
        offsets[1:] = np.cumsum([len(b) for b in enc])
        str_hash = np.array([cached_key_hash(x) for x in table], dtype="<u8")
        b = EventBatch(n, numeric, strcols, str_hash, offsets, b"".join(enc), self.key_kind,
                       self.partition)
        b._strings = table
        return b


_get = dict.get

# Event ids consumed by source-keyed detectors (detections.md "Key = source").
SOURCE_EVENT_IDS = frozenset({4768, 4771, 4776, 4625, 4624, 4648, 4661, 4662, 4798, 4799,
                              5140, 5145, 4697, 4698, 7045, 4742, 5805, 5827, 5828, 5829,
                              4769, 1644})


@dataclass(frozen=True)
class WireMessage:
    topic_kind: int      # KEY_ACCOUNT or KEY_SOURCE
    partition: int
    key: bytes
    value: bytes
    n_events: int
    last_seq: int        # caller-supplied sequence number of the last event in the batch


class Batcher:
    """Accumulates events per (kind, partition) and yields encoded wire batches.

    With the C extension (``native`` None or True) the routing and the column building run in
    :class:`collectors._native.NativeBatcher`: the same batches, in the same order, byte for
    byte (tests/collectors/test_native.py); ``native=False`` runs the Python path below, its
    specification."""

    def __init__(self, partitions: int, max_events: int = DEFAULT_BATCH_EVENTS,
                 dual_key: bool = True, native: bool | None = None):
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        if native and not _NATIVE_BATCHER:
            raise ValueError("native=True but collectors._native is not built")
        self.partitions = partitions
        self.dual_key = dual_key
        self._nb = _NATIVE_BATCHER(partitions, max_events, dual_key, SOURCE_EVENT_IDS,
                                   key_hash, _LAYOUT) \
            if _NATIVE_BATCHER and native is not False else None
        if self._nb is not None and wire.VERSION == 2:
            self._nb.wire = 1           # batches come out as wire v2 bytes, encoded in C
        self._max_events = max_events
        self._builders: dict[tuple[int, int], BatchBuilder] = {}
        self._last_seq: dict[tuple[int, int], int] = {}
        self._hcache: dict[str, int] = {}
        self._pending = 0
        if self._nb is not None:
            self.add = self._add_native         # type: ignore[method-assign]
            self.flush = self._flush_native     # type: ignore[method-assign]

    @property
    def native(self):
        """The :class:`collectors._native.NativeBatcher` doing the work, or None."""
        return self._nb

    @property
    def max_events(self) -> int:
        return self._nb.max_events if self._nb is not None else self._max_events

    @max_events.setter
    def max_events(self, v: int) -> None:
        self._max_events = v
        if self._nb is not None:
            self._nb.max_events = v

    @property
    def pending(self) -> int:
        """Events added and not emitted yet."""
        return self._nb.pending if self._nb is not None else self._pending

    def _add_native(self, ev: dict, seq: int = 0) -> list[WireMessage]:
        r = self._nb.add(ev, seq)
        return [] if r is None else [self.message(*x) for x in r]

    def _flush_native(self) -> list[WireMessage]:
        return [self.message(*x) for x in self._nb.flush()]

    @staticmethod
    def message(kind: int, p: int, last_seq: int, n: int, payload) -> WireMessage:
        """The wire message of a batch the native batcher emitted: its wire bytes, or its
        columns (a string only the Python encoder takes), or its events (a value only the
        Python build takes)."""
        if payload.__class__ is bytes:
            return WireMessage(kind, p, str(p).encode(), payload, n, last_seq)
        b = BatchBuilder(kind, p)
        if payload[0] == "events":          # a value only the Python build takes (or rejects)
            b.events = payload[1]
            batch = b.build_python()
        else:
            batch = b._native_batch(n, payload)
        return WireMessage(kind, p, str(p).encode(), wire.encode(batch), n, last_seq)

    def _part(self, s: str) -> int:
        h = self._hcache.get(s)
        if h is None:
            h = key_hash(s)
            if len(self._hcache) > 500_000:
                self._hcache.clear()
            self._hcache[s] = h
        return h % self.partitions

    def add(self, ev: dict, seq: int = 0) -> list[WireMessage]:
        """Add one normalized event; returns batches that became full."""
        out: list[WireMessage] = []
        g = ev.get
        p = self._part(account_key_string(g("account", ""), g("computer", "")))
        self._add(KEY_ACCOUNT, p, ev, seq, out)
        if self.dual_key and (g("src_ip") or g("src_host") or g("event_id") in SOURCE_EVENT_IDS):
            ps = self._part(source_key_string(g("src_ip", ""), g("src_host", ""),
                                              g("computer", "")))
            self._add(KEY_SOURCE, ps, ev, seq, out)
        return out

    def _add(self, kind: int, p: int, ev: dict, seq: int, out: list[WireMessage]) -> None:
        k = (kind, p)
        b = self._builders.get(k)
        if b is None:
            b = self._builders[k] = BatchBuilder(kind, p, self._max_events)
        b.add(ev)
        self._last_seq[k] = seq
        self._pending += 1
        if len(b) >= self._max_events:
            out.append(self._emit(k))

    def _emit(self, k: tuple[int, int]) -> WireMessage:
        b = self._builders.pop(k)
        batch = b.build_python()
        self._pending -= batch.n
        return WireMessage(k[0], k[1], str(k[1]).encode(), wire.encode(batch), batch.n,
                           self._last_seq.pop(k, 0))

    def flush(self) -> list[WireMessage]:
        """Emit every non-empty batch (linger expired / end of input)."""
        return [self._emit(k) for k in sorted(self._builders) if len(self._builders[k])]

    def extend(self, events: Iterable[dict]) -> Iterator[WireMessage]:
        for i, ev in enumerate(events):
            yield from self.add(ev, i)
        yield from self.flush()
