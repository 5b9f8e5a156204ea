"""The C extension under AddressSanitizer and UndefinedBehaviorSanitizer: built from
``collectors/_native.c`` with ``-fsanitize=address,undefined``, loaded through
``ITDR_NATIVE_PATH`` in a subprocess that runs ``test_native.py`` (fixtures, thousands of
damaged and random records, the batcher, the pipeline's block path) and ``test_binxml.py``
(the binary-XML chunk reader on random templates and byte-mutated chunks). Any out-of-bounds
access, use after free or undefined behaviour fails this test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _lib(name: str) -> str:
    out = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True,
                         text=True).stdout.strip()
    return out if os.path.isabs(out) and os.path.exists(out) else ""


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("ITDR_NATIVE", "1") == "0",
                    reason="ITDR_NATIVE=0: the C extension is turned off on purpose")
def test_the_extension_is_clean_under_address_and_ub_sanitizers(tmp_path):
    assert shutil.which("gcc"), "gcc is needed to build the extension (and CI has it)"
    asan, ubsan = _lib("libasan.so"), _lib("libubsan.so")
    assert asan and ubsan, "gcc's libasan/libubsan are missing"
    so = tmp_path / ("_native_asan" + sysconfig.get_config_var("EXT_SUFFIX"))
    build = subprocess.run(
        ["gcc", "-O1", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer",
         "-fno-sanitize-recover=undefined", "-shared", "-fPIC",
         f"-I{sysconfig.get_paths()['include']}", str(ROOT / "collectors" / "_native.c"),
         "-o", str(so)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    env = {**os.environ, "ITDR_NATIVE_PATH": str(so), "LD_PRELOAD": f"{asan} {ubsan}",
           "ASAN_OPTIONS": "detect_leaks=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "tests/collectors/test_native.py", "tests/collectors/test_binxml.py",
                        "-k", "not without_the_extension and not every_sample and not "
                              "every_reader"],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    out = r.stdout + r.stderr
    assert "AddressSanitizer" not in out and "runtime error" not in out, out[-4000:]
    assert r.returncode == 0, out[-4000:]
    assert " passed" in r.stdout
