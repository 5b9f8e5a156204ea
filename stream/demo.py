"""``itdr demo``: the whole pipeline on one machine, with a synthetic domain under attack.

1. starts an embedded Kafka-protocol broker (noida-db) and creates the topics;
2. starts the stream worker (``itdr worker``) and the workspace sink (``itdr sink
   workspace``, SQLite) as child processes with a generated configuration file;
3. generates the synthetic ``corp.local`` domain (:mod:`stream.generator`): days of benign
   traffic and a day with injected attacks, as raw Windows records, and sends them through
   the collector path (normalization -> partition-aware wire batches -> idempotent Kafka
   producer with explicit partitions);
4. waits until the worker has processed every batch (and flushed its alerts) and the sink has
   stored every alert;
5. reads the alerts back from the workspace, matches them with the ground truth and prints
   which attacks were caught (``--json``: one final JSON line).

Exit code 0 when the pipeline ran, whatever was detected (the numbers tell); 1 when the
pipeline failed (a child process died, nothing progressed). Children are stopped on exit and
on Ctrl-C / SIGTERM. See ``docs/demo.md``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import yaml

from .errors import ITDRError

log = logging.getLogger(__name__)

WORKER_GROUP = "itdr-demo-worker"
SINK_GROUP = "itdr-sink-workspace"
# no progress for this long while waiting = pipeline failure (a cold numba cache makes the
# worker compile for minutes on a busy 2-core machine before its first batch)
STALL_S = float(os.environ.get("ITDR_DEMO_STALL_S", "600"))


class PipelineError(ITDRError):
    """The demo pipeline failed (not: an attack was missed)."""


class Progress:
    """Plain-text progress on stderr: a redrawn line on a terminal, a line every 10 %
    otherwise (CI logs, pipes)."""

    def __init__(self, enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0
        self._step = -1
        self._open = False

    def update(self, label: str, done: int, total: int, extra: str = "",
               force: bool = False) -> None:
        if not self.enabled:
            return
        frac = min(1.0, done / total) if total else 1.0
        now = time.monotonic()
        if self.tty:
            if not force and now - self._last < 0.2:
                return
            self._last = now
            bar = "#" * int(frac * 30)
            self.stream.write(f"\r{label:<10} [{bar:<30}] {frac * 100:5.1f}% {done:>9,}/"
                              f"{total:,} {extra}\033[K")
            self._open = True
        else:
            step = int(frac * 10)
            if step == self._step and not force:
                return
            self._step = step
            self.stream.write(f"{label:<10} {frac * 100:5.1f}% {done:,}/{total:,} {extra}\n")
        self.stream.flush()

    def done(self, msg: str = "") -> None:
        if not self.enabled:
            return
        if self._open:
            self.stream.write("\n")
            self._open = False
        if msg:
            self.stream.write(msg + "\n")
        self.stream.flush()
        self._step = -1

    def say(self, msg: str) -> None:
        self.done()
        if self.enabled:
            self.stream.write(msg + "\n")
            self.stream.flush()


class Child:
    """A child process (worker / sink) with its log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 25) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def check(self) -> None:
        if not self.alive():
            raise PipelineError(f"the {self.name} exited with code {self.proc.returncode}:\n"
                                f"{self.tail()}", location=str(self.log_path))

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        self._log.close()


EXTRA_SINKS = ("sentinel", "syslog", "alerts-topic")


def _extra_sinks(args) -> dict[str, dict]:
    """Sink sections the user enabled in ``--config`` (Sentinel endpoint, syslog receiver,
    another Kafka cluster): the demo starts those sinks too."""
    path = getattr(args, "config", None)
    if not path:
        return {}
    from .settings import load_settings

    user = load_settings(path).sinks or {}
    out = {}
    for name in EXTRA_SINKS:
        sec = user.get(name.replace("-", "_")) or user.get(name)
        if isinstance(sec, dict) and sec.get("enabled"):
            out[name] = sec
    return out


def _wait_sink_group(settings, name: str, child, topic: str, parts: int, ahw: dict,
                     prog, timeout: float = 120.0) -> None:
    """Wait (bounded) until an extra sink's consumer group committed every alert."""
    from confluent_kafka import Consumer

    cons = Consumer({**settings.kafka.as_librdkafka(), "group.id": f"itdr-sink-{name}",
                     "enable.auto.commit": False})
    try:
        total = sum(ahw.values())
        deadline = time.monotonic() + timeout
        done = 0
        while time.monotonic() < deadline:
            child.check()
            com = _committed(cons, topic, parts)
            done = sum(min(com.get(p, 0), hi) for p, hi in ahw.items())
            if done >= total:
                prog.done(f"delivered  {total} alert version(s) through the {name} sink")
                return
            time.sleep(0.5)
        prog.say(f"warning: the {name} sink delivered {done}/{total} alert versions within "
                 f"{timeout:.0f}s (see its log)")
    finally:
        cons.close()


def _free_port() -> int:
    from .broker import free_port
    return free_port()


def demo_config(bootstrap: str, detection: dict, workspace: str, state_dir: str,
                web_port: int, partitions: int = 4) -> dict[str, Any]:
    return {
        "kafka": {"bootstrap_servers": bootstrap, "client_id": "itdr-demo"},
        "topics": {"prefix": "itdr.", "partitions": partitions},
        "detection": detection,
        "worker": {"app_id": WORKER_GROUP, "web_port": web_port, "state_dir": state_dir,
                   "snapshot_interval_s": 1.0},
        # the sinks' delivery ledgers live with this run's state: a ledger left by an earlier
        # demo (same deterministic alert ids) would make a sink skip every alert as delivered
        "sinks": {"workspace": {"url": workspace, "health": False},
                  "state_dir": os.path.join(state_dir, "sinks"),
                  "batching": {"max_records": 500, "max_wait_s": 0.5}},
    }


def _health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return orjson.loads(r.read())
    except Exception:  # noqa: BLE001 - not up yet / failing (503 carries a body too)
        return None


def _high_watermarks(consumer, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import TopicPartition

    out = {}
    for p in range(partitions):
        lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        out[p] = hi
    return out


def _committed(consumer, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import TopicPartition

    tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    return {tp.partition: max(tp.offset, 0) for tp in tps}


def cmd_demo(args) -> int:
    from .generator import DomainSimulator

    t_start = time.monotonic()
    prog = Progress(enabled=True)
    sim = DomainSimulator(seed=args.seed, events=args.events)
    workdir = Path(tempfile.mkdtemp(prefix="itdr-demo-"))
    children: list[Child] = []
    holder: dict[str, Any] = {}

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_signal)
    # also when started with SIGINT ignored (background job of a non-interactive shell)
    old_int = signal.signal(signal.SIGINT, on_signal)
    try:
        result = _run(args, sim, workdir, children, prog, t_start, holder)
        _report(args, sim, result, prog)
        holder["reported"] = True
        if args.keep_running:
            prog.say(f"pipeline left running: bootstrap {holder['broker'].bootstrap}, workspace "
                     f"{args.workspace}; Ctrl-C to stop")
            while all(c.alive() for c in children):
                time.sleep(1)
        return 0
    except KeyboardInterrupt:
        if holder.get("reported"):      # --keep-running: Ctrl-C is the way to stop
            prog.say("stopping the pipeline")
            return 0
        prog.say("interrupted; stopping the pipeline")
        return 130
    except (ITDRError, OSError) as e:
        prog.say(f"error: pipeline failed: {e}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
        for c in reversed(children):
            c.stop()
        if holder.get("broker") is not None:
            holder["broker"].stop()
        if os.environ.get("ITDR_DEMO_KEEP_LOGS"):
            prog.say(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(args, sim, workdir: Path, children: list[Child], prog: Progress, t_start: float,
         holder: dict) -> dict:
    from confluent_kafka import Consumer

    from collectors.batcher import Batcher
    from collectors.normalize import Normalizer
    from collectors.producer import BatchProducer
    from collectors.spool import Spool

    from .broker import EmbeddedBroker, ensure_topics
    from .errors import NormalizationError
    from .settings import load_settings

    stages: dict[str, float] = {}
    # 1. broker + topics
    t = time.monotonic()
    broker = EmbeddedBroker(data_dir=str(workdir / "broker"),
                            log_file=str(workdir / "broker.log"))
    holder["broker"] = broker
    try:
        broker.start()
    except ITDRError as e:
        raise PipelineError(str(e)) from e
    ws = Path(args.workspace)
    if "://" not in args.workspace:
        ws.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(ws) + suffix).unlink(missing_ok=True)
    web_port = _free_port()
    cfg = demo_config(broker.bootstrap, sim.demo_config(), args.workspace,
                      str(workdir / "state"), web_port)
    extra_sinks = _extra_sinks(args)
    for name, section in extra_sinks.items():
        cfg["sinks"][name.replace("-", "_")] = section
    cfg_path = workdir / "demo.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    settings = load_settings(str(cfg_path))
    ensure_topics(settings.kafka, settings.topics)
    stages["broker_s"] = round(time.monotonic() - t, 2)
    prog.say(f"broker     up at {broker.bootstrap} ({stages['broker_s']}s); domain corp.local: "
             f"{sim.n_users} users, {len(sim.workstations)} workstations, 3 DCs, "
             f"{sim.days} days, {len(sim.injected())} injected attacks")

    # 2. workspace sink now; the worker once the detector kernels are compiled. A child
    # process compiles every kernel on a small sample of the same domain through the offline
    # pipeline (the streaming code path), so the numba cache holds the signatures real
    # batches need; the worker then loads them instead of compiling inside its event loop.
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("ITDR_CONFIG", None)
    py = [sys.executable, "-m", "stream.cli"]
    sink = Child("workspace sink", py + ["sink", "workspace", "-c", str(cfg_path),
                                         "--log-level", "INFO"], workdir / "sink.log", env)
    children.append(sink)
    others = []
    for name in extra_sinks:       # pointed at Sentinel / syslog / another cluster by --config
        c = Child(f"{name} sink", py + ["sink", name, "-c", str(cfg_path), "--log-level",
                                        "INFO"], workdir / f"sink-{name}.log", env)
        children.append(c)
        others.append((name, c))
    holder["extra_sinks"] = others
    t_warm = time.monotonic()
    warm = Child("kernel warm-up", [sys.executable, "-c", "import sys; from stream.demo import "
                                    "prewarm; prewarm(sys.argv[1], int(sys.argv[2]))",
                                    str(cfg_path), str(args.seed)], workdir / "warmup.log", env)
    children.append(warm)
    worker: list[Child] = []

    def start_worker_when_warm() -> bool:
        if worker:
            return True
        if warm.alive():
            return False
        if warm.proc.returncode != 0:
            raise PipelineError(f"detector kernel warm-up failed:\n{warm.tail()}",
                                location=str(warm.log_path))
        stages["kernel_warmup_s"] = round(time.monotonic() - t_warm, 2)
        children.remove(warm)
        worker.append(Child("stream worker", py + ["worker", "-c", str(cfg_path),
                                                   "--log-level", "INFO"],
                            workdir / "worker.log", env))
        children.append(worker[0])
        return True

    # 3. generate -> normalize -> batch -> produce
    t = time.monotonic()
    topics = settings.topics
    parts = topics.partitions
    producer = BatchProducer(settings.kafka, topics, Spool(workdir / "spool", 1 << 30,
                                                           fsync=False),
                             client_suffix="demo")
    batcher = Batcher(parts)
    norm = Normalizer()
    expected = sim.events   # approximate: the generator aims at this many records
    n_rec = n_ev = n_err = 0
    for rec in sim.records():
        n_rec += 1
        try:
            ev = norm.normalize(rec)
        except NormalizationError as e:
            n_err += 1
            log.warning("record not normalized: %s", e)
            continue
        if ev is None:
            continue
        n_ev += 1
        for m in batcher.add(ev, n_ev):
            _send(producer, m)
        if n_rec % 2000 == 0:
            producer.service(0)
            prog.update("sending", n_rec, max(expected, n_rec))
            start_worker_when_warm()
            sink.check()
            if worker:
                worker[0].check()
    for m in batcher.flush():
        _send(producer, m)
    if not producer.flush(120):
        raise PipelineError("the broker did not acknowledge every batch within 120 s")
    stages["generate_send_s"] = round(time.monotonic() - t, 2)
    prog.update("sending", n_rec, n_rec, force=True)
    prog.done(f"sent       {n_rec:,} records -> {n_ev:,} identity events "
              f"({producer.delivered_batches} wire batches) in {stages['generate_send_s']}s")

    if not start_worker_when_warm():
        prog.say("warming    compiling the detector kernels (first run only; cached "
                 "afterwards)")
        while not start_worker_when_warm():
            sink.check()
            time.sleep(0.5)

    # 4. wait for the worker (processed + durable = every alert flushed), then the sink
    t = time.monotonic()
    cons = Consumer({**settings.kafka.as_librdkafka(), "group.id": SINK_GROUP,
                     "enable.auto.commit": False})
    try:
        hw = {"account": _high_watermarks(cons, topics.name("events"), parts),
              "source": _high_watermarks(cons, topics.name("events_by_source"), parts)}
        total = sum(sum(v.values()) for v in hw.values())
        last_done, last_change = -1, time.monotonic()
        while True:
            for c in children:
                c.check()
            h = _health(web_port)
            if h is None:               # not up yet, or busy: keep the last known state
                done = max(last_done, 0)
                durable_ok = False
            else:
                done = 0
                if h.get("status") == "failing":
                    raise PipelineError(f"the stream worker reports a failure: {h.get('error')}")
                offs = h.get("offsets", {})
                durable_ok = True
                for kind, marks in hw.items():
                    for p, hi in marks.items():
                        o = offs.get(f"{kind}/{p}", {})
                        done += min(hi, int(o.get("processed", -1)) + 1)
                        if int(o.get("durable", -1)) + 1 < hi:
                            durable_ok = False
            prog.update("detecting", done, total, "wire batches")
            if done >= total and durable_ok:
                break
            if done != last_done:
                last_done, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > STALL_S:
                raise PipelineError(f"the stream worker made no progress for {STALL_S:.0f} s "
                                    f"({done}/{total} batches); worker log:\n"
                                    f"{worker[0].tail()}")
            time.sleep(0.5)
        stages["detect_wait_s"] = round(time.monotonic() - t, 2)
        prog.done(f"detected   worker processed {total} wire batches "
                  f"(+{stages['detect_wait_s']}s after sending)")
        t = time.monotonic()
        alerts_topic = topics.name("alerts")
        ahw = _high_watermarks(cons, alerts_topic, parts)
        n_alert_msgs = sum(ahw.values())
        last_done, last_change = -1, time.monotonic()
        while True:
            sink.check()
            com = _committed(cons, alerts_topic, parts)
            done = sum(min(com.get(p, 0), hi) for p, hi in ahw.items())
            prog.update("storing", done, max(n_alert_msgs, 1), "alert versions")
            if done >= n_alert_msgs:
                break
            if done != last_done:
                last_done, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > STALL_S:
                raise PipelineError(f"the workspace sink made no progress for {STALL_S:.0f} s; "
                                    f"sink log:\n{sink.tail()}")
            time.sleep(0.3)
        stages["store_wait_s"] = round(time.monotonic() - t, 2)
        prog.done(f"stored     {n_alert_msgs} alert version(s) in {args.workspace}")
        for name, child in holder.get("extra_sinks", []):
            _wait_sink_group(settings, name, child, alerts_topic, parts, ahw, prog)
    finally:
        cons.close()

    from sinks.workspace import open_store

    store = open_store(args.workspace, migrate=False)
    try:
        alerts = store.list_alerts(limit=1_000_000)
    finally:
        store.close()
    return {"records": n_rec, "identity_events": n_ev,
            "normalize_errors": n_err, "alerts": alerts, "stages": stages,
            "elapsed_s": round(time.monotonic() - t_start, 2)}


def _send(producer, m) -> None:
    while True:
        try:
            producer.send_batch(m)
            return
        except BufferError:
            producer.service(0.1)


def _report(args, sim, result: dict, prog: Progress) -> dict:
    from .generator import match_alerts

    alerts = result["alerts"]
    gt = sim.injected()
    res = match_alerts(gt, alerts)
    by = Counter(a["detector"] for a in alerts)
    prog.done()
    out = sys.stdout
    w = max([len(r["entity"]) for r in res["attacks"]] + [6])
    out.write(f"\nInjected attacks ({len(gt)}), synthetic domain corp.local, seed {args.seed}:\n")
    out.write(f"  {'attack (detector)':<26} {'entity':<{w}} {'detected':<9} {'alert id':<21} "
              "severity\n")
    for r in res["attacks"]:
        out.write(f"  {r['detector']:<26} {r['entity']:<{w}} "
                  f"{'yes' if r['detected'] else 'NO':<9} {r['alert_id'] or '-':<21} "
                  f"{r['severity'] or '-'}\n")
    extra = res["corroborating"]
    if extra:
        out.write(f"\nOther alerts on the attack activity ({len(extra)}): same events, another "
                  "detector or entity of the same attack\n")
        for a in extra:
            out.write(f"  {a['detector']:<26} {a['entity']:<{w}} {a['id']:<21} "
                      f"{a['severity']}\n")
    fps = res["false_positives"]
    if fps:
        out.write(f"\nFalse positives ({len(fps)}): alerts on benign traffic\n")
        for a in fps:
            out.write(f"  {a['detector']:<26} {a['entity']:<{w}} {a['first_seen']} "
                      f"{a['description'][:160]}\n")
    detected = res["detected"]
    out.write(f"\n{detected}/{len(gt)} injected attacks detected, {len(fps)} false positive(s), "
              f"{len(alerts)} alert(s) from {result['identity_events']:,} identity events "
              f"({result['records']:,} Windows records) in {result['elapsed_s']}s.\n")
    if res["missed"]:
        out.write("Missed: " + ", ".join(f"{m['detector']} ({m['entity']})"
                                         for m in res["missed"]) + "\n")
    summary = {
        "events": result["records"],
        "identity_events": result["identity_events"],
        "injected_attacks": len(gt),
        "detected_attacks": detected,
        "false_positives": len(fps),
        "alerts": len(alerts),
        "alerts_by_detector": dict(sorted(by.items())),
        "missed": [{"detector": m["detector"], "entity": m["entity"], "time": m["time"]}
                   for m in res["missed"]],
        "corroborating_alerts": [{"id": a["id"], "detector": a["detector"],
                                  "entity": a["entity"]} for a in extra],
        "false_positive_alerts": [{"id": a["id"], "detector": a["detector"],
                                   "entity": a["entity"], "first_seen": a["first_seen"]}
                                  for a in fps],
        "attacks": [{"detector": r["detector"], "entity": r["entity"], "time": r["time"],
                     "detected": r["detected"], "alert_id": r["alert_id"],
                     "severity": r["severity"]} for r in res["attacks"]],
        "normalize_errors": result["normalize_errors"],
        "stages": result["stages"],
        "seed": args.seed,
        "workspace": args.workspace,
        "elapsed_s": result["elapsed_s"],
    }
    if args.json:
        out.write(orjson.dumps(summary).decode() + "\n")
    out.flush()
    return summary


def prewarm(config_path: str, seed: int = 7) -> None:
    """Compile (or load from the numba cache) every detector kernel with the signatures the
    demo's batches need: the offline pipeline over a small simulation of the same domain."""
    from .generator import DomainSimulator, scan_simulation
    from .settings import load_settings

    s = load_settings(config_path)
    t0 = time.perf_counter()
    alerts, res = scan_simulation(DomainSimulator(seed=seed, events=5_000),
                                  s.topics.partitions, s.detection.model_dump())
    # and the signatures of the worker's own start-up warm-up (synthetic batches), so that
    # the worker process only loads cached machine code
    from .worker import warm_up
    warm_up(s)
    print(f"kernels ready in {time.perf_counter() - t0:.1f}s ({len(alerts)} alerts on the "
          "warm-up sample)", flush=True)
