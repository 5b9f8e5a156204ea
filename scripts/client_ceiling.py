"""The Kafka client's share of the worker's core: one hour of ``itdr bench stream``'s traffic
(1M events, 1.93M wire events dual keyed) in an embedded broker, read by a connected consumer
on one core -- aiokafka (the worker's client under Faust) with and without ``wire.decode``,
and confluent-kafka + decode (the bench's ceiling) -- three rounds. Prints events/s and the
share of the read the process was on the CPU.

    .venv/bin/python scripts/client_ceiling.py [--events 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream import wire  # noqa: E402
from stream.bench import _ceiling, _produce_all, _producer  # noqa: E402
from stream.broker import EmbeddedBroker, ensure_topics  # noqa: E402
from stream.cpus import pin_process, split_cores  # noqa: E402
from stream.schema import KEY_ACCOUNT, KEY_SOURCE  # noqa: E402
from stream.settings import TopicSettings  # noqa: E402
from stream.synth import SynthConfig, generate  # noqa: E402


async def aiokafka_read(kafka, names, partitions: int, total: int, decode: bool):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False,
                         max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20,
                         group_id=None)
    await c.start()
    try:
        tps = [TopicPartition(t, q) for t in names.values() for q in range(partitions)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        await c.getmany(timeout_ms=5000, max_records=1)     # connected
        for tp in tps:
            c.seek(tp, 0)
        n = n_ev = 0
        t0, c0 = time.perf_counter(), time.process_time()
        while n < total:
            for recs in (await c.getmany(timeout_ms=100, max_records=64)).values():
                for m in recs:
                    n += 1
                    if decode:
                        n_ev += wire.decode(m.value).n
        dt = time.perf_counter() - t0
        return dt, (time.process_time() - c0) / dt, n_ev
    finally:
        await c.stop()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    core, others = split_cores()
    os.sched_setaffinity(0, others)
    broker = EmbeddedBroker().start()
    try:
        kafka = broker.kafka_settings()
        pin_process(broker.proc.pid, others)
        topics = TopicSettings(prefix=f"cc{uuid.uuid4().hex[:6]}.", partitions=4)
        ensure_topics(kafka, topics)
        names = {KEY_ACCOUNT: topics.name("events"), KEY_SOURCE: topics.name("events_by_source")}
        msgs = generate(SynthConfig(events=a.events, partitions=4,
                                    identities=max(1000, a.events // 40), seed=11)).wire_messages()
        _produce_all(_producer(kafka), names, msgs)
        total_ev = sum(m[3] for m in msgs)
        os.sched_setaffinity(0, core)
        for _ in range(a.rounds):
            for decode in (True, False):
                dt, busy, _ = asyncio.run(aiokafka_read(kafka, names, 4, len(msgs), decode))
                print(f"aiokafka{' + decode' if decode else ', no decode':10s} "
                      f"{total_ev / dt:12,.0f} events/s, on the CPU {busy:.0%}", flush=True)
            eps, _, busy = _ceiling(kafka, names, 4, len(msgs), core)
            print(f"confluent + decode  {eps:12,.0f} events/s, on the CPU {busy:.0%}", flush=True)
    finally:
        broker.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
