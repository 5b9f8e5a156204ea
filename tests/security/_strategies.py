"""Shared hypothesis strategies and helpers of the security tests."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from xml.sax.saxutils import escape, quoteattr

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: every fuzz test uses a small, fixed budget: the whole directory runs in well under 60 s
FUZZ = settings(max_examples=40, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
SMALL = settings(FUZZ, max_examples=20)

NS = "http://schemas.microsoft.com/win/2004/08/events/event"

# text as it can appear in event fields: any unicode (XML-invalid characters included: the
# parser must refuse them cleanly, not crash)
field_text = st.text(max_size=40)
xml_safe_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)
names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,15}", fullmatch=True)
event_ids = st.one_of(st.sampled_from([4624, 4625, 4662, 4768, 4769, 4771, 4776, 5136, 7045,
                                       4742, 4738, 1102, 104, 5805]),
                      st.integers(-2**70, 2**70))
iso_times = st.one_of(
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
    st.sampled_from(["2024-03-01T10:00:00.1234567Z", "2024-03-01 10:00:00", "", "Z",
                     "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2024-13-45T99:99:99Z",
                     "2024-03-01T10:00:00.Z", "2024-03-01T10:00:00+05:00", "yesterday"]),
    field_text)


@st.composite
def event_xml(draw, text=xml_safe_text) -> tuple[str, dict]:
    """A Windows Event XML document and the fields it carries."""
    eid = draw(event_ids)
    t = draw(iso_times)
    data = draw(st.dictionaries(names, text, max_size=8))
    unnamed = draw(st.lists(text, max_size=3))
    computer = draw(text)
    rec = draw(st.integers(0, 2**63 - 1))
    ns = f' xmlns="{NS}"' if draw(st.booleans()) else ""
    parts = [f"<Event{ns}><System><Provider Name={quoteattr(draw(text))}/>",
             f"<EventID>{eid}</EventID>", f"<TimeCreated SystemTime={quoteattr(t)}/>",
             f"<EventRecordID>{rec}</EventRecordID><Channel>Security</Channel>",
             f"<Computer>{escape(computer)}</Computer></System><EventData>"]
    parts += [f"<Data Name={quoteattr(k)}>{escape(v)}</Data>" for k, v in data.items()]
    parts += [f"<Data>{escape(v)}</Data>" for v in unnamed]
    parts.append("</EventData></Event>")
    return "".join(parts), {"eid": eid, "time": t, "data": data, "unnamed": unnamed,
                            "computer": computer, "record": rec}


@st.composite
def mutated(draw, base: bytes, max_ops: int = 6) -> bytes:
    """``base`` with random byte flips, deletions, insertions, duplications and truncation."""
    b = bytearray(base)
    for _ in range(draw(st.integers(1, max_ops))):
        if not b:
            break
        op = draw(st.sampled_from(["flip", "delete", "insert", "dup", "truncate", "zero"]))
        i = draw(st.integers(0, len(b) - 1))
        if op == "flip":
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete":
            del b[i:i + draw(st.integers(1, 64))]
        elif op == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=32))
        elif op == "dup":
            j = min(len(b), i + draw(st.integers(1, 256)))
            b[i:i] = b[i:j]
        elif op == "truncate":
            del b[i:]
        else:
            j = min(len(b), i + draw(st.integers(1, 512)))
            b[i:j] = bytes(j - i)
    return bytes(b)


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**80, 2**80),
                         st.floats(allow_nan=False, allow_infinity=False), field_text)
json_values = st.recursive(json_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.one_of(names, field_text), kids, max_size=5)),
    max_leaves=25)


@contextmanager
def time_limit(seconds: float, what: str = "operation"):
    """Fail (instead of hanging the suite) when the body runs longer than ``seconds``.
    Main thread only (SIGALRM); elsewhere it is a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _alarm(signum, frame):
        raise TimeoutError(f"{what} did not finish within {seconds} s")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
