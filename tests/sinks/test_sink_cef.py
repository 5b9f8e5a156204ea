"""CEF syslog sink: formatting and escaping, delivery over UDP, TCP and TLS to local collectors
(with an outage), dead letters."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from sinks.base import DeliveryLedger
from sinks.cef import SyslogSink, cef_escape_ext, cef_escape_header, format_cef, syslog_frame
from sinks.runner import SinkRunner
from sinks.settings import SinksSettings, SyslogSettings
from stream.broker import free_port

from .helpers import (ThreadedRunner, dlq_records, make_alert, produce, produce_alerts,
                      root_settings, wait_for)
from .ingestion_server import make_self_signed
from .syslog_receiver import SyslogReceiver


def parse_ext(cef: str) -> dict[str, str]:
    """Split a CEF record into extension key/values (honouring escapes)."""
    parts = re.split(r"(?<!\\)\|", cef, maxsplit=7)
    ext = parts[7]
    out = {}
    for m in re.finditer(r"(\w+)=((?:[^=\\]|\\.)*?)(?= \w+=|$)", ext):
        out[m.group(1)] = re.sub(r"\\(.)", lambda x: {"n": "\n", "r": "\r"}.get(
            x.group(1), x.group(1)), m.group(2))
    return out


def test_cef_format_and_escaping():
    a = make_alert(5, 3, detector="dcsync", severity="high")
    a = a.model_copy(update={"title": "Replication | by a=non-DC\\host",
                             "description": "line1\nuser=corp\\bob | x"})
    cef = format_cef(a, version="1.2.3")
    head = re.split(r"(?<!\\)\|", cef)
    assert head[:7] == ["CEF:0", "OpenITDR", "OpenITDR", "1.2.3", "dcsync",
                        "Replication \\| by a=non-DC\\\\host", "8"]
    ext = parse_ext(cef)
    assert ext["cs2"] == a.id and ext["cs2Label"] == "AlertId"
    assert ext["cs1"] == "T1110.003,TA0006" and ext["cnt"] == "30"
    assert ext["suser"] == "corp\\user5" and ext["duser"] == "corp\\victim0"
    assert ext["shost"] == "ws5.corp.local" and ext["dhost"] == "dc1.corp.local"
    assert ext["src"] == "10.0.0.5" and ext["cn1"] == "3"
    assert ext["start"] == str(a.first_seen_ms) and ext["end"] == str(a.last_seen_ms)
    assert ext["cs3"] == "line1\nuser=corp\\bob | x"
    assert "\n" not in cef
    assert cef_escape_ext("a=b\\c\r\n") == "a\\=b\\\\c\\n"
    assert cef_escape_header("a|b\\") == "a\\|b\\\\"
    linked = parse_ext(format_cef(a, link_base="https://itdr.example/alerts/"))
    assert linked["cs3"] == f"https://itdr.example/alerts/{a.id}"
    frame = syslog_frame(a, cef, SyslogSettings(facility=10), hostname="sink1")
    assert frame.startswith("<83>1 ") and " sink1 openitdr - alert - CEF:0|" in frame


def _runner(kafka, topics, tmp_path, syslog: dict):
    settings = root_settings(kafka, topics, {
        "batching": {"max_records": 25, "max_wait_s": 0.2},
        "retry": {"initial_backoff_s": 0.1, "max_backoff_s": 0.4},
        "syslog": {"enabled": True, "host": "127.0.0.1", **syslog}})
    sinks = SinksSettings.from_root(settings)
    sink = SyslogSink(sinks.syslog, batching=sinks.batching, retry=sinks.retry,
                      ledger=DeliveryLedger(tmp_path / f"ledger-{uuid.uuid4().hex[:6]}.db"))
    return SinkRunner(sink, settings, sinks, group_id=f"g-{uuid.uuid4().hex[:6]}")


def _ids(rx: SyslogReceiver) -> list[tuple[str, str]]:
    out = []
    for m in rx.received():
        ext = parse_ext(m[m.index("CEF:0|"):])
        out.append((ext["cs2"], ext["cn1"]))
    return out


def test_udp_delivery(kafka, topics, tmp_path):
    rx = SyslogReceiver("udp")
    try:
        alerts = [make_alert(i) for i in range(40)]
        produce_alerts(kafka, topics, alerts)
        with ThreadedRunner(_runner(kafka, topics, tmp_path, {"protocol": "udp",
                                                              "port": rx.port})):
            wait_for(lambda: len(rx.received()) == 40, msg="40 datagrams")
        assert sorted(_ids(rx)) == sorted((a.id, "1") for a in alerts)
    finally:
        rx.close()


def test_tcp_collector_down_then_up_no_loss_and_poison_to_dlq(kafka, topics, tmp_path):
    port = free_port()
    alerts = [make_alert(i, v) for i in range(50) for v in (1, 2)]
    produce_alerts(kafka, topics, alerts[:40])
    produce(kafka, topics.name("alerts"), [(b"poison", b"[1, 2, 3]")])
    produce_alerts(kafka, topics, alerts[40:] + alerts[:10])     # + re-sent duplicates
    runner = _runner(kafka, topics, tmp_path, {"protocol": "tcp", "port": port})
    rx = None
    try:
        with ThreadedRunner(runner):
            time.sleep(1.5)                                      # collector down: refused
            assert runner.sink.sent_messages == 0
            rx = SyslogReceiver("tcp", port=port)
            wait_for(lambda: len(rx.received()) >= 100, msg="100 messages")
            time.sleep(0.3)
            # the collector restarts: the sink notices the closed connection and reconnects
            rx.close()
            rx2 = SyslogReceiver("tcp", port=port)
            more = [make_alert(i, 3) for i in range(20)]
            produce_alerts(kafka, topics, more)
            wait_for(lambda: len(rx2.received()) == 20, msg="20 after collector restart")
            dl = dlq_records(kafka, topics, 1)
        got = _ids(rx) + _ids(rx2)
        assert sorted(got) == sorted((a.id, str(a.version)) for a in alerts + more)
        assert dl[0]["key"] == b"poison" and "not a valid alert" in dl[0]["itdr-reason"]
        rx2.close()
    finally:
        if rx:
            rx.close()


@pytest.mark.parametrize("framing", ["newline", "octet"])
def test_tls_delivery_verifies_the_collector(kafka, topics, tmp_path, framing):
    cert, key = make_self_signed(tmp_path)
    rx = SyslogReceiver("tls", framing=framing, certfile=cert, keyfile=key)
    try:
        alerts = [make_alert(i) for i in range(30)]
        produce_alerts(kafka, topics, alerts)
        runner = _runner(kafka, topics, tmp_path, {"protocol": "tls", "port": rx.port,
                                                   "framing": framing, "ca_file": str(cert)})
        with ThreadedRunner(runner):
            wait_for(lambda: len(rx.received()) == 30, msg="30 tls messages")
        assert sorted(_ids(rx)) == sorted((a.id, "1") for a in alerts)
        assert all(m.startswith("<8") and "CEF:0|OpenITDR|OpenITDR|" in m
                   for m in rx.received())
    finally:
        rx.close()
