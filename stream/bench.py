"""Benchmarks: ``itdr bench stream`` and ``itdr bench state``.

``itdr bench stream [--events N] [--json]`` starts an embedded broker (unless --bootstrap),
produces synthetic traffic (``stream/synth.py``) into both events topics as wire batches of
up to 8192 events (the collectors' default ``batch_events``): N events of one hour of a
domain; once the worker has processed it, the same domain's next hour (the same batches an
hour later). It measures in the same run:

* the ceiling: a plain confluent-kafka consumer + ``wire.decode`` over the same topics, on
  the core the worker gets; the better of two reads, before the worker starts and after it
  has stopped;
* the worker: a real ``itdr worker`` process (Faust app, full detector catalogue) pinned to
  ONE core that nothing else of the bench uses (the embedded broker, the bench's producers
  and its alert consumer are pinned to the other cores; left to the scheduler, the broker
  shared the worker's core in some runs), consuming the same records from the start;
  events/s from its /metrics. The first hour is reported as ``cold_events_per_s`` (every
  identity, host and string is new to the worker: string features computed, state rows
  created); ``events_per_s`` is the second hour,
  the steady state of a worker that has seen its domain before, timed from the moment the
  whole hour is in the broker (no producer competes with the worker);
* latency at half the steady rate, for ``ITDR_BENCH_LATENCY_S`` (6) seconds each:
  ``p50/p99_latency_ms``: the domain's following hours, each batch moved to continue the
  timeline from the wall clock (the traffic of the throughput run, at its own pace of event
  time); latency = alert produced (Kafka CreateTime of the alert record) - when the batch
  holding the alert's latest evidence event was produced (the earliest batch of the alert's
  key kind covering that event time: an upper bound). ``storm_p50/p99_latency_ms``: the first
  hour squeezed into those seconds, every batch stamped with the wall clock (benign accounts
  then look like roasting / brute force: thousands of alert versions per second); latency =
  alert produced - event time of its latest evidence;
* ``storm_events_per_s``: the worker's rate on that squeezed hour once more (stamped at the
  storm's density, all of it in the broker first, timed as the steady hour), after the
  latency phase ran through it 2-3 times: most events now update an open alert, the heaviest
  case (each pass of the storm costs more than the one before). The rate to size for a
  sustained alert storm.

``itdr bench state --identities N [--json]`` feeds N distinct identities through the
by-account and by-source engines with all detectors and reports bytes per identity (the
detector state tables, ``Engine.state_bytes``) and RSS (as is, and after returning the freed
heap of the generated traffic to the OS).
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

import numpy as np

from .cpus import pin_process, split_cores
from .schema import KEY_ACCOUNT, KEY_SOURCE


def _pct(v: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(v), q)) if v else float("nan")


def _metric_sum(text: str, name: str) -> float:
    tot = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            tot += float(line.rsplit(" ", 1)[1])
    return tot


def _metric_by_label(text: str, name: str, label: str) -> dict[str, float]:
    out = {}
    pat = re.compile(rf'^{name}\{{.*{label}="([^"]+)".*\}} (\S+)$')
    for line in text.splitlines():
        m = pat.match(line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def _stop_worker(worker, say) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
        t_stop = time.perf_counter()
        try:
            worker.wait(30)
            say(f"worker stopped in {time.perf_counter() - t_stop:.1f}s")
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)


def _times(value: bytes) -> tuple[int, int]:
    """(min, max) event time of a wire batch."""
    from . import wire

    t = wire.decode(value).time_ms
    return int(t.min()), int(t.max())


def _producer(kafka):
    from confluent_kafka import Producer

    return Producer({**kafka.as_librdkafka(), "compression.type": "lz4", "linger.ms": 20,
                     "message.max.bytes": 8 * 1024 * 1024, "acks": "all",
                     "enable.idempotence": True, "queue.buffering.max.kbytes": 1024 * 1024})


def _produce(p, topic: str, value: bytes, partition: int) -> None:
    """Produce one record, waiting for room when librdkafka's queue is full."""
    while True:
        try:
            p.produce(topic, value, partition=partition)
            break
        except BufferError:
            p.poll(0.01)
    p.poll(0)


def _produce_all(p, names, msgs) -> None:
    for kind, part, value, _ in msgs:
        _produce(p, names[kind], value, part)
    assert p.flush(120) == 0, "bench traffic not delivered"


def _ceiling(kafka, names, partitions: int, total_msgs: int,
             core: set[int] | None = None) -> tuple[float, int, float]:
    """Plain confluent-kafka consume + ``wire.decode`` of the topics by a connected consumer;
    with ``core``, on that core (the consumer's threads are created by this thread while it
    is pinned there). Returns (events/s, events, busy): busy = this process's CPU time / the
    read's wall time.

    What is timed is a consumer that is already connected reading the topics from their
    start: fetching from the broker, decompression and decode -- what the worker's steady
    hour measures, which starts with a worker that is up. Connecting (metadata, offsets, the
    first fetch: ~0.8 s here) is done first, by reading until the first message and assigning
    the partitions from their start again (which drops what was fetched). Messages are taken
    with ``poll``, which returns as soon as one is there. Before session 7 the read started
    at assignment and used ``consume(256, timeout=1.0)``, which waits for 256 messages or the
    full second: with 241 messages in the hour every read took one or two such seconds, and
    the ceiling came out as 0.85-0.90M or 1.6-1.7M events/s depending on how many -- the
    "slow phase" of earlier notes. Read this way it was 2.0-3.1M here (session 7)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from . import wire

    before = os.sched_getaffinity(0)
    if core:
        os.sched_setaffinity(0, core)
    try:
        c = Consumer({**kafka.as_librdkafka(), "group.id": f"bench-ceiling-{uuid.uuid4().hex}",
                      "enable.auto.commit": False, "fetch.message.max.bytes": 8 * 1024 * 1024,
                      "max.partition.fetch.bytes": 8 * 1024 * 1024,
                      "receive.message.max.bytes": 1 << 30})
        tps = [TopicPartition(t, p, OFFSET_BEGINNING) for t in names.values()
               for p in range(partitions)]
        c.assign(tps)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            m = c.poll(0.1)
            if m is not None and not m.error():
                break
        c.assign(tps)           # from the start again, connected
        n_msgs = n_ev = 0
        t0 = time.perf_counter()
        c0 = time.process_time()
        while n_msgs < total_msgs and time.monotonic() < deadline:
            m = c.poll(0.1)
            if m is None or m.error():
                continue
            n_ev += wire.decode(m.value()).n
            n_msgs += 1
        dt = time.perf_counter() - t0
        busy = (time.process_time() - c0) / dt if dt > 0 else 0.0
        c.close()
        return (n_ev / dt if dt > 0 else 0.0), n_ev, busy
    finally:
        os.sched_setaffinity(0, before)


def _hist(text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts ``{le: count}`` of a histogram in a /metrics page."""
    out: dict[float, float] = {}
    for m in re.finditer(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', text, re.M):
        out[float(m.group(1))] = float(m.group(2))
    return out


def _hist_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """Upper bucket bound holding quantile ``q`` of the observations between two scrapes."""
    d = sorted((le, after.get(le, 0.0) - before.get(le, 0.0)) for le in after)
    if not d or d[-1][1] <= 0:
        return float("nan")
    for le, c in d:
        if c >= q * d[-1][1]:
            return le
    return float("inf")


def cmd_bench_stream(args) -> int:
    # the worker's core is its own: this process (its producers and consumers are created
    # by this thread and inherit its affinity) and the embedded broker run on the others;
    # the ceiling consumer runs on the worker's core
    worker_core, other_cores = split_cores()
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, other_cores)
    try:
        return _bench_stream(args, worker_core, other_cores)
    finally:
        os.sched_setaffinity(0, affinity)


def _bench_stream(args, worker_core: set[int], other_cores: set[int]) -> int:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from .alert import Alert
    from .broker import EmbeddedBroker, ensure_topics, free_port
    from .cli import settings_from_args
    from .settings import TopicSettings
    from .synth import SynthConfig, generate, restamp, shift

    base = settings_from_args(args)
    broker = None
    if getattr(args, "bootstrap", None):
        kafka = base.kafka
    else:
        broker = EmbeddedBroker().start()
        kafka = broker.kafka_settings()
        pin_process(broker.proc.pid, other_cores)
    topics = TopicSettings(prefix=f"bench{uuid.uuid4().hex[:6]}.", partitions=4)
    ensure_topics(kafka, topics)
    names = {KEY_ACCOUNT: topics.name("events"), KEY_SOURCE: topics.name("events_by_source")}
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, flush=True))
    tmp = tempfile.mkdtemp(prefix="itdr-bench-")
    worker = None
    try:
        t = time.perf_counter()
        # the domain's two hours end a minute before now, so that the latency phase (stamped
        # with the wall clock) continues its timeline: state stamped a year earlier would
        # make every later Kerberos service ticket look TGT-less (golden-ticket alerts for
        # most accounts -- an artifact no deployment sees)
        base_ms = int(time.time() * 1000) - 2 * 3_600_000 - 60_000
        traffic = generate(SynthConfig(events=args.events, partitions=topics.partitions,
                                       identities=max(1000, args.events // 40), seed=11,
                                       time_base_ms=base_ms))
        msgs = traffic.wire_messages()
        total_ev = sum(m[3] for m in msgs)
        # the same domain's next hour (same identities, hosts, services; times + 1 h),
        # produced once the worker has processed the first: it meets it with warm
        # string-feature caches and live state -- its steady state
        hour2 = [(k, q, shift(v, 3_600_000), n) for k, q, v, n in msgs]
        say(f"generated {traffic.n:,} events -> {len(msgs)} wire batches, {total_ev:,} wire "
            f"events (dual keyed) per hour of traffic, two hours, in "
            f"{time.perf_counter() - t:.1f}s")
        p = _producer(kafka)
        t = time.perf_counter()
        _produce_all(p, names, msgs)
        say(f"produced in {time.perf_counter() - t:.1f}s")

        # read again once the worker has stopped; the ceiling is the better read (a ceiling
        # is a best case; this machine's speed varies from minute to minute)
        ceiling, _, busy = _ceiling(kafka, names, topics.partitions, len(msgs), worker_core)
        say(f"ceiling (confluent-kafka consume + wire.decode on the worker's core "
            f"{min(worker_core)}): {ceiling:,.0f} events/s, the consumer busy {busy:.0%} of "
            f"the read")

        # -- the worker, on one core --------------------------------------------------------
        import yaml

        from detectors.engine import enabled_detectors

        n_det = len(enabled_detectors(base.detection))
        port = free_port()
        cfg = {"kafka": json.loads(kafka.model_dump_json()), "topics": topics.model_dump(),
               "detection": json.loads(base.detection.model_dump_json()),
               "worker": {"app_id": f"bench-{uuid.uuid4().hex[:6]}", "web_port": port,
                          "snapshot_interval_s": float(os.environ.get(
                              "ITDR_BENCH_SNAPSHOT_S", "5")),
                          "take_max": int(os.environ.get("ITDR_BENCH_TAKE_MAX", "64")),
                          "state_dir": os.path.join(tmp, "state"),
                          "instance_id": "bench-0"}}
        for k in ("sasl_password", "ssl_key_password"):
            if cfg["kafka"].get(k) is not None and base.kafka.model_dump().get(k):
                cfg["kafka"][k] = getattr(base.kafka, k).get_secret_value()
        cpath = os.path.join(tmp, "worker.yaml")
        with open(cpath, "w") as f:
            yaml.safe_dump(cfg, f)
        core = sorted(worker_core)
        log = open(os.path.join(tmp, "worker.log"), "wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker", "-c", cpath, "--log-level", "WARNING"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=lambda: os.sched_setaffinity(0, core))
        url = f"http://127.0.0.1:{port}/metrics"

        def scrape() -> str | None:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    return r.read().decode()
            except Exception:
                return None

        say(f"worker pinned to CPU {core[0]} with {n_det} detectors; waiting for it")
        deadline = time.monotonic() + 900
        t_first = None
        while t_first is None and time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited with {worker.returncode}; see {tmp}/worker.log")
            # start the clock when the worker owns its partitions (consumption begins)
            try:
                with urllib.request.urlopen(url.replace("/metrics", "/health"), timeout=2) as r:
                    h = json.loads(r.read())
                if h["partitions"] and not h["rebalancing"]:
                    t_first = time.perf_counter()
            except Exception:
                time.sleep(0.02)

        def run_until(target: float, t0: float, n0: float) -> tuple[float, str, float, float]:
            """Scrape until the worker has processed ``target`` events; its rate since
            ``(t0, n0)`` from the last scrape at which it was still busy (scraping /metrics
            costs the worker CPU: every 100 ms, not faster), the last page, and the time and
            count of the scrape that reached the target."""
            last_t, last_n, done, text = t0, n0, n0, ""
            while time.monotonic() < deadline:
                if worker.poll() is not None:
                    raise RuntimeError(f"worker exited with {worker.returncode}; see "
                                       f"{tmp}/worker.log")
                text = scrape() or ""
                now = time.perf_counter()
                if text:
                    done = _metric_sum(text, "itdr_worker_events_total")
                    if done >= target:
                        break
                    last_t, last_n = now, done
                time.sleep(0.1)
            if done < target:
                raise RuntimeError(f"worker processed {done:,.0f} of {target:,.0f} events")
            if last_t > t0 and last_n > n0:
                return (last_n - n0) / (last_t - t0), text, now, done
            # within one scrape
            return (done - n0) / (time.perf_counter() - t0), text, now, done

        def produced_then_timed(batches, done_before: float) -> tuple[float, str, float, float]:
            """Produce ``batches`` once the worker has processed ``done_before`` events, then
            its rate over them from the moment all of them are in the broker (no producer
            competes with the worker; a worker that finished them during production is
            timed over the production). Returns (events/s, the last /metrics page, seconds
            of production, events of ``batches`` processed meanwhile)."""
            n = sum(b[3] for b in batches)
            t_p = time.perf_counter()
            _produce_all(p, names, batches)
            t2 = time.perf_counter()
            n2 = _metric_sum(scrape() or "", "itdr_worker_events_total")
            if n2 < done_before:
                t2, n2 = t_p, float(done_before)
            if n2 < done_before + n:
                got, text, _, _ = run_until(done_before + n, t2, n2)
            else:   # processed while it was produced (tiny --events)
                got, text = n / max(t2 - t_p, 1e-9), scrape() or ""
            return got, text, t2 - t_p, n2 - done_before

        if t_first is None:
            raise RuntimeError(f"the worker never got its partitions; see {tmp}/worker.log")
        cold, _, _, _ = run_until(total_ev, t_first, 0.0)
        say(f"worker, first hour (cold caches, new state): {cold:,.0f} events/s")
        # hour 2 once hour 1 is processed (each agent progresses on its own: with both hours
        # queued, one kind's second hour would overlap the other's first). Its clock starts
        # when all of it is in the broker: the worker's rate while no producer competes
        eps, text, took, during = produced_then_timed(hour2, float(total_ev))
        t_done = time.perf_counter()
        say(f"second hour produced in {took:.2f}s, meanwhile the worker processed "
            f"{during:,.0f} of its {total_ev:,} events; timed from then")
        say(f"worker, second hour (steady state): {eps:,.0f} events/s on one core "
            f"({eps / ceiling:.2f} of the ceiling)")
        det = _metric_by_label(text, "itdr_worker_detector_seconds_total", "detector")
        proc_s = _metric_sum(text, "itdr_worker_batch_processing_seconds_sum")
        wall = t_done - t_first
        det_s = sum(det.values())

        # -- latency at half the rate ------------------------------------------------------
        rate = 0.5 * eps if eps > 0 else 100_000.0
        dur = float(os.environ.get("ITDR_BENCH_LATENCY_S", "6"))
        before = scrape() or ""
        lat_c = Consumer({**kafka.as_librdkafka(), "group.id": f"bench-lat-{uuid.uuid4().hex}",
                          "enable.auto.commit": False})
        lat_c.assign([TopicPartition(topics.name("alerts"), q, OFFSET_BEGINNING)
                      for q in range(topics.partitions)])

        def paced(batches, stamp) -> tuple[list[tuple[int, bytes, int]], int]:
            """Produce ``batches`` at ``rate`` events/s for ``dur`` seconds (cycling);
            ``stamp(j, value, now_ms)`` gives the j-th value to send. Returns (kind, value
            sent, produced at ms) per message and the events sent."""
            sent_ev, t0, j, log_ = 0, time.perf_counter(), 0, []
            while time.perf_counter() - t0 < dur:
                kind, part, value, n = batches[j % len(batches)]
                now_ms = int(time.time() * 1000)
                value = stamp(j, value, now_ms)
                j += 1
                _produce(p, names[kind], value, part)
                log_.append((kind, value, now_ms))
                sent_ev += n
                ahead = sent_ev / rate - (time.perf_counter() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            p.flush(60)
            return log_, sent_ev

        def drain_alerts(since_ms: int, produced: float) -> list:
            """Alert versions on the alerts topic whose latest evidence is at or after
            ``since_ms`` (event time), as (alert, CreateTime ms), once the worker has
            processed the ``produced`` events."""
            run_until(produced, time.perf_counter(), 0.0)
            time.sleep(1.0)
            got, idle = [], time.monotonic()
            while time.monotonic() - idle < 2.0:
                for m in lat_c.consume(500, 0.3):
                    if m.error():
                        continue
                    idle = time.monotonic()
                    a = Alert.from_json(m.value())
                    if a.last_seen_ms >= since_ms:
                        got.append((a, m.timestamp()[1]))
            return got

        produced = 2.0 * total_ev
        # (1) the domain's next hours at their own pace of event time: every batch is the
        # steady hour moved to continue the timeline from now (the same traffic as the
        # throughput run, one hour per hour). Latency = alert produced - when the batch
        # holding its latest evidence event was produced (the event's arrival; the earliest
        # such batch of the alert's key kind where several cover that time: an upper bound).
        t_live = int(time.time() * 1000)
        delta = t_live - (base_ms + 3_600_000)       # hour 2's start -> now
        hour_ms = 3_600_000
        cache: dict[int, bytes] = {}

        def live(j, value, now_ms):
            v = cache.get(j)
            if v is None:
                v = cache[j] = shift(value, delta + (j // len(hour2)) * hour_ms)
            return v

        # precompute the shifted batches (shift decodes and re-encodes: not on the clock)
        for j in range(min(len(hour2) * 2, int(rate * dur / max(1, total_ev / len(hour2))) + 64)):
            live(j, hour2[j % len(hour2)][2], 0)
        sent, n_sent = paced(hour2, live)
        produced += n_sent
        spans: dict[int, list[tuple[int, int, int]]] = {KEY_ACCOUNT: [], KEY_SOURCE: []}
        for kind, value, at in sent:
            spans[kind].append((*_times(value), at))
        lat = []
        for a, created in drain_alerts(t_live, produced):
            kind = KEY_SOURCE if a.key == "source" else KEY_ACCOUNT
            ats = [at for lo, hi, at in spans[kind] if lo <= a.last_seen_ms <= hi]
            if ats:
                lat.append(created - min(ats))
        p50, p99 = _pct(lat, 50), _pct(lat, 99)
        say(f"latency at {rate:,.0f} events/s for {dur:.0f}s (the domain's traffic, "
            f"continuing from now): {len(lat)} alert versions, p50 {p50:.0f} ms, p99 "
            f"{p99:.0f} ms (event arrival -> alert produced)")
        # (2) alert storm: the first hour compressed into the same seconds, every batch
        # stamped with the wall clock (benign accounts then fan out to many SPNs and fail
        # logons within seconds: thousands of alert versions/s). Latency = alert produced -
        # event time. Its timeline continues after the live hours'.
        t_storm = t_live + 3 * hour_ms
        off = t_storm - int(time.time() * 1000)
        _sent, n_sent = paced(msgs, lambda j, value, now_ms: restamp(value, now_ms + off))
        produced += n_sent
        storm = [created + off - a.last_seen_ms
                 for a, created in drain_alerts(t_storm, produced)]
        s50, s99 = _pct(storm, 50), _pct(storm, 99)
        say(f"alert-storm latency at {rate:,.0f} events/s for {dur:.0f}s: {len(storm)} alert "
            f"versions, p50 {s50:.0f} ms, p99 {s99:.0f} ms (event time -> alert produced)")
        lat_c.close()
        after = scrape() or ""
        for label, name in (("record age when processing starts (fetch + queue)",
                             "itdr_worker_record_age_seconds"),
                            ("batch processing", "itdr_worker_batch_processing_seconds")):
            hb, ha = _hist(before, name), _hist(after, name)
            say(f"  {label}: p50 <= {_hist_quantile(hb, ha, 0.5)} s, "
                f"p99 <= {_hist_quantile(hb, ha, 0.99)} s")
        # (3) the worker's rate under a sustained storm: the squeezed hour once more, at the
        # event-time density the paced storm had (each batch stamped as if sent at `rate`),
        # all of it in the broker first, then timed as the steady hour is. By now the storm
        # has run through that hour ~2-3 times and most of its events update an open alert:
        # each pass costs more than the one before (in process: 1.0M, 0.55M, 0.48M, 0.48M
        # events/s for passes 1-4), so this is the heaviest case, a lower bound of what the
        # latency phase needed
        t_cap = t_storm + int((dur + 1) * 1000)
        storm_msgs, at = [], 0.0
        for kind, part, value, n in msgs:
            storm_msgs.append((kind, part, restamp(value, t_cap + int(at * 1000)), n))
            at += n / rate
        storm_eps, _, _, _ = produced_then_timed(storm_msgs, produced)
        produced += total_ev
        say(f"worker under a sustained alert storm (the squeezed hour once more, produced "
            f"first): {storm_eps:,.0f} events/s, {storm_eps / eps:.2f} of its steady rate")
        top = sorted(det.items(), key=lambda kv: -kv[1])[:8]
        say(f"where the time goes (throughput run, {wall:.2f}s wall on one core): batch "
            f"processing {proc_s:.2f}s of which detector kernels {det_s:.2f}s; the rest is "
            f"Faust/aiokafka fetch + decompression, decode, alert production")
        for d, sec in top:
            say(f"  {d:32s} {sec:7.3f}s")
        _stop_worker(worker, say)
        worker = None
        ceiling2, _, busy = _ceiling(kafka, names, topics.partitions, len(msgs), worker_core)
        say(f"ceiling read again with the worker stopped: {ceiling2:,.0f} events/s, the "
            f"consumer busy {busy:.0%}")
        ceiling = max(ceiling, ceiling2)
        out = {"events_per_s": round(eps), "ceiling_events_per_s": round(ceiling),
               "ratio": round(eps / ceiling, 3) if ceiling else None,
               "cold_events_per_s": round(cold),
               "p50_latency_ms": round(p50, 1), "p99_latency_ms": round(p99, 1),
               "latency_alerts": len(lat), "storm_p50_latency_ms": round(s50, 1),
               "storm_p99_latency_ms": round(s99, 1), "storm_alerts": len(storm),
               "storm_events_per_s": round(storm_eps),
               "detectors": n_det}
        if args.json:
            print(json.dumps(out))
        else:
            say(json.dumps(out))
        return 0
    finally:
        if worker is not None:
            _stop_worker(worker, say)
        if broker is not None:
            broker.cleanup()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _trim_heap() -> bool:
    """Return freed heap pages to the OS (glibc ``malloc_trim``); False where unavailable.

    The state benchmark generates its traffic in-process (millions of events in thousands of
    small batch arrays); once freed, that memory stays in the process heap and inflates RSS
    although nothing uses it. Trimming releases only memory that is already free."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def cmd_bench_state(args) -> int:
    from detectors.engine import Engine, enabled_detectors

    from .cli import settings_from_args
    from .synth import SynthConfig, generate

    s = settings_from_args(args)
    n = args.identities
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, flush=True))
    rss0 = _rss_bytes()
    t = time.perf_counter()
    cfg = SynthConfig(events=3 * n, partitions=1, identities=n, hosts=max(100, n // 4),
                      seed=5, cover_all=True, duration_s=3600.0, attacks=0)
    traffic = generate(cfg)
    say(f"generated {traffic.n:,} events over {n:,} identities in {time.perf_counter() - t:.1f}s")
    engines = {k: Engine(s.detection, k, 0) for k in (KEY_ACCOUNT, KEY_SOURCE)}
    t = time.perf_counter()
    for kind, eng in engines.items():
        for _, b in traffic.batches(kind):
            eng.process(b)
    del traffic
    say(f"processed in {time.perf_counter() - t:.1f}s")
    state = sum(e.state_bytes() for e in engines.values())
    per = state / n
    import gc

    gc.collect()
    rss = _rss_bytes()
    rss_trimmed = _rss_bytes() if _trim_heap() else None
    stateful = sum(1 for e in engines.values() for d in e.detectors if d.state is not None)
    say(f"detectors: {len(enabled_detectors(s.detection))} ({stateful} stateful engine "
        f"instances); state {state / 2**20:,.1f} MiB = {per:,.0f} bytes per identity "
        f"(target < 1024); process RSS {rss / 2**20:,.0f} MiB (baseline {rss0 / 2**20:,.0f}"
        + (f"; {rss_trimmed / 2**20:,.0f} MiB once the freed traffic heap is returned to the "
           "OS)" if rss_trimmed is not None else ")"))
    for kind, e in engines.items():
        for d in e.detectors:
            if d.state is not None:
                say(f"  {'account' if kind == KEY_ACCOUNT else 'source '} {d.id:32s} "
                    f"{d.state.count():>9,} keys {d.state.nbytes() / 2**20:8.1f} MiB")
    # what one snapshot of this state costs the worker (every engine that changed, each
    # snapshot interval): the capture on the processing thread and the checksum the write
    # computes (the Kafka write itself -- lz4 + broker -- comes on top)
    import hashlib

    t = time.perf_counter()
    snaps = [e.snapshot() for e in engines.values()]
    cap_s = time.perf_counter() - t
    t = time.perf_counter()
    for b in snaps:
        hashlib.sha256(b).hexdigest()
    hash_s = time.perf_counter() - t
    snap_bytes = sum(len(b) for b in snaps)
    del snaps
    say(f"one snapshot of this state: {snap_bytes / 2**20:,.1f} MiB, captured in {cap_s:.2f}s "
        f"(processing thread), checksummed in {hash_s:.2f}s")
    out = {"identities": n, "bytes_per_identity": round(per, 1), "state_bytes": state,
           "rss_bytes": rss, "rss_trimmed_bytes": rss_trimmed, "snapshot_bytes": snap_bytes,
           "snapshot_capture_s": round(cap_s, 3), "snapshot_checksum_s": round(hash_s, 3)}
    print(json.dumps(out)) if args.json else say(json.dumps(out))
    return 0
