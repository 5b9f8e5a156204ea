"""Framework pieces: backoff, settings validation, give-up-to-DLQ, ledger."""

from __future__ import annotations

import random
import uuid

import pytest

from sinks.base import DeliveryLedger, backoff_delay
from sinks.runner import SinkRunner, build_sink, consumer_config
from sinks.settings import RetrySettings, SinksSettings
from stream.broker import free_port
from stream.errors import ConfigError
from stream.settings import Settings

from .helpers import ThreadedRunner, dlq_records, make_alert, produce_alerts, root_settings


def test_backoff_is_exponential_capped_and_jittered():
    r = RetrySettings(initial_backoff_s=0.5, max_backoff_s=4, jitter="none")
    assert [backoff_delay(n, r) for n in (1, 2, 3, 4, 5, 9)] == [0.5, 1, 2, 4, 4, 4]
    full = RetrySettings(initial_backoff_s=1, max_backoff_s=8)
    rng = random.Random(1)
    ds = [backoff_delay(10, full, rng) for _ in range(200)]
    assert 0 <= min(ds) and max(ds) <= 8 and len(set(ds)) > 100
    eq = RetrySettings(initial_backoff_s=2, max_backoff_s=2, jitter="equal")
    assert all(1 <= backoff_delay(3, eq, rng) <= 2 for _ in range(50))
    with pytest.raises(ValueError):
        RetrySettings(initial_backoff_s=5, max_backoff_s=1)


def test_from_root_and_consumer_config():
    s = Settings(sinks={"workspace": {"url": "postgresql://u@h/db"},
                        "batching": {"max_records": 7}})
    ss = SinksSettings.from_root(s)
    assert ss.workspace.url.startswith("postgresql://") and ss.batching.max_records == 7
    conf = consumer_config(s, "itdr-sink-workspace", ss)
    assert conf["enable.auto.commit"] is False and conf["auto.offset.reset"] == "earliest"
    assert conf["group.id"] == "itdr-sink-workspace"
    assert conf["group.instance.id"].startswith("workspace-")
    with pytest.raises(ConfigError) as e:
        SinksSettings.from_root(Settings(sinks={"workspace": {"url": "mysql://x"}}))
    assert e.value.location == "sinks.workspace" and "postgresql://" in str(e.value)
    with pytest.raises(ConfigError) as e:
        SinksSettings.from_root(Settings(sinks={"batching": {"max_records": 0}}))
    assert e.value.location == "sinks.batching.max_records"
    with pytest.raises(ConfigError) as e:
        build_sink("sentinel", Settings())
    assert e.value.location == "sinks.sentinel.enabled"


def test_ledger_survives_restart_and_prunes(tmp_path):
    led = DeliveryLedger(tmp_path / "l.db")
    led.mark([("a", 1), ("a", 2)])
    led.close()
    led = DeliveryLedger(tmp_path / "l.db")
    assert led.seen(("a", 2)) and not led.seen(("a", 3))
    led.close()
    led = DeliveryLedger(tmp_path / "l.db", retention_days=-1)   # everything is expired
    assert not led.seen(("a", 1))


def test_max_attempts_gives_up_to_the_dead_letter_topic(kafka, topics, tmp_path):
    settings = root_settings(kafka, topics, {
        "batching": {"max_records": 10, "max_wait_s": 0.1},
        "retry": {"initial_backoff_s": 0.05, "max_backoff_s": 0.1, "max_attempts": 3},
        "state_dir": str(tmp_path),
        "syslog": {"enabled": True, "port": free_port(), "protocol": "tcp", "dedup": False}})
    alerts = [make_alert(i) for i in range(5)]
    produce_alerts(kafka, topics, alerts)
    runner = SinkRunner(build_sink("syslog", settings), settings,
                        group_id=f"g-{uuid.uuid4().hex[:6]}")
    with ThreadedRunner(runner):
        dl = dlq_records(kafka, topics, 5)
    assert sorted(d["key"] for d in dl) == sorted(a.id.encode() for a in alerts)
    assert all("gave up after 3 attempts" in d["itdr-reason"] for d in dl)
