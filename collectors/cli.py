"""``itdr collect`` and ``itdr gateway`` handlers (never import Faust or numba)."""

from __future__ import annotations

import logging
import signal
import sys
import threading

import orjson

from stream.cli import settings_from_args
from stream.errors import ConfigError

from .checkpoint import CheckpointStore
from .health import Heartbeat
from .settings import collector_settings, kafka_for
from .spool import Spool

log = logging.getLogger(__name__)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum, frame):
        stop.set()

    for s in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(s, handler)
        except ValueError:      # not the main thread
            pass
    return stop


def _start_metrics(cs) -> None:
    if cs.metrics_port:
        from stream.metrics import start_http_server

        start_http_server(cs.metrics_port, addr=cs.metrics_host)


def build_producer(settings, cs, client_suffix: str = "collector"):
    from .producer import BatchProducer

    spool = Spool(cs.spool_dir, cs.spool_max_bytes)
    store = CheckpointStore(cs.checkpoint_dir, cs.checkpoint_interval_s)
    prod = BatchProducer(kafka_for(settings, cs), settings.topics, spool,
                         on_commit=store.update, compression=cs.compression,
                         delivery_timeout_s=cs.delivery_timeout_s,
                         queue_max_kbytes=cs.queue_max_kbytes,
                         sensor_id=cs.resolved_sensor_id(), client_suffix=client_suffix)
    return prod, store


def check_partitions(prod, topics) -> None:
    for which in ("events", "events_by_source"):
        t = topics.name(which)
        n = prod.partitions_of(t)
        if n is None:
            log.warning("topic %s not visible (broker down or topic missing); producing with "
                        "topics.partitions=%d, batches spool until it is", t, topics.partitions)
        elif n != topics.partitions:
            raise ConfigError(f"topic {t} has {n} partitions, configuration says "
                              f"{topics.partitions}", location="topics.partitions",
                              fix="set topics.partitions to the topics' partition count")


def cmd_collect(args) -> int:
    from .evtx_source import FileSource
    from .pipeline import CollectorPipeline

    settings = settings_from_args(args)
    over = {"sensor_id": args.sensor_id, "checkpoint_dir": args.checkpoint_dir,
            "spool_dir": args.spool_dir}
    if args.paths:
        over["paths"] = list(args.paths)
        over["follow"] = bool(args.follow)
    elif args.follow:
        over["follow"] = True
    cs = collector_settings(settings, **over)
    if not cs.paths and not cs.live:
        raise ConfigError("no sources configured", location="collector.paths",
                          fix="pass EVTX paths (`itdr collect PATH --follow`) or set "
                          "collector.paths / collector.live in the configuration")
    _start_metrics(cs)
    prod, store = build_producer(settings, cs)
    check_partitions(prod, settings.topics)
    sources: list = []
    if cs.paths:
        sources.append(FileSource(cs.paths, store.positions, follow=cs.follow))
    if cs.live:
        from .wineventlog import WinEventLogSource

        sources.append(WinEventLogSource(cs.channels, store.positions))
    sid = cs.resolved_sensor_id()
    hb = Heartbeat(sid, "collect", list(cs.paths) + [f"channel:{c}" for c in cs.channels
                                                      if cs.live], cs.heartbeat_interval_s,
                   settings.topics.name("health"))
    pipe = CollectorPipeline(prod, settings.topics, sources=sources, checkpoints=store,
                             batch_events=cs.batch_events, linger_ms=cs.linger_ms,
                             dual_key=cs.dual_key, follow=cs.follow or cs.live,
                             poll_interval_s=cs.poll_interval_s, sensor_id=sid,
                             on_tick=hb.tick)
    stop = _stop_on_signals()
    print(f"collecting as sensor {sid} -> {settings.kafka.bootstrap_servers if cs.kafka is None else cs.kafka.bootstrap_servers}",
          file=sys.stderr, flush=True)
    report = pipe.run(stop, flush_timeout=cs.delivery_timeout_s)
    sys.stderr.write(orjson.dumps(report).decode() + "\n")
    return 0 if report.get("flushed") else 1


def cmd_gateway(args) -> int:
    from .gateway import run_gateway

    settings = settings_from_args(args)
    over = {}
    gw = dict((settings.collector or {}).get("gateway") or {})
    for k in ("host", "tcp_port", "http_port"):
        v = getattr(args, k, None)
        if v is not None:
            gw[k] = v
    over["gateway"] = gw
    cs = collector_settings(settings, **over)
    _start_metrics(cs)
    return run_gateway(settings, cs)
