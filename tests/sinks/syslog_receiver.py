"""Local syslog collectors for tests: UDP, TCP and TLS, octet-counted or newline framing."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path


class SyslogReceiver:
    def __init__(self, protocol: str = "tcp", port: int = 0, framing: str = "octet",
                 certfile: Path | None = None, keyfile: Path | None = None):
        self.protocol = protocol
        self.framing = framing
        self.messages: list[str] = []
        self._lock = threading.Lock()
        self._closed = False
        self._conns: list[socket.socket] = []
        kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self._ctx = None
        if protocol == "tls":
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(certfile, keyfile)
        if protocol != "udp":
            self.sock.listen(16)
        threading.Thread(target=self._serve, daemon=True).start()

    def _add(self, msg: bytes) -> None:
        with self._lock:
            self.messages.append(msg.decode("utf-8"))

    def _serve(self) -> None:
        while not self._closed:
            try:
                if self.protocol == "udp":
                    data, _ = self.sock.recvfrom(65535)
                    self._add(data)
                    continue
                c, _ = self.sock.accept()
            except OSError:
                return
            if self._ctx is not None:
                try:
                    c = self._ctx.wrap_socket(c, server_side=True)
                except (ssl.SSLError, OSError):
                    c.close()
                    continue
            self._conns.append(c)
            threading.Thread(target=self._read, args=(c,), daemon=True).start()

    def _read(self, c: socket.socket) -> None:
        buf = b""
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    return
                buf += data
                while True:
                    if self.framing == "newline":
                        nl = buf.find(b"\n")
                        if nl < 0:
                            break
                        self._add(buf[:nl])
                        buf = buf[nl + 1:]
                    else:
                        sp = buf.find(b" ")
                        if sp < 0:
                            break
                        n = int(buf[:sp])
                        if len(buf) < sp + 1 + n:
                            break
                        self._add(buf[sp + 1:sp + 1 + n])
                        buf = buf[sp + 1 + n:]
        except OSError:
            return

    def received(self) -> list[str]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self._closed = True
        for c in self._conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)    # wakes the accept() thread
        except OSError:
            pass
        self.sock.close()
