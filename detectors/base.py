"""Detector base class, parameters and the registry.

How to implement a detector
---------------------------
1. Create a module under ``detectors/catalogue/`` and subclass :class:`Detector`. Declare the
   metadata as class attributes: ``id`` (public contract, from docs/detections.md), ``title``,
   ``description`` (a ``str.format`` template, see :meth:`Detector.describe`), ``severity``,
   ``mitre``, ``mdi_alert_id``, ``key`` (``account`` | ``source`` | ``none``), ``event_ids``,
   ``params`` (tuple of :class:`Param` with a default per sensitivity), ``learning_days``
   (0 = none), ``next_steps``, ``false_positives``, ``audit`` (the audit policy it needs).
2. If it keeps per-entity state, declare ``STATE`` (see ``detectors/state.py``) and
   ``window_ms`` (how long state must be retained, used for expiry). Kernels may create state
   keys (``row_of``) only for events whose id is in ``event_ids``, at most
   ``keys_per_event`` per event (the engine reserves rows from that bound).
3. Write one or more pure ``@njit(cache=True)`` kernels in the module (numpy arrays in, hit
   arrays out). No Python objects, no dicts, no I/O in kernels.
4. Implement :meth:`Detector.run`: pick the columns you need from the batch, call your kernel,
   and pass the hit arrays to ``hits.add(...)``. The engine has already reserved room for
   :meth:`Detector.max_new_keys` new keys in ``self.state``.
5. Decorate the class with ``@register``. Add positive and negative tests in
   ``tests/detectors/test_<id>.py`` (the registry walk test fails for a detector without one).

Context available to kernels (:class:`BatchContext`): ``sflags`` (uint64 flags per string-table
entry: config tags and registered string features, see ``detectors/features.py``), ``key``
(uint64 entity key per event for the engine's key kind), and the learned/configured DC key set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from stream.errors import DetectorError, DuplicateDetectorError

from .state import SlotState

if TYPE_CHECKING:
    from stream.schema import EventBatch

Severity = Literal["informational", "low", "medium", "high"]
KeyKind = Literal["account", "source", "none"]
SENSITIVITIES = ("high", "medium", "low")
_ID_RE = re.compile(r"^[a-z][a-z0-9-]{2,40}$")
_MITRE_RE = re.compile(r"^T\d{4}(\.\d{3})?$")


@dataclass(frozen=True)
class Param:
    """A tunable parameter with a default per sensitivity level."""

    name: str
    high: float | int
    medium: float | int | None = None
    low: float | int | None = None
    description: str = ""
    unit: str = ""

    def default(self, sensitivity: str) -> float | int:
        if sensitivity == "low":
            return self.low if self.low is not None else (
                self.medium if self.medium is not None else self.high)
        if sensitivity == "medium":
            return self.medium if self.medium is not None else self.high
        return self.high


#: most items of an alert's evidence list (entities, list-valued details)
MAX_DETAIL_ITEMS = 20


def add_unique(lst: list, v, cap: int = MAX_DETAIL_ITEMS) -> None:
    """Append ``v`` to an evidence list unless it is empty, already there, or the list is
    full."""
    if v not in ("", None, 0) and len(lst) < cap and v not in lst:
        lst.append(v)


def merge_distinct(into: dict[str, Any], aux: int) -> None:
    """The engine's own detail: ``distinct`` is the largest non-zero ``aux`` of an alert's
    hits."""
    if aux:
        into["distinct"] = max(int(into.get("distinct", 0) or 0), aux)


@dataclass
class BatchContext:
    """Per-batch facts the engine computes once and shares with every detector."""

    sflags: np.ndarray          # uint64 per string-table entry
    key: np.ndarray             # uint64 entity key per event (engine key kind)
    dc_keys: np.ndarray         # uint64 open-addressing set of DC host/account key hashes
    watermark_ms: int = 0       # max event time seen by this engine so far
    learning_until_ms: int = 0  # baseline detectors learn (no alerts) before this event time
    learning: bool = True       # False at medium/low sensitivity (MDI semantics)


class Hits:
    """Collects detections from kernels (numpy arrays; converted to alerts by the engine)."""

    def __init__(self):
        self.parts: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                               np.ndarray]] = []

    def add(self, detector_id: str, idx: np.ndarray, entity: np.ndarray,
            count: np.ndarray | None = None, first_ms: np.ndarray | None = None,
            aux: np.ndarray | None = None) -> None:
        """Record hits.

        idx: event index in the batch of each hit (the triggering event).
        entity: uint64 entity key per hit (alerts are grouped by (detector, entity)).
        count: evidence count carried by the hit (e.g. failures in window; default 1).
        first_ms: earliest event time of the evidence (default the event's time).
        aux: detector-specific int64 (e.g. distinct count); shown in alert details.
        """
        idx = np.asarray(idx, dtype=np.int64)
        if len(idx) == 0:
            return
        n = len(idx)
        entity = np.asarray(entity, dtype=np.uint64)
        count = np.ones(n, np.int64) if count is None else np.asarray(count, np.int64)
        first_ms = np.full(n, -1, np.int64) if first_ms is None else np.asarray(first_ms,
                                                                                np.int64)
        aux = np.zeros(n, np.int64) if aux is None else np.asarray(aux, np.int64)
        self.parts.append((detector_id, idx, entity, count, first_ms, aux))

    def __len__(self) -> int:
        return sum(len(p[1]) for p in self.parts)


class Detector:
    """Declarative metadata + kernels. See the module docstring for the how-to."""

    id: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    severity: ClassVar[Severity] = "medium"
    mitre: ClassVar[tuple[str, ...]] = ()
    mdi_alert_id: ClassVar[tuple[str, ...]] = ()
    key: ClassVar[KeyKind] = "account"
    event_ids: ClassVar[frozenset[int]] = frozenset()
    params: ClassVar[tuple[Param, ...]] = ()
    learning_days: ClassVar[float] = 0.0
    next_steps: ClassVar[tuple[str, ...]] = ()
    false_positives: ClassVar[tuple[str, ...]] = ()
    audit: ClassVar[str] = ""
    STATE: ClassVar[dict[str, tuple[str, tuple]] | None] = None
    window_ms: ClassVar[int] = 0
    #: (parameter name, ms per unit): state is retained for that parameter's value, e.g.
    #: ("window_s", 1000); None = ``window_ms``
    retention_param: ClassVar[tuple[str, int] | None] = None
    #: most state keys a kernel can create for one event of ``event_ids`` (rows are reserved
    #: per batch from this bound; see :meth:`max_new_keys`)
    keys_per_event: ClassVar[int] = 1

    def __init__(self, sensitivity: str = "high", overrides: dict[str, Any] | None = None):
        self.sensitivity = sensitivity
        self.p: dict[str, Any] = {p.name: p.default(sensitivity) for p in self.params}
        for k, v in (overrides or {}).items():
            if k not in self.p:
                raise DetectorError(f"unknown parameter {k!r}",
                                    location=f"detection.detectors.{self.id}.params",
                                    fix=f"valid parameters: {', '.join(self.p) or 'none'}")
            self.p[k] = type(self.p[k])(v) if isinstance(self.p[k], (int, float)) else v
        self.state: SlotState | None = SlotState(self.STATE) if self.STATE else None

    # -- hooks -------------------------------------------------------------------------------
    def run(self, batch: "EventBatch", ctx: BatchContext, hits: Hits) -> None:
        raise NotImplementedError

    def max_new_keys(self, event_counts: dict[int, int]) -> int:
        """Upper bound of the state keys :meth:`run` can add for a batch with
        ``event_counts`` (event id -> events): kernels only create keys for events whose id is
        in :attr:`event_ids`, at most :attr:`keys_per_event` each. The engine reserves that
        many rows before the batch, so a detector that sees few of its events stays small."""
        return sum(event_counts.get(e, 0) for e in self.event_ids) * self.keys_per_event

    def retention_ms(self) -> int:
        """How long per-entity state must be kept after its last update."""
        if self.retention_param is not None:
            name, unit = self.retention_param
            return int(self.p[name] * unit)
        return int(self.window_ms)

    def details(self, batch: "EventBatch", i: int, aux: int) -> dict[str, Any]:
        """Detector-specific alert facts for the triggering event ``i`` (strings/ints)."""
        return {}

    def merge_details(self, into: dict[str, Any], batch: "EventBatch", i: int,
                      aux: int) -> None:
        """Merge hit ``i``'s :meth:`details` into an open alert's details: list values are
        appended when new (at most :data:`MAX_DETAIL_ITEMS`), scalars replace. A detector
        whose hits are frequent (alert storms) may override this with an equivalent that
        builds no intermediate dict; the result must be the same."""
        for k, v in self.details(batch, i, aux).items():
            if isinstance(v, list):
                cur = into.setdefault(k, [])
                if isinstance(cur, list):
                    for x in v:
                        add_unique(cur, x)
            else:
                into[k] = v

    def merge_rows(self, into: dict[str, Any], batch: "EventBatch", rows: list[int],
                   auxs: list[int]) -> None:
        """Merge the details of one alert's hits in a batch (``rows``, in order, with their
        ``auxs``): each row's :meth:`merge_details`, then :func:`merge_distinct`. The engine
        calls this once per alert per batch; a detector whose hits come in storms may
        override it with an equivalent that does less per row (the same keys in the same
        order, the same values)."""
        for i, a in zip(rows, auxs):
            self.merge_details(into, batch, i, a)
            if a:
                merge_distinct(into, a)

    def describe(self, fields: dict[str, Any]) -> str:
        """Render :attr:`description` with the alert facts (missing keys render as '?')."""
        return self.description.format_map(_Missing(fields))

    # -- metadata ----------------------------------------------------------------------------
    @classmethod
    def metadata(cls) -> dict[str, Any]:
        return {
            "id": cls.id, "title": cls.title, "description": cls.description,
            "severity": cls.severity, "mitre": list(cls.mitre),
            "mdi_alert_id": list(cls.mdi_alert_id), "key": cls.key,
            "event_ids": sorted(cls.event_ids),
            "params": [{"name": p.name, "high": p.high, "medium": p.default("medium"),
                        "low": p.default("low"), "unit": p.unit, "description": p.description}
                       for p in cls.params],
            "learning_days": cls.learning_days, "next_steps": list(cls.next_steps),
            "false_positives": list(cls.false_positives), "audit": cls.audit,
            "stateful": cls.STATE is not None,
        }

    @classmethod
    def validate(cls) -> list[str]:
        """Metadata problems (empty list = valid)."""
        problems = []
        for attr in ("id", "title", "description"):
            if not getattr(cls, attr, None):
                problems.append(f"{cls.__name__}: missing {attr}")
        if getattr(cls, "id", None) and not _ID_RE.match(cls.id):
            problems.append(f"{cls.id}: id must be lower-case kebab-case")
        if cls.severity not in ("informational", "low", "medium", "high"):
            problems.append(f"{cls.id}: bad severity {cls.severity!r}")
        if cls.key not in ("account", "source", "none"):
            problems.append(f"{cls.id}: bad key {cls.key!r}")
        for m in cls.mitre:
            if not _MITRE_RE.match(m):
                problems.append(f"{cls.id}: bad MITRE technique {m!r}")
        if not cls.mitre:
            problems.append(f"{cls.id}: no MITRE technique")
        if not cls.event_ids:
            problems.append(f"{cls.id}: consumes no event ids")
        if not cls.next_steps:
            problems.append(f"{cls.id}: no recommended next steps")
        names = [p.name for p in cls.params]
        if len(names) != len(set(names)):
            problems.append(f"{cls.id}: duplicate parameter names")
        for p in cls.params:
            vals = [p.default(s) for s in SENSITIVITIES]
            if any(not isinstance(v, (int, float)) or v < 0 for v in vals):
                problems.append(f"{cls.id}: parameter {p.name} must be a non-negative number")
        if cls.retention_param is not None and cls.retention_param[0] not in names:
            problems.append(f"{cls.id}: retention_param names no parameter")
        if cls.STATE is not None and cls.window_ms <= 0:
            problems.append(f"{cls.id}: stateful detector needs window_ms > 0")
        return problems


class _Missing(dict):
    def __missing__(self, key: str) -> str:
        return "?"


class Registry:
    """Detector registry: id -> class. Duplicate ids are an error (silent shadowing of a
    detector is a security bug)."""

    def __init__(self):
        self._by_id: dict[str, type[Detector]] = {}

    def register(self, cls: type[Detector]) -> type[Detector]:
        if cls.id in self._by_id and self._by_id[cls.id] is not cls:
            raise DuplicateDetectorError(
                f"detector id {cls.id!r} registered twice ({self._by_id[cls.id].__module__} "
                f"and {cls.__module__})", fix="give the new detector its own id")
        self._by_id[cls.id] = cls
        return cls

    def __contains__(self, did: str) -> bool:
        return did in self._by_id

    def __getitem__(self, did: str) -> type[Detector]:
        try:
            return self._by_id[did]
        except KeyError:
            raise DetectorError(f"unknown detector id {did!r}",
                                fix="run `itdr detectors list` for the valid ids") from None

    def __iter__(self):
        return iter(sorted(self._by_id.values(), key=lambda c: c.id))

    def __len__(self) -> int:
        return len(self._by_id)

    def ids(self) -> list[str]:
        return sorted(self._by_id)

    def validate(self) -> list[str]:
        out = []
        for cls in self:
            out.extend(cls.validate())
        return out


REGISTRY = Registry()


def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator adding a detector to the global registry."""
    return REGISTRY.register(cls)


def load_catalogue() -> Registry:
    """Import every catalogue module (registers all built-in detectors)."""
    import importlib
    import pkgutil

    from . import catalogue

    for m in pkgutil.iter_modules(catalogue.__path__):
        importlib.import_module(f"{catalogue.__name__}.{m.name}")
    return REGISTRY
