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
from typing import Iterable, Iterator

from stream import wire
from stream.schema import (KEY_ACCOUNT, KEY_SOURCE, BatchBuilder, account_key_string, key_hash,
                           source_key_string)

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
    """Accumulates events per (kind, partition) and yields encoded wire batches."""

    def __init__(self, partitions: int, max_events: int = 4096, dual_key: bool = True):
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.partitions = partitions
        self.max_events = max_events
        self.dual_key = dual_key
        self._builders: dict[tuple[int, int], BatchBuilder] = {}
        self._last_seq: dict[tuple[int, int], int] = {}
        self._hcache: dict[str, int] = {}
        self.pending = 0

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
            b = self._builders[k] = BatchBuilder(kind, p, self.max_events)
        b.add(ev)
        self._last_seq[k] = seq
        self.pending += 1
        if len(b) >= self.max_events:
            out.append(self._emit(k))

    def _emit(self, k: tuple[int, int]) -> WireMessage:
        b = self._builders.pop(k)
        batch = b.build()
        self.pending -= batch.n
        return WireMessage(k[0], k[1], str(k[1]).encode(), wire.encode(batch), batch.n,
                           self._last_seq.pop(k, 0))

    def flush(self) -> list[WireMessage]:
        """Emit every non-empty batch (linger expired / end of input)."""
        return [self._emit(k) for k in sorted(self._builders) if len(self._builders[k])]

    def extend(self, events: Iterable[dict]) -> Iterator[WireMessage]:
        for i, ev in enumerate(events):
            yield from self.add(ev, i)
        yield from self.flush()
