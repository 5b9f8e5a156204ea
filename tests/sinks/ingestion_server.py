"""A local HTTPS server implementing the Azure Monitor Logs Ingestion contract, for tests.

``POST {endpoint}/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`` with
``Authorization: Bearer <token>`` (401 otherwise), body = JSON array (optionally gzip,
``Content-Encoding: gzip``), 204 on success, 413 over 1 MB, 404 for an unknown DCR/stream,
400 for rows that are not objects or that carry the ``reject_marker`` (an emulated
transformation failure). Scripted faults (429 + Retry-After, 5xx, ...) are served first, in
order. Every accepted row is recorded per stream.

The TLS certificate is self-signed, generated at start with ``cryptography`` for 127.0.0.1 and
localhost; ``ca_file`` is the PEM to pass as ``connection_verify``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import ipaddress
import json
import ssl
import tempfile
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from azure.core.credentials import AccessToken

MAX_BODY = 1024 * 1024
API_VERSION = "2023-01-01"


def make_self_signed(dirpath: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = dirpath / "cert.pem", dirpath / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class StaticTokenCredential:
    """The smallest credential the SDK accepts: get_token(*scopes) -> AccessToken."""

    def __init__(self, token: str = "test-token"):
        self.token = token
        self.scopes: list[tuple] = []

    def get_token(self, *scopes, **kw) -> AccessToken:
        self.scopes.append(scopes)
        import time

        return AccessToken(self.token, int(time.time()) + 3600)


class IngestionServer:
    def __init__(self, dcr: str = "dcr-00000000000000000000000000000000",
                 streams: tuple[str, ...] = ("Custom-OpenITDRAlerts_CL",
                                             "Custom-OpenITDRIdentityEvents_CL"),
                 token: str = "test-token", reject_marker: str = "REJECT-ME"):
        self.dcr = dcr
        self.streams = set(streams)
        self.token = token
        self.reject_marker = reject_marker
        self.rows: dict[str, list[dict]] = defaultdict(list)
        self.requests: list[tuple[int, str, int]] = []     # (status, stream, n rows)
        self.script: list[tuple[int, dict[str, str]]] = []
        self.fail_until: float | None = None                # 503 for every call until then
        self._lock = threading.Lock()
        self._tmp = tempfile.TemporaryDirectory(prefix="itdr-ingest-")
        self.ca_file, key = make_self_signed(Path(self._tmp.name))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.ca_file, key)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.endpoint = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # -- control ------------------------------------------------------------------------------
    def start(self) -> "IngestionServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._tmp.cleanup()

    def __enter__(self) -> "IngestionServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def push(self, status: int, n: int = 1, headers: dict[str, str] | None = None) -> None:
        """Serve ``status`` to the next ``n`` calls (before normal handling)."""
        with self._lock:
            self.script += [(status, headers or {})] * n

    def all_rows(self, stream: str = "Custom-OpenITDRAlerts_CL") -> list[dict]:
        with self._lock:
            return list(self.rows[stream])

    def statuses(self) -> list[int]:
        with self._lock:
            return [r[0] for r in self.requests]

    # -- HTTP ---------------------------------------------------------------------------------
    def _handler(self):
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a) -> None:
                pass

            def _reply(self, status: int, body: dict | None = None,
                       headers: dict[str, str] | None = None, stream: str = "",
                       n: int = 0) -> None:
                data = json.dumps(body).encode() if body else b""
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if data:
                    self.wfile.write(data)
                with srv._lock:
                    srv.requests.append((status, stream, n))

            def do_POST(self) -> None:  # noqa: N802
                u = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                parts = u.path.strip("/").split("/")
                if self.headers.get("Authorization") != f"Bearer {srv.token}":
                    return self._reply(401, {"error": {"code": "InvalidToken"}})
                if parse_qs(u.query).get("api-version") != [API_VERSION]:
                    return self._reply(400, {"error": {"code": "InvalidApiVersion"}})
                if (len(parts) != 4 or parts[0] != "dataCollectionRules" or parts[2] != "streams"
                        or parts[1] != srv.dcr or parts[3] not in srv.streams):
                    return self._reply(404, {"error": {"code": "NotFound",
                                                       "message": u.path}})
                stream = parts[3]
                with srv._lock:
                    scripted = srv.script.pop(0) if srv.script else None
                if scripted:
                    status, headers = scripted
                    return self._reply(status, {"error": {"code": f"Scripted{status}",
                                                          "message": "scripted fault"}},
                                       headers, stream)
                if len(raw) > MAX_BODY:
                    return self._reply(413, {"error": {"code": "ContentLengthLimitExceeded"}},
                                       stream=stream)
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                if len(raw) > MAX_BODY:
                    return self._reply(413, {"error": {"code": "ContentLengthLimitExceeded"}},
                                       stream=stream)
                try:
                    rows = json.loads(raw)
                except ValueError:
                    return self._reply(400, {"error": {"code": "InvalidJson"}}, stream=stream)
                if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                    return self._reply(400, {"error": {"code": "InvalidPayload"}},
                                       stream=stream)
                if any(srv.reject_marker in json.dumps(r) for r in rows):
                    return self._reply(400, {"error": {
                        "code": "InvalidTransformOutput",
                        "message": "transformation failed for a record"}}, stream=stream)
                with srv._lock:
                    srv.rows[stream].extend(rows)
                self._reply(204, stream=stream, n=len(rows))

        return Handler
