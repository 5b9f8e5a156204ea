"""The collector's optional C hot path (``collectors/_native.c``, built by ``pip install``
when a C compiler is present).

Each native function mirrors a Python function that stays the specification and the
fallback: a native call returns ``None`` for anything outside its common case and the caller
then runs the Python code, so the output is the same with or without the extension (tests/
collectors/test_native.py compares them on fixtures, generated records and every sample).

* ``peek_event_id``        -- :func:`collectors.evtx_source.peek_event_id_py`
* ``flat_from_evtx_json``  -- ``records.from_evtx_json(orjson.loads(data))``
* ``normalize``            -- the compiled functions of :mod:`collectors.normalize` (loaded
  from ``EVENT_TABLE`` by ``normalize.native_table``)
* ``evtx_event``           -- the three above in one pass, without the flat record
* ``build_columns``        -- :meth:`collectors.batcher.BatchBuilder.build_python`
* ``NativeBatcher``        -- :class:`collectors.batcher.Batcher` (``native=False``), and
  ``add_evtx``: a block of EVTX records through ``evtx_event`` into the batches (the
  pipeline's block path, :meth:`collectors.pipeline.CollectorPipeline._process_block`)
* ``chunk_records`` / ``chunk_flat`` / ``chunk_event`` and ``NativeBatcher.add_chunk`` --
  the binary-XML reader: an EVTX chunk's records read in place, without the ``evtx`` crate's
  JSON (the same flat records and events as the crate's JSON through the functions above;
  a record it declines is taken from the crate, see
  :meth:`collectors.pipeline.CollectorPipeline._process_chunk`)

``ITDR_NATIVE=0`` in the environment turns the extension off (A/B measurements, or to rule it
out when something looks wrong); ``ITDR_BINXML=0`` turns off only the binary-XML reader (EVTX
records then come from the crate's JSON, scanned in C); ``ITDR_NATIVE_PATH=FILE`` loads
another build of the extension (the sanitizer test).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

_OFF = os.environ.get("ITDR_NATIVE", "1").strip().lower() in ("0", "false", "no", "off")

def _load():
    path = os.environ.get("ITDR_NATIVE_PATH")
    if not path:
        from . import _native  # type: ignore[attr-defined]
        return _native
    # another build of the extension (the sanitizer test: tests/collectors/test_native_asan.py)
    import importlib.machinery
    import importlib.util
    loader = importlib.machinery.ExtensionFileLoader("collectors._native", path)
    spec = importlib.util.spec_from_file_location("collectors._native", path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


try:
    if _OFF:
        raise ImportError("ITDR_NATIVE=0")
    ext = _load()
except ImportError as e:  # no compiler at install time, or turned off
    ext = None
    if not _OFF:
        log.debug("collectors._native not available (%s): the Python path runs", e)

AVAILABLE = ext is not None
# the binary-XML chunk reader (an older build of the extension has none)
BINXML = (AVAILABLE and hasattr(ext, "chunk_records")
          and os.environ.get("ITDR_BINXML", "1").strip().lower() not in ("0", "false", "no",
                                                                         "off"))


def status() -> str:
    """``"native"`` or ``"python"`` (reported by the bench and the heartbeat)."""
    return "native" if AVAILABLE else "python"


def evtx_reader() -> str:
    """How EVTX records are read: ``"binxml"`` (the chunk reader in C), ``"crate-json"``
    (the crate's JSON, scanned in C) or ``"python"``."""
    return "binxml" if BINXML else "crate-json" if AVAILABLE else "python"
