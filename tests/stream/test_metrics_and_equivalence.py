"""End to end on the real broker with the FULL detector catalogue and demo traffic:

* the worker's /metrics counters move while traffic flows and end consistent with what was
  sent (events and batches per topic, alerts by detector);
* ``itdr scan``'s offline pipeline and the streaming worker give identical alerts (ids and
  content) on the same input.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
from _worker_harness import (TrafficProducer, WorkerProc, read_alerts, wait_caught_up,
                             wait_started, write_config)

from collectors.normalize import Normalizer
from stream.generator import DomainSimulator
from stream.scan import OfflinePipeline
from stream.settings import DetectionSettings

pytestmark = [pytest.mark.broker, pytest.mark.timeout(300)]


def _metric(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        m = re.match(r"^(\w+)(\{[^}]*\})?\s+([0-9.eE+-]+)$", line)
        if not m or m.group(1) != name:
            continue
        lab = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(lab.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def test_metrics_move_with_traffic_and_scan_equals_stream(kafka, topics, tmp_path):
    sim = DomainSimulator(seed=3, events=12_000)
    det_cfg = sim.demo_config()
    norm = Normalizer()
    events = [e for e in (norm.normalize(r) for r in sim.records()) if e is not None]
    half = len(events) // 2

    app_id = f"mx-{uuid.uuid4().hex[:8]}"
    cfg, port = write_config(tmp_path, kafka, topics, app_id, enabled=None, **det_cfg)
    w = WorkerProc(cfg, port, tmp_path / "w.log")
    prod = TrafficProducer(kafka, topics, max_events=512)
    try:
        wait_started(w, partitions=2 * topics.partitions, timeout=120)
        ev_topic = topics.name("events")
        src_topic = topics.name("events_by_source")
        before = w.metrics()
        assert _metric(before, "itdr_worker_events_total", topic=ev_topic) == 0

        prod.send(events[:half])
        sent_acc_1 = sum(1 for _ in events[:half])
        wait_caught_up([w], kafka, topics, timeout=120)
        mid = w.metrics()
        got_acc_1 = _metric(mid, "itdr_worker_events_total", topic=ev_topic)
        assert got_acc_1 == sent_acc_1, (got_acc_1, sent_acc_1)

        prod.send(events[half:])
        wait_caught_up([w], kafka, topics, timeout=120)
        time.sleep(0.5)
        end = w.metrics()
        # every event goes to the by-account topic exactly once
        assert _metric(end, "itdr_worker_events_total", topic=ev_topic) == len(events)
        # by-source: exactly the events the collector dual-keyed
        src_events = _metric(end, "itdr_worker_events_total", topic=src_topic)
        assert 0 < src_events <= len(events)
        # batches: one per produced wire message
        batches = (_metric(end, "itdr_worker_batches_total", topic=ev_topic)
                   + _metric(end, "itdr_worker_batches_total", topic=src_topic))
        assert batches == prod.sent
        assert _metric(end, "itdr_worker_bytes_total", topic=ev_topic) > \
            _metric(mid, "itdr_worker_bytes_total", topic=ev_topic)
        assert _metric(end, "itdr_worker_batch_processing_seconds_count") == batches
        assert _metric(end, "itdr_worker_corrupt_batches_total") == 0

        streamed = read_alerts(kafka, topics)
        latest = {}
        for a in streamed:
            if a.id not in latest or a.version > latest[a.id].version:
                latest[a.id] = a
        # alerts counter: one increment per alert version produced
        assert _metric(end, "itdr_worker_alerts_total") == len(streamed)
        by_det = {}
        for a in streamed:
            by_det[a.detector] = by_det.get(a.detector, 0) + 1
        for d, n in by_det.items():
            assert _metric(end, "itdr_worker_alerts_total", detector=d) == n
    finally:
        w.stop()

    # the offline pipeline over the same events gives the same final alerts
    pipe = OfflinePipeline(DetectionSettings(**det_cfg), partitions=topics.partitions,
                           batch_events=512)
    pipe.feed(events)
    offline = {a.id: a for a in pipe.finish()}
    assert len(offline) >= 12, "demo traffic should raise the injected attacks"
    assert set(offline) == set(latest)
    for aid, a in offline.items():
        s = latest[aid]
        assert a.content_key() == s.content_key()
        assert a.model_dump() == s.model_dump()
