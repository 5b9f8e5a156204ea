"""Prometheus metrics of every component (one registry of names; units in names; never
labelled by identity -- labels are bounded: component, topic, partition, detector, severity,
sink, source kind, reason).

Light module (prometheus-client only). Each process exposes them with
:func:`start_http_server` (collectors, gateway, sinks) or through the worker's web endpoint.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server  # noqa: F401

_LAT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# -- collectors -------------------------------------------------------------------------------
COLLECTOR_EVENTS_READ = Counter("itdr_collector_events_read_total",
                                "Raw records read by collectors", ["source_kind"])
COLLECTOR_EVENTS_NORMALIZED = Counter("itdr_collector_events_normalized_total",
                                      "Records normalized to identity events", ["source_kind"])
COLLECTOR_EVENTS_UNKNOWN = Counter("itdr_collector_events_unknown_total",
                                   "Records with event ids the product does not consume "
                                   "(counted and dropped)", ["source_kind"])
COLLECTOR_EVENTS_DEAD_LETTERED = Counter("itdr_collector_dead_letters_total",
                                         "Records sent to the dead-letter topic", ["reason"])
COLLECTOR_BATCHES_PRODUCED = Counter("itdr_collector_batches_produced_total",
                                     "Wire batches produced", ["topic"])
COLLECTOR_BYTES_PRODUCED = Counter("itdr_collector_bytes_produced_total",
                                   "Wire bytes produced", ["topic"])
COLLECTOR_EVENTS_PRODUCED = Counter("itdr_collector_events_produced_total",
                                    "Events delivered (acknowledged by the broker)", ["topic"])
COLLECTOR_SPOOL_BYTES = Gauge("itdr_collector_spool_bytes", "Bytes waiting in the disk spool")
COLLECTOR_SPOOL_BATCHES = Gauge("itdr_collector_spool_batches",
                                "Batches waiting in the disk spool")
COLLECTOR_CHECKPOINT_LAG = Gauge("itdr_collector_checkpoint_lag_records",
                                 "Records read but not yet confirmed delivered", ["source_kind"])
COLLECTOR_HEARTBEATS = Counter("itdr_collector_heartbeats_total", "Heartbeats sent")
GATEWAY_REQUESTS = Counter("itdr_gateway_requests_total", "Forwarded-event requests",
                           ["protocol", "format", "outcome"])

# -- stream workers ---------------------------------------------------------------------------
WORKER_EVENTS = Counter("itdr_worker_events_total", "Events processed by workers", ["topic"])
WORKER_BATCHES = Counter("itdr_worker_batches_total", "Wire batches processed", ["topic"])
WORKER_BYTES = Counter("itdr_worker_bytes_total", "Wire bytes processed", ["topic"])
WORKER_CORRUPT_BATCHES = Counter("itdr_worker_corrupt_batches_total",
                                 "Batches that failed to decode (sent to the DLQ)", ["topic"])
WORKER_FAILED_BATCHES = Counter("itdr_worker_failed_batches_total",
                                "Batches whose processing raised (a detector error; sent to the "
                                "DLQ, the partition goes on)", ["topic"])
WORKER_LAG = Gauge("itdr_worker_consumer_lag_messages", "Consumer lag per partition",
                   ["topic", "partition"])
WORKER_PROCESSING_SECONDS = Histogram("itdr_worker_batch_processing_seconds",
                                      "Time to run all detectors over one batch",
                                      buckets=_LAT_BUCKETS)
WORKER_EVENT_LATENCY_SECONDS = Histogram("itdr_worker_event_to_alert_seconds",
                                         "Event time to alert produced", buckets=_LAT_BUCKETS)
WORKER_RECORD_AGE_SECONDS = Histogram(
    "itdr_worker_record_age_seconds", "Age of an events record (now - its Kafka timestamp) when "
    "the worker starts processing it: fetch and queueing delay", buckets=_LAT_BUCKETS)
WORKER_DETECTOR_SECONDS = Counter("itdr_worker_detector_seconds_total",
                                  "CPU time spent per detector", ["detector"])
WORKER_ALERTS = Counter("itdr_worker_alerts_total", "Alerts created or updated",
                        ["detector", "severity"])
WORKER_STATE_BYTES = Gauge("itdr_worker_state_bytes", "Detector state size", ["partition"])
WORKER_SNAPSHOTS = Counter("itdr_worker_snapshots_total", "State snapshots written")
WORKER_SNAPSHOT_SECONDS = Histogram(
    "itdr_worker_snapshot_seconds", "Periodic state snapshot: capture on the processing thread "
    "+ durable write (paced by worker.snapshot_max_share)",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))

# -- sinks ------------------------------------------------------------------------------------
SINK_SENT = Counter("itdr_sink_records_sent_total", "Records delivered", ["sink"])
SINK_FAILED = Counter("itdr_sink_records_failed_total", "Records permanently rejected "
                      "(dead-lettered)", ["sink"])
SINK_RETRIED = Counter("itdr_sink_retries_total", "Flush retries", ["sink"])
SINK_LATENCY = Histogram("itdr_sink_flush_seconds", "Flush latency", ["sink"],
                         buckets=_LAT_BUCKETS)
SINK_BATCH_SIZE = Histogram("itdr_sink_batch_records", "Records per flushed batch", ["sink"],
                            buckets=(1, 5, 10, 50, 100, 500, 1000, 5000))
SINK_BACKPRESSURE = Counter("itdr_sink_backpressure_total", "Throttling episodes", ["sink"])

# -- health (stream side) ---------------------------------------------------------------------
SENSOR_LAST_HEARTBEAT = Gauge("itdr_sensor_last_heartbeat_timestamp_seconds",
                              "Last heartbeat per sensor (sensor ids are bounded, not "
                              "identities)", ["sensor"])
HEALTH_ALERTS = Counter("itdr_health_alerts_total", "Sensor health alerts raised", ["kind"])
