"""``itdr``: the OpenITDR command line.

All sub-commands are declared here (one place for the CLI reference); each is implemented in
its own package and imported lazily, so ``itdr collect`` never imports Faust or numba.
Handlers have the signature ``handler(args) -> int`` (exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import ITDRError

# command path -> "module:function"
HANDLERS = {
    "broker": "stream.cli:cmd_broker",
    "demo": "stream.demo:cmd_demo",
    "collect": "collectors.cli:cmd_collect",
    "gateway": "collectors.cli:cmd_gateway",
    "replay": "collectors.replay:cmd_replay",
    "worker": "stream.worker:cmd_worker",
    "scan": "stream.scan:cmd_scan",
    "eval": "stream.scan:cmd_eval",
    "detectors list": "detectors.cli:cmd_list",
    "detectors validate": "detectors.cli:cmd_validate",
    "sink": "sinks.runner:cmd_sink",
    "alerts tail": "sinks.cli:cmd_tail",
    "alerts list": "sinks.cli:cmd_list",
    "bench collect": "collectors.bench:cmd_bench_collect",
    "bench stream": "stream.bench:cmd_bench_stream",
    "bench state": "stream.bench:cmd_bench_state",
    "bench recovery": "stream.recovery:cmd_bench_recovery",
    "config schema": "stream.cli:cmd_config_schema",
    "config check": "stream.cli:cmd_config_check",
    "schema": "stream.cli:cmd_schema",
    "health": "stream.health:cmd_health",
}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="YAML configuration file "
                   "(default: $ITDR_CONFIG)")
    p.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers "
                   "(overrides kafka.bootstrap_servers)")
    p.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING, ERROR")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="itdr", description="OpenITDR: identity threat "
                                 "detection for Active Directory, streaming over Kafka.")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser("broker", help="run an embedded Kafka-protocol broker (noida-db)")
    _common(p)
    p.add_argument("--port", type=int, default=9092)
    p.add_argument("--data-dir", default=".itdr/broker")
    p.add_argument("--create-topics", action="store_true", help="create the product topics")

    p = sub.add_parser("demo", help="full pipeline on embedded defaults with injected attacks")
    _common(p)
    p.add_argument("--events", type=int, default=200_000, help="benign events to generate")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", action="store_true", help="print a final JSON summary line")
    p.add_argument("--workspace", default=".itdr/demo-workspace.db", help="SQLite workspace")
    p.add_argument("--keep-running", action="store_true", help="leave the pipeline running")

    p = sub.add_parser("collect", help="run the configured collector sources continuously")
    _common(p)
    p.add_argument("--sensor-id", help="sensor id (default: host name)")
    p.add_argument("paths", nargs="*", help="EVTX files/dirs/globs to follow (overrides config)")
    p.add_argument("--follow", action="store_true", help="keep reading growing logs")
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--spool-dir", default=None)

    p = sub.add_parser("gateway", help="forwarded-events listener (TCP + HTTP) for WEF, "
                       "Winlogbeat, NXLog")
    _common(p)
    p.add_argument("--host", default=None, help="bind address (default: collector.gateway.host, "
                   "127.0.0.1)")
    p.add_argument("--tcp-port", type=int, default=None, help="default 5514")
    p.add_argument("--http-port", type=int, default=None, help="default 5080")

    p = sub.add_parser("replay", help="replay recorded EVTX/JSONL into Kafka at a controlled rate")
    _common(p)
    p.add_argument("files", nargs="+")
    p.add_argument("--rate", type=float, default=0, help="events per second (0 = max)")
    p.add_argument("--speed", type=float, default=0, help="replay at X times recorded speed")
    p.add_argument("--loop", action="store_true")
    p.add_argument("--rebase-time", action="store_true", help="shift timestamps to now")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("health", help="sensor health monitor: heartbeats -> health alerts")
    _common(p)
    p.add_argument("--silent-after", type=float, default=300.0, help="seconds without a "
                   "heartbeat before health-sensor-silent")
    p.add_argument("--stall-after", type=float, default=300.0, help="seconds of reading "
                   "without deliveries before health-events-not-analysed")
    p.add_argument("--audit-window", type=float, default=86400.0, help="seconds a DC sensor "
                   "reads before missing event ids raise health-audit-policy-gap")
    p.add_argument("--check-interval", type=float, default=30.0)
    p.add_argument("--once", action="store_true", help="read available heartbeats, check once")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("worker", help="run a Faust stream worker")
    _common(p)
    p.add_argument("--web-port", type=int, default=None)
    p.add_argument("--app-id", default=None)

    p = sub.add_parser("scan", help="offline: run the detectors over files (no Kafka)")
    _common(p)
    p.add_argument("paths", nargs="+", help="EVTX / JSON-lines files (plain, .gz, .zip)")
    p.add_argument("--json", action="store_true", help="JSON lines output")
    p.add_argument("--sensitivity", choices=["high", "medium", "low"])
    p.add_argument("--partitions", type=int, default=None,
                   help="partition count to emulate (default: topics.partitions)")

    p = sub.add_parser("eval", help="offline: recall on a labels CSV")
    _common(p)
    p.add_argument("labels")
    p.add_argument("--json", action="store_true")
    p.add_argument("--sensitivity", choices=["high", "medium", "low"])

    p = sub.add_parser("detectors", help="the detector catalogue")
    dsub = p.add_subparsers(dest="sub", required=True)
    q = dsub.add_parser("list", help="list detectors")
    _common(q)
    q.add_argument("--json", action="store_true")
    q = dsub.add_parser("validate", help="check detector metadata and parameters")
    _common(q)

    p = sub.add_parser("sink", help="run one sink (own consumer group)")
    _common(p)
    p.add_argument("name", choices=["alerts-topic", "workspace", "sentinel", "syslog",
                                    "sentinel-events"])

    p = sub.add_parser("alerts", help="read alerts")
    asub = p.add_subparsers(dest="sub", required=True)
    q = asub.add_parser("tail", help="follow the alerts topic")
    _common(q)
    q.add_argument("--detector")
    q.add_argument("--severity", choices=["informational", "low", "medium", "high"])
    q.add_argument("--json", action="store_true")
    q.add_argument("--from-beginning", action="store_true")
    q.add_argument("--max", type=int, default=0, help="stop after N alerts (0 = never)")
    q.add_argument("--timeout", type=float, default=0, help="stop after S idle seconds")
    q = asub.add_parser("list", help="query the workspace store")
    _common(q)
    q.add_argument("--since", default=None, help="e.g. 1h, 30m, 7d")
    q.add_argument("--detector")
    q.add_argument("--json", action="store_true")
    q.add_argument("--workspace", default=None, help="SQLite path or postgresql:// DSN")

    p = sub.add_parser("bench", help="benchmarks (print figures and the ceiling)")
    bsub = p.add_subparsers(dest="sub", required=True)
    q = bsub.add_parser("collect", help="EVTX -> normalized -> Kafka events/s vs evtx ceiling")
    _common(q)
    q.add_argument("--json", action="store_true")
    q.add_argument("--events", type=int, default=300_000)
    q.add_argument("files", nargs="*")
    q = bsub.add_parser("stream", help="worker events/s with all detectors vs consume ceiling")
    _common(q)
    q.add_argument("--events", type=int, default=2_000_000)
    q.add_argument("--json", action="store_true")
    q = bsub.add_parser("state", help="bytes per identity and RSS")
    _common(q)
    q.add_argument("--identities", type=int, default=1_000_000)
    q.add_argument("--json", action="store_true")
    q = bsub.add_parser("recovery", help="kill workers/sinks mid-stream; compare alert sets")
    _common(q)
    q.add_argument("--json", action="store_true")
    q.add_argument("--kills", type=int, default=2)
    q.add_argument("--seed", type=int, default=11)

    p = sub.add_parser("config", help="configuration")
    csub = p.add_subparsers(dest="sub", required=True)
    q = csub.add_parser("schema", help="print the configuration JSON schema")
    _common(q)
    q = csub.add_parser("check", help="validate a configuration file")
    _common(q)

    p = sub.add_parser("schema", help="print the identity-event JSON schema")
    _common(p)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    key = args.cmd if not getattr(args, "sub", None) else f"{args.cmd} {args.sub}"
    target = HANDLERS.get(key) or HANDLERS.get(args.cmd)
    mod, fn = target.split(":")
    try:
        handler = getattr(importlib.import_module(mod), fn)
        rc = handler(args)
    except ITDRError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


def settings_from_args(args):
    """Settings from --config / environment, with --bootstrap applied."""
    from .settings import load_settings

    over = {}
    if getattr(args, "bootstrap", None):
        over["kafka"] = {"bootstrap_servers": args.bootstrap}
    if getattr(args, "sensitivity", None):
        over.setdefault("detection", {})["sensitivity"] = args.sensitivity
    return load_settings(getattr(args, "config", None), **over)


def cmd_broker(args) -> int:
    import signal as _signal
    import time

    from .broker import EmbeddedBroker, ensure_topics

    b = EmbeddedBroker(port=args.port, data_dir=args.data_dir).start()
    print(f"bootstrap: {b.bootstrap}", flush=True)
    if args.create_topics:
        s = settings_from_args(args)
        ensure_topics(b.kafka_settings(), s.topics)
        print("topics created", flush=True)
    stop = []
    _signal.signal(_signal.SIGTERM, lambda *a: stop.append(1))
    try:
        while not stop and b.proc and b.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        b.stop()
    return 0


def cmd_config_schema(args) -> int:
    import orjson

    from .settings import Settings

    sys.stdout.write(orjson.dumps(Settings.model_json_schema(),
                                  option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def cmd_config_check(args) -> int:
    s = settings_from_args(args)
    # the component sections are validated by their own packages' models
    from collectors.settings import collector_settings
    from sinks.settings import SinksSettings

    collector_settings(s)
    SinksSettings.from_root(s)
    print(f"ok: configuration valid (kafka {s.kafka.bootstrap_servers}, sensitivity "
          f"{s.detection.sensitivity})")
    return 0


def cmd_schema(args) -> int:
    import orjson

    from .schema import export_json_schema

    sys.stdout.write(orjson.dumps(export_json_schema(), option=orjson.OPT_INDENT_2).decode()
                     + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
