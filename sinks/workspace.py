"""Workspace store: the queryable alert history (SQLite or PostgreSQL) and its sink.

One interface over both databases (:class:`WorkspaceStore`): stdlib ``sqlite3`` in WAL mode for
a single host, psycopg 3 for PostgreSQL. The schema is versioned (``schema_migrations``) and
migrated on open. Tables:

* ``alerts`` -- one row per alert id, always the highest version seen (upsert guarded by
  ``version``: an older or re-sent version never overwrites a newer one);
* ``alert_versions`` -- every (id, version) received, with the full alert JSON;
* ``alert_evidence`` -- searchable evidence values per alert (accounts, hosts, IPs, DCs,
  event ids, record ids), the union over all versions;
* ``sensor_health`` -- the latest heartbeat per sensor (from the health topic).

Writes are idempotent, so the sink needs no delivery ledger: re-delivered records after a
crash are absorbed by the upserts.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

import orjson

from stream.alert import SEVERITY_ORDER, Alert
from stream.errors import ConfigError, PermanentSinkError, SinkError

from .base import BatchingSink, SinkBatch, SinkItem, decode_alert
from .settings import WorkspaceSettings

__all__ = ["MIGRATIONS", "WorkspaceSink", "WorkspaceStore", "open_store"]

log = logging.getLogger(__name__)

# version -> SQL per dialect (statements separated by ';')
MIGRATIONS: dict[int, dict[str, str]] = {
    1: {
        "common": """
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    detector TEXT NOT NULL,
    severity TEXT NOT NULL,
    severity_rank INTEGER NOT NULL,
    status TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    entity TEXT NOT NULL,
    evidence_count INTEGER NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    mitre TEXT NOT NULL,
    alert_json TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX alerts_last_seen ON alerts (last_seen_ms);
CREATE INDEX alerts_detector ON alerts (detector, last_seen_ms);
CREATE TABLE alert_versions (
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    received_at_ms BIGINT NOT NULL,
    alert_json TEXT NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE TABLE alert_evidence (
    alert_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (alert_id, kind, value)
);
CREATE INDEX alert_evidence_value ON alert_evidence (kind, value);
CREATE TABLE sensor_health (
    sensor_id TEXT PRIMARY KEY,
    last_heartbeat_ms BIGINT NOT NULL,
    payload TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
)
""",
    },
}

SCHEMA_VERSION = max(MIGRATIONS)

_ALERT_COLS = ("id", "version", "detector", "severity", "severity_rank", "status", "title",
               "description", "entity", "evidence_count", "first_seen", "last_seen",
               "first_seen_ms", "last_seen_ms", "mitre", "alert_json", "updated_at_ms")
_UPSERT_ALERT = (
    f"INSERT INTO alerts ({', '.join(_ALERT_COLS)}) VALUES ({', '.join('?' * len(_ALERT_COLS))}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _ALERT_COLS if c != "id")
    + " WHERE excluded.version > alerts.version")
_INSERT_VERSION = ("INSERT INTO alert_versions (id, version, received_at_ms, alert_json) "
                   "VALUES (?, ?, ?, ?) ON CONFLICT (id, version) DO NOTHING")
_INSERT_EVIDENCE = ("INSERT INTO alert_evidence (alert_id, kind, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (alert_id, kind, value) DO NOTHING")
_UPSERT_HEALTH = ("INSERT INTO sensor_health (sensor_id, last_heartbeat_ms, payload, "
                  "updated_at_ms) VALUES (?, ?, ?, ?) ON CONFLICT (sensor_id) DO UPDATE SET "
                  "last_heartbeat_ms = excluded.last_heartbeat_ms, payload = excluded.payload, "
                  "updated_at_ms = excluded.updated_at_ms "
                  "WHERE excluded.last_heartbeat_ms >= sensor_health.last_heartbeat_ms")


def evidence_rows(a: Alert) -> list[tuple[str, str, str]]:
    rows: set[tuple[str, str, str]] = set()
    e = a.entities
    for kind, values in (("account", e.accounts), ("host", e.hosts), ("ip", e.ips),
                         ("spn", e.spns), ("group", e.groups), ("object", e.objects),
                         ("dc", a.evidence.dcs), ("event_id", a.evidence.event_ids),
                         ("record_id", a.evidence.record_ids)):
        for v in values:
            rows.add((a.id, kind, str(v)))
    rows.add((a.id, "entity", a.entity))
    return sorted(rows)


def alert_row(a: Alert, now_ms: int) -> tuple:
    return (a.id, a.version, a.detector, a.severity, SEVERITY_ORDER[a.severity], a.status,
            a.title, a.description, a.entity, a.evidence.count, a.first_seen, a.last_seen,
            a.first_seen_ms, a.last_seen_ms, orjson.dumps(a.mitre).decode(),
            a.to_json().decode(), now_ms)


class WorkspaceStore:
    """The workspace database (SQLite or PostgreSQL) behind one small API."""

    def __init__(self, url: str):
        self.url = url
        self.dialect = "postgresql" if url.startswith(("postgresql://", "postgres://")) \
            else "sqlite"
        self._conn: Any = None

    # -- connection ---------------------------------------------------------------------------
    @property
    def conn(self) -> Any:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> Any:
        if self.dialect == "postgresql":
            try:
                import psycopg
            except ImportError:
                raise ConfigError("psycopg is not installed", location="sinks.workspace.url",
                                  fix='pip install "openitdr[postgres]"') from None
            return psycopg.connect(self.url, connect_timeout=5, autocommit=False)
        path = self.url.removeprefix("sqlite:///").removeprefix("sqlite://")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=1.0, check_same_thread=False,
                               isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=1000")
        return conn

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # pragma: no cover
                pass
            self._conn = None

    def reset_connection(self) -> None:
        """Drop the connection; the next call reconnects (after a transient error)."""
        self.close()

    def _begin(self) -> Any:
        c = self.conn
        if self.dialect == "sqlite":
            c.execute("BEGIN IMMEDIATE")
        return c

    def _commit(self, c: Any) -> None:
        c.execute("COMMIT") if self.dialect == "sqlite" else c.commit()

    def _rollback(self) -> None:
        try:
            if self._conn is None:
                return
            if self.dialect == "sqlite":
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            else:
                self._conn.rollback()
        except Exception:
            self.reset_connection()

    # -- schema -------------------------------------------------------------------------------
    def migrate(self) -> int:
        """Apply pending migrations; return the schema version."""
        c = self.conn
        try:
            self._exec(c, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER "
                       "PRIMARY KEY, applied_at_ms BIGINT NOT NULL)")
            if self.dialect == "postgresql":
                c.commit()
                # serialize concurrent migrators (two sinks starting together)
                c.execute("SELECT pg_advisory_xact_lock(74707472)")
            else:
                c.execute("BEGIN IMMEDIATE")
            done = {r[0] for r in self._fetch(c, "SELECT version FROM schema_migrations")}
            for v in sorted(MIGRATIONS):
                if v in done:
                    continue
                sql = MIGRATIONS[v].get(self.dialect) or MIGRATIONS[v]["common"]
                for stmt in (s.strip() for s in sql.split(";")):
                    if stmt:
                        self._exec(c, stmt)
                self._exec(c, self._sql("INSERT INTO schema_migrations (version, "
                                        "applied_at_ms) VALUES (?, ?)"),
                           (v, int(time.time() * 1000)))
                log.info("workspace %s: applied migration %d", self.dialect, v)
            self._commit(c)
        except Exception:
            self._rollback()
            raise
        return self.schema_version()

    def schema_version(self) -> int:
        rows = self._fetch(self.conn, "SELECT MAX(version) FROM schema_migrations")
        if self.dialect == "postgresql":
            self.conn.commit()
        return int(rows[0][0] or 0)

    @staticmethod
    def _exec(c: Any, sql: str, params: tuple = ()) -> Any:
        return c.execute(sql, params)

    @staticmethod
    def _fetch(c: Any, sql: str, params: tuple = ()) -> list:
        return list(c.execute(sql, params).fetchall())

    # -- writes -------------------------------------------------------------------------------
    def write(self, alerts: Iterable[Alert] = (), heartbeats: Iterable[tuple] = ()) -> None:
        """Upsert alerts and heartbeats ``(sensor_id, last_ms, payload_json)`` in one
        transaction (all or nothing)."""
        now = int(time.time() * 1000)
        alerts = list(alerts)
        heartbeats = list(heartbeats)
        c = self._begin()
        try:
            cur = c.cursor()
            if alerts:
                cur.executemany(self._sql(_INSERT_VERSION),
                                [(a.id, a.version, now, a.to_json().decode()) for a in alerts])
                cur.executemany(self._sql(_UPSERT_ALERT), [alert_row(a, now) for a in alerts])
                ev = [r for a in alerts for r in evidence_rows(a)]
                if ev:
                    cur.executemany(self._sql(_INSERT_EVIDENCE), ev)
            if heartbeats:
                cur.executemany(self._sql(_UPSERT_HEALTH),
                                [(s, ms, p, now) for s, ms, p in heartbeats])
            self._commit(c)
        except Exception:
            self._rollback()
            raise

    # -- queries ------------------------------------------------------------------------------
    def list_alerts(self, *, since_ms: int | None = None, detector: str | None = None,
                    severity: str | None = None, entity: str | None = None,
                    limit: int = 1000) -> list[dict[str, Any]]:
        """Latest version of each alert, newest activity first. ``since_ms`` filters on the
        alert's last evidence time (event time)."""
        where, params = [], []
        if since_ms is not None:
            where.append("last_seen_ms >= ?")
            params.append(int(since_ms))
        if detector:
            where.append("detector = ?")
            params.append(detector)
        if severity:
            where.append("severity_rank >= ?")
            params.append(SEVERITY_ORDER[severity])
        if entity:
            where.append("id IN (SELECT alert_id FROM alert_evidence WHERE value = ?)")
            params.append(entity)
        sql = ("SELECT alert_json FROM alerts" + (" WHERE " + " AND ".join(where) if where
                                                  else "")
               + " ORDER BY last_seen_ms DESC, id LIMIT ?")
        params.append(int(limit))
        rows = self._query(sql, tuple(params))
        return [orjson.loads(r[0]) for r in rows]

    def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT alert_json FROM alerts WHERE id = ?", (alert_id,))
        return orjson.loads(rows[0][0]) if rows else None

    def versions(self, alert_id: str) -> list[int]:
        return [r[0] for r in self._query("SELECT version FROM alert_versions WHERE id = ? "
                                          "ORDER BY version", (alert_id,))]

    def count(self, table: str = "alerts") -> int:
        if table not in ("alerts", "alert_versions", "alert_evidence", "sensor_health"):
            raise ValueError(table)
        return int(self._query(f"SELECT COUNT(*) FROM {table}")[0][0])  # noqa: S608

    def evidence(self, alert_id: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self._query(
            "SELECT kind, value FROM alert_evidence WHERE alert_id = ? ORDER BY kind, value",
            (alert_id,))]

    def sensor_health(self) -> list[dict[str, Any]]:
        rows = self._query("SELECT sensor_id, last_heartbeat_ms, payload FROM sensor_health "
                           "ORDER BY sensor_id")
        return [{"sensor_id": r[0], "last_heartbeat_ms": int(r[1]),
                 "payload": orjson.loads(r[2])} for r in rows]

    def _query(self, sql: str, params: tuple = ()) -> list:
        c = self.conn
        try:
            rows = self._fetch(c, self._sql(sql), params)
        finally:
            if self.dialect == "postgresql":
                c.rollback()   # end the read transaction (no idle-in-transaction)
        return rows


def open_store(url: str, migrate: bool = True) -> WorkspaceStore:
    store = WorkspaceStore(url)
    if migrate:
        store.migrate()
    return store


def _is_permanent_db_error(e: BaseException) -> bool:
    if isinstance(e, (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError)):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return False
    return isinstance(e, (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError))


class WorkspaceSink(BatchingSink):
    """``itdr sink workspace``: alerts (and heartbeats) into the workspace store."""

    name = "workspace"

    def __init__(self, settings: WorkspaceSettings, **kw: Any):
        super().__init__(**kw)
        self.settings = settings
        self.store = WorkspaceStore(settings.url)
        self._migrated = False
        self._health_topic: str | None = None

    def topics(self, settings: Any) -> list[str]:
        out = [settings.topics.name("alerts")]
        if self.settings.health:
            self._health_topic = settings.topics.name("health")
            out.append(self._health_topic)
        return out

    def setup(self) -> None:
        try:
            self.store.migrate()
            self._migrated = True
        except Exception as e:  # destination down at start: retried at the first flush
            log.warning("workspace not reachable at start (%s); will retry", e)
            self.store.reset_connection()

    def decode(self, item: SinkItem) -> None:
        if self._health_topic and item.topic == self._health_topic:
            item.payload = decode_heartbeat(item)
            return
        decode_alert(item)

    def write(self, batch: SinkBatch) -> None:
        pending = batch.pending()
        alerts = [i.payload for i in pending if isinstance(i.payload, Alert)]
        beats = [i.payload for i in pending if isinstance(i.payload, tuple)]
        try:
            if not self._migrated:
                self.store.migrate()
                self._migrated = True
            self.store.write(alerts, beats)
        except Exception as e:
            if _is_permanent_db_error(e):
                raise PermanentSinkError(f"workspace rejected the record: {e}") from e
            self.store.reset_connection()
            raise SinkError(f"workspace write failed: {type(e).__name__}: {e}",
                            location=self.store.dialect) from e

    def close(self) -> None:
        self.store.close()


def decode_heartbeat(item: SinkItem) -> tuple[str, int, str]:
    """A health-topic record: a JSON object with ``sensor_id`` (or ``sensor``, or the key)
    and ``time_ms`` / ``ts_ms`` (default: the record timestamp)."""
    try:
        obj = orjson.loads(item.value)
    except orjson.JSONDecodeError as e:
        raise PermanentSinkError(f"heartbeat is not JSON: {e}", location=item.origin) from None
    if not isinstance(obj, dict):
        raise PermanentSinkError("heartbeat is not a JSON object", location=item.origin)
    sensor = obj.get("sensor_id") or obj.get("sensor") or (
        item.key.decode("utf-8", "replace") if item.key else None)
    if not sensor:
        raise PermanentSinkError("heartbeat without sensor_id", location=item.origin,
                                 fix="collectors must send sensor_id in heartbeats")
    ms = obj.get("time_ms") or obj.get("ts_ms") or item.timestamp_ms or int(time.time() * 1000)
    try:
        ms = int(ms)
    except (TypeError, ValueError):
        raise PermanentSinkError(f"heartbeat time_ms {ms!r} is not an integer",
                                 location=item.origin) from None
    return (str(sensor), ms, orjson.dumps(obj).decode())
