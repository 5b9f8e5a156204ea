"""``itdr bench stream`` end to end on a tiny domain: a real broker, a real worker process,
both latency phases; the JSON report holds every documented key with sane values."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_bench_stream_reports_throughput_and_both_latencies():
    env = {**os.environ, "ITDR_BENCH_LATENCY_S": "1"}
    p = subprocess.run([sys.executable, "-m", "stream.cli", "bench", "stream", "--events",
                        "20000", "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for k in ("events_per_s", "ceiling_events_per_s", "ratio", "cold_events_per_s",
              "p50_latency_ms", "p99_latency_ms", "latency_alerts", "storm_p50_latency_ms",
              "storm_p99_latency_ms", "storm_alerts", "storm_events_per_s", "detectors"):
        assert k in out, k
    assert out["events_per_s"] > 0 and out["cold_events_per_s"] > 0 and out["storm_events_per_s"] > 0
    assert out["ceiling_events_per_s"] > 0
    assert out["detectors"] >= 30
    # the live phase's alerts are the injected attacks of the domain's next hours; the storm
    # raises far more (benign accounts squeezed into seconds)
    assert out["latency_alerts"] > 0 and out["storm_alerts"] > out["latency_alerts"]
    assert 0 <= out["p50_latency_ms"] <= out["p99_latency_ms"] < 60_000
    assert 0 <= out["storm_p50_latency_ms"] <= out["storm_p99_latency_ms"] < 60_000


def test_bench_core_placement_pins_every_thread_of_a_process():
    from stream.cpus import pin_process, split_cores

    worker, others = split_cores()
    cpus = os.sched_getaffinity(0)
    assert len(worker) == 1 and worker <= cpus and others <= cpus
    assert not (worker & others) or len(cpus) == 1     # the worker's core is its own
    # a child with several threads: every thread ends up on the given cores
    code = "import threading, time\nfor _ in range(3): threading.Thread(target=time.sleep, " \
           "args=(30,), daemon=True).start()\nprint('up', flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "up"
        assert pin_process(child.pid, worker) == 4
        for tid in os.listdir(f"/proc/{child.pid}/task"):
            assert os.sched_getaffinity(int(tid)) == worker
    finally:
        child.kill()
        child.wait()


def test_ceiling_read_counts_every_event_and_never_waits_out_a_consume_timeout(kafka, topics):
    # the ceiling is a connected consumer reading the topics from their start: every event
    # once (the re-assignment after connecting drops what was fetched, nothing is counted
    # twice), and the read ends with the last message. Until session 7 it used
    # consume(256, timeout=1.0), which waits the full second for 256 messages: on a topic of
    # a few messages the "ceiling" then measured that second.
    from stream.bench import _ceiling, _produce_all, _producer
    from stream.schema import KEY_ACCOUNT, KEY_SOURCE
    from stream.synth import SynthConfig, generate

    msgs = generate(SynthConfig(events=3000, partitions=topics.partitions, identities=200,
                                seed=3)).wire_messages()
    names = {KEY_ACCOUNT: topics.name("events"), KEY_SOURCE: topics.name("events_by_source")}
    _produce_all(_producer(kafka), names, msgs)
    total = sum(m[3] for m in msgs)
    eps, n_ev, busy = _ceiling(kafka, names, topics.partitions, len(msgs))
    assert n_ev == total
    # a few hundred kB decoded: milliseconds of work; a consume timeout would be >= 1 s
    assert total / eps < 0.9, f"read of {len(msgs)} messages took {total / eps:.2f}s"
    assert 0 < busy
