"""Conformance of the embedded broker (noida-db) for what OpenITDR relies on.

If the broker is ever swapped, these catch the differences that matter: produce/consume,
consumer-group resume from committed offsets, high watermarks and lag, the idempotent producer,
and Faust table recovery after a worker restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

pytestmark = pytest.mark.broker


def _topic(broker, partitions=2):
    name = f"conf-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(10)
    return name


def _consume(bootstrap, topic, group, n, timeout=20):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.time() + timeout
    while len(got) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got.append(m)
    return c, got


def test_produce_consume_round_trip(broker):
    t = _topic(broker)
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": "lz4"})
    for i in range(500):
        p.produce(t, value=f"v{i}".encode(), key=f"k{i % 10}".encode(), partition=i % 2)
    assert p.flush(10) == 0
    c, got = _consume(broker.bootstrap, t, "g-rt", 500)
    c.close()
    assert sorted(m.value() for m in got) == sorted(f"v{i}".encode() for i in range(500))
    # per-partition order preserved
    for part in (0, 1):
        vals = [int(m.value()[1:]) for m in got if m.partition() == part]
        assert vals == sorted(vals)


def test_consumer_group_resumes_from_committed_offsets(broker):
    t = _topic(broker, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(100):
        p.produce(t, value=str(i).encode(), partition=0)
    p.flush(10)
    c, got = _consume(broker.bootstrap, t, "g-resume", 40)
    first40 = got[:40]
    c.commit(offsets=[TopicPartition(t, 0, first40[-1].offset() + 1)], asynchronous=False)
    c.close()
    c2, got2 = _consume(broker.bootstrap, t, "g-resume", 60)
    c2.close()
    assert [int(m.value()) for m in got2][:60] == list(range(40, 100))


def test_watermarks_and_lag(broker):
    t = _topic(broker, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(30):
        p.produce(t, value=b"x", partition=0)
    p.flush(10)
    c, got = _consume(broker.bootstrap, t, "g-lag", 10)
    lo, hi = c.get_watermark_offsets(TopicPartition(t, 0), timeout=5)
    assert (lo, hi) == (0, 30)
    c.commit(offsets=[TopicPartition(t, 0, 10)], asynchronous=False)
    committed = c.committed([TopicPartition(t, 0)], timeout=5)[0].offset
    assert committed == 10
    assert hi - committed == 20  # lag
    c.close()


def test_idempotent_producer_no_duplicates(broker):
    t = _topic(broker, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True,
                  "acks": "all", "max.in.flight.requests.per.connection": 5})
    for i in range(2000):
        p.produce(t, value=str(i).encode(), partition=0)
    assert p.flush(20) == 0
    c, got = _consume(broker.bootstrap, t, "g-idem", 2000)
    c.close()
    vals = [int(m.value()) for m in got]
    assert vals == list(range(2000))


def test_faust_table_recovery_after_worker_restart(broker, tmp_path):
    t = _topic(broker, 2)
    app_id = f"conf-faust-{uuid.uuid4().hex[:6]}"
    dump = tmp_path / "dump.json"
    env = dict(os.environ, BOOTSTRAP=broker.bootstrap, TOPIC=t, APP_ID=app_id, DUMP=str(dump),
               DATADIR=str(tmp_path / "data"))
    app = Path(__file__).with_name("faust_counter_app.py")
    p = Producer({"bootstrap.servers": broker.bootstrap})

    def produce_round():
        for i in range(1000):
            p.produce(t, key=f"key{i % 10}".encode(), value=b'"x"',
                      partition=hash_part(f"key{i % 10}"))
        p.flush(10)

    def committed_all() -> bool:
        # Faust is at-least-once: wait until the group committed every source offset, so that
        # the restart test checks the table changelog recovery, not replay of uncommitted input
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": app_id})
        try:
            tps = [TopicPartition(t, p) for p in (0, 1)]
            got = c.committed(tps, timeout=5)
            return all(tp.offset == c.get_watermark_offsets(tp, timeout=5)[1] for tp in got)
        finally:
            c.close()

    def run_until(total):
        proc = subprocess.Popen([sys.executable, str(app), "worker", "-l", "warn"], env=env,
                                stdout=open(tmp_path / "worker.log", "ab"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.time() + 180
            while time.time() < deadline:
                if dump.exists():
                    try:
                        d = json.loads(dump.read_text())
                    except ValueError:
                        d = {}
                    if sum(d.values()) >= total and committed_all():
                        return json.loads(dump.read_text())
                time.sleep(0.3)
            raise AssertionError(f"faust worker did not reach {total} events")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    produce_round()
    first = run_until(1000)
    assert first == {f"key{i}": 100 for i in range(10)}
    # restart with no new input: the table recovered from the changelog must be exact
    dump.unlink()
    recovered = run_until(1000)
    assert recovered == {f"key{i}": 100 for i in range(10)}, recovered



def hash_part(key: str) -> int:
    return sum(key.encode()) % 2
