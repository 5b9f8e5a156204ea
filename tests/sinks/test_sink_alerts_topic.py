"""Alerts-topic forwarder to another (real) cluster that goes down and comes back."""

from __future__ import annotations

import time
import uuid
from collections import Counter

from confluent_kafka.admin import AdminClient, NewTopic

from sinks.runner import SinkRunner, build_sink
from sinks.settings import SinksSettings
from stream import metrics

from .helpers import (ThreadedRunner, consume_all, dlq_records, make_alert, produce,
                      produce_alerts, root_settings, wait_for)


def test_forward_to_other_cluster_survives_its_outage(kafka, topics, fresh_broker, tmp_path):
    dest_topic = f"soc.alerts.{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": fresh_broker.bootstrap})
    admin.create_topics([NewTopic(dest_topic, 2, 1)])[dest_topic].result(10)
    settings = root_settings(kafka, topics, {
        "batching": {"max_records": 30, "max_wait_s": 0.2},
        "retry": {"initial_backoff_s": 0.1, "max_backoff_s": 0.5},
        "state_dir": str(tmp_path / "state"),
        "alerts_topic": {"enabled": True, "topic": dest_topic,
                         "bootstrap_servers": fresh_broker.bootstrap,
                         "delivery_timeout_s": 1.5}})
    sinks = SinksSettings.from_root(settings)
    runner = SinkRunner(build_sink("alerts-topic", settings, sinks), settings, sinks,
                        group_id=f"g-{uuid.uuid4().hex[:6]}")
    first = [make_alert(i) for i in range(40)]
    produce_alerts(kafka, topics, first)
    produce(kafka, topics.name("alerts"), [(b"p", b"nope")])
    r0 = metrics.SINK_RETRIED.labels("alerts-topic")._value.get()
    with ThreadedRunner(runner):
        dest = consume_all(fresh_broker.kafka_settings(), dest_topic, 40)
        assert len(dest) == 40
        fresh_broker.stop()                                   # destination cluster down
        later = [make_alert(i, 2) for i in range(40)] + first[:5]   # + re-sent
        produce_alerts(kafka, topics, later)
        time.sleep(3.0)
        fresh_broker.start()                                  # ... and back (same data dir)
        wait_for(lambda: runner.sink.batch.items == [] and runner.flushes > 2, timeout=30,
                 msg="backlog flushed")
        dl = dlq_records(kafka, topics, 1)
    msgs = consume_all(fresh_broker.kafka_settings(), dest_topic, 80, timeout=20)
    got = Counter((dict(m.headers())["itdr-alert-id"].decode(),
                   int(dict(m.headers())["itdr-alert-version"])) for m in msgs)
    want = {(a.id, v) for a in first for v in (1, 2)}
    assert set(got) == want                                   # nothing lost
    assert sum(got.values()) == len(want)                     # nothing repeated
    assert all(m.key() == dict(m.headers())["itdr-alert-id"] for m in msgs)
    assert dl[0]["key"] == b"p"
    assert metrics.SINK_RETRIED.labels("alerts-topic")._value.get() > r0  # outage seen
