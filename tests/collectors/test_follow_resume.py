"""Follow mode + checkpoints: ``itdr collect --follow`` is SIGKILLed while a log grows, then
restarted; every event of the file ends up in the topic (no gaps), and the checkpoint ends at
the end of the file."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest

from stream.broker import ensure_topics
from stream.settings import TopicSettings

from .helpers import events_in

pytestmark = pytest.mark.broker

ITDR = str(Path(sys.executable).with_name("itdr"))


def nxlog_line(i: int) -> bytes:
    return orjson.dumps({
        "EventID": 4624, "EventTime": f"2024-01-01 10:{(i // 60) % 60:02d}:{i % 60:02d}",
        "Hostname": "DC01.corp.local", "Channel": "Security",
        "SourceName": "Microsoft-Windows-Security-Auditing", "RecordNumber": i,
        "TargetUserName": f"user{i % 50}", "TargetDomainName": "CORP",
        "IpAddress": f"10.0.0.{i % 250}", "LogonType": "3",
        "AuthenticationPackageName": "Kerberos"}) + b"\n"


def write_config(path: Path, bootstrap: str, prefix: str, work: Path, **collector) -> Path:
    cfg = {"kafka": {"bootstrap_servers": bootstrap}, "topics": {"prefix": prefix},
           "collector": {"checkpoint_dir": str(work / "cp"), "spool_dir": str(work / "spool"),
                         "linger_ms": 50, "poll_interval_s": 0.1, "checkpoint_interval_s": 0.2,
                         "heartbeat_interval_s": 1, "sensor_id": "dc01", **collector}}
    path.write_bytes(orjson.dumps(cfg))       # JSON is valid YAML
    return path


def test_follow_resume_after_sigkill(broker, tmp_path):
    kafka = broker.kafka_settings()
    prefix = f"fr{uuid.uuid4().hex[:6]}."
    topics = TopicSettings(prefix=prefix, partitions=4)
    ensure_topics(kafka, topics)
    log = tmp_path / "forwarded.jsonl"
    log.write_bytes(b"")
    cfg = write_config(tmp_path / "c.yaml", broker.bootstrap, prefix, tmp_path)
    n_total = 12000
    written = [0]

    def writer():
        with open(log, "ab") as f:
            for i in range(1, n_total + 1):
                line = nxlog_line(i)
                if i % 400 == 0:        # leave a half-written line for a moment
                    f.write(line[:20])
                    f.flush()
                    time.sleep(0.02)
                    f.write(line[20:])
                else:
                    f.write(line)
                written[0] = i
                if i % 400 == 0:
                    f.flush()
                    time.sleep(0.01)

    cmd = [ITDR, "collect", "-c", str(cfg), str(log), "--follow"]
    t = threading.Thread(target=writer)
    t.start()
    p1 = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cp = tmp_path / "cp" / "checkpoints.json"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (cp.exists() and written[0] > n_total // 3):
        time.sleep(0.05)
    assert cp.exists(), "no checkpoint written"
    os.kill(p1.pid, signal.SIGKILL)
    p1.wait(10)
    pos_at_kill = orjson.loads(cp.read_bytes())["sources"][str(log.resolve())]["offset"]
    assert 0 < pos_at_kill < n_total * 250
    p2 = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t.join(60)
    size = log.stat().st_size
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if cp.exists() and orjson.loads(cp.read_bytes())["sources"].get(
                str(log.resolve()), {}).get("offset") == size:
            break
        time.sleep(0.1)
    p2.send_signal(signal.SIGTERM)
    _, err = p2.communicate(timeout=30)
    assert p2.returncode == 0, err.decode()[-2000:]
    final = orjson.loads(cp.read_bytes())["sources"][str(log.resolve())]
    assert final["offset"] == size, "checkpoint did not reach the end of the file"
    got = events_in(broker.bootstrap, topics.name("events"), 4)
    ids = [e["record_id"] for _, e in got]
    assert set(ids) == set(range(1, n_total + 1)), \
        f"missing: {sorted(set(range(1, n_total + 1)) - set(ids))[:10]}"
    # at-least-once: duplicates only from the window between the last checkpoint and the kill
    dup = len(ids) - n_total
    assert 0 <= dup < n_total // 2
    # events carry the normalized fields
    e0 = next(e for _, e in got if e["record_id"] == 7)
    assert e0["account"] == "corp\\user7" and e0["src_ip"] == "10.0.0.7"
    # heartbeats went to the health topic
    from .helpers import consume_all

    hbs = [orjson.loads(m.value()) for m in consume_all(broker.bootstrap,
                                                         topics.name("health"), 1)]
    assert hbs and all(h["sensor_id"] == "dc01" for h in hbs)


# -- EVTX -----------------------------------------------------------------------------------------
class GrowingEvtx:
    """An EVTX log written the way a live one grows: the file header, then chunk after chunk.
    Each chunk is first appended holding half of its records (in two writes, so a reader can
    see a partial chunk at the end of the file), then filled in place up to its full set of
    records; the file header's chunk count and next record id follow. Every other chunk is
    filled header first (the chunk header announces records whose bytes are not there yet,
    the second half split mid-record), the others records first -- a reader of a live file
    can observe either."""

    def __init__(self, path: Path, n_events: int, pause_s: float = 0.12):
        from . import evtx_gen as g

        self.g = g
        self.path = path
        self.pause_s = pause_s
        self.events = g.security_events(n_events)
        self.full = g.build_chunks(self.events)
        self.halves = []
        for c in self.full:
            first, last = struct.unpack_from("<QQ", c, 24)
            n = last - first + 1
            (h,) = g.build_chunks(self.events[first - 1:first - 1 + max(1, n // 2)], first)
            self.halves.append(h)
        self.last_id = len(self.events)
        self.chunks_written = 0
        path.write_bytes(g.file_header(0, 1, dirty=True))

    def _header(self, f, n_chunks: int, next_id: int, dirty: bool = True) -> None:
        f.seek(0)
        f.write(self.g.file_header(n_chunks, next_id, dirty))

    def write_chunk(self, i: int) -> None:
        g, pause = self.g, self.pause_s
        half, full = self.halves[i], self.full[i]
        at = g.FILE_HEADER_SIZE + i * g.CHUNK_SIZE
        with open(self.path, "r+b", buffering=0) as f:
            f.seek(at)
            f.write(half[:20000])                  # a partial chunk at the end of the file
            time.sleep(pause)
            f.write(half[20000:])
            self._header(f, i + 1, struct.unpack_from("<Q", half, 32)[0] + 1)
            time.sleep(pause / 2)
            free_half = struct.unpack_from("<I", half, 48)[0]
            mid = free_half + 1000                 # inside a record of the second half
            if i % 2 == 0:                         # chunk header ahead of its records
                f.seek(at)
                f.write(full[:512])
                time.sleep(pause)
                f.seek(at + free_half)
                f.write(full[free_half:mid])
                time.sleep(pause)
                f.write(full[mid:])
            else:                                  # records first, then the chunk header
                f.seek(at + free_half)
                f.write(full[free_half:])
                time.sleep(pause)
                f.seek(at)
                f.write(full[:512])
            self._header(f, i + 1, struct.unpack_from("<Q", full, 32)[0] + 1)
        self.chunks_written = i + 1
        time.sleep(pause / 2)

    def finish(self) -> None:
        with open(self.path, "r+b", buffering=0) as f:
            self._header(f, len(self.full), self.last_id + 1, dirty=False)

    def expected_ids(self) -> tuple[list[int], set[int]]:
        """(every record id the parser reads from the file, ids of the normalized events)."""
        import evtx

        from collectors.normalize import Normalizer
        from collectors.records import from_evtx_json

        norm = Normalizer()
        all_ids, normalized = [], set()
        for r in evtx.PyEvtxParser(str(self.path), number_of_threads=1).records_json():
            all_ids.append(r["event_record_id"])
            ev = norm.normalize(from_evtx_json(orjson.loads(r["data"])))
            if ev is not None:
                normalized.add(ev["record_id"])
        return all_ids, normalized


def _evtx_pos(cp: Path, sid: str) -> dict:
    try:
        return orjson.loads(cp.read_bytes())["sources"].get(sid, {})
    except (OSError, orjson.JSONDecodeError):
        return {}


def test_follow_resume_evtx_after_sigkill(broker, tmp_path):
    """An EVTX log grows (chunks appended, then filled in place) while ``itdr collect
    --follow`` reads it; the collector is SIGKILLed once its checkpoint is partway, restarted,
    the log finishes growing: every normalized record is in the events topic, duplicates only
    above the checkpoint of the kill (at most twice), nothing dead-lettered, and the checkpoint
    ends at the last record id."""
    kafka = broker.kafka_settings()
    prefix = f"fe{uuid.uuid4().hex[:6]}."
    topics = TopicSettings(prefix=prefix, partitions=4)
    ensure_topics(kafka, topics)
    log = tmp_path / "Security.evtx"
    gen = GrowingEvtx(log, n_events=1600)
    n_chunks = len(gen.full)
    assert n_chunks >= 10
    sid = str(log.resolve())
    cfg = write_config(tmp_path / "c.yaml", broker.bootstrap, prefix, tmp_path)
    cp = tmp_path / "cp" / "checkpoints.json"
    # the collector is killed once its checkpoint passed the first third of the chunks; the
    # writer waits before the last third until the restarted collector runs
    kill_after = struct.unpack_from("<Q", gen.full[n_chunks // 3], 32)[0]
    resume = threading.Event()
    failed: list[BaseException] = []

    def writer():
        try:
            for i in range(n_chunks):
                if i == 2 * n_chunks // 3 and not resume.wait(120):
                    raise TimeoutError("collector not restarted")
                gen.write_chunk(i)
            gen.finish()
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            failed.append(e)

    cmd = [ITDR, "collect", "-c", str(cfg), str(log), "--follow"]
    err1, err2 = tmp_path / "collect1.err", tmp_path / "collect2.err"

    def start(err: Path) -> subprocess.Popen:
        with open(err, "wb") as f:
            return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=f)

    def tail(err: Path) -> str:
        return err.read_text(errors="replace")[-2000:]

    p1 = start(err1)
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    p2 = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and _evtx_pos(cp, sid).get("record_id", 0) < kill_after:
            assert p1.poll() is None, tail(err1)
            assert not failed, failed
            time.sleep(0.05)
        os.kill(p1.pid, signal.SIGKILL)
        p1.wait(10)
        at_kill = _evtx_pos(cp, sid)
        assert kill_after <= at_kill.get("record_id", 0) < gen.last_id, at_kill
        assert at_kill["first_record_id"] == 1
        p2 = start(err2)
        resume.set()
        t.join(120)
        assert not t.is_alive() and not failed, failed
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and \
                _evtx_pos(cp, sid).get("record_id") != gen.last_id:
            assert p2.poll() is None, tail(err2)
            time.sleep(0.1)
        p2.send_signal(signal.SIGTERM)
        p2.wait(60)
        assert p2.returncode == 0, tail(err2)
    finally:
        resume.set()
        for p in (p1, p2):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)
    final = _evtx_pos(cp, sid)
    assert final == {"record_id": gen.last_id, "first_record_id": 1}, final
    all_ids, want = gen.expected_ids()
    assert all_ids == list(range(1, gen.last_id + 1))
    assert 0 < len(want) < len(all_ids)        # ids the normalizer does not consume are dropped
    got = events_in(broker.bootstrap, topics.name("events"), 4)
    ids = [e["record_id"] for _, e in got]
    assert set(ids) == want, f"missing: {sorted(want - set(ids))[:10]}, " \
                             f"unexpected: {sorted(set(ids) - want)[:10]}"
    # at-least-once: only events above the checkpoint of the kill are sent again, once
    counts: dict[int, int] = {}
    for i in ids:
        counts[i] = counts.get(i, 0) + 1
    dups = {i: n for i, n in counts.items() if n > 1}
    assert all(n == 2 and i > at_kill["record_id"] for i, n in dups.items()), \
        sorted(dups.items())[:10]
    # a growing log is not an error: no partial chunk or half-written record dead-lettered
    from .helpers import dlq_records

    assert dlq_records(broker.bootstrap, topics.name("dlq")) == []
