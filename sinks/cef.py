"""CEF over syslog: alerts to any SIEM that reads ArcSight Common Event Format.

Message = RFC 5424 syslog header + CEF record::

    <PRI>1 2026-11-25T10:00:00.000Z host openitdr - alert - CEF:0|OpenITDR|OpenITDR|0.1.0|
        password_spray|Suspected password spray|5|rt=... suser=... cs2=<alert id> ...

Transports: UDP (fire and forget: no delivery guarantee, one datagram per alert), TCP and TLS
(octet counting, RFC 6587/5425, or newline framing). TCP/TLS delivery is at-least-once up to
the collector's socket: a failed send reconnects and re-sends the whole batch; before each batch
the connection is probed so a collector that went away is noticed before writing into a dead
socket. Syslog has no application acknowledgement, so for hard guarantees put a disk-queued
relay (rsyslog, syslog-ng, AMA) next to the sink. Re-sent alerts are dropped by the delivery
ledger (same (id, version) never sent twice).

Run: ``itdr sink syslog -c config.yaml``.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
from datetime import datetime, timezone
from typing import Any

from stream.alert import Alert
from stream.errors import SinkError

from .base import BatchingSink, SinkBatch, SinkItem, decode_alert
from .settings import SyslogSettings

__all__ = ["CEF_SEVERITY", "SyslogSink", "cef_escape_ext", "cef_escape_header", "format_cef",
           "syslog_frame"]

log = logging.getLogger(__name__)

try:
    from importlib.metadata import version as _pkg_version

    PRODUCT_VERSION = _pkg_version("openitdr")
except Exception:  # pragma: no cover - not installed
    PRODUCT_VERSION = "0.1.0"

#: OpenITDR severity -> CEF severity (0-10: 0-3 low, 4-6 medium, 7-8 high, 9-10 very high)
CEF_SEVERITY = {"informational": 1, "low": 3, "medium": 5, "high": 8}
#: OpenITDR severity -> syslog severity (RFC 5424: 2 critical, 3 error, 4 warning, 5 notice,
#: 6 informational)
SYSLOG_SEVERITY = {"informational": 6, "low": 5, "medium": 4, "high": 3}
MAX_MSG = 1023          # CEF msg field length usually indexed by collectors
MAX_UDP = 60_000


def cef_escape_header(s: str) -> str:
    """Header fields: escape backslash and pipe; no line breaks."""
    return (str(s).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ")
            .replace("\n", " "))


def cef_escape_ext(s: Any) -> str:
    """Extension values: escape backslash, equals sign and line breaks."""
    return (str(s).replace("\\", "\\\\").replace("=", "\\=").replace("\r\n", "\\n")
            .replace("\n", "\\n").replace("\r", "\\r"))


def format_cef(alert: Alert, *, link_base: str | None = None,
               version: str = PRODUCT_VERSION) -> str:
    """The CEF record of an alert (no syslog header)."""
    ents = alert.entities
    ext: list[tuple[str, Any]] = [
        ("rt", alert.last_seen_ms), ("start", alert.first_seen_ms), ("end", alert.last_seen_ms),
        ("cnt", alert.evidence.count), ("externalId", alert.id),
        ("cn1", alert.version), ("cn1Label", "AlertVersion"),
    ]
    if ents.accounts:
        ext.append(("suser", ents.accounts[0]))
    if len(ents.accounts) > 1:
        ext.append(("duser", ents.accounts[1]))
    if ents.hosts:
        ext.append(("shost", ents.hosts[0]))
    dhost = ents.hosts[1] if len(ents.hosts) > 1 else (
        alert.evidence.dcs[0] if alert.evidence.dcs else None)
    if dhost:
        ext.append(("dhost", dhost))
    if ents.ips:
        ext.append(("src", ents.ips[0]))
    ext += [("cs1", ",".join(alert.mitre)), ("cs1Label", "MITRE"),
            ("cs2", alert.id), ("cs2Label", "AlertId")]
    if link_base:
        ext += [("cs3", f"{link_base.rstrip('/')}/{alert.id}"), ("cs3Label", "Link")]
    else:
        ext += [("cs3", alert.description), ("cs3Label", "Description")]
    ext += [("cs4", alert.entity), ("cs4Label", "Entity"),
            ("cs5", ",".join(alert.mdi_alert_id)), ("cs5Label", "MdiAlertId"),
            ("cs6", alert.status), ("cs6Label", "Status"),
            ("cat", f"OpenITDR/{alert.detector}"),
            ("msg", alert.description[:MAX_MSG])]
    header = "|".join(cef_escape_header(x) for x in (
        "CEF:0", "OpenITDR", "OpenITDR", version, alert.detector, alert.title,
        CEF_SEVERITY[alert.severity]))
    extension = " ".join(f"{k}={cef_escape_ext(v)}" for k, v in ext if v not in ("", None))
    return f"{header}|{extension}"


def syslog_frame(alert: Alert, cef: str, s: SyslogSettings, hostname: str | None = None
                 ) -> str:
    """RFC 5424 message carrying the CEF record."""
    pri = s.facility * 8 + SYSLOG_SEVERITY[alert.severity]
    ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    host = (hostname or socket.gethostname() or "-").replace(" ", "_")[:255]
    return f"<{pri}>1 {ts} {host} {s.app_name} - alert - {cef}"


class SyslogSink(BatchingSink):
    """``itdr sink syslog``: one CEF syslog message per alert version."""

    name = "syslog"

    def __init__(self, settings: SyslogSettings, **kw: Any):
        super().__init__(**kw)
        self.settings = settings
        self._sock: socket.socket | None = None
        self.hostname = socket.gethostname()
        self.sent_messages = 0

    def decode(self, item: SinkItem) -> None:
        alert = decode_alert(item)
        msg = syslog_frame(alert, format_cef(alert, link_base=self.settings.link_base),
                           self.settings, self.hostname).encode("utf-8")
        if self.settings.protocol == "udp" and len(msg) > MAX_UDP:
            msg = msg[:MAX_UDP]
        item.payload = msg

    # -- transport ----------------------------------------------------------------------------
    def _connect(self) -> socket.socket:
        s = self.settings
        if s.protocol == "udp":
            sock = socket.socket(socket.AF_INET6 if ":" in s.host else socket.AF_INET,
                                 socket.SOCK_DGRAM)
            sock.connect((s.host, s.port))
            return sock
        raw = socket.create_connection((s.host, s.port), timeout=s.connect_timeout_s)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if s.protocol == "tls":
            ctx = ssl.create_default_context(cafile=s.ca_file)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if not s.tls_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            try:
                raw = ctx.wrap_socket(raw, server_hostname=s.host)
            except Exception:
                raw.close()
                raise
        raw.settimeout(s.connect_timeout_s)
        return raw

    def _alive(self, sock: socket.socket) -> bool:
        """False when the collector closed or reset the connection (probe before a batch)."""
        if self.settings.protocol == "udp":
            return True
        try:
            r, _, _ = select.select([sock], [], [], 0)
            if not r:
                return True
            if isinstance(sock, ssl.SSLSocket):
                sock.setblocking(False)
                try:
                    data = sock.recv(1)
                except ssl.SSLWantReadError:
                    return True
                finally:
                    sock.setblocking(True)
                    sock.settimeout(self.settings.connect_timeout_s)
            else:
                data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            return bool(data)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def write(self, batch: SinkBatch) -> None:
        pending = batch.pending()
        s = self.settings
        try:
            if self._sock is not None and not self._alive(self._sock):
                log.info("syslog collector %s:%d closed the connection; reconnecting",
                         s.host, s.port)
                self._drop()
            if self._sock is None:
                self._sock = self._connect()
            if s.protocol == "udp":
                for item in pending:
                    self._sock.send(item.payload)
                    batch.mark_delivered([item])
            else:
                if s.framing == "octet":
                    data = b"".join(b"%d %s" % (len(i.payload), i.payload) for i in pending)
                else:
                    data = b"".join(i.payload + b"\n" for i in pending)
                self._sock.sendall(data)
            self.sent_messages += len(pending)
        except (OSError, ssl.SSLError) as e:
            self._drop()
            raise SinkError(f"syslog {s.protocol} send to {s.host}:{s.port} failed: {e}",
                            location="sinks.syslog", fix="check that the collector listens "
                            "(and its certificate for tls)") from e

    def close(self) -> None:
        self._drop()
