"""Bounded, crash-safe disk spool for Kafka messages the broker could not take.

When the broker is unreachable (delivery failures, local queue full, timeouts) the producer
writes each message -- a wire batch, a dead-letter record -- to the spool directory, one file
per message, named by a monotonically increasing sequence number so that draining is
oldest-first, in the order the messages were spooled. Every entry records its destination
topic, partition, key and headers, so a batch drained after a restart goes to exactly the
topic/partition it was built for.

Durability: each entry is written to a temporary file, fsynced, renamed into place and the
directory fsynced; a crash leaves either the whole entry or nothing. Entries are checksummed
(CRC-32); an entry that fails its check on load is moved to ``corrupt/`` and counted, never
silently skipped.

The spool is bounded by ``max_bytes``: :meth:`Spool.append` returns ``False`` when the entry
does not fit; the caller must then stop reading its sources (backpressure) and retry later --
nothing is dropped.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import orjson

from stream.metrics import COLLECTOR_SPOOL_BATCHES, COLLECTOR_SPOOL_BYTES

log = logging.getLogger(__name__)

MAGIC = b"ITSP"
VERSION = 1
_HDR = struct.Struct("<4sBxxxIII")  # magic, version, meta_len, value_len, crc32(meta+value)
SUFFIX = ".spool"


@dataclass
class SpoolEntry:
    seq: int
    topic: str
    partition: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    n_events: int
    size: int
    token: object = None      # in-process bookkeeping (checkpoint epoch); not persisted


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Spool:
    """A directory of spooled messages (oldest first)."""

    def __init__(self, directory: str | os.PathLike, max_bytes: int = 1 << 30, fsync: bool = True):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._sizes: dict[int, int] = {}
        self._tokens: dict[int, object] = {}
        self.bytes = 0
        self.corrupt = 0
        self.rejected_full = 0      # append() calls refused because the spool was full
        self.spooled_total = 0
        self.drained_total = 0
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        for p in self.dir.glob("*" + SUFFIX):
            try:
                seq = int(p.stem)
            except ValueError:
                continue
            sz = p.stat().st_size
            self._sizes[seq] = sz
            self.bytes += sz
        self._next = max(self._sizes, default=0) + 1
        self._gauge()

    # -- state -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._sizes)

    @property
    def empty(self) -> bool:
        return not self._sizes

    def has_room(self, nbytes: int) -> bool:
        return self.bytes + nbytes + _HDR.size + 256 <= self.max_bytes

    def _gauge(self) -> None:
        COLLECTOR_SPOOL_BYTES.set(self.bytes)
        COLLECTOR_SPOOL_BATCHES.set(len(self._sizes))

    # -- write -------------------------------------------------------------------------------
    def append(self, topic: str, partition: int, key: bytes | None, value: bytes,
               headers: list[tuple[str, bytes]] | None = None, n_events: int = 0,
               token: object = None) -> bool:
        """Durably add one message. Returns False (and writes nothing) when full."""
        meta = orjson.dumps({"topic": topic, "partition": partition,
                             "key": None if key is None else key.hex(),
                             "headers": [[k, (v or b"").hex()] for k, v in (headers or [])],
                             "n": n_events})
        crc = zlib.crc32(value, zlib.crc32(meta))
        size = _HDR.size + len(meta) + len(value)
        if self.bytes + size > self.max_bytes:
            self.rejected_full += 1
            return False
        seq = self._next
        self._next += 1
        final = self.dir / f"{seq:020d}{SUFFIX}"
        tmp = self.dir / f"{seq:020d}.tmp"
        with open(tmp, "wb") as f:
            f.write(_HDR.pack(MAGIC, VERSION, len(meta), len(value), crc))
            f.write(meta)
            f.write(value)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, final)
        if self.fsync:
            _fsync_dir(self.dir)
        self._sizes[seq] = size
        if token is not None:
            self._tokens[seq] = token
        self.bytes += size
        self.spooled_total += 1
        self._gauge()
        return True

    # -- read --------------------------------------------------------------------------------
    def _load(self, seq: int) -> SpoolEntry | None:
        p = self.dir / f"{seq:020d}{SUFFIX}"
        try:
            data = p.read_bytes()
            magic, ver, mlen, vlen, crc = _HDR.unpack_from(data, 0)
            if magic != MAGIC or ver != VERSION or len(data) != _HDR.size + mlen + vlen:
                raise ValueError("bad header or length")
            meta_b = data[_HDR.size:_HDR.size + mlen]
            value = data[_HDR.size + mlen:]
            if zlib.crc32(value, zlib.crc32(meta_b)) != crc:
                raise ValueError("checksum mismatch")
            meta = orjson.loads(meta_b)
        except (OSError, ValueError, struct.error, orjson.JSONDecodeError) as e:
            self.corrupt += 1
            log.error("spool entry %s is corrupt (%s); moved to %s/corrupt", p.name, e, self.dir)
            cdir = self.dir / "corrupt"
            cdir.mkdir(exist_ok=True)
            try:
                os.replace(p, cdir / p.name)
            except OSError:
                pass
            self._forget(seq)
            return None
        return SpoolEntry(seq, meta["topic"], int(meta["partition"]),
                          None if meta["key"] is None else bytes.fromhex(meta["key"]), value,
                          [(k, bytes.fromhex(v)) for k, v in meta["headers"]], int(meta["n"]),
                          self._sizes[seq], self._tokens.get(seq))

    def peek(self, n: int = 1, after: int = 0) -> list[SpoolEntry]:
        """Up to ``n`` oldest entries with sequence > ``after`` (not removed)."""
        out = []
        for seq in sorted(s for s in self._sizes if s > after):
            e = self._load(seq)
            if e is not None:
                out.append(e)
                if len(out) >= n:
                    break
        return out

    def remove(self, seq: int) -> None:
        """Delete an entry once the broker acknowledged it."""
        if seq not in self._sizes:
            return
        (self.dir / f"{seq:020d}{SUFFIX}").unlink(missing_ok=True)
        self._forget(seq)
        self.drained_total += 1

    def _forget(self, seq: int) -> None:
        sz = self._sizes.pop(seq, 0)
        self._tokens.pop(seq, None)
        self.bytes -= sz
        self._gauge()

    def oldest_seq(self) -> int | None:
        return min(self._sizes) if self._sizes else None

    def stats(self) -> dict:
        return {"spool_bytes": self.bytes, "spool_batches": len(self._sizes),
                "spool_rejected_full": self.rejected_full, "spool_corrupt": self.corrupt,
                "spooled_total": self.spooled_total, "drained_total": self.drained_total}
