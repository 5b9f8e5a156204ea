"""Forwarded-events gateway over real TCP and HTTP sockets and a real broker: good records
flow, malformed / hostile / oversize records go to the dead-letter topic with a reason, and
the listeners keep serving."""

from __future__ import annotations

import gzip
import socket
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from collectors.gateway import GatewayThread, build_gateway
from collectors.settings import CollectorSettings, GatewaySettings
from stream.settings import Settings

from .helpers import dlq_records, events_in

pytestmark = pytest.mark.broker
FIX = Path(__file__).parents[1] / "fixtures" / "collectors"

LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
          b'"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;'
          b'&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><Event><System><EventID>'
          b"&lol3;</EventID></System></Event>")
XXE = (b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><Event>'
       b"<System><EventID>4624</EventID><Computer>&x;</Computer></System></Event>")


def _post(port, body: bytes, headers=None) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/events", data=body, method="POST",
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read() or b"{}")


def _gateway(kafka, topics, tmp_path, max_body=64 * 1024, **gw):
    cs = CollectorSettings(sensor_id="wec01", spool_dir=str(tmp_path / "spool"),
                           checkpoint_dir=str(tmp_path / "cp"), linger_ms=50,
                           gateway=GatewaySettings(tcp_port=0, http_port=0,
                                                   max_record_bytes=4096,
                                                   max_body_bytes=max_body, **gw))
    return build_gateway(Settings(kafka=kafka, topics=topics), cs)


def test_tcp_and_http_good_and_bad_records(kafka, topics, broker, tmp_path):
    xml_batch = (FIX / "wef_batch.xml").read_bytes()
    xml_lines = [x for x in xml_batch.splitlines() if x.startswith(b"<Event ")]
    nx = (FIX / "nxlog.jsonl").read_bytes().splitlines()
    wlb = (FIX / "winlogbeat.jsonl").read_bytes().splitlines()
    th = GatewayThread(_gateway(kafka, topics, tmp_path))
    with th as gw:
        assert gw.tcp_port and gw.http_port
        # --- TCP: XML lines, a multi-line XML event, NXLog, garbage, hostile, oversize
        s = socket.create_connection(("127.0.0.1", gw.tcp_port))
        stream = [xml_lines[0], b"{garbage json", nx[0], LAUGHS, xml_lines[1], XXE,
                  b'{"EventID": 4624, "x": "' + b"A" * 6000 + b'"}', nx[1],
                  xml_lines[2].replace(b"><", b">\n<")]          # one event over many lines
        s.sendall(b"\n".join(stream) + b"\n")
        s.close()
        # a second connection still served after the bad ones
        s = socket.create_connection(("127.0.0.1", gw.tcp_port))
        s.sendall(nx[2] + b"\n" + wlb[0])                         # last record: no newline
        s.close()
        # --- HTTP
        st, body = _post(gw.http_port, xml_batch)                 # WEF batch: 6 events
        assert (st, body["accepted"], body["rejected"], body["format"]) == (202, 6, 0, "xml")
        arr = orjson.dumps([orjson.loads(wlb[1]), {"nope": 1}, orjson.loads(wlb[2])])
        st, body = _post(gw.http_port, arr, {"Content-Type": "application/json"})
        assert (st, body["accepted"], body["rejected"]) == (202, 2, 1)
        bulk = b"".join(b'{"index":{"_index":"winlogbeat"}}\n' + x + b"\n" for x in wlb)
        st, body = _post(gw.http_port, gzip.compress(bulk), {"Content-Encoding": "gzip"})
        assert (st, body["accepted"], body["format"]) == (202, 3, "winlogbeat_bulk")
        st, body = _post(gw.http_port, b"\n".join(nx) + b"\n{bad\n")
        assert (st, body["accepted"], body["rejected"]) == (202, 5, 1)
        st, body = _post(gw.http_port, b"<Events>" + LAUGHS + b"</Events>")
        assert (st, body["accepted"], body["rejected"]) == (202, 0, 1)
        st, _ = _post(gw.http_port, b"x" * (70 * 1024))
        assert st == 413
        st, body = _post(gw.http_port, nx[0])                     # still serving after a 413
        assert st == 202 and body["accepted"] == 1
    rep = th.report
    assert rep["flushed"]
    # what reached Kafka: every good record, in the by-account topic
    got = events_in(broker.bootstrap, topics.name("events"), topics.partitions)
    rids = sorted(e["record_id"] for _, e in got)
    # TCP: 1001,3001,1002,3002,1003,3003,4001 ; HTTP: 6 xml, 4002,5001, 4001,4002,5001,
    # nxlog 3001,3002,3003,3005 (3004 is 5156: counted unknown), 3001
    expected = sorted([1001, 3001, 1002, 3002, 1003, 3003, 4001,
                       1001, 1002, 1003, 1004, 2001, 1005, 4002, 5001, 4001, 4002, 5001,
                       3001, 3002, 3003, 3005, 3001])
    assert rids == expected
    dlq = dlq_records(broker.bootstrap, topics.name("dlq"))
    reasons = [h["itdr-reason"] for _, h in dlq]
    assert sum("invalid JSON" in r for r in reasons) == 2            # TCP + HTTP garbage
    assert sum("hostile XML" in r for r in reasons) == 3             # laughs, XXE, HTTP body
    assert sum("exceeds" in r for r in reasons) == 1                 # oversize TCP record
    assert sum("without EventID" in r for r in reasons) == 1         # {"nope": 1}
    assert len(dlq) == 7
    assert all(h["itdr-component"] == "collector:wec01" for _, h in dlq)
    assert any(v.startswith(b"{garbage") for v, _ in dlq), "DLQ keeps the original bytes"
    assert not any(b"root:" in v for v, _ in dlq), "external entity was resolved"


def test_http_backpressure_answers_429(kafka, topics, tmp_path):
    gw = _gateway(kafka, topics, tmp_path, max_body=4 << 20, max_pending_events=1000)
    th = GatewayThread(gw)
    with th:
        gw.core.pipe.linger_s = 3600                 # keep events pending in the batcher
        gw.core.pipe.batcher.max_events = 1 << 20
        line = (FIX / "nxlog.jsonl").read_bytes().splitlines()[0]
        st, body = _post(gw.http_port, b"\n".join([line] * 1200))
        assert st == 202 and body["accepted"] == 1200
        st, body = _post(gw.http_port, line)
        assert st == 429
        th.call(gw.core.pipe.flush_epoch)            # producer takes them: serving again
        st, body = _post(gw.http_port, line)
        assert st == 202
