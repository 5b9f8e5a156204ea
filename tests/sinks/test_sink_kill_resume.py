"""Every ledger sink, run as a real ``itdr sink NAME -c cfg.yaml`` process, SIGKILLed mid-stream
and restarted, loses no alert (the workspace sink has the same test in test_sink_workspace.py).

Duplicates: docs/sinks.md ("Residual duplicate windows") and ``DeliveryLedger`` document one
window only -- a crash between the destination's acknowledgement and the ledger write. So the
tests read the destination and the ledger file right after the kill and assert that every
duplicated (id, version) was acknowledged-but-not-yet-in-the-ledger at that moment (at most
one batch), that none is repeated more than once, and that alerts re-sent after the kill whose
pair was in the ledger are never delivered again.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import yaml
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from .helpers import make_alert, produce_alerts, wait_for
from .ingestion_server import IngestionServer
from .syslog_receiver import SyslogReceiver

MAX_RECORDS = 20
BATCHING = {"batching": {"max_records": MAX_RECORDS, "max_wait_s": 0.5},
            "retry": {"initial_backoff_s": 0.1, "max_backoff_s": 0.5},
            "session_timeout_ms": 6000}
N_V1, N_V2 = 2000, 600          # 2600 alert records: ids 0..1999 v1, ids 0..599 v2
RESENT = 100                    # ledger pairs re-produced after the kill (worker re-send)

Pair = tuple[str, int]


def _alerts():
    return [make_alert(i, 1) for i in range(N_V1)] + [make_alert(i, 2) for i in range(N_V2)]


def _ledger(path: Path) -> set[Pair]:
    if not path.exists():
        return set()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return {(i, int(v)) for i, v in db.execute("SELECT id, version FROM delivered")}
    except sqlite3.OperationalError:               # created, table not there yet
        return set()
    finally:
        db.close()


def _start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as err:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                start_new_session=True)


def _kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(10)


def _kill_mid_stream_then_resume(name: str, cfg: Path, kafka, topics, tmp_path: Path,
                                 delivered: Callable[[], list[Pair]],
                                 env: dict | None = None) -> None:
    """Produce the alerts, run ``itdr sink <name>``, SIGKILL its process group once some but
    not all alerts arrived, re-send some already-delivered alerts, restart, wait for all."""
    alerts = _alerts()
    want = {(a.id, a.version) for a in alerts}
    assert len(want) == N_V1 + N_V2
    produce_alerts(kafka, topics, alerts)
    ledger_path = tmp_path / "state" / f"{name}-delivered.db"
    cmd = [sys.executable, "-m", "stream.cli", "sink", name, "-c", str(cfg)]
    env = {k: v for k, v in (env or os.environ).items() if k != "AZURE_FEDERATED_TOKEN_FILE"}
    log = tmp_path / f"{name}.log"
    p = _start(cmd, env, log)
    try:
        # the ledger is cheap to read: the kill lands while the stream is still flowing
        wait_for(lambda: len(_ledger(ledger_path)) >= 150, timeout=30, interval=0.01,
                 msg=f"first batches of {name}")
        time.sleep(random.uniform(0.0, 0.04))     # anywhere in the flush cycle
        os.killpg(p.pid, signal.SIGKILL)           # mid-stream, whatever batch is in flight
        p.wait(10)
        time.sleep(0.5)                            # let the destination finish in-flight input
        at_kill = Counter(delivered())
        ledger_at_kill = _ledger(ledger_path)
        assert 0 < len(at_kill) < len(want), f"{name}: not killed mid-stream ({len(at_kill)})"
        assert set(at_kill) <= want
        assert max(at_kill.values()) == 1, "duplicates before any restart"
        assert ledger_at_kill <= set(at_kill), "ledger holds pairs the destination never got"
        window = set(at_kill) - ledger_at_kill     # acknowledged, not yet in the ledger
        assert len(window) <= MAX_RECORDS, f"{len(window)} pairs acked but not in the ledger"
        # a worker re-sends alerts already delivered (in the ledger): never delivered twice
        # (they are outside the window, so the duplicate check below covers them)
        resent = sorted(ledger_at_kill)[:RESENT]
        assert resent
        by_pair = {(a.id, a.version): a for a in alerts}
        produce_alerts(kafka, topics, [by_pair[k] for k in resent])

        p = _start(cmd, env, log)
        wait_for(lambda: set(delivered()) == want, timeout=40, interval=0.1,
                 msg=f"every alert through {name} after the restart")
        # ... and has consumed (and committed) the re-sent records too
        wait_for(lambda: _lag(kafka, f"itdr-sink-{name}", topics.name("alerts"),
                              topics.partitions) == 0, timeout=20, msg="offsets committed")
        p.send_signal(signal.SIGTERM)              # graceful stop: exit code 0
        assert p.wait(20) == 0, log.read_text()[-3000:]
    finally:
        _kill(p)
    got = Counter(delivered())
    assert set(got) == want                        # nothing lost, nothing foreign
    dups = {k: c for k, c in got.items() if c > 1}
    assert max(got.values()) <= 2, f"a pair delivered {max(got.values())} times"
    assert set(dups) <= window, (f"{name}: {len(set(dups) - window)} duplicates outside the "
                                 "documented ack-before-ledger window")
    assert _ledger(ledger_path) == want            # the ledger ends complete
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def _lag(kafka, group: str, topic: str, partitions: int) -> int:
    """Records of ``topic`` after the committed offsets of ``group`` (no group join)."""
    c = Consumer({**kafka.as_librdkafka(), "group.id": group, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        committed = {tp.partition: tp.offset for tp in c.committed(tps, timeout=5)}
        return sum(c.get_watermark_offsets(tp, timeout=5)[1] - max(committed[tp.partition], 0)
                   for tp in tps)
    finally:
        c.close()


def _config(tmp_path: Path, kafka, topics, sinks: dict) -> Path:
    cfg = tmp_path / "itdr.yaml"
    cfg.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": kafka.bootstrap_servers},
        "topics": {"prefix": topics.prefix, "partitions": topics.partitions},
        "sinks": {**BATCHING, "state_dir": str(tmp_path / "state"),
                  # unique per test, the same for both runs: the restart takes the
                  # partitions back at once (static membership)
                  "group_instance_id": f"kill-{uuid.uuid4().hex[:8]}", **sinks}}))
    return cfg


class _TokenEndpoint:
    """An App Service managed-identity token endpoint (IDENTITY_ENDPOINT / IDENTITY_HEADER),
    so the sink process authenticates with azure-identity as in production, locally."""

    def __init__(self, token: str):
        tok = token
        self.calls = 0

        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                outer.calls += 1
                ok = self.headers.get("X-IDENTITY-HEADER") == "local-secret"
                body = json.dumps({"access_token": tok, "token_type": "Bearer",
                                   "expires_on": str(int(time.time()) + 3600),
                                   "resource": "https://monitor.azure.com"} if ok else
                                  {"error": "unauthorized"}).encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/msi/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_sentinel_sink_killed_mid_batch_resumes_without_loss(kafka, topics, tmp_path):
    server = IngestionServer().start()
    tokens = _TokenEndpoint(server.token)
    try:
        cfg = _config(tmp_path, kafka, topics, {"sentinel": {
            "enabled": True, "endpoint": server.endpoint, "dcr_immutable_id": server.dcr,
            "use_managed_identity": True, "connection_verify": str(server.ca_file)}})
        env = dict(os.environ, IDENTITY_ENDPOINT=tokens.url, IDENTITY_HEADER="local-secret")

        def delivered() -> list[Pair]:
            return [(r["AlertId"], int(r["AlertVersion"])) for r in server.all_rows()]

        _kill_mid_stream_then_resume("sentinel", cfg, kafka, topics, tmp_path, delivered, env)
        assert tokens.calls >= 2                   # each process got its own token
        # no call refused or failed, except at most the one whose body the kill cut short
        # (the test server answers 400 InvalidJson if its socket is still writable)
        st = Counter(server.statuses())
        assert set(st) <= {204, 400} and st[400] <= 1, st
    finally:
        tokens.close()
        server.stop()


_CEF_PAIR = re.compile(r" externalId=([0-9a-f]+) cn1=(\d+) ")


def test_syslog_tcp_sink_killed_mid_batch_resumes_without_loss(kafka, topics, tmp_path):
    rx = SyslogReceiver("tcp")
    try:
        cfg = _config(tmp_path, kafka, topics, {"syslog": {
            "enabled": True, "host": "127.0.0.1", "port": rx.port, "protocol": "tcp"}})

        def delivered() -> list[Pair]:
            out = []
            for m in rx.received():
                hit = _CEF_PAIR.search(m)
                assert hit, f"not a CEF alert message: {m[:200]!r}"
                out.append((hit.group(1), int(hit.group(2))))
            return out

        _kill_mid_stream_then_resume("syslog", cfg, kafka, topics, tmp_path, delivered)
    finally:
        rx.close()


def _read_topic(kafka, topic: str, partitions: int, timeout: float = 10.0) -> list:
    """Every record of ``topic`` up to the current high watermarks (no group, no commit)."""
    c = Consumer({**kafka.as_librdkafka(), "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "enable.partition.eof": False})
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
                for p in range(partitions)}
        todo = {p for p, hi in ends.items() if hi > 0}
        if not todo:
            return []
        c.assign([TopicPartition(topic, p, 0) for p in todo])
        out = []
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            for m in c.consume(500, 0.2):
                if m.error():
                    continue
                if m.offset() < ends[m.partition()]:
                    out.append(m)
                if m.offset() >= ends[m.partition()] - 1:
                    todo.discard(m.partition())
        assert not todo, f"could not read {topic} up to its high watermarks"
        return out
    finally:
        c.close()


def test_alerts_topic_sink_killed_mid_batch_resumes_without_loss(kafka, topics, tmp_path):
    dest = f"{topics.prefix}soc.alerts"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    admin.create_topics([NewTopic(dest, 2, 1)])[dest].result(10)
    cfg = _config(tmp_path, kafka, topics, {"alerts_topic": {
        "enabled": True, "topic": dest, "delivery_timeout_s": 5}})
    keys_ok: list[bool] = []

    def delivered() -> list[Pair]:
        out = []
        for m in _read_topic(kafka, dest, 2):
            h = dict(m.headers())
            out.append((h["itdr-alert-id"].decode(), int(h["itdr-alert-version"])))
            keys_ok.append(m.key() == h["itdr-alert-id"])
        return out

    _kill_mid_stream_then_resume("alerts-topic", cfg, kafka, topics, tmp_path, delivered)
    assert keys_ok and all(keys_ok)                # keyed by alert id
