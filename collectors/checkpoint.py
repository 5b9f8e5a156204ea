"""Per-source checkpoints, written atomically.

One JSON file (``checkpoints.json`` in ``checkpoint_dir``) maps a source id (an EVTX file's
absolute path, ``channel:Security`` for a live channel, a text file's path) to its position:

* EVTX: ``{"record_id": <last delivered EventRecordID>, "first_record_id": <first record id of
  the file when it was read, to notice a cleared/replaced log>}``
* text files (JSON lines / XML lines): ``{"offset": <byte offset after the last delivered
  line>, "inode": ..., "done": true}`` (``done`` for compressed archives read to the end)
* live channels: ``{"record_id": ..., "bookmark": "<BookmarkList ...>"}``

A position is written only after the broker acknowledged every event up to it (the producer's
delivery callbacks advance it, see ``collectors/producer.py``). The file is replaced atomically:
write ``.tmp``, fsync, rename, fsync the directory -- a crash leaves the old or the new
checkpoint, never a torn one.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import orjson

log = logging.getLogger(__name__)

FILE = "checkpoints.json"


class CheckpointStore:
    def __init__(self, directory: str | os.PathLike, min_interval_s: float = 1.0):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / FILE
        self.min_interval_s = min_interval_s
        self.positions: dict[str, dict] = {}
        self._dirty = False
        self._last_write = 0.0
        self.writes = 0
        if self.path.exists():
            try:
                data = orjson.loads(self.path.read_bytes())
                if isinstance(data, dict):
                    self.positions = {str(k): dict(v) for k, v in data.get("sources", {}).items()}
            except (OSError, orjson.JSONDecodeError, TypeError, ValueError) as e:
                bad = self.path.with_suffix(f".corrupt.{int(time.time())}")
                log.error("checkpoint file %s unreadable (%s); kept as %s and starting from "
                          "the beginning (at-least-once: events may be re-sent)", self.path, e,
                          bad)
                os.replace(self.path, bad)

    def get(self, source: str) -> dict:
        return self.positions.get(source, {})

    def update(self, positions: dict[str, dict]) -> None:
        """Merge delivered positions (called from delivery confirmation)."""
        for k, v in positions.items():
            if self.positions.get(k) != v:
                self.positions[k] = v
                self._dirty = True

    def maybe_write(self, force: bool = False) -> bool:
        if not self._dirty:
            return False
        now = time.monotonic()
        if not force and now - self._last_write < self.min_interval_s:
            return False
        self.write()
        return True

    def write(self) -> None:
        data = orjson.dumps({"version": 1, "written_ms": int(time.time() * 1000),
                             "sources": self.positions}, option=orjson.OPT_INDENT_2)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        try:
            fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass
        self._dirty = False
        self._last_write = time.monotonic()
        self.writes += 1
