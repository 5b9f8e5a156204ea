"""Configuration: frozen models, env overrides, errors that name the key and the fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stream.errors import ConfigError
from stream.settings import KafkaSettings, Settings, load_settings


def test_defaults_and_frozen():
    s = load_settings(None)
    assert s.detection.sensitivity == "high"
    with pytest.raises(ValidationError):
        s.detection.sensitivity = "low"  # type: ignore[misc]


def test_yaml_and_env_precedence(tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka: {bootstrap_servers: 'a:1'}\ndetection: {sensitivity: medium}\n")
    monkeypatch.setenv("ITDR_KAFKA__BOOTSTRAP_SERVERS", "env:9")
    s = load_settings(cfg)
    assert s.kafka.bootstrap_servers == "env:9"
    assert s.detection.sensitivity == "medium"


@pytest.mark.parametrize("text, key", [
    ("detection: {sensitivity: extreme}\n", "detection.sensitivity"),
    ("detection: {exclude: {subnets: [10.0.0.0/33]}}\n", "detection.exclude.subnets"),
    ("kafka: {bootstrapservers: x}\n", "kafka.bootstrapservers"),
    ("topics: {partitions: 0}\n", "topics.partitions"),
    ("worker: {take_within_s: 0}\n", "worker.take_within_s"),
])
def test_invalid_config_names_key_and_fix(tmp_path, text, key):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_settings(cfg)
    msg = str(ei.value)
    assert key in msg and "Fix:" in msg and str(cfg) in msg


def test_yaml_syntax_error_has_line(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("a: 1\nb: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+:\d+: not valid YAML"):
        load_settings(cfg)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_secrets_are_masked_in_rendered_config():
    k = KafkaSettings(security_protocol="sasl_ssl", sasl_mechanism="scram-sha-512",
                      sasl_username="u", sasl_password="hunter2")
    assert k.security_protocol == "SASL_SSL"
    masked = k.as_librdkafka(plaintext_secrets=False)
    assert masked["sasl.password"] == "***"
    assert "hunter2" not in repr(k) and "hunter2" not in str(Settings(kafka=k).model_dump())
    assert k.as_librdkafka()["sasl.password"] == "hunter2"


@pytest.mark.parametrize("text, key", [
    ("collector:\n  bogus_key: 1\n", "collector.bogus_key"),
    ("sinks:\n  workspace: {url: 12}\n", "sinks.workspace.url"),
])
def test_config_check_validates_component_sections(tmp_path, capsys, text, key):
    from stream.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert main(["config", "check", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert key in err and "Fix:" in err
    cfg.write_text("detection: {sensitivity: low}\n")
    assert main(["config", "check", "-c", str(cfg)]) == 0


def test_take_within_reaches_the_agents(kafka, topics, tmp_path, monkeypatch):
    """``worker.take_within_s`` is the wait each agent's take() uses."""
    import faust

    from stream.broker import free_port
    from stream.worker import build_app

    seen = []
    orig = faust.Stream.noack_take

    def spy(self, max_, within):
        seen.append((max_, within))
        return orig(self, max_, within)

    monkeypatch.setattr(faust.Stream, "noack_take", spy)
    s = Settings(kafka=kafka, topics=topics,
                 worker={"state_dir": str(tmp_path / "state"), "web_port": free_port(),
                         "take_within_s": 0.02, "take_max": 7})
    app, core = build_app(s)
    try:
        import asyncio

        async def first_take():
            task = asyncio.ensure_future(app._itdr_agents[0].fun(app.stream([])))
            await asyncio.sleep(0.05)
            task.cancel()

        asyncio.run(first_take())
    finally:
        core.producer.flush(1)
    assert (7, 0.02) in seen
