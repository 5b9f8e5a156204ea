"""Configuration: frozen pydantic-settings models (YAML file + environment).

Precedence (highest first): explicit overrides, environment (``ITDR_`` prefix, ``__`` nesting,
e.g. ``ITDR_KAFKA__BOOTSTRAP_SERVERS``), files in ``ITDR_SECRETS_DIR`` (Kubernetes secret
mounts), the YAML file (``--config`` or ``ITDR_CONFIG``), defaults.

Every field has a description: they are the documentation (``itdr config schema`` prints the
JSON schema; the README table is generated from it). Invalid configuration raises
:class:`~stream.errors.ConfigError` naming the key and the fix. Light module: no Faust/numba.
"""

from __future__ import annotations

import contextvars
import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PositiveInt, SecretStr, ValidationError,
                      field_validator)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError
from .redact import MASK, is_secret_key, redacted_repr_args, safe_input

_FROZEN = ConfigDict(frozen=True, extra="forbid", revalidate_instances="always")


# events per wire batch written by collectors, the demo, scan and the benchmarks: ~0.8 MB in v2
# before compression (~0.3 MB lz4). The engine has ~1.3 ms of fixed cost per batch (34
# detectors' dispatch, decode, features): 8192 instead of 4096 took the in-process engine from
# 1.44M to 1.79M events/s (0.58M with 1,024-event batches).
DEFAULT_BATCH_EVENTS = 8192

class KafkaSettings(BaseModel):
    """Connection to Kafka (any Kafka-protocol broker). Rendered for confluent-kafka
    (librdkafka) and for Faust (aiokafka)."""

    model_config = _FROZEN

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated host:port "
                                   "list. The demo and tests start an embedded broker and set it.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="librdkafka security.protocol.")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (SCRAM recommended).")
    sasl_username: str | None = Field(None, description="SASL user (one per sensor/component).")
    sasl_password: SecretStr | None = Field(None, description="SASL password; never logged. "
                                            "Prefer ITDR_KAFKA__SASL_PASSWORD or a secrets file.")
    ssl_ca_location: str | None = Field(None, description="CA bundle file for TLS.")
    ssl_certificate_location: str | None = Field(None, description="Client certificate (mTLS).")
    ssl_key_location: str | None = Field(None, description="Client private key (mTLS).")
    ssl_key_password: SecretStr | None = Field(None, description="Private key password.")
    client_id: str = Field("openitdr", description="Kafka client.id prefix.")
    extra: dict[str, str] = Field(default_factory=dict, description="Extra librdkafka "
                                  "properties passed through verbatim.")

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    def as_librdkafka(self, *, plaintext_secrets: bool = True) -> dict[str, Any]:
        """librdkafka config dict. With ``plaintext_secrets=False`` secrets are masked."""
        def sec(v: SecretStr | None) -> str | None:
            if v is None:
                return None
            return v.get_secret_value() if plaintext_secrets else "***"

        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers,
                                "security.protocol": self.security_protocol,
                                "client.id": self.client_id}
        opt = {"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.sasl_username,
               "sasl.password": sec(self.sasl_password), "ssl.ca.location": self.ssl_ca_location,
               "ssl.certificate.location": self.ssl_certificate_location,
               "ssl.key.location": self.ssl_key_location,
               "ssl.key.password": sec(self.ssl_key_password)}
        conf.update({k: v for k, v in opt.items() if v is not None})
        conf.update(self.extra if plaintext_secrets else
                    {k: (MASK if is_secret_key(k) else v) for k, v in self.extra.items()})
        return conf

    def __repr_args__(self):
        return redacted_repr_args(self, super().__repr_args__())


class TopicSettings(BaseModel):
    """Topic names (prefix + name) and partitioning."""

    model_config = _FROZEN

    prefix: str = Field("itdr.", description="Prefix for every topic name.")
    events: str = Field("events.v1", description="Identity events keyed by account.")
    events_by_source: str = Field("events.by-source.v1", description="Identity events keyed "
                                  "by source host/IP (collector-side dual keying).")
    alerts: str = Field("alerts.v1", description="Alerts for analysts: one JSON per message.")
    health: str = Field("health.v1", description="Sensor heartbeats and health alerts.")
    dlq: str = Field("dlq.v1", description="Dead-letter topic: rejected records with a reason.")
    state: str = Field("state.v1", description="Worker state snapshots (compacted).")
    partitions: int = Field(4, ge=1, le=1024, description="Partitions of the events topics. "
                            "Both events topics must have the same count.")
    replication_factor: int = Field(1, ge=1, description="Replication factor for created topics.")

    def name(self, which: str) -> str:
        return self.prefix + getattr(self, which)


Sensitivity = Literal["high", "medium", "low"]


class Exclusions(BaseModel):
    """Entities a detector (or all detectors) never alert on."""

    model_config = _FROZEN

    accounts: list[str] = Field(default_factory=list, description="Account names "
                                "(`domain\\\\name`, `name`, or glob like `msol_*`), case-insensitive.")
    hosts: list[str] = Field(default_factory=list, description="Host names (short or FQDN, "
                             "globs allowed), case-insensitive.")
    ips: list[str] = Field(default_factory=list, description="IP addresses.")
    subnets: list[str] = Field(default_factory=list, description="CIDR subnets, e.g. 10.0.8.0/24.")

    @field_validator("subnets")
    @classmethod
    def _cidr(cls, v: list[str]) -> list[str]:
        for s in v:
            try:
                ipaddress.ip_network(s, strict=False)
            except ValueError as e:
                raise ValueError(f"{s!r} is not a CIDR subnet ({e}); write it like 10.0.0.0/24")
        return v

    @field_validator("ips")
    @classmethod
    def _ip(cls, v: list[str]) -> list[str]:
        for s in v:
            try:
                ipaddress.ip_address(s)
            except ValueError:
                raise ValueError(f"{s!r} is not an IP address; use `subnets` for ranges")
        return v

    def is_empty(self) -> bool:
        return not (self.accounts or self.hosts or self.ips or self.subnets)


class DetectorOverride(BaseModel):
    """Per-detector settings."""

    model_config = _FROZEN

    enabled: bool = Field(True, description="Run this detector.")
    sensitivity: Sensitivity | None = Field(None, description="Override the global sensitivity.")
    params: dict[str, float | int | str | bool] = Field(default_factory=dict,
                                                        description="Parameter overrides.")
    exclude: Exclusions = Field(default_factory=Exclusions, description="Extra exclusions.")


class DetectionSettings(BaseModel):
    """Detection tuning: sensitivity, learning, exclusions, entity tags."""

    model_config = _FROZEN

    sensitivity: Sensitivity = Field("high", description="high (default; learning periods "
                                     "apply, strict thresholds), medium (learning ignored, lower "
                                     "thresholds), low (lowest thresholds, test mode).")
    learning_days: float = Field(7.0, ge=0, description="Learning period for baseline detectors, "
                                 "in days of event time (ignored at medium/low).")
    lateness_s: float = Field(300.0, ge=0, description="Bounded lateness: events older than the "
                                "partition's event-time watermark minus this are still used.")
    episode_gap_s: float = Field(3600.0, gt=0, description="An open alert is updated (not "
                                 "re-raised) while new evidence arrives within this gap.")
    enabled: list[str] | None = Field(None, description="Detector ids to run (default: all).")
    disabled: list[str] = Field(default_factory=list, description="Detector ids not to run.")
    exclude: Exclusions = Field(default_factory=Exclusions, description="Global exclusions.")
    detectors: dict[str, DetectorOverride] = Field(default_factory=dict,
                                                   description="Per-detector overrides by id.")
    honeytoken_accounts: list[str] = Field(default_factory=list, description="Decoy accounts: "
                                           "any activity alerts.")
    sensitive_accounts: list[str] = Field(default_factory=list, description="Accounts treated "
                                          "as sensitive (abnormal-logon, kerberoasting SPNs).")
    sensitive_groups: list[str] = Field(default_factory=list, description="Extra groups "
                                        "treated as sensitive (beyond the built-in list).")
    sensitive_hosts: list[str] = Field(default_factory=list, description="Hosts treated as "
                                       "sensitive.")
    domain_controllers: list[str] = Field(default_factory=list, description="Known DC host "
                                          "names (also learned from KDC events).")
    admin_hosts: list[str] = Field(default_factory=list, description="Admin workstations / "
                                   "jump hosts (remote-execution, enumeration, coercion FPs).")
    sync_accounts: list[str] = Field(default_factory=list, description="Directory-sync "
                                     "accounts allowed to replicate (e.g. msol_*, "
                                     "aad connect). Configuration, not silent code.")


class WorkerSettings(BaseModel):
    """Stream worker."""

    model_config = _FROZEN

    app_id: str = Field("itdr-worker", description="Faust app id / consumer group.")
    web_host: str = Field("127.0.0.1", description="Bind address of the web/metrics endpoint.")
    web_port: int = Field(6066, ge=1, le=65535, description="Web/metrics port (Faust needs a "
                          "fixed port: 0 is refused).")
    snapshot_interval_s: float = Field(5.0, gt=0, description="State snapshot interval.")
    snapshot_max_share: float = Field(
        0.2, gt=0, le=1.0,
        description="Largest share of the time periodic snapshots may take: after a snapshot "
        "that took d seconds (capture + durable write), the next waits until d / share after "
        "it started, so a large state snapshots less often instead of taking the worker's "
        "core (measured at 1M identities: a ~500 MB snapshot, 0.38 s of capture on the "
        "processing thread + checksum, lz4 and the broker's acks). Longer spacing means more "
        "events to replay after a crash and later offset commits.")
    take_max: int = Field(64, ge=1, description="Max Kafka messages per take().")
    take_within_s: float = Field(
        0.05, gt=0, le=1.0,
        description="How long an agent waits to fill a take() with more messages before it "
        "processes the ones it has. Shorter: lower latency; longer: a partition that is behind "
        "renders each alert once per bigger take (fewer alert versions in a storm). Measured "
        "(bench stream): 0.05 -> p50 ~195 ms, p99 ~415 ms on the domain's traffic, 20-23k "
        "alert versions in the storm; 0.01 -> p50 ~110 ms, p99 ~300 ms, 44-51k versions; "
        "throughput the same.")
    state_dir: str = Field(".itdr/state", description="Local state dir (cache only).")
    empty_fetch_backoff_ms: float = Field(
        20.0, ge=0, le=1000,
        description="Minimum time between a fetch request the broker answered with no data and "
        "the next fetch to that broker. A Kafka broker holds an empty fetch up to fetch.max.wait "
        "(so this never delays anything there); some Kafka-protocol brokers answer at once, and "
        "the consumer thread then spins (measured: ~3,700 empty fetches/s, a third of the "
        "worker's core). 0 = off.")
    gc_threshold: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(
        (50_000, 20, 20),
        description="Python cyclic-GC thresholds of the worker process (gen0 allocations, "
        "gen1, gen2; CPython's default is 700, 10, 10). Each alert version allocates a few "
        "dozen containers; with the default every few alerts trigger a collection that walks "
        "the open alerts and caches (measured: an attack-replay batch mix 331k -> 455k "
        "events/s in process; clean traffic unchanged). Costs a few MB of uncollected "
        "garbage at most.")
    instance_id: str | None = Field(None, description="Static group membership id "
                                    "(Kafka group.instance.id), unique per worker, stable "
                                    "across restarts (e.g. the StatefulSet pod name): a "
                                    "restarted worker takes its partitions back at once "
                                    "instead of waiting for a rebalance. None = dynamic.")


class Settings(BaseSettings):
    """Root configuration of every OpenITDR component."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_prefix="ITDR_",
                                      env_nested_delimiter="__", revalidate_instances="always")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings, description="Kafka connection.")
    topics: TopicSettings = Field(default_factory=TopicSettings, description="Topics.")
    detection: DetectionSettings = Field(default_factory=DetectionSettings,
                                         description="Detection tuning.")
    worker: WorkerSettings = Field(default_factory=WorkerSettings, description="Stream worker.")
    collector: dict[str, Any] = Field(default_factory=dict, description="Collector section "
                                      "(validated by collectors.settings.CollectorSettings).")
    sinks: dict[str, Any] = Field(default_factory=dict, description="Sinks section "
                                  "(validated by sinks.settings.SinksSettings).")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # explicit overrides > environment > secret files > YAML file > defaults
        return (init_settings, env_settings, file_secret_settings,
                _YamlSource(settings_cls, _YAML_DATA.get()))

    def __repr_args__(self):
        # the raw collector/sinks sections may hold a sensor password or a DSN
        return redacted_repr_args(self, super().__repr_args__())


_YAML_DATA: "contextvars.ContextVar[dict]" = contextvars.ContextVar("itdr_yaml", default={})


class _YamlSource(PydanticBaseSettingsSource):
    """The YAML file's content as the lowest-priority settings source."""

    def __init__(self, settings_cls, data: dict):
        super().__init__(settings_cls)
        self.data = data

    def get_field_value(self, field, field_name):  # pragma: no cover - unused
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


def _fmt_loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


def config_error_from_validation(e: ValidationError, source: str) -> ConfigError:
    """One ConfigError naming every bad key. The offending input is shown shortened and
    without secrets: never for unknown keys (a misspelt ``sasl_pasword:`` holds a password),
    masked under secret-named keys, containers summarised, URL passwords masked."""
    lines = []
    for err in e.errors():
        loc = tuple(err.get("loc", ()))
        key = _fmt_loc(loc)
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown key"
            fix = "remove it or check its spelling against `itdr config schema`"
            lines.append(f"{key}: {msg}. Fix: {fix}")
            continue
        fix = "see `itdr config schema` for the allowed values"
        lines.append(f"{key}: {msg} (input {safe_input(loc, err.get('input'))}). Fix: {fix}")
    first = e.errors()[0] if e.errors() else {}
    return ConfigError("invalid configuration:\n  " + "\n  ".join(lines), location=source,
                       fix=None if len(lines) > 1 else None) if lines else ConfigError(
        str(e), location=source, fix=_fmt_loc(first.get("loc", ())))


def load_settings(path: str | os.PathLike | None = None, **overrides: Any) -> Settings:
    """Load settings from a YAML file (optional), the environment and overrides."""
    path = path or os.environ.get("ITDR_CONFIG")
    data: dict[str, Any] = {}
    source = "configuration"
    if path:
        p = Path(path)
        source = str(p)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist", location="--config",
                              fix="pass an existing YAML file or omit --config")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read the config file: {type(e).__name__}: "
                              f"{getattr(e, 'strerror', None) or getattr(e, 'reason', e)}",
                              location=str(p), fix="pass a readable UTF-8 YAML file") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            loc = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
            raise ConfigError(f"not valid YAML: {getattr(e, 'problem', e)}", location=loc,
                              fix="fix the YAML syntax at that line") from None
        except (ValueError, RecursionError) as e:   # e.g. an integer of 5000 digits
            raise ConfigError(f"not valid YAML: {str(e)[:120]}", location=str(p),
                              fix="fix the value in the YAML file") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError("top level must be a mapping", location=str(p),
                              fix="start the file with keys like `kafka:` and `detection:`")
        bad = [k for k in loaded if not isinstance(k, str)]
        if bad:
            raise ConfigError(f"top-level key {bad[0]!r} is not a section name", location=str(p),
                              fix="use section names like `kafka:` and `detection:` as keys")
        data = loaded
    secrets_dir = os.environ.get("ITDR_SECRETS_DIR")
    token = _YAML_DATA.set(data)
    try:
        if secrets_dir and Path(secrets_dir).is_dir():
            return Settings(_secrets_dir=secrets_dir, **overrides)
        return Settings(**overrides)
    except ValidationError as e:
        raise config_error_from_validation(e, source) from None
    finally:
        _YAML_DATA.reset(token)


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out
