"""Secrets never leak: a SASL password, an SSL key password, a Sentinel client secret or a
PostgreSQL DSN password must not appear in logs (DEBUG), error messages, CLI / --json
output, the config schema, or the repr/str of any settings object."""

from __future__ import annotations

import logging
import time

import pytest
import yaml

from collectors.settings import CollectorSettings, collector_settings
from sinks.settings import (AlertsTopicSettings, SentinelSettings, SinksSettings,
                            WorkspaceSettings)
from stream import cli
from stream.errors import ConfigError
from stream.redact import redact, redact_text, safe_input
from stream.settings import KafkaSettings, Settings, load_settings

SASL = "sasl-Pw-7f3a9c"
KEYPW = "key-Pw-81bd2e"
SENSOR = "sensor-Pw-5512aa"
CLIENT_SECRET = "entra-Secret-c0ffee"
DSN_PW = "pg-Pw-d00d42"
DSN = f"postgresql://itdr:{DSN_PW}@127.0.0.1:1/itdr"
EXTRA_PW = "extra-Pw-4242"
ALL = (SASL, KEYPW, SENSOR, CLIENT_SECRET, DSN_PW, EXTRA_PW)


def assert_clean(text: str, where: str) -> None:
    for s in ALL:
        assert s not in text, f"secret {s!r} leaked in {where}: ...{text[max(0, text.find(s) - 80):text.find(s) + 20]!r}"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    import os
    for k in list(os.environ):
        if k.startswith("ITDR_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)


def _full_config(tmp_path):
    cfg = {
        "kafka": {"bootstrap_servers": "127.0.0.1:1", "security_protocol": "SASL_PLAINTEXT",
                  "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "worker",
                  "extra": {"sasl.oauthbearer.client.secret": EXTRA_PW}},
        "collector": {"sensor_id": "dc01", "kafka": {
            "bootstrap_servers": "127.0.0.1:1", "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-256", "sasl_username": "sensor-dc01",
            "sasl_password": SENSOR}},
        "sinks": {"workspace": {"url": DSN},
                  "alerts_topic": {"producer_extra": {"sasl.password": EXTRA_PW}},
                  "sentinel": {"enabled": True, "endpoint": "https://dce.example",
                               "dcr_immutable_id": "dcr-1", "tenant_id": "t",
                               "client_id": "c", "client_secret": CLIENT_SECRET}},
    }
    p = tmp_path / "itdr.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("ITDR_KAFKA__SASL_PASSWORD", SASL)
    monkeypatch.setenv("ITDR_KAFKA__SSL_KEY_PASSWORD", KEYPW)


# -- (d) repr / str of settings objects -------------------------------------------------------
def test_repr_and_str_of_every_settings_object(tmp_path, secret_env):
    s = load_settings(_full_config(tmp_path))
    assert s.kafka.sasl_password.get_secret_value() == SASL          # loaded...
    assert s.collector["kafka"]["sasl_password"] == SENSOR
    cs = collector_settings(s)
    sk = SinksSettings.from_root(s)
    assert sk.sentinel.client_secret.get_secret_value() == CLIENT_SECRET
    assert sk.workspace.url == DSN                                    # ...and usable
    objs = {"Settings": s, "KafkaSettings": s.kafka, "CollectorSettings": cs,
            "collector.kafka": cs.kafka, "SinksSettings": sk, "WorkspaceSettings": sk.workspace,
            "SentinelSettings": sk.sentinel, "AlertsTopicSettings": sk.alerts_topic}
    for name, o in objs.items():
        assert_clean(repr(o), f"repr({name})")
        assert_clean(str(o), f"str({name})")
        assert_clean(f"{o!r} {o}", f"f-string of {name}")
    assert "itdr:***@127.0.0.1" in repr(sk.workspace)                 # still recognisable


def test_librdkafka_conf_masked_and_plain():
    k = KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                      sasl_username="u", sasl_password=SASL, ssl_key_password=KEYPW,
                      extra={"sasl.oauthbearer.client.secret": EXTRA_PW, "linger.ms": "5"})
    masked = k.as_librdkafka(plaintext_secrets=False)
    assert_clean(repr(masked), "as_librdkafka(plaintext_secrets=False)")
    assert masked["sasl.password"] == "***" and masked["linger.ms"] == "5"
    plain = k.as_librdkafka()
    assert (plain["sasl.password"], plain["ssl.key.password"],
            plain["sasl.oauthbearer.client.secret"]) == (SASL, KEYPW, EXTRA_PW)


# -- (b) error messages -----------------------------------------------------------------------
def _config_error(tmp_path, cfg: dict, monkeypatch=None) -> ConfigError:
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as ei:
        s = load_settings(p)
        collector_settings(s)
        SinksSettings.from_root(s)
    return ei.value


@pytest.mark.parametrize("case", ["password_next_to_invalid_key", "misspelt_password_key",
                                  "password_wrong_type", "section_wrong_type",
                                  "sensor_password_bad_collector", "sentinel_invalid",
                                  "sentinel_misspelt_secret", "workspace_bad_scheme",
                                  "alerts_topic_extra_wrong_type", "dsn_wrong_type"])
def test_config_errors_never_echo_secrets(tmp_path, case):
    k = {"sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "u", "sasl_password": SASL}
    cfg = {
        "password_next_to_invalid_key": {"kafka": {**k, "bogus_key": 1}},
        "misspelt_password_key": {"kafka": {"sasl_username": "u", "sasl_pasword": SASL}},
        "password_wrong_type": {"kafka": {"sasl_password": {"value": SASL}}},
        "section_wrong_type": {"kafka": [k]},
        "sensor_password_bad_collector": {"collector": {"kafka": {**k, "bogus": 1},
                                                        "paths": 5, "sensor_pw": SENSOR}},
        "sentinel_invalid": {"sinks": {"sentinel": {"enabled": True, "client_secret":
                                                    CLIENT_SECRET, "endpoint": "http://x"}}},
        "sentinel_misspelt_secret": {"sinks": {"sentinel": {"client_secrt": CLIENT_SECRET}}},
        "workspace_bad_scheme": {"sinks": {"workspace": {"url": f"mysql://u:{DSN_PW}@db/x"}}},
        "alerts_topic_extra_wrong_type": {"sinks": {"alerts_topic": {"producer_extra": {
            "sasl.password": [EXTRA_PW]}}}},
        "dsn_wrong_type": {"sinks": {"workspace": {"url": [DSN]}}},
    }[case]
    e = _config_error(tmp_path, cfg)
    for text in (str(e), repr(e), e.message, str(e.to_dict())):
        assert_clean(text, f"ConfigError ({case})")
    assert e.location                                  # still says where


def test_config_error_still_names_the_key_and_shows_harmless_input(tmp_path):
    e = _config_error(tmp_path, {"kafka": {"sasl_password": SASL, "security_protocol": "TLS"}})
    assert "kafka.security_protocol" in str(e) and "'TLS'" in str(e)
    e = _config_error(tmp_path, {"kafka": {"sasl_password": SASL, "bogus_key": "x"}})
    assert "kafka.bogus_key: unknown key" in str(e)


def test_huge_or_recursive_inputs_are_shortened(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi")) + "kafka: {bootstrap_servers: *i}\n"
    p = tmp_path / "bomb.yaml"
    p.write_text(bomb)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as ei:
        load_settings(p)
    assert time.perf_counter() - t0 < 5
    assert len(str(ei.value)) < 4000
    assert "kafka.bootstrap_servers" in str(ei.value)


def test_safe_input_and_redaction_helpers():
    assert safe_input(("kafka", "sasl_password"), SASL) == "***"
    assert safe_input(("sinks", "x"), {"client_secret": CLIENT_SECRET}).startswith("a mapping")
    assert SASL not in safe_input(("a",), [SASL])
    assert DSN_PW not in safe_input(("url",), DSN)
    assert redact_text(f"host=db password={DSN_PW} user=x") == "host=db password=*** user=x"
    assert redact({"n": [{"client_secret": CLIENT_SECRET}], "user": "u"}) == {
        "n": [{"client_secret": "***"}], "user": "u"}


# -- (a) logs at DEBUG ------------------------------------------------------------------------
def test_debug_logs_of_settings_and_clients(tmp_path, secret_env, caplog, capfd):
    from confluent_kafka import Producer

    from sinks.sentinel import make_credential

    caplog.set_level(logging.DEBUG)
    s = load_settings(_full_config(tmp_path))
    cs = collector_settings(s)
    sk = SinksSettings.from_root(s)
    logger = logging.getLogger("test.librdkafka")
    for k in (s.kafka, cs.kafka):
        p = Producer({**k.as_librdkafka(), "debug": "security,broker,conf", "logger": logger,
                      "socket.connection.setup.timeout.ms": 1000})
        p.produce("t", b"x")
        p.poll(1.0)
        p.flush(0.5)
    cred = make_credential(sk.sentinel)
    assert_clean(repr(cred), "repr(ClientSecretCredential)")
    text = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    assert any(r.name == "test.librdkafka" for r in caplog.records), \
        "no librdkafka debug log captured: the test would be vacuous"
    assert_clean(text, "DEBUG logs")
    out, err = capfd.readouterr()
    assert_clean(out + err, "stdout/stderr of librdkafka")


def test_workspace_connection_error_does_not_echo_the_dsn(tmp_path, caplog):
    pytest.importorskip("psycopg")
    from sinks.workspace import WorkspaceStore

    caplog.set_level(logging.DEBUG)
    store = WorkspaceStore(DSN)                          # nothing listens on port 1
    with pytest.raises(Exception) as ei:
        store.migrate()
    assert_clean(str(ei.value) + repr(ei.value), "PostgreSQL connection error")
    assert_clean(caplog.text, "logs of a failed PostgreSQL connection")


# -- (c) CLI output: config check, config schema, --json --------------------------------------
def test_cli_config_check_and_schema(tmp_path, secret_env, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    cfg = _full_config(tmp_path)
    assert cli.main(["config", "check", "-c", str(cfg), "--log-level", "DEBUG"]) == 0
    assert cli.main(["config", "schema", "-c", str(cfg)]) == 0
    out, err = capsys.readouterr()
    assert "configuration valid" in out and '"properties"' in out
    assert_clean(out + err + caplog.text, "itdr config check / schema")


def test_cli_config_check_error_output(tmp_path, secret_env, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({"kafka": {"sasl_pasword": SENSOR, "security_protocol": 5}}))
    assert cli.main(["config", "check", "-c", str(p)]) == 2
    out, err = capsys.readouterr()
    assert "kafka.sasl_pasword" in err
    assert_clean(out + err, "itdr config check error")


def test_cli_alerts_list_json_with_unreachable_dsn(tmp_path, capsys, caplog):
    pytest.importorskip("psycopg")
    caplog.set_level(logging.DEBUG)
    try:
        rc = cli.main(["alerts", "list", "--workspace", DSN, "--json"])
    except Exception as e:  # noqa: BLE001 - an unreachable database may surface as an error
        text = str(e) + repr(e)
    else:
        text = ""
        assert rc != 0
    out, err = capsys.readouterr()
    assert_clean(text + out + err + caplog.text, "itdr alerts list --json")


def test_schema_carries_no_secret_defaults():
    import orjson
    schema = orjson.dumps(Settings.model_json_schema()).decode()
    schema += orjson.dumps(SinksSettings.model_json_schema()).decode()
    schema += orjson.dumps(CollectorSettings.model_json_schema()).decode()
    assert "sasl_password" in schema                         # documented...
    for name in ("sasl_password", "ssl_key_password", "client_secret"):
        for model in (KafkaSettings, SentinelSettings):
            f = model.model_fields.get(name)
            if f is not None:
                assert f.default is None, name               # ...never with a value
    assert WorkspaceSettings().url.startswith(".itdr/")
    assert AlertsTopicSettings().producer_extra == {}
