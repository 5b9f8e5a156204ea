"""Safe defaults and limits of every listener: loopback bind unless configured, and the
gateway's per-record, per-request and per-connection limits reject over-limit input with a
clear error (dead-letter reason / HTTP status) while the listener keeps serving.

The gateway runs on real sockets around the real GatewayCore and CollectorPipeline; only
the Kafka producer is an in-memory recorder (the broker path is covered by
tests/collectors/test_gateway.py)."""

from __future__ import annotations

import ast
import gzip
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from collectors.gateway import Gateway, GatewayCore, GatewayThread
from collectors.pipeline import CollectorPipeline
from collectors.settings import CollectorSettings, GatewaySettings
from sinks.settings import SinksSettings
from stream import wire
from stream.dlq import parse_headers
from stream.settings import TopicSettings, WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
GOOD = (b'{"EventID": 4625, "Channel": "Security", "EventTime": "2024-03-01T10:00:00Z", '
        b'"TargetUserName": "alice", "IpAddress": "10.0.0.5", "Status": "0xC000006A"}')


class RecordingProducer:
    """In-memory stand-in for collectors.producer.BatchProducer."""

    backpressure = False
    last_delivery_ms = 0

    class _Epochs:
        def lag_events(self) -> int:
            return 0

    def __init__(self):
        self.batches: list = []
        self.raw: list = []
        self.epochs = self._Epochs()

    def send_batch(self, m) -> None:
        self.batches.append(m)

    def send_raw(self, topic, value, *, key=None, headers=None) -> None:
        self.raw.append((topic, value, parse_headers(headers)))

    def heartbeat(self, topic, value, key=None) -> None:
        pass

    def service(self, timeout: float = 0.0) -> None:
        pass

    def close_epoch(self, positions, n_read=0) -> int:
        return 0

    def flush(self, timeout: float = 30.0) -> bool:
        return True

    def stats(self) -> dict:
        return {}

    def events(self) -> int:
        return sum(wire.decode(m.value).n for m in self.batches
                   if m.topic_kind == 0) if self.batches and hasattr(
            self.batches[0], "topic_kind") else sum(getattr(m, "n_events", 0)
                                                    for m in self.batches)


def _gateway(**gw) -> tuple[Gateway, RecordingProducer]:
    cs = CollectorSettings(sensor_id="gw-test", linger_ms=20,
                           gateway=GatewaySettings(**{"tcp_port": 0, "http_port": 0,
                                                      "max_record_bytes": 2048,
                                                      "max_body_bytes": 16 * 1024, **gw}))
    prod = RecordingProducer()
    pipe = CollectorPipeline(prod, TopicSettings(partitions=2), sources=[], linger_ms=20,
                             sensor_id="gw-test")
    return Gateway(GatewayCore(pipe, cs)), prod


def _post(port, body: bytes, headers=None) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/events", data=body, method="POST",
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read() or b"{}")


def _wait(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def _reasons(prod) -> list[str]:
    return [h.get("itdr-reason", "") for _t, _v, h in prod.raw]


# -- bind addresses ---------------------------------------------------------------------------
def test_every_listener_defaults_to_loopback():
    assert GatewaySettings().host == "127.0.0.1"
    assert CollectorSettings().metrics_host == "127.0.0.1"
    assert WorkerSettings().web_host == "127.0.0.1"
    assert SinksSettings().metrics_host == "127.0.0.1"


def test_every_metrics_server_is_started_with_an_explicit_address():
    """prometheus_client.start_http_server binds 0.0.0.0 unless given ``addr``: every call
    in the product must pass the configured (loopback by default) address."""
    calls = []
    for path in [p for d in ("stream", "collectors", "sinks", "detectors")
                 for p in (ROOT / d).rglob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(
                    node.func, "id", "")) == "start_http_server":
                calls.append((path.relative_to(ROOT), node))
    assert calls, "no start_http_server call found: the test would be vacuous"
    for path, node in calls:
        assert len(node.args) >= 2 or any(k.arg == "addr" for k in node.keywords), \
            f"{path}:{node.lineno}: start_http_server without addr binds every interface"


def test_gateway_binds_loopback_by_default():
    gw, _prod = _gateway()
    with GatewayThread(gw) as g:
        assert g.tcp_server.sockets[0].getsockname()[0] == "127.0.0.1"
        site_socks = [s for site in g.http_runner.sites for s in site._server.sockets]
        assert site_socks and all(s.getsockname()[0] == "127.0.0.1" for s in site_socks)


def test_worker_web_bind_comes_from_settings():
    """The Faust web server (metrics, probes) binds worker.web_host, not a literal."""
    src = (ROOT / "stream" / "worker.py").read_text(encoding="utf-8")
    assert "web_bind=w.web_host" in src and "web_host=w.web_host" in src


# -- gateway limits ---------------------------------------------------------------------------
def test_tcp_oversize_record_rejected_and_connection_keeps_serving():
    gw, prod = _gateway()
    with GatewayThread(gw) as g:
        s = socket.create_connection(("127.0.0.1", g.tcp_port))
        s.sendall(GOOD + b"\n")
        s.sendall(b'{"EventID": 4625, "x": "' + b"A" * 5000 + b'"}\n')      # > 2048
        s.sendall(b"B" * 200_000)                                            # no terminator
        s.sendall(b"\n" + GOOD + b"\n")
        s.close()
        assert _wait(lambda: g.core.accepted == 2 and g.core.rejected == 2)
    reasons = _reasons(prod)
    assert any("exceeds the 2048 byte limit" in r for r in reasons), reasons
    assert any("no terminator" in r for r in reasons), reasons
    assert all(len(v) <= 2048 for _t, v, _h in prod.raw)          # DLQ copy bounded too


def test_tcp_connection_limit_refuses_extra_connections_only():
    gw, _prod = _gateway(max_connections=2)
    with GatewayThread(gw) as g:
        a = socket.create_connection(("127.0.0.1", g.tcp_port))
        b = socket.create_connection(("127.0.0.1", g.tcp_port))
        assert _wait(lambda: g.connections == 2)
        c = socket.create_connection(("127.0.0.1", g.tcp_port))
        c.settimeout(5)
        assert c.recv(1) == b""                                 # closed at once
        c.close()
        a.sendall(GOOD + b"\n")
        b.sendall(GOOD + b"\n")
        assert _wait(lambda: g.core.accepted == 2)             # the others still served
        a.close()
        b.close()
        assert _wait(lambda: g.connections == 0)
        d = socket.create_connection(("127.0.0.1", g.tcp_port))    # a slot is free again
        d.sendall(GOOD + b"\n")
        d.close()
        assert _wait(lambda: g.core.accepted == 3)


def test_tcp_idle_connection_is_closed():
    gw, _prod = _gateway(idle_timeout_s=0.3)
    with GatewayThread(gw) as g:
        s = socket.create_connection(("127.0.0.1", g.tcp_port))
        s.settimeout(5)
        t0 = time.monotonic()
        assert s.recv(1) == b""
        assert time.monotonic() - t0 < 4
        assert _wait(lambda: g.connections == 0)


def test_http_limits_and_serving_continues():
    gw, prod = _gateway()
    with GatewayThread(gw) as g:
        port = g.http_port
        st, body = _post(port, GOOD + b"\n" + b"x" * (20 * 1024))          # > max_body
        assert st == 413 and "exceeds" in body["error"]
        bomb = gzip.compress(b"\n" * (8 << 20))                            # 8 MiB inflated
        assert len(bomb) < 16 * 1024
        st, body = _post(port, bomb)
        assert st == 413 and "too large" in body["error"]
        st, body = _post(port, bomb, {"Content-Encoding": "gzip"})         # aiohttp inflates
        assert st == 413, body
        big = b'{"EventID": 4625, "x": "' + b"A" * 4000 + b'"}'           # > max_record
        st, body = _post(port, GOOD + b"\n" + big + b"\n" + GOOD)
        assert (st, body["accepted"], body["rejected"]) == (202, 2, 1)
        st, body = _post(port, GOOD)                                       # still serving
        assert (st, body["accepted"]) == (202, 1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            assert r.status == 200
    assert any("exceeds the 2048 byte limit" in r for r in _reasons(prod))


def test_http_hostile_xml_body_refused_whole():
    gw, prod = _gateway()
    lol = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;'
           b'&a;&a;&a;&a;&a;&a;&a;">]><Events><Event><System><EventID>&b;</EventID></System>'
           b"</Event></Events>")
    with GatewayThread(gw) as g:
        st, body = _post(g.http_port, lol)
        assert (st, body["accepted"], body["rejected"]) == (202, 0, 1)
        assert any("hostile XML refused" in r for r in _reasons(prod))
        st, body = _post(g.http_port, GOOD)
        assert (st, body["accepted"]) == (202, 1)
