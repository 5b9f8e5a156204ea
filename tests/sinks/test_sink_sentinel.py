"""Sentinel sink: row mapping, and the real azure-monitor-ingestion SDK against a local HTTPS
server implementing the Logs Ingestion contract, fed from a real broker."""

from __future__ import annotations

import uuid
from collections import Counter

import orjson
import pytest

from sinks.base import DeliveryLedger
from sinks.runner import SinkRunner
from sinks.sentinel import (ALERT_COLUMNS, EVENT_COLUMNS, SentinelEventsSink, SentinelSink,
                            alert_to_row, event_to_row, tactics_for)
from sinks.settings import SinksSettings
from stream import metrics
from stream.schema import FLAG_FAILURE, IdentityEvent, batch_from_events
from stream.wire import encode

from .helpers import (ThreadedRunner, dlq_records, make_alert, produce, produce_alerts,
                      root_settings, wait_for)
from .ingestion_server import IngestionServer, StaticTokenCredential

STREAM = "Custom-OpenITDRAlerts_CL"


@pytest.fixture
def server():
    with IngestionServer() as s:
        yield s


def sentinel_conf(server, **over) -> dict:
    conf = {"batching": {"max_records": 40, "max_wait_s": 0.2},
            "retry": {"initial_backoff_s": 0.05, "max_backoff_s": 0.3},
            "sentinel": {"enabled": True, "endpoint": server.endpoint,
                         "dcr_immutable_id": server.dcr, "tenant_id": "t", "client_id": "c",
                         "client_secret": "s", "connection_verify": str(server.ca_file),
                         "events_stream_name": "Custom-OpenITDRIdentityEvents_CL"}}
    for k, v in over.items():
        conf.setdefault(k, {}).update(v) if isinstance(v, dict) else conf.__setitem__(k, v)
    return conf


def make_runner(kafka, topics, conf, tmp_path, *, group=None, cls=SentinelSink, token=None):
    settings = root_settings(kafka, topics, conf)
    sinks = SinksSettings.from_root(settings)
    ledger = DeliveryLedger(tmp_path / "sentinel-delivered.db") if cls is SentinelSink else None
    kw = {"ledger": ledger} if ledger else {}
    sink = cls(sinks.sentinel, credential=StaticTokenCredential(token or "test-token"),
               batching=sinks.batching, retry=sinks.retry, **kw)
    return SinkRunner(sink, settings, sinks, group_id=group or f"g-{uuid.uuid4().hex[:6]}")


def keys(rows) -> list[tuple[str, int]]:
    return [(r["AlertId"], r["AlertVersion"]) for r in rows]


# -- mapping ----------------------------------------------------------------------------------
def test_alert_row_has_exactly_the_table_columns():
    a = make_alert(3, 2, detector="dcsync", severity="high")
    row = alert_to_row(a)
    assert list(row) == list(ALERT_COLUMNS)
    assert row["AlertId"] == a.id and row["AlertVersion"] == 2
    assert row["Severity"] == "High" and row["Detector"] == "dcsync"
    assert row["Accounts"] == a.entities.accounts and row["IpAddresses"] == ["10.0.0.3"]
    assert row["MitreTactics"] == "CredentialAccess" and row["EvidenceCount"] == 20
    assert row["Details"]["evidence"]["event_ids"] == [4625, 4771]
    assert tactics_for(["T1550.003", "T1021"]) == ["DefenseEvasion", "LateralMovement"]
    big = alert_to_row(make_alert(1, details_size=200_000), max_details_bytes=5000)
    assert big["Details"]["truncated"] is True
    assert len(orjson.dumps(big["Details"])) <= 5000


def test_identity_event_maps_to_identity_logon_events_columns():
    ev = IdentityEvent(time_ms=1_700_000_000_123, event_id=4625, record_id=77, status=0xC000006D,
                       sub_status=0xC000006A, logon_type=3, flags=FLAG_FAILURE, action="logon",
                       protocol="ntlm", account="corp\\alice", account_domain="CORP",
                       src_ip="10.1.2.3", src_host="ws7", computer="dc1.corp.local",
                       auth_package="NTLM")
    row = event_to_row(ev)
    assert list(row) == list(EVENT_COLUMNS)
    assert row["TimeGenerated"] == "2023-11-14T22:13:20.123Z"
    assert (row["ActionType"], row["FailureReason"]) == ("LogonFailed", "WrongPassword")
    assert (row["AccountName"], row["AccountDomain"]) == ("alice", "CORP")
    assert (row["LogonType"], row["Protocol"]) == ("Resource access", "NTLM")
    assert (row["IPAddress"], row["DeviceName"], row["DestinationDeviceName"]) == (
        "10.1.2.3", "ws7", "dc1.corp.local")
    assert row["EventId"] == 4625 and row["ReportId"] == 77
    assert row["AdditionalFields"]["auth_package"] == "NTLM"
    ok = event_to_row(IdentityEvent(time_ms=1, event_id=4768, action="tgt_request",
                                    protocol="kerberos", account="corp\\bob"))
    assert (ok["ActionType"], ok["FailureReason"], ok["Protocol"]) == (
        "LogonSuccess", "", "Kerberos")


def test_settings_errors_name_the_key_and_fix():
    from stream.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        SinksSettings.from_dict({"sentinel": {"enabled": True, "endpoint": "http://x"}})
    assert e.value.location == "sinks.sentinel" and "dcr_immutable_id" in str(e.value)
    with pytest.raises(ConfigError) as e:
        SinksSettings.from_dict({"syslog": {"protcol": "tcp"}})
    assert e.value.location == "sinks.syslog.protcol" and "protocol" in e.value.fix
    with pytest.raises(ConfigError) as e:
        SinksSettings.from_dict({"syslog": {"protocol": "http"}})
    assert "udp" in str(e.value)


# -- delivery ---------------------------------------------------------------------------------
def test_throttling_episode_and_restart_no_loss_no_duplicates(kafka, topics, server, tmp_path):
    # small calls so one flush needs several Logs Ingestion calls (partial progress)
    conf = sentinel_conf(server, sentinel={"max_call_bytes": 20_000})
    first = [make_alert(i, v) for i in range(80) for v in (1, 2)]
    produce_alerts(kafka, topics, first)
    bp0 = metrics.SINK_BACKPRESSURE.labels("sentinel")._value.get()
    group = f"g-{uuid.uuid4().hex[:6]}"
    # throttling episode: after the first calls, three calls get 429 + Retry-After
    runner = make_runner(kafka, topics, conf, tmp_path, group=group)
    with ThreadedRunner(runner):
        wait_for(lambda: len(server.requests) >= 2, msg="first calls")
        server.push(429, 3, {"Retry-After": "1"})
        wait_for(lambda: len(server.all_rows()) >= 100, msg="progress")
    # restart (same group), with re-sent alerts from a crashed worker and new ones
    resent = first[:30]
    more = [make_alert(i, 3) for i in range(40)] + [make_alert(i) for i in range(80, 120)]
    produce_alerts(kafka, topics, resent + more)
    runner2 = make_runner(kafka, topics, conf, tmp_path, group=group)
    with ThreadedRunner(runner2):
        wait_for(lambda: len(server.all_rows()) >= len(first) + len(more), msg="all rows")
        wait_for(lambda: runner2.sink.batch.items == [], msg="idle")
    rows = server.all_rows()
    expected = {(a.id, a.version) for a in first + more}
    dup = [k for k, c in Counter(keys(rows)).items() if c > 1]
    assert not dup, f"duplicate rows: {dup[:5]}"
    assert set(keys(rows)) == expected
    assert server.statuses().count(429) == 3
    assert metrics.SINK_BACKPRESSURE.labels("sentinel")._value.get() >= bp0 + 1
    assert all(set(r) == set(ALERT_COLUMNS) for r in rows)


def test_lost_offsets_do_not_duplicate_rows(kafka, topics, server, tmp_path):
    """A sink crashing after delivery but before its commit re-reads the records: the ledger
    drops them (here: a second group re-reads everything)."""
    conf = sentinel_conf(server)
    alerts = [make_alert(i) for i in range(50)]
    produce_alerts(kafka, topics, alerts)
    with ThreadedRunner(make_runner(kafka, topics, conf, tmp_path)):
        wait_for(lambda: len(server.all_rows()) == 50, msg="50 rows")
    runner = make_runner(kafka, topics, conf, tmp_path)      # offsets "lost"
    with ThreadedRunner(runner):
        wait_for(lambda: runner.flushes >= 1 and not runner.sink.batch.items, msg="re-read")
    assert len(server.all_rows()) == 50
    assert runner.sink.skipped_duplicates == 50


def test_destination_down_then_recovers_without_loss(kafka, topics, server, tmp_path):
    server.push(503, 6)
    server.push(500, 2)
    r0 = metrics.SINK_RETRIED.labels("sentinel")._value.get()
    produce_alerts(kafka, topics, [make_alert(i) for i in range(60)])
    with ThreadedRunner(make_runner(kafka, topics, sentinel_conf(server), tmp_path)):
        wait_for(lambda: len(server.all_rows()) == 60, msg="60 rows")
    assert sorted(server.statuses()[:8]) == [500, 500] + [503] * 6
    assert metrics.SINK_RETRIED.labels("sentinel")._value.get() >= r0 + 8
    assert len(set(keys(server.all_rows()))) == 60


def test_wrong_token_is_retried_not_dropped(kafka, topics, server, tmp_path):
    produce_alerts(kafka, topics, [make_alert(i) for i in range(5)])
    runner = make_runner(kafka, topics, sentinel_conf(server), tmp_path, token="wrong")
    with ThreadedRunner(runner):
        wait_for(lambda: server.statuses().count(401) >= 2, msg="401s")
        runner.sink.client._config.authentication_policy._credential.token = "test-token"
        wait_for(lambda: len(server.all_rows()) == 5, msg="rows after fixing the token")


def test_rejected_records_are_dead_lettered_and_do_not_block(kafka, topics, server, tmp_path):
    good = [make_alert(i) for i in range(30)]
    bad = make_alert(99)
    bad = bad.model_copy(update={"description": "REJECT-ME: the DCR transform fails on it"})
    produce_alerts(kafka, topics, good[:10] + [bad] + good[10:20])
    produce(kafka, topics.name("alerts"), [(b"poison", b"\x00\x01 not json")])
    with ThreadedRunner(make_runner(kafka, topics, sentinel_conf(server), tmp_path)):
        wait_for(lambda: len(server.all_rows()) == 20, msg="20 rows")
        server.push(413, 1)                       # payload too large for a one-alert batch
        produce_alerts(kafka, topics, [good[20]])
        wait_for(lambda: 413 in server.statuses(), msg="413")
        produce_alerts(kafka, topics, good[21:])
        wait_for(lambda: len(server.all_rows()) == 29, msg="29 rows")
        dl = dlq_records(kafka, topics, 3)
    assert set(keys(server.all_rows())) == {(a.id, 1) for a in good if a is not good[20]}
    reasons = {d["key"]: d["itdr-reason"] for d in dl}
    assert "not a valid alert" in reasons[b"poison"]
    assert "(400)" in reasons[bad.id.encode()]
    assert "(413)" in reasons[good[20].id.encode()]
    assert all(d["itdr-component"] == "sink:sentinel" for d in dl)


def test_identity_events_stream(kafka, topics, server, tmp_path):
    events = [IdentityEvent(time_ms=1_700_000_000_000 + i, event_id=4624, record_id=i,
                            logon_type=3, action="logon", protocol="kerberos",
                            account=f"corp\\u{i}", computer="dc1") for i in range(300)]
    payloads = [encode(batch_from_events(events[k:k + 100])) for k in range(0, 300, 100)]
    produce(kafka, topics.name("events"), [(None, p) for p in payloads] + [(None, b"XXXX")])
    conf = sentinel_conf(server, sentinel={"max_call_bytes": 30_000})
    runner = make_runner(kafka, topics, conf, tmp_path, cls=SentinelEventsSink)
    with ThreadedRunner(runner):
        wait_for(lambda: len(server.all_rows("Custom-OpenITDRIdentityEvents_CL")) == 300,
                 msg="300 event rows")
        dl = dlq_records(kafka, topics, 1)
    rows = server.all_rows("Custom-OpenITDRIdentityEvents_CL")
    assert sorted(r["ReportId"] for r in rows) == list(range(300))
    assert runner.sink.calls > 3                         # split under the call limit
    assert "not a valid event batch" in dl[0]["itdr-reason"]
