"""Embedded Kafka-protocol broker (noida-db from PyPI) and topic helpers.

``itdr broker`` runs one in the foreground; the demo, the benchmarks and the tests start one
with :class:`EmbeddedBroker`. noida-db was chosen over tansu (measured here): correct high
watermarks / lag and exact Faust table recovery (``../shared/docs/toolchain.md``).
Everything else runs against any Kafka given its bootstrap servers.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .errors import BrokerError
from .settings import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def noida_binary() -> str:
    exe = shutil.which("noida-db")
    if exe:
        return exe
    try:
        import noida_db  # type: ignore

        cand = Path(noida_db.__file__).parent / "noida-db"
        if cand.exists():
            return str(cand)
    except ImportError:
        pass
    raise BrokerError("noida-db is not installed", fix="pip install noida-db (it is a "
                      "dependency of openitdr; reinstall with `pip install -e .`)")


class EmbeddedBroker:
    """A real Kafka-protocol broker process on 127.0.0.1 (noida-db).

    Usage::

        with EmbeddedBroker() as b:
            print(b.bootstrap)
    """

    def __init__(self, port: int | None = None, data_dir: str | None = None,
                 host: str = "127.0.0.1", log_file: str | None = None):
        self.host = host
        self.port = port or free_port(host)
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="itdr-broker-")
            data_dir = self._tmp
        self.data_dir = data_dir
        self.log_file = log_file
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def kafka_settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.bootstrap)

    def start(self, timeout: float = 30.0) -> "EmbeddedBroker":
        Path(self.data_dir).mkdir(parents=True, exist_ok=True)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        cmd = [noida_binary(), "start", "--data-dir", self.data_dir, "--host", self.host,
               "--only", "kafka", "--kafka-port", str(self.port)]
        log.info("starting embedded broker: %s", " ".join(cmd))
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=out, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"embedded broker exited with code {self.proc.returncode}",
                                  fix="check that the port is free and noida-db runs on "
                                  "this machine (`noida-db version`)")
            if self._ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise BrokerError(f"embedded broker did not become ready on {self.bootstrap} within "
                          f"{timeout:.0f}s")

    def _ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                pass
        except OSError:
            return False
        try:
            from confluent_kafka.admin import AdminClient

            AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
            return True
        except Exception:
            return False

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None

    def restart(self, timeout: float = 30.0) -> None:
        """Stop and start again on the same port and data dir (data survives)."""
        self.stop()
        self.start(timeout)

    def cleanup(self) -> None:
        self.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


def ensure_topics(kafka: KafkaSettings, topics: TopicSettings, timeout: float = 15.0) -> dict:
    """Create the product's topics if missing (events topics with ``topics.partitions``)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(kafka.as_librdkafka())
    want = {
        topics.name("events"): topics.partitions,
        topics.name("events_by_source"): topics.partitions,
        topics.name("alerts"): topics.partitions,
        topics.name("health"): 1,
        topics.name("dlq"): 1,
        topics.name("state"): topics.partitions,
    }
    md = admin.list_topics(timeout=timeout)
    missing = [NewTopic(t, num_partitions=p, replication_factor=topics.replication_factor,
                        config={"cleanup.policy": "compact"} if t.endswith(topics.state) else {})
               for t, p in want.items() if t not in md.topics]
    if missing:
        futs = admin.create_topics(missing, operation_timeout=timeout)
        for t, f in futs.items():
            try:
                f.result(timeout)
            except Exception as e:  # already exists is fine
                if "TOPIC_ALREADY_EXISTS" not in str(e):
                    raise BrokerError(f"could not create topic {t}: {e}") from e
    # wait until metadata shows them
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=timeout)
        if all(t in md.topics for t in want):
            break
        time.sleep(0.1)
    md = admin.list_topics(timeout=timeout)
    for t in (topics.name("events"), topics.name("events_by_source")):
        n = len(md.topics[t].partitions)
        if n != topics.partitions:
            raise BrokerError(f"topic {t} has {n} partitions, configuration says "
                              f"{topics.partitions}", location="topics.partitions",
                              fix="set topics.partitions to the topic's partition count (both "
                              "events topics must match)")
    return want
