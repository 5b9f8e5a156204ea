"""The synthetic EVTX of ``evtx_gen`` (used by the follow-mode tests) is a valid log: the
``evtx`` parser reads every record with the ids written, chunk and file header CRCs hold, and
the collector's record parser and normalizer take every consumed event without error."""

from __future__ import annotations

import struct
import zlib

import evtx
import orjson

from collectors.normalize import NORMALIZED_EVENT_IDS, Normalizer
from collectors.records import from_evtx_json

from . import evtx_gen as g


def test_generated_evtx_parses_completely(tmp_path):
    events = g.security_events(700)
    chunks = g.build_chunks(events, first_id=1000)
    assert len(chunks) >= 5 and all(len(c) == g.CHUNK_SIZE for c in chunks)
    path = tmp_path / "gen.evtx"
    path.write_bytes(g.evtx_bytes(chunks, 1700))
    hdr = path.read_bytes()[:4096]
    assert struct.unpack_from("<I", hdr, 124)[0] == zlib.crc32(hdr[:120])
    rid = 1000
    for c in chunks:
        free = struct.unpack_from("<I", c, 48)[0]
        first, last = struct.unpack_from("<QQ", c, 24)
        assert first == rid
        rid = last + 1
        assert struct.unpack_from("<I", c, 52)[0] == zlib.crc32(c[512:free])
        assert struct.unpack_from("<I", c, 124)[0] == zlib.crc32(c[128:512],
                                                                 zlib.crc32(c[:120]))
    recs = list(evtx.PyEvtxParser(str(path), number_of_threads=1).records_json())
    assert [r["event_record_id"] for r in recs] == list(range(1000, 1700))
    norm = Normalizer()
    consumed = 0
    for ev, r in zip(events, recs):
        flat = from_evtx_json(orjson.loads(r["data"]))
        assert flat["_eid"] == ev.eid and flat["_record"] == r["event_record_id"]
        assert flat["_channel"] == "Security" and flat["_time_ms"] == ev.time_ms
        out = norm.normalize(flat)
        assert (out is not None) == (ev.eid in NORMALIZED_EVENT_IDS)
        if out is not None:
            consumed += 1
            assert out["record_id"] == r["event_record_id"]
            assert out["account"].startswith("corp\\user")
    assert 0 < consumed < len(events)          # a share of ids is counted and dropped
    e = next(orjson.loads(r["data"]) for r in recs if '"EventID":4624' in r["data"])
    assert e["Event"]["EventData"]["LogonType"] == 3
    assert e["Event"]["EventData"]["IpAddress"].startswith("10.1.")
