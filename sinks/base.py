"""Sink framework: records, batches, the BaseSink/BatchingSink pair and the delivery ledger.

The shape follows quix-streams (``sinks/base``): a sink receives records one by one
(:meth:`BatchingSink.add`) and writes them in batches (:meth:`BaseSink.write`) when the runner
decides to flush (count, bytes or age). The runner (``sinks/runner.py``) commits the consumer
offsets of a batch only after its flush succeeded, so delivery is at-least-once; the alert id
and version make every sink idempotent (upsert, or a local ledger of delivered pairs).

Failure handling, in the order the framework applies it:

* a record that cannot be decoded (not JSON, not a valid :class:`~stream.alert.Alert`) is
  rejected at :meth:`BatchingSink.add` time and dead-lettered: it never blocks the others;
* :class:`~stream.errors.PermanentSinkError` raised by ``write`` for a batch is bisected down to
  the offending record(s), which are dead-lettered with the reason; a sink can also reject one
  record itself with :meth:`SinkBatch.reject`;
* :class:`~stream.errors.SinkBackpressureError` (HTTP 429) propagates to the runner, which
  pauses consumption for ``retry_after`` seconds and flushes again;
* any other exception is transient: the runner pauses for a capped exponential backoff with
  jitter and flushes again (only still-pending records are re-sent).
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from stream import metrics
from stream.alert import Alert
from stream.errors import PermanentSinkError, SinkBackpressureError, SinkError

from .settings import BatchingSettings, RetrySettings

__all__ = ["BaseSink", "BatchingSink", "DeliveryLedger", "SinkBatch", "SinkItem",
           "SinkRetryLater", "backoff_delay", "decode_alert"]

log = logging.getLogger(__name__)

PENDING, DELIVERED, REJECTED = 0, 1, 2


class SinkRetryLater(SinkError):
    """Internal: a transient failure; the runner pauses consumption for ``retry_after``."""

    def __init__(self, message: str, retry_after: float, cause: BaseException | None = None):
        self.retry_after = retry_after
        self.cause = cause
        super().__init__(message)


@dataclass(slots=True, eq=False)
class SinkItem:
    """One consumed Kafka record and what the sink made of it."""

    value: bytes
    key: bytes | None = None
    topic: str = ""
    partition: int = 0
    offset: int = 0
    timestamp_ms: int = 0
    headers: list | None = None
    payload: Any = None                       # decoded form (Alert, dict, rows)
    dedup_key: tuple[str, int] | None = None  # (alert id, version) for idempotent sinks
    state: int = PENDING
    reason: str = ""
    error: str = ""

    @property
    def origin(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def size(self) -> int:
        return len(self.value or b"")


@dataclass(eq=False)
class SinkBatch:
    """The records buffered since the last checkpoint (all partitions of this consumer).

    ``write`` implementations work on :meth:`pending` and may mark progress themselves
    (:meth:`mark_delivered`, :meth:`reject`) before raising, so a retry re-sends only what the
    destination has not acknowledged yet."""

    items: list[SinkItem] = field(default_factory=list)
    started: float = 0.0
    nbytes: int = 0

    def __len__(self) -> int:
        return len(self.items)

    def append(self, item: SinkItem) -> None:
        if not self.items:
            self.started = time.monotonic()
        self.items.append(item)
        self.nbytes += item.size

    def pending(self) -> list[SinkItem]:
        return [i for i in self.items if i.state == PENDING]

    def rejected(self) -> list[SinkItem]:
        return [i for i in self.items if i.state == REJECTED]

    def delivered(self) -> list[SinkItem]:
        return [i for i in self.items if i.state == DELIVERED]

    def mark_delivered(self, items: Iterable[SinkItem]) -> None:
        for i in items:
            if i.state == PENDING:
                i.state = DELIVERED

    def reject(self, item: SinkItem, reason: str, error: str = "PermanentSinkError") -> None:
        """Reject one record for good: it goes to the dead-letter topic with ``reason``."""
        item.state = REJECTED
        item.reason = reason
        item.error = error

    def sub(self, items: list[SinkItem]) -> "SinkBatch":
        """A view over some items (shared state) -- used to bisect a rejected batch."""
        b = SinkBatch(started=self.started)
        b.items = list(items)
        b.nbytes = sum(i.size for i in items)
        return b

    def commit_offsets(self) -> dict[tuple[str, int], int]:
        """Next offset to commit per (topic, partition): last offset + 1."""
        out: dict[tuple[str, int], int] = {}
        for i in self.items:
            tp = (i.topic, i.partition)
            if i.offset + 1 > out.get(tp, -1):
                out[tp] = i.offset + 1
        return out


def backoff_delay(attempt: int, retry: RetrySettings, rng: random.Random | None = None) -> float:
    """Capped exponential backoff for ``attempt`` (1-based) with the configured jitter."""
    rng = rng or random
    base = min(retry.max_backoff_s, retry.initial_backoff_s * retry.multiplier ** (attempt - 1))
    if retry.jitter == "full":
        return rng.uniform(0.0, base)
    if retry.jitter == "equal":
        return base / 2 + rng.uniform(0.0, base / 2)
    return base


def decode_alert(item: SinkItem) -> Alert:
    """Decode an alert record or raise PermanentSinkError naming why (poison record)."""
    try:
        alert = Alert.from_json(item.value)
    except Exception as e:  # orjson.JSONDecodeError, pydantic.ValidationError, TypeError
        text = str(e).replace("\n", " ")
        raise PermanentSinkError(f"not a valid alert: {text[:400]}", location=item.origin,
                                 fix="the producer must write Alert.to_json() (stream/alert.py)"
                                 ) from None
    item.payload = alert
    item.dedup_key = (alert.id, alert.version)
    return alert


class DeliveryLedger:
    """Local record of the (alert id, version) pairs a sink has delivered (SQLite, WAL).

    Destinations without upsert (Sentinel, syslog, another topic) use it to drop re-sent
    alerts: a worker that re-produces after a crash, or this sink re-reading uncommitted
    offsets after a restart. Pairs are marked right after the destination acknowledged them,
    before offsets are committed; the only duplicate window left is a crash between the
    acknowledgement and this local write."""

    def __init__(self, path: str | Path, retention_days: float = 14.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.retention_s = retention_days * 86400
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS delivered (id TEXT NOT NULL, version "
                         "INTEGER NOT NULL, t REAL NOT NULL, PRIMARY KEY (id, version))")
        self._db.commit()
        self._lock = threading.Lock()
        self._cache: set[tuple[str, int]] = set()
        self.prune()

    def seen(self, key: tuple[str, int]) -> bool:
        if key in self._cache:
            return True
        with self._lock:
            row = self._db.execute("SELECT 1 FROM delivered WHERE id=? AND version=?",
                                   key).fetchone()
        if row:
            self._cache.add(key)
            return True
        return False

    def mark(self, keys: Iterable[tuple[str, int]]) -> None:
        keys = [k for k in keys if k not in self._cache]
        if not keys:
            return
        now = time.time()
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO delivered (id, version, t) "
                                 "VALUES (?, ?, ?)", [(k[0], k[1], now) for k in keys])
            self._db.commit()
        self._cache.update(keys)
        if len(self._cache) > 200_000:
            self._cache.clear()

    def prune(self) -> int:
        with self._lock:
            cur = self._db.execute("DELETE FROM delivered WHERE t < ?",
                                   (time.time() - self.retention_s,))
            self._db.commit()
        return cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


DeadLetterFn = Callable[[SinkItem], None]


class BaseSink(ABC):
    """A destination for records of one or more topics.

    Lifecycle, driven by :class:`sinks.runner.SinkRunner`:

    * :meth:`setup` once, before the first record (create clients, check the destination);
    * :meth:`write` at each checkpoint with the buffered batch; raise
      :class:`SinkBackpressureError` to be paused, :class:`PermanentSinkError` for records the
      destination rejected for good, anything else for a transient failure;
    * :meth:`close` once at shutdown.
    """

    #: Sink name: CLI name, metric label, consumer group ``itdr-sink-<name>``.
    name: str = "base"

    @property
    def component(self) -> str:
        return f"sink:{self.name}"

    def topics(self, settings: Any) -> list[str]:
        """Topics this sink consumes (default: the alerts topic)."""
        return [settings.topics.name("alerts")]

    def setup(self) -> None:
        """Create clients and validate the destination (called once, before consuming)."""

    def decode(self, item: SinkItem) -> None:
        """Decode ``item.value`` into ``item.payload`` (raise PermanentSinkError on poison)."""
        decode_alert(item)

    @abstractmethod
    def write(self, batch: SinkBatch) -> None:
        """Deliver ``batch.pending()``; called at checkpoint time."""

    def on_paused(self) -> None:
        """Called when the runner pauses consumption after a failed flush."""

    def close(self) -> None:
        """Release clients (called once at shutdown)."""


class BatchingSink(BaseSink):
    """A sink that buffers records and writes them in batches, with retry and dead-lettering.

    Subclasses implement :meth:`write` (and optionally :meth:`decode`, :meth:`setup`,
    :meth:`close`). The runner calls :meth:`add` per record, :meth:`should_flush` /
    :meth:`flush` at checkpoint time and commits the offsets :meth:`flush` returns."""

    def __init__(self, *, batching: BatchingSettings | None = None,
                 retry: RetrySettings | None = None, ledger: DeliveryLedger | None = None):
        self.batching = batching or BatchingSettings()
        self.retry = retry or RetrySettings()
        self.ledger = ledger
        self.batch = SinkBatch()
        self.dead_letter: DeadLetterFn | None = None   # set by the runner
        self.dead_letter_flush: Callable[[], None] | None = None
        self._attempts = 0
        self._batch_keys: set[tuple[str, int]] = set()
        self.skipped_duplicates = 0

    # -- records ------------------------------------------------------------------------------
    def add(self, item: SinkItem) -> None:
        """Buffer one record; poison records are rejected here (dead-lettered at flush)."""
        self.batch.append(item)
        try:
            self.decode(item)
        except PermanentSinkError as e:
            log.warning("%s: poison record at %s: %s", self.name, item.origin, e.message)
            self.batch.reject(item, e.message, type(e).__name__)
            return
        k = item.dedup_key
        if k is not None and (k in self._batch_keys or (self.ledger and self.ledger.seen(k))):
            item.state = DELIVERED          # already delivered: skip, but commit its offset
            item.reason = "duplicate"
            self.skipped_duplicates += 1
            return
        if k is not None:
            self._batch_keys.add(k)

    def should_flush(self) -> bool:
        b = self.batch
        if not b.items:
            return False
        return (len(b) >= self.batching.max_records or b.nbytes >= self.batching.max_bytes
                or time.monotonic() - b.started >= self.batching.max_wait_s)

    def flush_due_in(self) -> float:
        """Seconds until the time-based flush of the current batch (inf when empty)."""
        if not self.batch.items:
            return float("inf")
        return max(0.0, self.batching.max_wait_s - (time.monotonic() - self.batch.started))

    # -- checkpoint ---------------------------------------------------------------------------
    def flush(self) -> dict[tuple[str, int], int]:
        """Write the batch; return the offsets to commit (empty batch: ``{}``).

        Raises :class:`SinkBackpressureError` or :class:`SinkRetryLater`; the batch is kept
        and the runner calls ``flush`` again after the delay."""
        batch = self.batch
        if not batch.items:
            return {}
        pending = batch.pending()
        if pending:
            t0 = time.perf_counter()
            try:
                self._write_bisect(batch)
            except SinkBackpressureError as e:
                metrics.SINK_BACKPRESSURE.labels(self.name).inc()
                log.warning("%s: destination throttling, pausing %.1fs: %s", self.name,
                            e.retry_after, e.message)
                raise
            except Exception as e:
                self._attempts += 1
                metrics.SINK_RETRIED.labels(self.name).inc()
                still = batch.pending()
                if self.retry.max_attempts and self._attempts >= self.retry.max_attempts:
                    log.error("%s: giving up after %d attempts, dead-lettering %d records: %s",
                              self.name, self._attempts, len(still), e)
                    for i in still:
                        batch.reject(i, f"gave up after {self._attempts} attempts: {e}"[:900],
                                     type(e).__name__)
                else:
                    delay = backoff_delay(self._attempts, self.retry)
                    log.warning("%s: flush of %d records failed (attempt %d), retrying in "
                                "%.2fs: %s: %s", self.name, len(still), self._attempts, delay,
                                type(e).__name__, e)
                    raise SinkRetryLater(str(e), delay, e) from e
            metrics.SINK_LATENCY.labels(self.name).observe(time.perf_counter() - t0)
            metrics.SINK_BATCH_SIZE.labels(self.name).observe(len(pending))
        rejected = [i for i in batch.rejected() if i.reason != "dead-lettered"]
        delivered = [i for i in batch.delivered() if i.reason != "duplicate"]
        try:
            if rejected:
                if self.dead_letter is None:
                    raise SinkError("no dead-letter writer configured")
                for i in rejected:
                    self.dead_letter(i)
                if self.dead_letter_flush:
                    self.dead_letter_flush()  # the DLQ must hold them before the commit
            if self.ledger:
                self.ledger.mark(i.dedup_key for i in delivered if i.dedup_key)
        except Exception as e:
            self._attempts += 1
            delay = backoff_delay(self._attempts, self.retry)
            log.warning("%s: checkpoint failed (dead-letter topic or ledger), retrying in "
                        "%.2fs: %s", self.name, delay, e)
            raise SinkRetryLater(str(e), delay, e) from e
        self._attempts = 0
        for i in rejected:
            i.reason = "dead-lettered"
        if rejected:
            metrics.SINK_FAILED.labels(self.name).inc(len(rejected))
        metrics.SINK_SENT.labels(self.name).inc(len(delivered))
        offsets = batch.commit_offsets()
        log.info("%s: flushed records=%d delivered=%d dead_lettered=%d duplicates_skipped=%d",
                 self.name, len(batch), len(delivered), len(rejected),
                 sum(1 for i in batch.items if i.reason == "duplicate"))
        self.batch = SinkBatch()
        self._batch_keys.clear()
        return offsets

    def _write_bisect(self, batch: SinkBatch) -> None:
        try:
            self.write(batch)
        except PermanentSinkError as e:
            pending = batch.pending()
            if not pending:
                return
            if len(pending) == 1:
                batch.reject(pending[0], e.message, type(e).__name__)
                return
            log.info("%s: destination rejected a batch of %d (%s); bisecting", self.name,
                     len(pending), e.message)
            mid = len(pending) // 2
            self._write_bisect(batch.sub(pending[:mid]))
            self._write_bisect(batch.sub(pending[mid:]))
            return
        batch.mark_delivered(batch.pending())

    def discard(self, partitions: Iterable[tuple[str, int]]) -> int:
        """Drop buffered records of revoked partitions (their offsets were not committed, the
        new owner re-reads them)."""
        tps = set(partitions)
        keep = [i for i in self.batch.items if (i.topic, i.partition) not in tps]
        dropped = len(self.batch.items) - len(keep)
        if dropped:
            nb = self.batch.sub(keep)
            self.batch = nb
            self._batch_keys = {i.dedup_key for i in keep if i.dedup_key}
        return dropped
