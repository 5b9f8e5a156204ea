"""Sink configuration: the ``sinks:`` section of the root settings, validated here.

The root :class:`stream.settings.Settings` keeps ``sinks`` as a plain dict so that importing the
root settings never imports sink code; :meth:`SinksSettings.from_root` validates it and turns
any problem into a :class:`~stream.errors.ConfigError` naming the key (``sinks.sentinel.endpoint``)
and the fix. Every field carries a description: they are the documentation (``docs/sinks.md``).

Example::

    sinks:
      batching: {max_records: 500, max_wait_s: 2}
      retry: {initial_backoff_s: 0.5, max_backoff_s: 30}
      workspace: {url: postgresql://itdr@db/itdr}
      sentinel:
        enabled: true
        endpoint: https://my-dce.westeurope-1.ingest.monitor.azure.com
        dcr_immutable_id: dcr-00000000000000000000000000000000
        tenant_id: ...
        client_id: ...
        client_secret: ...          # prefer ITDR_SINKS__SENTINEL__CLIENT_SECRET
      syslog: {enabled: true, host: siem.example, port: 6514, protocol: tls, ca_file: ca.pem}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from stream.errors import ConfigError
from stream.redact import redact_text, redacted_repr_args, safe_input

__all__ = ["AlertsTopicSettings", "BatchingSettings", "RetrySettings", "SentinelSettings",
           "SinksSettings", "SyslogSettings", "WorkspaceSettings"]

_FROZEN = ConfigDict(frozen=True, extra="forbid", revalidate_instances="always")

#: Logs Ingestion API hard limit per call (compressed or not): 1 MB.
LOGS_INGESTION_MAX_BYTES = 1_000_000


class BatchingSettings(BaseModel):
    """When a sink flushes its batch (whichever limit is reached first). Offsets are committed
    only after a successful flush, so a larger batch means more re-delivery after a crash."""

    model_config = _FROZEN

    max_records: int = Field(500, ge=1, le=100_000, description="Flush when this many records "
                             "are buffered.")
    max_bytes: int = Field(900_000, ge=1024, description="Flush when the buffered payloads "
                           "reach this many bytes (the Sentinel sink additionally splits each "
                           "flush into <= 1 MB Logs Ingestion calls).")
    max_wait_s: float = Field(1.0, gt=0, le=3600, description="Flush at most this many seconds "
                              "after the first record of a batch arrived (bounds alert latency).")


class RetrySettings(BaseModel):
    """Retry of transient destination failures (network, 5xx, locked database). While a sink
    waits, consumption of its partitions is paused (the consumer stays in its group)."""

    model_config = _FROZEN

    initial_backoff_s: float = Field(0.5, gt=0, description="First retry delay in seconds.")
    max_backoff_s: float = Field(30.0, gt=0, description="Cap of the exponential backoff delay.")
    multiplier: float = Field(2.0, ge=1.0, description="Backoff growth factor per attempt.")
    jitter: Literal["full", "equal", "none"] = Field(
        "full", description="Jitter mode: full (uniform 0..delay, default), equal "
        "(delay/2 + uniform 0..delay/2) or none.")
    max_attempts: int = Field(0, ge=0, description="Give up after this many failed attempts of "
                              "one batch and dead-letter its records with the last error as "
                              "reason. 0 = retry forever (recommended: Kafka is the buffer, "
                              "nothing is dead-lettered because a destination is down).")

    @model_validator(mode="after")
    def _order(self) -> "RetrySettings":
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError(f"max_backoff_s ({self.max_backoff_s}) is smaller than "
                             f"initial_backoff_s ({self.initial_backoff_s}); raise max_backoff_s")
        return self


class AlertsTopicSettings(BaseModel):
    """Forward alerts to another topic, possibly on another Kafka cluster (e.g. a SOC cluster)."""

    model_config = _FROZEN

    enabled: bool = Field(False, description="Run the alerts-topic forwarder sink.")
    topic: str = Field("openitdr.alerts", description="Destination topic name.")
    bootstrap_servers: str | None = Field(None, description="Destination cluster bootstrap "
                                          "servers; default: the source cluster (kafka.*).")
    producer_extra: dict[str, str] = Field(default_factory=dict, description="Extra librdkafka "
                                           "producer properties for the destination "
                                           "(security.protocol, sasl.*, ssl.*).")
    delivery_timeout_s: float = Field(10.0, gt=0, description="How long one flush waits for the "
                                      "destination to acknowledge before it is retried.")

    def __repr_args__(self):
        return redacted_repr_args(self, super().__repr_args__())      # producer_extra sasl.*


class WorkspaceSettings(BaseModel):
    """The workspace store: the queryable alert history behind ``itdr alerts list``."""

    model_config = _FROZEN

    url: str = Field(".itdr/workspace.db", description="SQLite file path (or sqlite:///path) "
                     "or a postgresql:// DSN (psycopg 3).")
    health: bool = Field(True, description="Also consume the health topic and keep the latest "
                         "heartbeat per sensor in the sensor_health table.")

    @model_validator(mode="after")
    def _url(self) -> "WorkspaceSettings":
        if not self.url.strip():
            raise ValueError("url is empty; give a SQLite path like .itdr/workspace.db or a "
                             "postgresql://user@host/db DSN")
        if "://" in self.url and not self.url.startswith(("sqlite://", "postgresql://",
                                                           "postgres://")):
            raise ValueError(f"unsupported scheme in {redact_text(self.url)!r}; use a SQLite "
                             "path, sqlite:///path or postgresql://user@host/db")
        return self

    def __repr_args__(self):
        return redacted_repr_args(self, super().__repr_args__())      # DSN password


class SentinelSettings(BaseModel):
    """Microsoft Sentinel through the Azure Monitor Logs Ingestion API (DCR-based). Rows go to
    a custom table (``OpenITDRAlerts_CL``); Sentinel analytics rules shipped in
    ``deploy/sentinel`` turn them into Sentinel alerts and incidents."""

    model_config = _FROZEN

    enabled: bool = Field(False, description="Run the Sentinel sink.")
    endpoint: str | None = Field(None, description="Logs ingestion endpoint: the DCR's own "
                                 "endpoint or a Data Collection Endpoint, e.g. "
                                 "https://my-dce.westeurope-1.ingest.monitor.azure.com.")
    dcr_immutable_id: str | None = Field(None, description="Immutable id of the Data "
                                         "Collection Rule (dcr-...).")
    stream_name: str = Field("Custom-OpenITDRAlerts_CL", description="DCR stream declaration "
                             "for alerts.")
    events_stream_name: str | None = Field(None, description="DCR stream for normalized "
                                           "identity events (e.g. "
                                           "Custom-OpenITDRIdentityEvents_CL); enables the "
                                           "`itdr sink sentinel-events` sink.")
    tenant_id: str | None = Field(None, description="Entra tenant id (client-secret auth).")
    client_id: str | None = Field(None, description="App registration client id, or the "
                                  "user-assigned managed identity client id.")
    client_secret: SecretStr | None = Field(None, description="App registration secret; never "
                                            "logged. Prefer ITDR_SINKS__SENTINEL__CLIENT_SECRET "
                                            "or a mounted secrets file.")
    use_managed_identity: bool = Field(False, description="Authenticate with the managed "
                                       "identity (or AKS workload identity when "
                                       "AZURE_FEDERATED_TOKEN_FILE is set) instead of a secret.")
    token_scope: str = Field("https://monitor.azure.com/.default", description="OAuth scope "
                             "(monitor.azure.us / monitor.azure.cn in sovereign clouds).")
    connection_verify: bool | str = Field(True, description="TLS verification: true, false "
                                          "(never in production) or a CA bundle path.")
    enforce_https: bool = Field(True, description="Refuse plain-http endpoints (the SDK "
                                "refuses to send a bearer token over http).")
    request_timeout_s: float = Field(30.0, gt=0, description="Per-request timeout.")
    max_call_bytes: int = Field(LOGS_INGESTION_MAX_BYTES, ge=10_000,
                                le=LOGS_INGESTION_MAX_BYTES, description="Maximum "
                                "uncompressed JSON bytes per upload call (service limit 1 MB).")
    max_details_bytes: int = Field(32_000, ge=1000, le=64_000, description="Details (dynamic) "
                                   "column is trimmed to this size (the service truncates "
                                   "values over 64 KB).")
    dedup: bool = Field(True, description="Keep a local ledger of delivered (AlertId, "
                        "AlertVersion) so re-sent alerts (worker or sink restarts) never create "
                        "duplicate rows; the service itself does not deduplicate.")

    @model_validator(mode="after")
    def _required(self) -> "SentinelSettings":
        if not self.enabled:
            return self
        missing = [k for k in ("endpoint", "dcr_immutable_id") if not getattr(self, k)]
        if missing:
            raise ValueError(f"{', '.join(missing)} required when enabled: copy them from the "
                             "DCR overview (Logs ingestion endpoint, Immutable id)")
        if self.enforce_https and not str(self.endpoint).startswith("https://"):
            raise ValueError(f"endpoint {self.endpoint!r} is not https; use the https "
                             "endpoint (or set enforce_https: false for a local test server)")
        if not self.use_managed_identity and not (self.tenant_id and self.client_id
                                                  and self.client_secret):
            raise ValueError("credentials missing: set tenant_id, client_id and client_secret, "
                             "or use_managed_identity: true")
        return self


class SyslogSettings(BaseModel):
    """CEF over syslog (RFC 5424 header) to a SIEM collector (ArcSight, QRadar, AMA/CEF...)."""

    model_config = _FROZEN

    enabled: bool = Field(False, description="Run the syslog/CEF sink.")
    host: str = Field("127.0.0.1", description="Collector host name or IP.")
    port: int = Field(514, ge=1, le=65535, description="Collector port (514 udp/tcp, 6514 tls).")
    protocol: Literal["udp", "tcp", "tls"] = Field("tcp", description="udp (fire and forget: "
                                                   "no delivery guarantee), tcp or tls.")
    framing: Literal["octet", "newline"] = Field("octet", description="TCP/TLS framing: "
                                                 "octet counting (RFC 6587, default) or "
                                                 "newline-terminated (non-transparent).")
    ca_file: str | None = Field(None, description="CA bundle to verify the collector's TLS "
                                "certificate (default: system store).")
    tls_verify: bool = Field(True, description="Verify the collector certificate and name.")
    facility: int = Field(10, ge=0, le=23, description="Syslog facility number (10 = "
                          "authpriv, 4 = auth, 16-23 = local0-7).")
    app_name: str = Field("openitdr", description="RFC 5424 APP-NAME.")
    link_base: str | None = Field(None, description="Base URL of an alert viewer: cs3 carries "
                                  "<link_base>/<alert id> instead of the description.")
    connect_timeout_s: float = Field(5.0, gt=0, description="TCP/TLS connect and send timeout.")
    dedup: bool = Field(True, description="Skip (id, version) pairs already delivered "
                        "(local ledger), so restarts do not repeat messages.")


class SinksSettings(BaseModel):
    """All sinks. Each runs as its own process (``itdr sink NAME``) with its own consumer group
    ``itdr-sink-<name>``, so a slow or down destination never delays the others."""

    model_config = _FROZEN

    batching: BatchingSettings = Field(default_factory=BatchingSettings,
                                       description="Flush triggers (count, bytes, time).")
    retry: RetrySettings = Field(default_factory=RetrySettings,
                                 description="Backoff for transient failures.")
    state_dir: str = Field(".itdr/sinks", description="Directory for delivery ledgers "
                           "(dedup of re-sent alerts).")
    dedup_retention_days: float = Field(14.0, gt=0, description="Ledger entries older than "
                                        "this are pruned.")
    session_timeout_ms: int = Field(10_000, ge=1000, description="Consumer group session "
                                    "timeout: how fast a killed sink's partitions move.")
    group_instance_id: str | None = Field(None, description="Static group membership id "
                                          "(KIP-345) of this sink process; default "
                                          "`<sink>-<host name>` (the pod name on Kubernetes). "
                                          "A restarted sink takes its partitions back at once "
                                          "instead of waiting for a rebalance. Must be unique "
                                          "per running process of one sink; \"\" disables it.")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics port of the "
                              "sink process (0 = disabled).")
    metrics_host: str = Field("127.0.0.1", description="Bind address of the /metrics "
                              "endpoint (loopback by default; the Helm chart sets 0.0.0.0).")
    alerts_topic: AlertsTopicSettings = Field(default_factory=AlertsTopicSettings,
                                              description="Forward to another topic/cluster.")
    workspace: WorkspaceSettings = Field(default_factory=WorkspaceSettings,
                                         description="SQLite/PostgreSQL alert store.")
    sentinel: SentinelSettings = Field(default_factory=SentinelSettings,
                                       description="Microsoft Sentinel (Logs Ingestion API).")
    syslog: SyslogSettings = Field(default_factory=SyslogSettings,
                                   description="CEF over syslog.")

    @classmethod
    def from_root(cls, settings: Any) -> "SinksSettings":
        """Validate ``settings.sinks`` (a dict) of the root settings.

        Raises :class:`ConfigError` naming each bad key (``sinks.x.y``) and how to fix it."""
        raw = getattr(settings, "sinks", None)
        if raw is None:
            raw = {}
        if isinstance(raw, SinksSettings):
            return raw
        if not isinstance(raw, dict):
            raise ConfigError(f"sinks must be a mapping, got {type(raw).__name__}",
                              location="sinks", fix="write `sinks:` followed by indented keys "
                              "such as `workspace:` or `sentinel:`")
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "SinksSettings":
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            raise _config_error(e) from None


def _config_error(e: ValidationError) -> ConfigError:
    lines = []
    first_key = "sinks"
    for i, err in enumerate(e.errors()):
        loc = [str(p) for p in err.get("loc", ())]
        key = ".".join(["sinks", *loc])
        if i == 0:
            first_key = key
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            fix = (f"remove it or check its spelling; allowed keys: {', '.join(allowed)}"
                   if allowed else "remove it")
            msg = "unknown key"
        elif err.get("type") == "literal_error":
            fix = f"use one of the allowed values ({msg.removeprefix('Input should be ')})"
        else:
            fix = "see docs/sinks.md or `itdr config schema` for the allowed values"
        if err.get("type") == "extra_forbidden":     # the value of a misspelt key: never shown
            lines.append(f"{key}: {msg} (input not shown). Fix: {fix}")
            continue
        shown = safe_input(tuple(err.get("loc", ())), err.get("input"))
        lines.append(f"{key}: {msg} (input {shown}). Fix: {fix}")
    if len(lines) == 1:
        key, rest = lines[0].split(": ", 1)
        msg, _, fix = rest.partition(" Fix: ")
        return ConfigError(msg, location=key, fix=fix or None)
    return ConfigError("invalid sinks configuration:\n  " + "\n  ".join(lines),
                       location=first_key)


def _allowed_keys(loc: list[str]) -> list[str]:
    model: Any = SinksSettings
    for part in loc:
        f = getattr(model, "model_fields", {}).get(part)
        if f is None:
            return []
        model = f.annotation
    return sorted(getattr(model, "model_fields", {}))
