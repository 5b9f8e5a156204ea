"""The optimized collector path gives byte-identical output to the reference one.

* ``Normalizer.normalize`` (per-event-id functions compiled from ``EVENT_TABLE``) against
  ``normalize_reference`` (the generic table walk) on every record of every shared sample
  file (EVTX and JSON), errors included;
* the EVTX source's fast path (event-id peek, ``from_evtx_json`` fast EventData path) against
  a plain reading: ``orjson.loads`` + the generic flattening, record by record;
* synthetic edge cases (odd types, bad times/ids, wrong channel) without the samples.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from collectors import records
from collectors.evtx_source import FileSource, iter_evtx_records
from collectors.files import iter_file_records
from collectors.normalize import EVENT_TABLE, Normalizer, normalize_reference
from stream.errors import ParseError

SAMPLES = Path("/work/shared/samples")


def _files() -> list[Path]:
    return sorted(p for p in SAMPLES.rglob("*") if p.is_file()
                  and p.suffix.lower() in (".evtx", ".json", ".jsonl"))


def _outcome(fn, rec):
    try:
        return orjson.dumps(fn(dict(rec)))
    except Exception as e:  # noqa: BLE001 - compare the error too
        return (type(e).__name__, str(e))


def _reference_flat(ev: dict) -> dict:
    """from_evtx_json with the generic EventData flattening only (no fast path)."""
    rec = records.from_evtx_json({"Event": {"System": ev["Event"]["System"]}})
    records._flatten_data(ev["Event"].get("EventData"), rec)
    records._flatten_data(ev["Event"].get("UserData"), rec)
    return rec


@pytest.mark.samples
@pytest.mark.skipif(not SAMPLES.exists(), reason="../shared/samples not present")
def test_compiled_normalizer_matches_reference_on_every_sample_record():
    files = _files()
    assert len(files) > 250
    fast, ref = Normalizer(), Normalizer()
    n = 0
    for f in files:
        for rec, err, origin in iter_file_records(f):
            if rec is None:
                continue
            n += 1
            a = _outcome(fast.normalize, rec)
            b = _outcome(ref.normalize_reference, rec)
            assert a == b, origin
    assert n > 20_000
    assert fast.normalized == ref.normalized > 1000
    assert fast.unknown == ref.unknown and fast.unknown_ids == ref.unknown_ids


@pytest.mark.samples
@pytest.mark.skipif(not SAMPLES.exists(), reason="../shared/samples not present")
def test_evtx_source_fast_path_matches_plain_reading():
    fast = Normalizer()
    n = 0
    for f in _files():
        if f.suffix.lower() != ".evtx":
            continue
        fs = FileSource([str(f)])
        got = [(rec, err) for rec, err, *_ in fs.poll()]
        want = []
        for _rid, data, err in iter_evtx_records(str(f)):
            if err is not None:
                want.append(None)
                continue
            try:
                want.append(normalize_reference(_reference_flat(orjson.loads(data))))
            except ParseError as e:
                want.append(("ParseError", str(e)))
        assert len(got) == len(want), f
        for (rec, err), w in zip(got, want):
            n += 1
            if err is not None:
                assert w is None or w == ("ParseError", str(err)), f
                continue
            assert orjson.dumps(fast.normalize(rec)) == orjson.dumps(w), (f, rec)
    assert n > 5000


def _base(eid: int, **kw) -> dict:
    rec = {"_eid": eid, "_time_ms": 1_600_000_000_000, "_computer": "DC01.corp.local",
           "_channel": "Security", "_provider": "Microsoft-Windows-Security-Auditing",
           "_record": 7, "_user_sid": "S-1-5-18", "TargetUserName": "Alice",
           "TargetDomainName": "CORP.LOCAL", "SubjectUserName": "bob$",
           "SubjectDomainName": "corp", "SubjectUserSid": "s-1-5-7", "IpAddress": "::ffff:10.0.0.5",
           "Status": "0xC000006D", "LogonType": "3", "TicketEncryptionType": "0xffffffff",
           "WorkstationName": "\\\\WS01", "ServiceName": "krbtgt$", "AccessMask": "-",
           "UserAccountControl": "%%2080", "SamAccountName": "Alice", "MemberName": " - "}
    rec.update(kw)
    return rec


ODD_VALUES = [None, "", "-", " N/A ", "127.0.0.1", "::1", "0x10", "12x", 5, 2**70, -3, 1.5,
              True, ["a", "b"], {"x": 1}, "İ", "\u212a"]


@pytest.mark.parametrize("eid", sorted(EVENT_TABLE))
def test_compiled_normalizer_matches_reference_synthetic(eid):
    keys = {k for spec in EVENT_TABLE.values() for part in ("account", "target")
            for k in (spec.get(part) or ()) if k}
    keys |= {k for spec in EVENT_TABLE.values() for k in spec.get("fields", {}).values()}
    keys |= {k for spec in EVENT_TABLE.values() for k in spec.get("ints", {}).values()}
    cases = [_base(eid)]
    for k in sorted(keys) + ["_computer", "_channel", "_provider", "_record", "_time_ms",
                             "_user_sid"]:
        for v in ODD_VALUES:
            cases.append(_base(eid, **{k: v}))
    cases += [_base(eid, _channel="System", _provider="Service Control Manager"),
              _base(eid, _channel="", _provider=""), _base(eid, _time_ms=-1),
              _base(eid, _record="0x20"), _base(eid, _record=None), {"_eid": eid}]
    for rec in cases:
        a = _outcome(Normalizer().normalize, rec)
        assert a == _outcome(Normalizer().normalize_reference, rec), rec


def test_unknown_ids_counted_like_reference():
    fast, ref = Normalizer(), Normalizer()
    for rec in (_base(1), _base(4688), _base(4624, _channel="Microsoft-Windows-Sysmon/Operational"),
                _base(4624.0), _base("4624")):
        assert _outcome(fast.normalize, rec) == _outcome(ref.normalize_reference, rec)
    assert (fast.unknown, fast.unknown_ids) == (ref.unknown, ref.unknown_ids)


@pytest.mark.samples
@pytest.mark.skipif(not SAMPLES.exists(), reason="../shared/samples not present")
def test_columnar_batch_build_matches_reference():
    from collectors.batcher import BatchBuilder
    from stream import wire

    n = Normalizer()
    evs = []
    for f in _files():
        for rec, _err, _o in iter_file_records(f):
            ev = n.normalize(rec) if rec is not None else None
            if ev is not None:
                evs.append(ev)
    assert len(evs) > 1000
    for size in (1, 7, 4096):
        for i in range(0, len(evs), size):
            b = BatchBuilder(0, 1)
            for ev in evs[i:i + size]:
                b.add(ev)
            assert wire.encode(b.build()) == wire.encode(b.build_reference()), (size, i)
    assert wire.encode(BatchBuilder().build()) == wire.encode(BatchBuilder().build_reference())


def test_columnar_batch_build_matches_reference_synthetic():
    """Without the samples: every consumed event id normalized from odd records (values
    absent, empty, non-ASCII, repeated), plus hand-made events with explicit None numbers
    and a lone surrogate, built into batches of several sizes: the fast column builder gives
    the reference's bytes."""
    from collectors.batcher import BatchBuilder
    from stream import wire

    n = Normalizer()
    evs = []
    for eid in sorted(EVENT_TABLE):
        for kw in ({}, {"TargetUserName": "İlker"}, {"IpAddress": ""}, {"ServiceName": None},
                   {"Status": "0x0"},
                   {"_channel": "System", "_provider": "Service Control Manager"}):
            ev = n.normalize(_base(eid, **kw))
            if ev is not None:
                evs.append(ev)
    evs += [{"time_ms": 5, "event_id": 4624, "status": None, "account": "corp\\a"},
            {"time_ms": 6, "event_id": 4625, "account": "corp\\a", "src_ip": "10.0.0.1",
             "ticket_encryption": None},
            {"time_ms": 7, "event_id": 4769, "service": "svc\ud800x"}]
    assert len(evs) > 100
    for size in (1, 3, 7, 64, len(evs)):
        for i in range(0, len(evs), size):
            b = BatchBuilder(0, 1)
            for ev in evs[i:i + size]:
                b.add(ev)
            assert wire.encode(b.build()) == wire.encode(b.build_reference()), (size, i)


def test_a_record_the_normalizer_cannot_handle_is_dead_lettered_and_the_source_goes_on():
    """A failure inside the normalizer that is not one of its own checks (here: orjson cannot
    encode a lone UTF-16 surrogate in the extra fields) is a NormalizationError with the
    cause, so the collector dead-letters that record with the reason instead of stopping
    (``itdr scan`` counts it and goes on); the records around it are batched."""
    from collectors.pipeline import CollectorPipeline
    from stream import dlq
    from stream.settings import TopicSettings

    from .helpers import RecordingProducer

    prod = RecordingProducer()
    pipe = CollectorPipeline(prod, TopicSettings(partitions=1), sources=[], dual_key=False)
    from stream.errors import NormalizationError

    bad = _base(4624, SubjectUserName="svc\ud800x")
    for fn in (Normalizer().normalize, Normalizer().normalize_reference):
        with pytest.raises(NormalizationError, match="normalization failed: TypeError"):
            fn(bad)
    for i, rec in enumerate((_base(4624), bad, _base(4625))):
        pipe.process_item(rec, None, f"test#{i}", f"raw{i}".encode(), "s", None)
    pipe.flush_epoch()
    assert sum(m.n_events for m in prod.batches) == 2
    assert len(prod.raw) == 1
    topic, value, h = prod.raw[0]
    assert topic == TopicSettings(partitions=1).name("dlq") and value == b"raw1"
    assert "normalization failed: TypeError" in h[dlq.REASON]
    assert pipe.stats.dead_lettered == 1 and pipe.stats.normalized == 2
