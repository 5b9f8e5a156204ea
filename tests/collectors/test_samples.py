"""Against the shared attack recordings (marker ``samples``; skipped when absent): every
labelled file parses and normalizes without error; truncated / corrupt EVTX go to the
dead-letter topic with a reason while the good records keep flowing."""

from __future__ import annotations

import csv
import shutil
import threading
from pathlib import Path

import pytest

from collectors.evtx_source import FileSource
from collectors.files import iter_file_records
from collectors.normalize import Normalizer
from collectors.pipeline import CollectorPipeline
from collectors.producer import BatchProducer
from collectors.spool import Spool
from stream.errors import NormalizationError

from .helpers import dlq_records, events_in

SAMPLES = Path("/work/shared/samples")
pytestmark = [pytest.mark.samples,
              pytest.mark.skipif(not (SAMPLES / "labels.csv").exists(),
                                 reason="../shared/samples not present (fresh clone)")]


def _labelled() -> list[Path]:
    with open(SAMPLES / "labels.csv", newline="") as f:
        return [SAMPLES / r["file"] for r in csv.DictReader(f)]


def test_every_labelled_file_parses_and_normalizes():
    files = _labelled()
    assert len(files) >= 30
    for p in files:
        assert p.exists(), p
        n = Normalizer()
        records = normalized = 0
        for rec, err, origin in iter_file_records(p):
            assert err is None, f"{origin}: {err}"
            records += 1
            try:
                ev = n.normalize(rec)
            except NormalizationError as e:
                pytest.fail(f"{origin}: {e}")
            normalized += ev is not None
        assert records > 0, p
        assert normalized > 0, f"{p.name}: no consumed event at all"


def test_fast_path_source_equals_reference_reader():
    """FileSource (event-id peek, cached times) yields exactly what files.py yields."""
    for p in _labelled()[:12]:
        if p.suffix != ".evtx":
            continue
        ref = [Normalizer().normalize(r) for r, e, _ in iter_file_records(p) if e is None]
        n = Normalizer()
        fast = [n.normalize(item[0]) for item in FileSource([str(p)]).poll() if item[0]]
        assert [e for e in fast if e] == [e for e in ref if e], p


def _run(kafka, topics, tmp_path, files):
    prod = BatchProducer(kafka, topics, Spool(tmp_path / "spool"))
    pipe = CollectorPipeline(prod, topics, sources=[FileSource([str(f) for f in files])],
                             sensor_id="t")
    return pipe.run(threading.Event())


@pytest.mark.broker
def test_truncated_and_corrupt_evtx_dead_lettered_good_records_flow(kafka, topics, broker,
                                                                    tmp_path):
    src = max(SAMPLES.rglob("*.evtx"), key=lambda p: p.stat().st_size)
    data = src.read_bytes()
    trunc = tmp_path / "truncated.evtx"
    trunc.write_bytes(data[:4096 + 65536 + 30000])
    corrupt = tmp_path / "corrupt.evtx"
    b = bytearray(data)
    b[4096 + 2512:4096 + 3112] = b"A" * 600
    corrupt.write_bytes(bytes(b))
    good = tmp_path / "good.evtx"
    shutil.copy(SAMPLES / _labelled()[0].relative_to(SAMPLES), good)
    rep = _run(kafka, topics, tmp_path, [trunc, corrupt, good])
    assert rep["flushed"] and rep["dead_lettered"] >= 2
    reasons = [h["itdr-reason"] for _, h in dlq_records(broker.bootstrap, topics.name("dlq"))]
    assert any(r.startswith("truncated EVTX") for r in reasons)
    assert any(r.startswith("corrupt EVTX") for r in reasons)
    got = events_in(broker.bootstrap, topics.name("events"), topics.partitions)
    n_good = sum(1 for r, e, _ in iter_file_records(good)
                 if e is None and Normalizer().normalize(r) is not None)
    assert len(got) == rep["normalized"] and n_good > 0
    assert rep["normalized"] >= n_good
