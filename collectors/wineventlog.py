"""Live Windows event-log channels (``collector.live: true``): EvtSubscribe pull subscriptions
with bookmarks, via pywin32 (``pip install openitdr[windows]``).

Each event is rendered to XML (``EvtRender(..., EvtRenderEventXml)``) and parsed by
:func:`collectors.records.from_xml` -- the same safe parser as the gateway's WEF path, so the
parsing half of this source is exercised on Linux by the XML tests
(:func:`parse_rendered`). The position of each event is its ``EventRecordID`` plus the
rendered bookmark (``EvtRender(bookmark, EvtRenderBookmark)``); on restart the subscription
starts after the checkpointed bookmark (``EvtSubscribeStartAfterBookmark``), or at the oldest
record when there is none. Checkpoints are written only after delivery, as for EVTX files.

Importing this module works everywhere; creating a :class:`WinEventLogSource` off Windows (or
without pywin32) raises a :class:`~stream.errors.ConfigError` that says what to do.
"""

from __future__ import annotations

import logging
import sys
from typing import Iterator

from stream.errors import ConfigError, ParseError

from .records import from_xml

log = logging.getLogger(__name__)

try:  # pragma: no cover - Windows only
    import win32event  # type: ignore
    import win32evtlog  # type: ignore

    HAVE_PYWIN32 = True
except ImportError:
    win32evtlog = win32event = None
    HAVE_PYWIN32 = False


def parse_rendered(xml: str | bytes) -> dict:
    """A rendered event (``EvtRenderEventXml``) -> flat record (raises ParseError)."""
    return from_xml(xml)


def _require_windows() -> None:
    if sys.platform != "win32":
        raise ConfigError("live event-log channels need Windows (EvtSubscribe)",
                          location="collector.live",
                          fix="set collector.live: false and read EVTX files or forward events "
                          "to `itdr gateway` (WEF, Winlogbeat, NXLog)")
    if not HAVE_PYWIN32:
        raise ConfigError("pywin32 is not installed", location="collector.live",
                          fix="pip install openitdr[windows]")


class WinEventLogSource:
    """Pull subscriptions to live channels (Security, System, ...)."""

    kind = "wineventlog"

    def __init__(self, channels: list[str], checkpoints: dict[str, dict] | None = None,
                 batch: int = 256, query: str = "*"):
        _require_windows()
        self.channels = list(channels)
        self.batch = batch
        self.query = query
        self._subs: dict[str, tuple] = {}
        for ch in self.channels:  # pragma: no cover - Windows only
            sid = f"channel:{ch}"
            bm_xml = (checkpoints or {}).get(sid, {}).get("bookmark")
            bm = win32evtlog.EvtCreateBookmark(bm_xml) if bm_xml else \
                win32evtlog.EvtCreateBookmark(None)
            signal = win32event.CreateEvent(None, 0, 0, None)
            flags = (win32evtlog.EvtSubscribeStartAfterBookmark if bm_xml
                     else win32evtlog.EvtSubscribeStartAtOldestRecord)
            kw = {"Bookmark": bm} if bm_xml else {}
            h = win32evtlog.EvtSubscribe(ch, flags, SignalEvent=signal, Query=query, **kw)
            self._subs[ch] = (h, bm, signal, sid)

    def poll(self) -> Iterator[tuple]:  # pragma: no cover - Windows only
        for ch, (h, bm, _signal, sid) in self._subs.items():
            while True:
                try:
                    events = win32evtlog.EvtNext(h, self.batch, 0, 0)
                except Exception as e:  # noqa: BLE001 - ERROR_NO_MORE_ITEMS / timeout
                    if getattr(e, "winerror", None) not in (259, 1460):
                        log.warning("EvtNext on %s: %s", ch, e)
                    break
                if not events:
                    break
                for ev in events:
                    xml = win32evtlog.EvtRender(ev, win32evtlog.EvtRenderEventXml)
                    win32evtlog.EvtUpdateBookmark(bm, ev)
                    pos = {"bookmark": win32evtlog.EvtRender(bm,
                                                             win32evtlog.EvtRenderBookmark)}
                    try:
                        rec = parse_rendered(xml)
                    except ParseError as e:
                        yield None, e, f"{sid}", xml.encode("utf-8", "replace"), sid, pos
                        continue
                    pos["record_id"] = rec.get("_record", 0)
                    yield rec, None, f"{sid}#{pos['record_id']}", None, sid, pos
