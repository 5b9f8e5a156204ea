"""Back-off after empty fetch responses in the worker's Kafka consumer (aiokafka, under Faust).

A Kafka broker holds a fetch request until ``fetch.min.bytes`` are available or
``fetch.max.wait.ms`` (1.5 s under Faust) has passed, so an idle consumer sends a couple of
requests per second. Some Kafka-protocol brokers answer an empty fetch at once (the embedded
noida-db does); aiokafka then sends the next one immediately and its thread spins: measured in
``itdr bench stream``, ~3,700 empty fetch requests per second and about a third of the
worker's single core taken from batch processing by that thread and its GIL hand-offs.

:func:`install` wraps aiokafka's per-node fetch task: when a response carried no records and
came back sooner than ``backoff_ms``, the task waits out the rest before it completes (aiokafka
sends no new fetch to a node while its previous fetch task is pending). Against a broker that
honours the wait the response takes >= the back-off whenever it is empty, so nothing changes
there; records already fetched for other partitions keep flowing to the agents meanwhile.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)

_state = {"backoff_s": 0.0, "installed": False, "waits": 0}


def install(backoff_ms: float) -> bool:
    """Set the back-off (0 turns it off); wraps aiokafka once per process. Returns False
    (and logs why) when this aiokafka has no per-node fetch task to wrap."""
    _state["backoff_s"] = max(0.0, backoff_ms) / 1000.0
    if _state["installed"]:
        return True
    try:
        from aiokafka.consumer.fetcher import Fetcher
        orig = Fetcher._proc_fetch_request
    except (ImportError, AttributeError) as e:   # pragma: no cover - other aiokafka versions
        log.warning("empty-fetch back-off not installed (%s): with a broker that answers "
                    "empty fetches at once the consumer thread will spin", e)
        return False

    async def _proc_fetch_request(self, assignment, node_id, request):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        has_data = await orig(self, assignment, node_id, request)
        if not has_data and _state["backoff_s"] > 0:
            rest = _state["backoff_s"] - (loop.time() - t0)
            if rest > 0:
                _state["waits"] += 1
                try:
                    await asyncio.sleep(rest)
                except asyncio.CancelledError:
                    # close() or an unassignment cancels pending fetch tasks and awaits
                    # them: like aiokafka's own task, end quietly (raising here crashed the
                    # consumer thread on shutdown and the worker never exited on SIGTERM)
                    return False
        return has_data

    _proc_fetch_request.__wrapped__ = orig  # type: ignore[attr-defined]
    Fetcher._proc_fetch_request = _proc_fetch_request
    _state["installed"] = True
    return True


def waits() -> int:
    """How many times a fetch task waited out the back-off (tests, diagnostics)."""
    return _state["waits"]
