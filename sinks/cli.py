"""``itdr alerts tail`` (follow the alerts topic) and ``itdr alerts list`` (query the workspace).

Examples::

    itdr alerts tail --from-beginning --severity high
    itdr alerts tail --json --max 10 --timeout 30 | jq .
    itdr alerts list --since 24h --detector dcsync
    itdr alerts list --workspace postgresql://itdr@db/itdr --json
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

import orjson

from stream.alert import SEVERITY_ORDER, Alert
from stream.errors import ConfigError

__all__ = ["cmd_list", "cmd_tail", "format_line", "parse_since"]

log = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_COLORS = {"high": "\033[1;31m", "medium": "\033[33m", "low": "\033[36m",
           "informational": "\033[2m"}


def parse_since(text: str) -> float:
    """``30m``, ``1h``, ``7d``, ``90s``, ``2w`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(text).lower())
    if not m:
        raise ConfigError(f"cannot read the duration {text!r}", location="--since",
                          fix="write a number and a unit: 30m, 1h, 7d (s, m, h, d, w)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _short(s: str, n: int) -> str:
    return s if len(s) <= n else s[:n - 1] + "…"


def format_line(a: Alert | dict[str, Any], color: bool = False) -> str:
    """One readable line: time, severity, detector, entity, evidence count, description."""
    d = a.model_dump(mode="json") if isinstance(a, Alert) else a
    sev = d["severity"]
    tag = f"{sev.upper()[:4]:<4}"
    if color:
        tag = f"{_COLORS.get(sev, '')}{tag}\033[0m"
    count = d.get("evidence", {}).get("count", 0)
    desc = " ".join(str(d["description"]).split())
    return (f"{d['last_seen'][:19]}Z {tag} {d['detector']:<24} {_short(d['entity'], 32):<32} "
            f"x{count:<5} {desc}  [{d['id']} v{d['version']}]")


def _passes(a: Alert, detector: str | None, severity: str | None) -> bool:
    if detector and a.detector != detector:
        return False
    if severity and SEVERITY_ORDER[a.severity] < SEVERITY_ORDER[severity]:
        return False
    return True


def cmd_tail(args: Any, out: TextIO | None = None) -> int:
    """Follow the alerts topic. ``--severity`` is a minimum (``medium`` shows medium and high).
    Stops after ``--max`` alerts or ``--timeout`` idle seconds (0 = never); never commits."""
    from confluent_kafka import Consumer

    from stream.cli import settings_from_args

    out = out or sys.stdout
    settings = settings_from_args(args)
    topic = settings.topics.name("alerts")
    conf = settings.kafka.as_librdkafka()
    conf.update({"group.id": f"itdr-tail-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                 "auto.offset.reset": "earliest" if args.from_beginning else "latest",
                 "enable.partition.eof": False})
    consumer = Consumer(conf)
    consumer.subscribe([topic])
    color = (not args.json) and hasattr(out, "isatty") and out.isatty()
    shown = bad = 0
    last = time.monotonic()
    try:
        while True:
            msg = consumer.poll(0.2)
            now = time.monotonic()
            if msg is None:
                if args.timeout and now - last >= args.timeout:
                    break
                continue
            if msg.error():
                log.warning("consumer error: %s", msg.error())
                continue
            last = now
            try:
                a = Alert.from_json(msg.value())
            except Exception:
                bad += 1
                log.warning("skipping a record that is not an alert at %s/%d/%d", msg.topic(),
                            msg.partition(), msg.offset())
                continue
            if not _passes(a, args.detector, args.severity):
                continue
            out.write((msg.value().decode() if args.json else format_line(a, color)) + "\n")
            out.flush()
            shown += 1
            if args.max and shown >= args.max:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    if bad:
        print(f"({bad} records skipped: not valid alerts)", file=sys.stderr)
    return 0


def cmd_list(args: Any, out: TextIO | None = None) -> int:
    """Query the workspace store (latest version of each alert, newest first). ``--since``
    filters on the alert's last evidence time."""
    from stream.cli import settings_from_args

    from .settings import SinksSettings
    from .workspace import WorkspaceStore

    out = out or sys.stdout
    url = args.workspace
    if not url:
        url = SinksSettings.from_root(settings_from_args(args)).workspace.url
    since_ms = None
    if args.since:
        since_ms = int((time.time() - parse_since(args.since)) * 1000)
    store = WorkspaceStore(url)
    if store.dialect == "sqlite":
        path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
        if not Path(path).exists():
            raise ConfigError(f"workspace {path} does not exist", location="--workspace",
                              fix="run `itdr sink workspace` first, or pass --workspace with "
                              "the path/DSN the sink writes to (sinks.workspace.url)")
    try:
        store.migrate()
        rows = store.list_alerts(since_ms=since_ms, detector=args.detector,
                                 limit=getattr(args, "limit", None) or 10_000)
    finally:
        store.close()
    if args.json:
        for r in rows:
            out.write(orjson.dumps(r).decode() + "\n")
        return 0
    color = hasattr(out, "isatty") and out.isatty()
    for r in rows:
        out.write(format_line(r, color) + "\n")
    by_sev: dict[str, int] = {}
    for r in rows:
        by_sev[r["severity"]] = by_sev.get(r["severity"], 0) + 1
    summary = ", ".join(f"{by_sev[s]} {s}" for s in ("high", "medium", "low", "informational")
                        if s in by_sev)
    out.write(f"{len(rows)} alert(s)" + (f": {summary}" if summary else "") + "\n")
    return 0
