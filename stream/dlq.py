"""Dead-letter records: the rejected bytes plus why, where from and by whom.

Every component that rejects a record (collectors, gateway, workers, sinks) writes it to the
dead-letter topic (``topics.dlq``) with this format, so nothing is lost and an operator can
replay it after a fix:

* key: the original key (or None)
* value: the original bytes, unchanged
* headers: ``itdr-reason`` (human-readable, e.g. "bad magic b'XXXX'"), ``itdr-error`` (error
  class), ``itdr-component`` (collector, gateway, worker, sink:<name>), ``itdr-origin``
  (``topic/partition/offset`` or ``file:line`` or ``peer``), ``itdr-time-ms``.
"""

from __future__ import annotations

import time
from typing import Any

REASON = "itdr-reason"
ERROR = "itdr-error"
COMPONENT = "itdr-component"
ORIGIN = "itdr-origin"
TIME = "itdr-time-ms"
MAX_REASON = 1000


def dlq_headers(reason: str, error: str, component: str, origin: str) -> list[tuple[str, bytes]]:
    return [(REASON, reason[:MAX_REASON].encode("utf-8", "replace")),
            (ERROR, error.encode()), (COMPONENT, component.encode()),
            (ORIGIN, origin.encode("utf-8", "replace")),
            (TIME, str(int(time.time() * 1000)).encode())]


def parse_headers(headers: list[tuple[str, bytes]] | None) -> dict[str, str]:
    return {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
            for k, v in (headers or [])}


def send_to_dlq(producer: Any, topic: str, value: bytes, *, key: bytes | None, reason: str,
                error: str, component: str, origin: str) -> None:
    """Produce one dead-letter record with a confluent-kafka Producer (async; the caller
    flushes at its checkpoint)."""
    producer.produce(topic, value=value, key=key,
                     headers=dlq_headers(reason, error, component, origin))
