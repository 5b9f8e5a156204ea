"""Microsoft Sentinel sink: alerts (and optionally identity events) through the Azure Monitor
Logs Ingestion API, with the official ``azure-monitor-ingestion`` SDK.

A custom engine cannot write ``SecurityAlert`` through the Logs Ingestion API, so alerts go to
the custom table ``OpenITDRAlerts_CL`` (one row per alert *version*) and the analytics rules in
``deploy/sentinel/`` raise Sentinel alerts and incidents from it (entity mappings, MITRE
tactics, incidents grouped by ``AlertId`` so updates land in the same incident).

Delivery: at-least-once from Kafka, made duplicate-free by a local ledger of delivered
``(AlertId, AlertVersion)`` pairs (the service does not deduplicate). Each flush is split into
calls of at most ``max_call_bytes`` (service limit 1 MB) sent in order; the SDK's own retries are
switched off so that the framework handles them:

* 429 (+ ``Retry-After``) -> :class:`SinkBackpressureError`: consumption pauses, only the
  not-yet-acknowledged calls are re-sent;
* 400 / 413 -> :class:`PermanentSinkError`: the framework bisects the batch and dead-letters
  only the offending alert(s);
* 401/403, 5xx, network errors -> transient: retried with capped exponential backoff.

Run: ``itdr sink sentinel -c config.yaml`` (and ``itdr sink sentinel-events`` for the optional
identity-events table).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Iterable

import orjson

from stream.alert import Alert
from stream.errors import ConfigError, PermanentSinkError, SinkBackpressureError, SinkError
from stream.schema import FLAG_FAILURE, IdentityEvent

from .base import BatchingSink, SinkBatch, SinkItem, decode_alert
from .settings import SentinelSettings

try:  # optional extra: pip install "openitdr[sentinel]"
    from azure.core.exceptions import ClientAuthenticationError
    from azure.monitor.ingestion import LogsIngestionClient
except ImportError:  # pragma: no cover - reported when the sink is built
    LogsIngestionClient = None  # type: ignore[assignment,misc]
    ClientAuthenticationError = Exception  # type: ignore[assignment,misc]

__all__ = ["ALERT_COLUMNS", "EVENT_COLUMNS", "MITRE_TACTICS", "SentinelEventsSink",
           "SentinelSink", "alert_to_row", "event_to_row", "make_credential", "tactics_for"]

log = logging.getLogger(__name__)

# Custom table columns (name -> Log Analytics type). The table definitions and DCR stream
# declarations in deploy/sentinel/ must match these (a test checks it). "Title" is a reserved
# column name in Log Analytics, hence AlertTitle.
ALERT_COLUMNS: dict[str, str] = {
    "TimeGenerated": "datetime",
    "AlertId": "string",
    "AlertVersion": "int",
    "Detector": "string",
    "Severity": "string",
    "AlertTitle": "string",
    "Description": "string",
    "Status": "string",
    "Entity": "string",
    "EntityKind": "string",
    "Accounts": "dynamic",
    "Hosts": "dynamic",
    "IpAddresses": "dynamic",
    "Mitre": "dynamic",
    "MitreTactics": "string",
    "MdiAlertId": "dynamic",
    "EvidenceCount": "int",
    "FirstSeen": "datetime",
    "LastSeen": "datetime",
    "NextSteps": "dynamic",
    "Details": "dynamic",
}

# IdentityLogonEvents-like columns for normalized identity events (optional stream).
EVENT_COLUMNS: dict[str, str] = {
    "TimeGenerated": "datetime",
    "ActionType": "string",
    "Application": "string",
    "LogonType": "string",
    "Protocol": "string",
    "FailureReason": "string",
    "AccountName": "string",
    "AccountDomain": "string",
    "AccountSid": "string",
    "DeviceName": "string",
    "IPAddress": "string",
    "DestinationDeviceName": "string",
    "TargetDeviceName": "string",
    "TargetAccountName": "string",
    "EventId": "int",
    "ReportId": "long",
    "AdditionalFields": "dynamic",
}

SENTINEL_SEVERITY = {"informational": "Informational", "low": "Low", "medium": "Medium",
                     "high": "High"}

# ATT&CK technique (parent) -> Sentinel tactic names (first = primary).
MITRE_TACTICS: dict[str, tuple[str, ...]] = {
    "T1003": ("CredentialAccess",), "T1021": ("LateralMovement",), "T1049": ("Discovery",),
    "T1068": ("PrivilegeEscalation",), "T1069": ("Discovery",), "T1070": ("DefenseEvasion",),
    "T1078": ("DefenseEvasion", "Persistence", "PrivilegeEscalation", "InitialAccess"),
    "T1087": ("Discovery",), "T1098": ("Persistence", "PrivilegeEscalation"),
    "T1110": ("CredentialAccess",), "T1134": ("DefenseEvasion", "PrivilegeEscalation"),
    "T1187": ("CredentialAccess",), "T1207": ("DefenseEvasion",),
    "T1210": ("LateralMovement",), "T1222": ("DefenseEvasion",),
    "T1484": ("DefenseEvasion", "PrivilegeEscalation"),
    "T1543": ("Persistence", "PrivilegeEscalation"),
    "T1550": ("DefenseEvasion", "LateralMovement"), "T1555": ("CredentialAccess",),
    "T1556": ("CredentialAccess", "DefenseEvasion", "Persistence"),
    "T1557": ("CredentialAccess", "Collection"), "T1558": ("CredentialAccess",),
    "T1562": ("DefenseEvasion",), "T1569": ("Execution",),
}


def tactics_for(mitre: Iterable[str]) -> list[str]:
    """Sentinel tactic names for a list of ATT&CK technique ids (unknown ids are skipped)."""
    out: list[str] = []
    for t in mitre:
        for tac in MITRE_TACTICS.get(t.split(".")[0].upper(), ()):
            if tac not in out:
                out.append(tac)
    return out


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _trim_details(details: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    raw = orjson.dumps(details)
    if len(raw) <= max_bytes:
        return details
    out = dict(details)
    # drop the largest evidence values first, keep the record small but useful
    ev = dict(out.get("evidence") or {})
    for k in sorted(ev.get("details", {}) or {}, key=lambda k: -len(orjson.dumps(
            ev["details"][k]))):
        ev["details"] = {kk: vv for kk, vv in ev["details"].items() if kk != k}
        out["evidence"] = ev
        if len(orjson.dumps(out)) <= max_bytes:
            break
    out["truncated"] = True
    if len(orjson.dumps(out)) > max_bytes:
        out = {"truncated": True, "evidence": {k: v for k, v in ev.items() if k != "details"}}
    return out


def alert_to_row(alert: Alert, *, max_details_bytes: int = 32_000,
                 time_generated: str | None = None) -> dict[str, Any]:
    """One ``OpenITDRAlerts_CL`` row. ``TimeGenerated`` is when the row was produced (so
    scheduled/NRT rules see it); ``FirstSeen``/``LastSeen`` are event times."""
    details = {"schema_version": alert.schema_version, "key": alert.key,
               "entities": alert.entities.model_dump(mode="json"),
               "evidence": alert.evidence.model_dump(mode="json")}
    return {
        "TimeGenerated": time_generated or _now_iso(),
        "AlertId": alert.id,
        "AlertVersion": alert.version,
        "Detector": alert.detector,
        "Severity": SENTINEL_SEVERITY[alert.severity],
        "AlertTitle": alert.title,
        "Description": alert.description,
        "Status": alert.status,
        "Entity": alert.entity,
        "EntityKind": alert.key,
        "Accounts": list(alert.entities.accounts),
        "Hosts": list(alert.entities.hosts),
        "IpAddresses": list(alert.entities.ips),
        "Mitre": list(alert.mitre),
        "MitreTactics": ",".join(tactics_for(alert.mitre)),
        "MdiAlertId": list(alert.mdi_alert_id),
        "EvidenceCount": alert.evidence.count,
        "FirstSeen": alert.first_seen,
        "LastSeen": alert.last_seen,
        "NextSteps": list(alert.next_steps),
        "Details": _trim_details(details, max_details_bytes),
    }


# -- identity events --------------------------------------------------------------------------
LOGON_TYPES = {2: "Interactive", 3: "Resource access", 4: "Batch", 5: "Service",
               7: "Unlock", 8: "LDAP cleartext", 9: "New credentials",
               10: "Remote desktop", 11: "Cached interactive"}
FAILURE_REASONS = {0xC000006A: "WrongPassword", 0xC0000064: "UnknownUser",
                   0xC0000234: "AccountLocked", 0xC0000072: "AccountDisabled",
                   0xC000006F: "InvalidLogonHours", 0xC0000070: "InvalidWorkstation",
                   0xC0000071: "PasswordExpired", 0xC0000193: "AccountExpired",
                   0xC0000224: "PasswordMustChange", 0xC000015B: "LogonTypeNotGranted",
                   0x18: "WrongPassword", 0x6: "UnknownUser", 0x12: "AccountDisabled",
                   0x17: "PasswordExpired", 0x25: "ClockSkew"}
_LOGON_ACTIONS = {"logon", "tgt_request", "tgs_request", "ntlm_validation", "explicit_logon",
                  "credential_validation"}


def _split_account(account: str) -> tuple[str, str]:
    if "\\" in account:
        dom, name = account.split("\\", 1)
        return dom, name
    if "@" in account:
        name, dom = account.split("@", 1)
        return dom, name
    return "", account


def event_to_row(ev: IdentityEvent) -> dict[str, Any]:
    """One ``OpenITDRIdentityEvents_CL`` row (IdentityLogonEvents-like columns)."""
    failed = bool(ev.flags & FLAG_FAILURE)
    action = ev.action or f"event_{ev.event_id}"
    if action in _LOGON_ACTIONS:
        action_type = "LogonFailed" if failed else "LogonSuccess"
    else:
        action_type = action + ("_failed" if failed else "")
    status = ev.sub_status if ev.status == 0xC000006D and ev.sub_status else ev.status
    failure = (FAILURE_REASONS.get(status, f"0x{status:X}") if failed and status else "")
    domain, name = _split_account(ev.account)
    additional: dict[str, Any] = {"action": ev.action, "computer": ev.computer}
    for k in ("service", "logon_process", "auth_package", "object", "object_class", "group",
              "member", "share", "relative_target", "service_name", "attribute", "target_sid"):
        v = getattr(ev, k)
        if v:
            additional[k] = v
    for k, missing in (("ticket_encryption", -1), ("preauth_type", -1), ("key_length", -1),
                       ("status", 0), ("sub_status", 0), ("ticket_options", 0),
                       ("access_mask", 0)):
        v = getattr(ev, k)
        if v != missing:
            additional[k] = v
    ts = datetime.fromtimestamp(ev.time_ms / 1000, tz=timezone.utc)
    return {
        "TimeGenerated": ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "ActionType": action_type,
        "Application": "Active Directory",
        "LogonType": LOGON_TYPES.get(ev.logon_type, "" if ev.logon_type < 0
                                     else str(ev.logon_type)),
        "Protocol": ev.protocol.upper() if ev.protocol in ("ntlm", "ldap", "smb") else
        ev.protocol.capitalize(),
        "FailureReason": failure,
        "AccountName": name,
        "AccountDomain": ev.account_domain or domain,
        "AccountSid": ev.account_sid,
        "DeviceName": ev.src_host,
        "IPAddress": ev.src_ip,
        "DestinationDeviceName": ev.computer,
        "TargetDeviceName": ev.target_host,
        "TargetAccountName": ev.target_account,
        "EventId": ev.event_id,
        "ReportId": ev.record_id,
        "AdditionalFields": additional,
    }


# -- credentials / client ---------------------------------------------------------------------
def make_credential(s: SentinelSettings) -> Any:
    """azure-identity credential from the settings: managed identity (or AKS workload
    identity when AZURE_FEDERATED_TOKEN_FILE is set) or an app registration secret."""
    try:
        from azure.identity import (ClientSecretCredential, ManagedIdentityCredential,
                                    WorkloadIdentityCredential)
    except ImportError:
        raise ConfigError("azure-identity is not installed", location="sinks.sentinel",
                          fix='pip install "openitdr[sentinel]"') from None
    if s.use_managed_identity:
        if os.environ.get("AZURE_FEDERATED_TOKEN_FILE"):
            kw = {"client_id": s.client_id} if s.client_id else {}
            if s.tenant_id:
                kw["tenant_id"] = s.tenant_id
            return WorkloadIdentityCredential(**kw)
        return ManagedIdentityCredential(client_id=s.client_id) if s.client_id else \
            ManagedIdentityCredential()
    assert s.client_secret is not None
    return ClientSecretCredential(s.tenant_id, s.client_id, s.client_secret.get_secret_value())


def _retry_after(err: Any, default: float = 5.0) -> float:
    resp = getattr(err, "response", None)
    headers = getattr(resp, "headers", None) or {}
    for h in ("retry-after-ms", "x-ms-retry-after-ms"):
        v = headers.get(h)
        if v:
            try:
                return max(0.0, float(v) / 1000)
            except ValueError:
                pass
    v = headers.get("Retry-After")
    if v:
        try:
            return max(0.0, float(v))
        except ValueError:
            try:
                dt = parsedate_to_datetime(v)
                return max(0.0, (dt - datetime.now(timezone.utc)).total_seconds())
            except (TypeError, ValueError):
                pass
    return default


def classify_upload_error(err: BaseException, n_records: int, where: str) -> SinkError:
    """Map an SDK error to the framework's error kinds."""
    status = getattr(err, "status_code", None)
    msg = getattr(err, "message", None) or str(err)
    msg = str(msg).replace("\n", " ")[:400]
    if status == 429:
        return SinkBackpressureError(f"Logs Ingestion throttled (429): {msg}",
                                     retry_after=_retry_after(err), location=where)
    if status in (400, 413):
        return PermanentSinkError(f"Logs Ingestion rejected {n_records} record(s) "
                                  f"({status}): {msg}", location=where,
                                  fix="check the row against the DCR stream declaration "
                                  "(deploy/sentinel) and the 1 MB call limit")
    if status in (401, 403) or isinstance(err, ClientAuthenticationError):
        return SinkError(f"Logs Ingestion refused the credentials ({status}): {msg}",
                         location=where, fix="grant the identity 'Monitoring Metrics Publisher' "
                         "on the DCR (propagation can take 30 min) and check tenant/client id")
    return SinkError(f"Logs Ingestion call failed ({status or type(err).__name__}): {msg}",
                     location=where)


def _row_size(row: dict[str, Any]) -> int:
    # the same measure the SDK uses to split chunks (json.dumps, default separators)
    return len(json.dumps(row).encode("utf-8"))


class _SentinelBase(BatchingSink):
    stream_name_attr = "stream_name"

    def __init__(self, settings: SentinelSettings, *, credential: Any = None,
                 client: Any = None, **kw: Any):
        super().__init__(**kw)
        self.settings = settings
        self.credential = credential
        self.client = client
        self.calls = 0

    @property
    def stream_name(self) -> str:
        return getattr(self.settings, self.stream_name_attr)

    def setup(self) -> None:
        if self.client is not None:
            return
        if LogsIngestionClient is None:
            raise ConfigError("azure-monitor-ingestion is not installed",
                              location="sinks.sentinel", fix='pip install "openitdr[sentinel]"')
        s = self.settings
        if s.enforce_https and not str(s.endpoint).startswith("https://"):
            raise ConfigError(f"endpoint {s.endpoint} is not https", location="sinks.sentinel."
                              "endpoint", fix="use the https ingestion endpoint")
        cred = self.credential or make_credential(s)
        self.client = LogsIngestionClient(
            endpoint=s.endpoint, credential=cred, connection_verify=s.connection_verify,
            credential_scopes=[s.token_scope], retry_total=0,
            connection_timeout=s.request_timeout_s, read_timeout=s.request_timeout_s)

    def rows_of(self, item: SinkItem) -> list[dict[str, Any]]:
        return item.payload["rows"]

    def write(self, batch: SinkBatch) -> None:
        """Send the pending rows in order, in calls of <= max_call_bytes; stop at the first
        failed call (earlier calls stay delivered, later ones are sent on retry)."""
        limit = self.settings.max_call_bytes - 2  # JSON array brackets
        pending = batch.pending()
        chunk: list[tuple[SinkItem, int]] = []   # (item, row index)
        size = 0
        for item in pending:
            rows = self.rows_of(item)
            sent = item.payload.setdefault("sent", 0)
            for idx in range(sent, len(rows)):
                rs = item.payload["sizes"][idx] + 2   # ", " separator
                if chunk and size + rs > limit:
                    self._send(batch, chunk)
                    chunk, size = [], 0
                chunk.append((item, idx))
                size += rs
        if chunk:
            self._send(batch, chunk)

    def _send(self, batch: SinkBatch, chunk: list[tuple[SinkItem, int]]) -> None:
        rows = [self.rows_of(it)[i] for it, i in chunk]
        errors: list[Any] = []
        self.calls += 1
        self.client.upload(rule_id=self.settings.dcr_immutable_id,
                           stream_name=self.stream_name, logs=rows, on_error=errors.append,
                           enforce_https=self.settings.enforce_https)
        if errors:
            items = {id(it): it for it, _ in chunk}
            raise classify_upload_error(errors[0].error, len(items),
                                        f"{self.settings.endpoint} {self.stream_name}")
        done: dict[int, SinkItem] = {}
        for it, i in chunk:
            it.payload["sent"] = i + 1
            done[id(it)] = it
        batch.mark_delivered(it for it in done.values()
                             if it.payload["sent"] >= len(self.rows_of(it)))

    def close(self) -> None:
        if self.client is not None and hasattr(self.client, "close"):
            try:
                self.client.close()
            except Exception:  # pragma: no cover
                pass


class SentinelSink(_SentinelBase):
    """``itdr sink sentinel``: alerts -> ``Custom-OpenITDRAlerts_CL`` (one row per version)."""

    name = "sentinel"

    def decode(self, item: SinkItem) -> None:
        alert = decode_alert(item)
        row = alert_to_row(alert, max_details_bytes=self.settings.max_details_bytes)
        size = _row_size(row)
        if size + 2 > self.settings.max_call_bytes:
            raise PermanentSinkError(f"alert row is {size} bytes, over the "
                                     f"{self.settings.max_call_bytes}-byte call limit",
                                     location=item.origin)
        item.payload = {"alert": alert, "rows": [row], "sizes": [size]}


class SentinelEventsSink(_SentinelBase):
    """``itdr sink sentinel-events``: normalized identity events (events topic, wire batches)
    -> ``Custom-OpenITDRIdentityEvents_CL``. At-least-once (no ledger: events carry no
    version); rows of a partly sent batch are not re-sent within one run."""

    name = "sentinel-events"
    stream_name_attr = "events_stream_name"

    def topics(self, settings: Any) -> list[str]:
        return [settings.topics.name("events")]

    def decode(self, item: SinkItem) -> None:
        from stream.errors import WireFormatError
        from stream.wire import decode as wire_decode, decode_strings_checked

        try:
            b = wire_decode(item.value)
            decode_strings_checked(b)
            events = b.events()
        except (WireFormatError, ValueError) as e:
            raise PermanentSinkError(f"not a valid event batch: {e}",
                                     location=item.origin) from None
        rows = [event_to_row(e) for e in events]
        sizes = [_row_size(r) for r in rows]
        if any(s + 2 > self.settings.max_call_bytes for s in sizes):
            raise PermanentSinkError("an event row exceeds the call size limit",
                                     location=item.origin)
        item.payload = {"rows": rows, "sizes": sizes}
