"""Fuzzing of the file reading path (collectors/files.py): EVTX, JSON lines / XML, gzip and
zip containers. ``iter_file_records`` must yield records or errors for anything it is given
-- a mutated EVTX, a corrupt archive, a decompression bomb -- and never raise, hang or
allocate without bound (a bomb is refused with a clear ParseError)."""

from __future__ import annotations

import gzip
import io
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors import files
from collectors.files import iter_file_records
from stream.errors import ParseError

from ._strategies import SMALL, mutated

FIX = Path(__file__).parents[1] / "fixtures" / "collectors"
TEXT_FIXTURES = {p.name: p.read_bytes() for p in sorted(FIX.iterdir())}
_SAMPLE_DIRS = [Path(__file__).resolve().parents[2].parent / "shared" / "samples",
                Path("/work/shared/samples")]
SAMPLES = next((d for d in _SAMPLE_DIRS if (d / "evtx-attack-samples").is_dir()), None)
SMALL_EVTX = (SAMPLES / "evtx-attack-samples" / "Credential Access" / "CA_DCSync_4662.evtx"
              if SAMPLES else None)


def _drain(path: Path, timeout: float = 20.0, max_items: int = 200_000) -> list:
    """All items of ``iter_file_records(path)``, in a thread: a hang (even inside the Rust
    EVTX parser, where no signal reaches) fails the test instead of the suite."""
    out: list = []
    exc: list = []

    def run():
        try:
            for item in iter_file_records(path):
                out.append(item)
                if len(out) > max_items:
                    raise AssertionError(f"more than {max_items} items: endless iterator?")
        except BaseException as e:  # noqa: BLE001 - reported below (panics are BaseException)
            exc.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"iter_file_records({path.name}) did not finish in {timeout} s"
    if exc:
        raise AssertionError(f"iter_file_records raised {type(exc[0]).__name__}: "
                             f"{exc[0]}") from exc[0]
    for rec, err, origin in out:
        assert isinstance(origin, str) and origin
        assert (rec is None) != (err is None), (rec, err)
        if err is not None:
            assert isinstance(err, ParseError) and str(err)
        else:
            assert isinstance(rec, dict) and isinstance(rec["_eid"], int)
    return out


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _zip(members: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for n, d in members.items():
            z.writestr(n, d)
    return buf.getvalue()


# -- text, gzip, zip --------------------------------------------------------------------------
def test_fixtures_read_cleanly_plain_gz_zip(tmp_path):
    for name, data in TEXT_FIXTURES.items():
        for fname, blob in ((name, data), (name + ".gz", gzip.compress(data)),
                            (name + ".zip", _zip({name: data}))):
            items = _drain(_write(tmp_path, fname, blob))
            assert items and all(err is None for _r, err, _o in items), fname


@SMALL
@given(st.sampled_from(sorted(TEXT_FIXTURES)), st.sampled_from(["plain", "gz", "zip"]),
       st.data())
def test_mutated_text_gz_zip(tmp_path_factory, name, container, data):
    raw = TEXT_FIXTURES[name]
    blob = {"plain": raw, "gz": gzip.compress(raw), "zip": _zip({name: raw})}[container]
    blob = data.draw(mutated(blob, max_ops=4))
    _drain(_write(tmp_path_factory.mktemp("m"), "f.bin", blob))


@SMALL
@given(st.binary(max_size=600), st.sampled_from([b"", b"\x1f\x8b", b"PK\x03\x04",
                                                 b"ElfFile\x00", b"<", b"{"]))
def test_random_bytes_with_magic_prefixes(tmp_path_factory, blob, magic):
    _drain(_write(tmp_path_factory.mktemp("r"), "f.bin", magic + blob))


@pytest.mark.parametrize("case", ["truncated_gzip", "gzip_bad_crc", "zip_bad_central_dir",
                                  "zip_truncated", "zip_unsupported_method",
                                  "zip_encrypted_flag", "empty_zip", "zip_of_zip"])
def test_corrupt_archives_are_errors_not_crashes(tmp_path, case):
    line = TEXT_FIXTURES["nxlog.jsonl"]
    if case == "truncated_gzip":
        blob = gzip.compress(line)[:-12]
    elif case == "gzip_bad_crc":
        g = bytearray(gzip.compress(line))
        g[-8] ^= 0xFF
        blob = bytes(g)
    elif case == "zip_bad_central_dir":
        z = bytearray(_zip({"a.jsonl": line}))
        i = z.rfind(b"PK\x01\x02")
        z[i + 4:i + 40] = b"\xff" * 36
        blob = bytes(z)
    elif case == "zip_truncated":
        blob = _zip({"a.jsonl": line})[:40]
    elif case == "zip_unsupported_method":
        z = bytearray(_zip({"a.jsonl": line}))
        for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
            i = z.find(sig)
            z[i + off:i + off + 2] = (99).to_bytes(2, "little")       # AES / unknown method
        blob = bytes(z)
    elif case == "zip_encrypted_flag":
        z = bytearray(_zip({"a.jsonl": line}))
        for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            i = z.find(sig)
            z[i + off] |= 1                                            # "encrypted" bit
        blob = bytes(z)
    elif case == "empty_zip":
        blob = _zip({})
    else:
        blob = _zip({"inner.zip": _zip({"a.jsonl": line})})
    items = _drain(_write(tmp_path, "f.bin", blob))
    if case in ("truncated_gzip", "gzip_bad_crc", "zip_bad_central_dir", "zip_truncated",
                "zip_unsupported_method", "zip_encrypted_flag"):
        assert any(err is not None for _r, err, _o in items), case


# -- decompression bombs ----------------------------------------------------------------------
BOMB_LIMIT = 4 << 20            # the tests lower the limit; the default is checked separately


@pytest.fixture
def low_limit(monkeypatch):
    monkeypatch.setattr(files, "MAX_DECOMPRESSED_BYTES", BOMB_LIMIT)
    return BOMB_LIMIT


def _bounded(path: Path) -> tuple[list, float, int]:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        items = _drain(path)
        _c, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return items, time.perf_counter() - t0, peak


def test_default_decompression_limit_is_finite():
    assert 0 < files.MAX_DECOMPRESSED_BYTES <= 4 << 30


@pytest.mark.parametrize("kind", ["zip", "gz", "zip_many_members", "zip_lying_size"])
def test_decompression_bomb_refused_with_bounded_memory(tmp_path, low_limit, kind):
    bomb = b"\0" * (16 * low_limit)          # 64 MiB of zeros: compresses ~1000:1
    if kind == "zip":
        blob = _zip({"bomb.jsonl": bomb})
    elif kind == "gz":
        blob = gzip.compress(bomb, 9)
    elif kind == "zip_many_members":       # each member under the limit, together over it
        part = b"\0" * (low_limit // 2)
        blob = _zip({f"m{i}.jsonl": part for i in range(40)})
    else:                                  # central directory claims a tiny size
        z = bytearray(_zip({"bomb.jsonl": bomb}))
        i = z.find(b"PK\x01\x02")
        z[i + 24:i + 28] = (10).to_bytes(4, "little")
        blob = bytes(z)
    assert len(blob) < low_limit // 8       # a small file...
    items, elapsed, peak = _bounded(_write(tmp_path, "bomb." + kind.split("_")[0], blob))
    errs = [err for _r, err, _o in items if err is not None]
    assert errs, "the bomb was not refused"
    # refused as a bomb; a zip whose directory lies about the size fails its CRC check
    want = ("decompression limit", "Bad CRC") if kind == "zip_lying_size" else \
        ("decompression limit",)
    assert any(w in str(e) for e in errs for w in want), [str(e) for e in errs]
    assert peak < 3 * low_limit, f"peak {peak} bytes for a {low_limit}-byte limit"
    assert elapsed < 10


def test_archive_under_the_limit_still_reads(tmp_path, low_limit):
    data = TEXT_FIXTURES["nxlog.jsonl"] * 50
    assert len(data) < low_limit
    for name, blob in (("ok.zip", _zip({"a.jsonl": data, "b.jsonl": data})),
                       ("ok.gz", gzip.compress(data))):
        items = _drain(_write(tmp_path, name, blob))
        assert items and all(err is None for _r, err, _o in items), name


# -- EVTX (from the shared samples, mutated at test time) ------------------------------------
needs_evtx = [pytest.mark.samples,
              pytest.mark.skipif(SMALL_EVTX is None or not SMALL_EVTX.exists(),
                                 reason="../shared/samples not present (fresh clone)")]


@pytest.mark.parametrize("_", [0], ids=["pristine"])
@pytest.mark.samples
def test_small_evtx_reads(tmp_path, _):
    if SMALL_EVTX is None or not SMALL_EVTX.exists():
        pytest.skip("../shared/samples not present (fresh clone)")
    items = _drain(SMALL_EVTX)
    assert sum(1 for r, _e, _o in items if r is not None) > 0


@pytest.mark.samples
@SMALL
@given(st.data())
def test_mutated_evtx_never_raises_or_hangs(tmp_path_factory, data):
    if SMALL_EVTX is None or not SMALL_EVTX.exists():
        pytest.skip("../shared/samples not present (fresh clone)")
    base = SMALL_EVTX.read_bytes()
    # mutate where it matters: the file header, the chunk header, the records
    region = data.draw(st.sampled_from(["file_header", "chunk_header", "records", "anywhere"]))
    lo, hi = {"file_header": (0, 4096), "chunk_header": (4096, 4096 + 512),
              "records": (4096 + 512, len(base)), "anywhere": (0, len(base))}[region]
    middle = data.draw(mutated(base[lo:hi], max_ops=4))
    blob = base[:lo] + middle + base[hi:]
    if len(blob) > 8 and data.draw(st.booleans()):
        blob = blob[:data.draw(st.integers(8, len(blob)))]        # truncated too
    _drain(_write(tmp_path_factory.mktemp("e"), "m.evtx", blob))


@pytest.mark.samples
@pytest.mark.parametrize("cut", [8, 128, 4096, 4096 + 100, 4096 + 600, 30_000])
def test_truncated_evtx(tmp_path, cut):
    if SMALL_EVTX is None or not SMALL_EVTX.exists():
        pytest.skip("../shared/samples not present (fresh clone)")
    _drain(_write(tmp_path, "t.evtx", SMALL_EVTX.read_bytes()[:cut]))


@pytest.mark.samples
def test_evtx_inside_gz_and_zip(tmp_path):
    if SMALL_EVTX is None or not SMALL_EVTX.exists():
        pytest.skip("../shared/samples not present (fresh clone)")
    raw = SMALL_EVTX.read_bytes()
    n = sum(1 for r, _e, _o in _drain(SMALL_EVTX) if r is not None)
    for name, blob in (("e.evtx.gz", gzip.compress(raw)), ("e.zip", _zip({"e.evtx": raw}))):
        got = sum(1 for r, _e, _o in _drain(_write(tmp_path, name, blob)) if r is not None)
        assert got == n, name
