"""Offline mode on the same code: ``itdr scan`` and ``itdr eval``.

The files go through exactly the streaming path minus Kafka: records -> normalization ->
partition-aware wire batches (``collectors.batcher``) -> ``wire.encode``/``decode`` -> one
detection engine per (key kind, partition) -> alerts. Partition count defaults to
``topics.partitions`` so that alerts are identical to the streaming pipeline's.
"""

from __future__ import annotations

import csv
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterable

import orjson

from collectors.batcher import Batcher
from collectors.files import iter_paths
from collectors.normalize import Normalizer
from detectors.engine import EnginePair
from stream import wire
from stream.alert import SEVERITY_ORDER, Alert
from stream.errors import ITDRError, NormalizationError
from stream.settings import DEFAULT_BATCH_EVENTS, DetectionSettings

log = logging.getLogger(__name__)


class OfflinePipeline:
    """Runs the detection engines over normalized events without Kafka."""

    def __init__(self, detection: DetectionSettings | None = None, partitions: int = 4,
                 batch_events: int = DEFAULT_BATCH_EVENTS):
        self.detection = detection or DetectionSettings()
        self.partitions = partitions
        self.batcher = Batcher(partitions, batch_events)
        self.engines: dict[int, EnginePair] = {}
        self.alerts: dict[str, Alert] = {}
        self.updates = 0
        self.events = 0

    def _engine(self, partition: int) -> EnginePair:
        e = self.engines.get(partition)
        if e is None:
            e = self.engines[partition] = EnginePair(self.detection, partition)
        return e

    def _consume(self, msgs) -> None:
        for m in msgs:
            batch = wire.decode(m.value)
            for a in self._engine(m.partition).for_kind(batch.key_kind).process(batch):
                self.updates += 1
                cur = self.alerts.get(a.id)
                if cur is None or a.version >= cur.version:
                    self.alerts[a.id] = a

    def feed(self, events: Iterable[dict]) -> None:
        for ev in events:
            self.events += 1
            out = self.batcher.add(ev, self.events)
            if out:
                self._consume(out)

    def finish(self) -> list[Alert]:
        self._consume(self.batcher.flush())
        return sorted(self.alerts.values(), key=lambda a: (a.first_seen_ms, a.detector, a.id))


def scan_records(items, detection: DetectionSettings, partitions: int,
                 stats: Counter | None = None) -> list[Alert]:
    stats = stats if stats is not None else Counter()
    norm = Normalizer()
    pipe = OfflinePipeline(detection, partitions)

    def events():
        for rec, err, origin in items:
            if err is not None:
                stats["parse_errors"] += 1
                log.info("skipping bad record %s: %s", origin, err)
                continue
            stats["records"] += 1
            try:
                ev = norm.normalize(rec)
            except NormalizationError as e:
                stats["normalize_errors"] += 1
                log.info("cannot normalize %s: %s", origin, e)
                continue
            if ev is None:
                stats["unknown"] += 1
                continue
            stats["events"] += 1
            yield ev

    # Recorded files are not always in time order (EVTX chunks, merged forwarders): sort by
    # event time (stable) like a collector reading one DC's log in record order would see.
    evs = sorted(events(), key=lambda e: (e["time_ms"], e.get("record_id", 0)))
    pipe.feed(evs)
    return pipe.finish()


def _settings(args):
    from .cli import settings_from_args

    return settings_from_args(args)


def format_alert(a: Alert) -> str:
    sev = a.severity.upper()
    return (f"[{sev:<6}] {a.detector:<24} {a.entity:<28} x{a.evidence.count:<5} "
            f"{a.first_seen} .. {a.last_seen}\n          {a.description}")


def cmd_scan(args) -> int:
    s = _settings(args)
    parts = args.partitions or s.topics.partitions
    stats: Counter = Counter()
    t0 = time.perf_counter()
    alerts = scan_records(iter_paths(args.paths), s.detection, parts, stats)
    dt = time.perf_counter() - t0
    if args.json:
        for a in alerts:
            sys.stdout.write(a.to_json().decode() + "\n")
    else:
        for a in sorted(alerts, key=lambda a: (-SEVERITY_ORDER[a.severity], a.first_seen_ms)):
            print(format_alert(a))
        by = Counter(a.detector for a in alerts)
        print(f"\n{len(alerts)} alert(s) from {stats['events']} identity events "
              f"({stats['records']} records, {stats['unknown']} not consumed, "
              f"{stats['parse_errors']} unparseable) in {dt:.2f}s")
        for d, c in by.most_common():
            print(f"  {d:<28} {c}")
    return 0


def cmd_eval(args) -> int:
    s = _settings(args)
    labels = Path(args.labels)
    if not labels.exists():
        raise ITDRError(f"labels file {labels} not found", location="LABELS",
                        fix="pass the path of a CSV with columns file,expected_any_of")
    base = labels.parent
    rows = list(csv.DictReader(labels.open(encoding="utf-8")))
    files = []
    hits = 0
    for row in rows:
        path = base / row["file"]
        expected = [x for x in row["expected_any_of"].split("|") if x]
        try:
            alerts = scan_records(iter_paths([str(path)]), s.detection, s.topics.partitions)
            detected = sorted({a.detector for a in alerts})
            err = None
        except ITDRError as e:
            detected, err = [], str(e)
        hit = bool(set(expected) & set(detected))
        hits += hit
        entry = {"file": row["file"], "expected": expected, "detected": detected, "hit": hit}
        if err:
            entry["error"] = err
        files.append(entry)
    recall = hits / len(rows) if rows else 0.0
    if args.json:
        sys.stdout.write(orjson.dumps({"recall": round(recall, 4), "hits": hits,
                                       "total": len(rows), "files": files}).decode() + "\n")
    else:
        for f in files:
            mark = "HIT " if f["hit"] else "MISS"
            print(f"{mark} {f['file']}\n     expected {'|'.join(f['expected'])}; detected "
                  f"{', '.join(f['detected']) or '-'}")
        print(f"\nrecall {recall:.3f} ({hits}/{len(rows)})")
    return 0
