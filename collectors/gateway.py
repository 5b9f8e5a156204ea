"""Forwarded-events gateway (``itdr gateway``): receives events that Windows Event Forwarding
collectors, Winlogbeat or NXLog push, and produces them like a DC sensor does.

Listeners (asyncio, bound to 127.0.0.1 by default):

* **TCP** (``gateway.tcp_port``): a stream of records. A record starting with ``{`` ends at
  the newline (JSON: Winlogbeat/ECS, NXLog ``im_msvistalog``, EVTX-JSON, raw EventData
  lines); a record starting with ``<`` ends at ``</Event>`` (Windows Event XML, on one line or
  several). A record longer than ``max_record_bytes`` is dead-lettered (``too_large``) and the
  stream resynchronises at the next newline.
* **HTTP** (``gateway.http_port``): ``POST /events`` with JSON lines, a JSON array,
  Elasticsearch-bulk-style bodies as Winlogbeat's ``output.elasticsearch`` would send
  (``{"index":{}}`` action lines are skipped), or WEF-style XML (``<Events><Event>...``).
  ``Content-Encoding: gzip`` is accepted. Answers: ``202`` with ``{"accepted": n,
  "rejected": m}`` (rejected records are in the dead-letter topic), ``413`` above
  ``max_body_bytes`` (checked on Content-Length and while reading, also after gunzip), ``429``
  when too many events wait for the producer, ``503`` when the disk spool is nearly full (both
  with ``Retry-After``). ``GET /health`` answers 200 with the counters.

XML is parsed with defusedxml (``records.from_xml``): DTDs, entity declarations and external
references are refused; an XML body that carries a ``<!DOCTYPE``/``<!ENTITY`` is rejected as a
whole (hostile), it never reaches the expat entity expander. Every rejected record goes to the
dead-letter topic with its reason (``itdr-reason`` header) and a counter; the listener keeps
serving.

Delivery: accepted records are normalized, batched and handed to the same producer as
``itdr collect`` (idempotent, acks=all, disk spool when the broker is away). ``202`` means
"handed to the producer"; records still in the linger window (``collector.linger_ms``) when
the process is killed are lost from the gateway's side -- forwarders that need end-to-end
acknowledgement should keep their own bookmark (WEF, Winlogbeat registry) and resend.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
import time
import zlib

import orjson

from stream.errors import ParseError
from stream.metrics import GATEWAY_REQUESTS

from .health import Heartbeat
from .pipeline import CollectorPipeline
from .records import from_xml, parse_json_record, split_xml_events

log = logging.getLogger(__name__)

_HOSTILE = (b"<!doctype", b"<!entity")


def _looks_hostile(data: bytes) -> bool:
    low = data[:1 << 16].lower() if len(data) > 1 << 16 else data.lower()
    return any(h in low for h in _HOSTILE) or (len(data) > 1 << 16 and any(
        h in data.lower() for h in _HOSTILE))


class GatewayCore:
    """Parsing, dead-lettering and handing records to the pipeline (event-loop thread)."""

    def __init__(self, pipe: CollectorPipeline, cs, heartbeat: Heartbeat | None = None):
        self.pipe = pipe
        self.cs = cs
        self.g = cs.gateway
        self.hb = heartbeat
        self.accepted = 0
        self.rejected = 0
        self._last_flush = time.monotonic()

    # -- state -------------------------------------------------------------------------------
    @property
    def overloaded(self) -> bool:
        return self.pipe.batcher.pending > self.g.max_pending_events

    @property
    def spool_full(self) -> bool:
        return self.pipe.producer.backpressure

    # -- records -----------------------------------------------------------------------------
    def reject(self, err: Exception, origin: str, raw: bytes) -> None:
        self.rejected += 1
        self.pipe.process_item(None, err, origin, raw[:self.g.max_record_bytes], None, None,
                               kind="gateway")

    def record(self, raw: bytes, origin: str) -> bool:
        """One raw record (JSON object or one XML <Event>). True if accepted."""
        raw = raw.strip()
        if not raw:
            return True
        if len(raw) > self.g.max_record_bytes:
            self.reject(ParseError(f"record of {len(raw)} bytes exceeds the "
                                   f"{self.g.max_record_bytes} byte limit"), origin, raw)
            return False
        try:
            if raw[:1] == b"<":
                if _looks_hostile(raw):
                    raise ParseError("hostile XML refused: DTD/entity declaration")
                rec = from_xml(raw)
            else:
                rec = parse_json_record(raw)
        except ParseError as e:
            self.reject(e, origin, raw)
            return False
        return self._accept(rec, origin, raw)

    def _accept(self, rec: dict, origin: str, raw: bytes) -> bool:
        before = self.pipe.stats.dead_lettered
        self.pipe.process_item(rec, None, origin, raw, None, None, kind="gateway")
        if self.pipe.stats.dead_lettered != before:
            self.rejected += 1
            return False
        self.accepted += 1
        return True

    def body(self, data: bytes, origin: str) -> tuple[str, int, int]:
        """An HTTP body -> (format, accepted, rejected)."""
        a0, r0 = self.accepted, self.rejected
        s = data.lstrip()
        if s[:1] == b"<":
            fmt = "xml"
            if _looks_hostile(s):
                self.reject(ParseError("hostile XML refused: DTD/entity declaration in body"),
                            origin, s)
            else:
                try:
                    parts = split_xml_events(s.decode("utf-8", "replace"))
                except ParseError as e:
                    self.reject(e, origin, s)
                    parts = []
                for i, x in enumerate(parts, 1):
                    self.record(x.encode("utf-8"), f"{origin}#{i}")
        elif s[:1] == b"[":
            fmt = "json_array"
            try:
                arr = orjson.loads(s)
            except orjson.JSONDecodeError as e:
                self.reject(ParseError(f"invalid JSON array: {e}"), origin, s)
                arr = []
            for i, d in enumerate(arr if isinstance(arr, list) else [arr], 1):
                o = f"{origin}#{i}"
                try:
                    rec = parse_json_record(d) if isinstance(d, dict) else parse_json_record(
                        orjson.dumps(d))
                except ParseError as e:
                    self.reject(e, o, orjson.dumps(d))
                    continue
                self._accept(rec, o, b"")
        else:
            fmt = "ndjson"
            for i, line in enumerate(s.split(b"\n"), 1):
                line = line.strip()
                if not line:
                    continue
                if line.startswith(b'{"index"') or line.startswith(b'{"create"'):
                    try:
                        d = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        d = None
                    if isinstance(d, dict) and len(d) == 1 and isinstance(
                            d.get("index", d.get("create")), dict):
                        fmt = "winlogbeat_bulk"
                        continue
                self.record(line, f"{origin}:{i}")
        return fmt, self.accepted - a0, self.rejected - r0

    # -- periodic ----------------------------------------------------------------------------
    def tick(self) -> None:
        p = self.pipe
        p.producer.service(0)
        now = time.monotonic()
        if now - self._last_flush >= p.linger_s:
            p.flush_epoch()
            self._last_flush = now
        if self.hb is not None:
            self.hb.tick(p)


class Gateway:
    """The TCP + HTTP listeners around a :class:`GatewayCore`."""

    def __init__(self, core: GatewayCore):
        self.core = core
        self.g = core.g
        self.tcp_server: asyncio.base_events.Server | None = None
        self.http_runner = None
        self.tcp_port = 0
        self.http_port = 0
        self.connections = 0
        self._ticker: asyncio.Task | None = None
        self._stopping = False

    async def start(self) -> "Gateway":
        g = self.g
        if g.enable_tcp:
            self.tcp_server = await asyncio.start_server(self._tcp_client, g.host, g.tcp_port,
                                                         limit=1 << 16)
            self.tcp_port = self.tcp_server.sockets[0].getsockname()[1]
        if g.enable_http:
            from aiohttp import web

            app = web.Application(client_max_size=g.max_body_bytes)
            app.router.add_post("/events", self._http_events)
            app.router.add_get("/health", self._http_health)
            self.http_runner = web.AppRunner(app, access_log=None)
            await self.http_runner.setup()
            site = web.TCPSite(self.http_runner, g.host, g.http_port)
            await site.start()
            self.http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ticker = asyncio.create_task(self._tick_loop())
        return self

    async def _tick_loop(self) -> None:
        step = max(min(self.core.pipe.linger_s, 0.2), 0.01)
        while not self._stopping:
            try:
                self.core.tick()
            except Exception:  # noqa: BLE001 - keep serving, log loudly
                log.exception("gateway tick failed")
            await asyncio.sleep(step)

    async def stop(self, flush_timeout: float = 30.0) -> dict:
        self._stopping = True
        if self.tcp_server is not None:
            self.tcp_server.close()
            await self.tcp_server.wait_closed()
        if self.http_runner is not None:
            await self.http_runner.cleanup()
        if self._ticker is not None:
            await self._ticker
        pipe = self.core.pipe
        pipe.flush_epoch()
        ok = await asyncio.get_running_loop().run_in_executor(None, pipe.producer.flush,
                                                              flush_timeout)
        rep = pipe.report()
        rep.update(flushed=ok, accepted=self.core.accepted, rejected=self.core.rejected)
        return rep

    # -- TCP ---------------------------------------------------------------------------------
    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        peer = writer.get_extra_info("peername")
        origin = f"tcp:{peer[0]}:{peer[1]}" if peer else "tcp"
        if self.connections >= self.g.max_connections:
            GATEWAY_REQUESTS.labels(protocol="tcp", format="-", outcome="refused").inc()
            writer.close()
            return
        self.connections += 1
        core = self.core
        limit = self.g.max_record_bytes
        buf = b""
        discard = False
        n = 0
        try:
            while True:
                while core.spool_full or core.overloaded:     # backpressure: stop reading
                    await asyncio.sleep(0.05)
                try:
                    chunk = await asyncio.wait_for(reader.read(1 << 16), self.g.idle_timeout_s)
                except asyncio.TimeoutError:
                    break
                if not chunk:
                    break
                buf += chunk
                while buf:
                    if discard:                       # skipping the rest of an oversize record
                        j = buf.find(b"\n")
                        if j < 0:
                            buf = b""
                            break
                        buf = buf[j + 1:]
                        discard = False
                        continue
                    s = buf.lstrip()
                    if not s:
                        buf = b""
                        break
                    term = b"</Event>" if s[:1] == b"<" else b"\n"
                    j = s.find(term)
                    if j < 0:
                        if len(s) > limit:
                            n += 1
                            core.reject(ParseError(f"record exceeds the {limit} byte limit "
                                                   "(no terminator)"), f"{origin}#{n}", s)
                            buf = b""
                            discard = True
                        else:
                            buf = s
                        break
                    rec, buf = s[:j + len(term)], s[j + len(term):]
                    n += 1
                    ok = core.record(rec, f"{origin}#{n}")
                    GATEWAY_REQUESTS.labels(protocol="tcp", format="xml" if term != b"\n"
                                            else "json", outcome="accepted" if ok
                                            else "rejected").inc()
                await asyncio.sleep(0)
            if buf.strip() and not discard:       # last record without terminator
                n += 1
                core.record(buf, f"{origin}#{n}")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.connections -= 1
            writer.close()

    # -- HTTP --------------------------------------------------------------------------------
    async def _http_events(self, request):
        from aiohttp import web

        core = self.core
        g = self.g
        if core.spool_full:
            GATEWAY_REQUESTS.labels(protocol="http", format="-", outcome="unavailable").inc()
            return web.json_response({"error": "spool nearly full: broker unreachable"},
                                     status=503, headers={"Retry-After": "10"})
        if core.overloaded:
            GATEWAY_REQUESTS.labels(protocol="http", format="-", outcome="throttled").inc()
            return web.json_response({"error": "too many pending events"}, status=429,
                                     headers={"Retry-After": "1"})
        if request.content_length is not None and request.content_length > g.max_body_bytes:
            GATEWAY_REQUESTS.labels(protocol="http", format="-", outcome="too_large").inc()
            return web.json_response({"error": f"body exceeds {g.max_body_bytes} bytes"},
                                     status=413)
        try:
            data = await request.read()
        except web.HTTPRequestEntityTooLarge:
            GATEWAY_REQUESTS.labels(protocol="http", format="-", outcome="too_large").inc()
            return web.json_response({"error": f"body exceeds {g.max_body_bytes} bytes"},
                                     status=413)
        if data[:2] == b"\x1f\x8b":    # aiohttp already decodes Content-Encoding: gzip
            try:
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                data = d.decompress(data, g.max_body_bytes + 1)
                if len(data) > g.max_body_bytes or d.unconsumed_tail:
                    return web.json_response({"error": "decompressed body too large"},
                                             status=413)
            except (zlib.error, gzip.BadGzipFile) as e:
                core.reject(ParseError(f"corrupt gzip body: {e}"), "http", data)
                return web.json_response({"error": "corrupt gzip body"}, status=400)
        peer = request.remote or "?"
        fmt, acc, rej = core.body(data, f"http:{peer}")
        GATEWAY_REQUESTS.labels(protocol="http", format=fmt,
                                outcome="accepted" if not rej else "partial").inc()
        return web.json_response({"accepted": acc, "rejected": rej, "format": fmt},
                                 status=202)

    async def _http_health(self, request):
        from aiohttp import web

        rep = self.core.pipe.report()
        rep.update(accepted=self.core.accepted, rejected=self.core.rejected,
                   connections=self.connections)
        return web.json_response(rep)


def build_gateway(settings, cs) -> Gateway:
    from .cli import build_producer

    prod, _store = build_producer(settings, cs, client_suffix="gateway")
    sid = cs.resolved_sensor_id()
    pipe = CollectorPipeline(prod, settings.topics, sources=[], batch_events=cs.batch_events,
                             linger_ms=cs.linger_ms, dual_key=cs.dual_key, sensor_id=sid)
    hb = Heartbeat(sid, "gateway", [f"tcp:{cs.gateway.tcp_port}", f"http:{cs.gateway.http_port}"],
                   cs.heartbeat_interval_s, settings.topics.name("health"))
    return Gateway(GatewayCore(pipe, cs, hb))


def run_gateway(settings, cs) -> int:
    import signal
    import sys

    async def main() -> dict:
        gw = await build_gateway(settings, cs).start()
        print(f"gateway listening: tcp {cs.gateway.host}:{gw.tcp_port} http "
              f"{cs.gateway.host}:{gw.http_port}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, stop.set)
        await stop.wait()
        return await gw.stop()

    rep = asyncio.run(main())
    sys.stderr.write(orjson.dumps(rep).decode() + "\n")
    return 0 if rep.get("flushed") else 1


class GatewayThread:
    """Run a gateway on its own event loop in a background thread (tests, embedding)."""

    def __init__(self, gateway: Gateway):
        self.gw = gateway
        self.loop = asyncio.new_event_loop()
        self._t = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.report: dict | None = None

    def __enter__(self) -> Gateway:
        self._t.start()
        asyncio.run_coroutine_threadsafe(self.gw.start(), self.loop).result(30)
        return self.gw

    def call(self, fn, *a):
        async def _c():
            return fn(*a)
        return asyncio.run_coroutine_threadsafe(_c(), self.loop).result(30)

    def __exit__(self, *exc) -> None:
        self.report = asyncio.run_coroutine_threadsafe(self.gw.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._t.join(10)
