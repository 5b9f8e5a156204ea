"""Detection engine: runs the catalogue over columnar batches of ONE partition and key kind.

Pure numpy/numba (no Faust, no Kafka): the stream worker wraps one engine per (topic,
partition); ``itdr scan`` drives the very same engines over files. Deterministic: the alerts
(ids, versions, content) depend only on the sequence of events of the partition, not on batch
boundaries, so a worker restored from a snapshot and replaying from the snapshot's offset
produces exactly the alerts of an uninterrupted run.

Per batch:
1. identity keys (vectorized), watermark, DC learning from KDC / directory events;
2. string features (cached per distinct string hash);
3. every enabled detector's kernels -> hits;
4. hits -> alert lifecycle (exclusions, episodes, deterministic ids, updates);
5. periodic state expiry.
"""

from __future__ import annotations

import ipaddress
import logging
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple

import numpy as np
import orjson

from stream.alert import Alert, Entities, Evidence, alert_id, construct, iso_ms
from stream.errors import StateError
from stream.schema import KEY_ACCOUNT, KEY_SOURCE, EventBatch, key_hashes, string_index
from stream.settings import DetectionSettings, Exclusions

from .base import (MAX_DETAIL_ITEMS, REGISTRY, BatchContext, Detector, Hits, load_catalogue,
                   merge_distinct)
from .features import FeatureComputer, _Matcher
from .kernels.common import id_table, in_table, slot_of
from .state import SlotState

log = logging.getLogger(__name__)

# Events only a domain controller logs: KDC and directory-service events.
DC_ONLY_EVENTS = np.array([4768, 4769, 4771, 4662, 5136, 5137, 4741, 4742], dtype=np.int32)
_DC_ONLY = id_table(DC_ONLY_EVENTS)
_MAX_LIST = MAX_DETAIL_ITEMS
_MAX_RECORDS = 50
# string columns of an alert's evidence, in the order _alerts unpacks them
_EV_COLS = ("account", "target_account", "src_host", "target_host", "computer", "src_ip",
            "service", "group", "object")
_EV_IDX = np.array([string_index(f) for f in _EV_COLS], dtype=np.int64)
_EXPIRE_EVERY = 64
# evidence lists in the order _alerts_grouped packs them (accounts and hosts take two
# columns each)
_LIST_NAMES = ("dcs", "event_ids", "ips", "spns", "groups", "objects", "accounts", "hosts")
_U59, _U32 = np.uint64(59), np.uint64(32)
_LOW32, _GID = np.uint64(0xFFFFFFFF), np.uint64((1 << 27) - 1)
_REC_FULL = 1 << 8
# Engine snapshot format. 2: detector state as dense rows + keys (detectors/state.py);
# 1 (sparse power-of-two tables) is rejected with a StateError.
SNAPSHOT_VERSION = 2


@dataclass
class OpenAlert:
    id: str
    detector: str
    entity_key: int
    entity: str
    first_ms: int
    last_ms: int
    count: int
    version: int
    dcs: list[str] = field(default_factory=list)
    event_ids: list[int] = field(default_factory=list)
    record_ids: list[int] = field(default_factory=list)
    entities: dict[str, list[str]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    # which evidence lists are known to be full (bit j: _LIST_NAMES[j], bit 8: record_ids):
    # a hint for the grouped path (lists never shrink; an unset bit only costs a check).
    # Not part of snapshots
    full: int = 0

    def to_dict(self) -> dict:
        d = self.__dict__.copy()
        del d["full"]
        return d

    def mark_full(self) -> None:
        """Set the hint bits of the lists that are full (after a restore)."""
        e = self.entities
        lists = (self.dcs, self.event_ids) + tuple(e.get(n, ()) for n in _LIST_NAMES[2:])
        self.full = sum(1 << j for j, lst in enumerate(lists) if len(lst) >= _MAX_LIST) | (
            _REC_FULL if len(self.record_ids) >= _MAX_RECORDS else 0)


_FACT_FIELDS = ("account", "target_account", "src_ip", "src_host", "target_host", "computer",
                "service", "object", "group", "member", "share", "relative_target",
                "service_name", "image_path", "attribute", "value")
_FACT_SET = frozenset(_FACT_FIELDS)
_PLACEHOLDERS: dict[type, frozenset[str]] = {}


def _placeholders(cls: type) -> frozenset[str]:
    """Top-level names a detector's description template refers to."""
    got = _PLACEHOLDERS.get(cls)
    if got is None:
        import string

        names = set()
        for _lit, name, _spec, _conv in string.Formatter().parse(cls.description):
            if name:
                names.add(name.split(".", 1)[0].split("[", 1)[0])
        got = _PLACEHOLDERS[cls] = frozenset(names)
    return got


def _fact(details: dict[str, Any], batch: EventBatch, i: int, name: str) -> Any:
    """A description placeholder from the alert's details (lists joined), else the event's
    field of that name, else '?'."""
    v = details.get(name, _NO)
    if v is not _NO:
        return ", ".join(map(str, v)) if isinstance(v, list) else v
    if name in _FACT_SET:
        return batch.get(name, i)
    return "?"


_NO = object()


def _same(x):
    return x


class RenderedAlert(NamedTuple):
    """An alert version as the worker produces it: ``json`` is what ``Alert.to_json()``
    gives for it; the other fields are what the worker's metrics read."""
    id: str
    detector: str
    severity: str
    last_seen_ms: int
    json: bytes

    def alert(self) -> Alert:
        return Alert.from_json(self.json)


def _details_json(d: dict[str, Any]) -> dict[str, Any]:
    """:func:`_details_value` for serializing at once: the dict itself when its values
    already have JSON types (a bool would serialize as true where the model holds 1)."""
    for v in d.values():
        t = type(v)
        if not (t is str or t is int or t is float or t is list):
            return _details_value(d)
    return d


def _details_value(d: dict[str, Any]) -> dict[str, Any]:
    """``Evidence.details`` as validation makes it (``str | int | float | list[str]``: a bool
    becomes an int; anything else unusual, e.g. a numpy scalar, goes through validation)."""
    out = {}
    for k, v in d.items():
        t = type(v)
        if t is str or t is int or t is float:
            out[k] = v
        elif t is list:
            out[k] = list(v)
        elif t is bool:
            out[k] = int(v)
        else:
            out[k] = Evidence.model_validate({"first_seen": "", "last_seen": "",
                                              "details": {k: v}}).details[k]
    return out


class _Rows(NamedTuple):
    """A batch's hit rows, in hit order (event index, then detector)."""
    rix: np.ndarray      # event index in the batch
    dcode: np.ndarray    # detector (index into the batch's sorted detector ids)
    ent: np.ndarray      # entity key
    cnt: np.ndarray
    first: np.ndarray    # evidence start (ms); the event's time where the kernel gave none
    aux: np.ndarray
    ts: np.ndarray | None     # event time (ms)
    sidx: np.ndarray | None   # evidence string columns (_EV_COLS x rows)


class _ExclusionCheck:
    def __init__(self, ex: Exclusions):
        self.accounts = _Matcher(ex.accounts)
        self.hosts = _Matcher(ex.hosts, host=True)
        self.ips = set(ex.ips)
        self.nets = [ipaddress.ip_network(s, strict=False) for s in ex.subnets]
        self.empty = ex.is_empty()

    def excluded(self, account: str, target_account: str, hosts: Iterable[str], ip: str) -> bool:
        if self.empty:
            return False
        if self.accounts and (self.accounts.match(account) or self.accounts.match(target_account)):
            return True
        if self.hosts and any(self.hosts.match(h) for h in hosts if h):
            return True
        if ip and (ip in self.ips or (self.nets and _in_nets(ip, self.nets))):
            return True
        return False


def _in_nets(ip: str, nets) -> bool:
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(a in n for n in nets)


def enabled_detectors(settings: DetectionSettings) -> list[type[Detector]]:
    load_catalogue()
    ids = settings.enabled if settings.enabled is not None else REGISTRY.ids()
    out = []
    for did in ids:
        cls = REGISTRY[did]
        ov = settings.detectors.get(did)
        if did in settings.disabled or (ov is not None and not ov.enabled):
            continue
        out.append(cls)
    return out


class Engine:
    """Detection engine for one partition of one key kind (``KEY_ACCOUNT`` / ``KEY_SOURCE``)."""

    def __init__(self, settings: DetectionSettings | None = None, key_kind: int = KEY_ACCOUNT,
                 partition: int = -1):
        self.settings = settings or DetectionSettings()
        self.key_kind = key_kind
        self.partition = partition
        kinds = ("account", "none") if key_kind == KEY_ACCOUNT else ("source",)
        self.detectors: list[Detector] = []
        for cls in enabled_detectors(self.settings):
            if cls.key not in kinds:
                continue
            ov = self.settings.detectors.get(cls.id)
            sens = (ov.sensitivity if ov and ov.sensitivity else self.settings.sensitivity)
            self.detectors.append(cls(sens, ov.params if ov else None))
        self.by_id = {d.id: d for d in self.detectors}
        self.features = FeatureComputer(self.settings)
        self.global_excl = _ExclusionCheck(self.settings.exclude)
        self.det_excl = {did: _ExclusionCheck(ov.exclude)
                         for did, ov in self.settings.detectors.items() if not ov.exclude.is_empty()}
        self.dc_keys = np.zeros(64, dtype=np.uint64)
        self.dc_names: list[str] = []
        for h in self.settings.domain_controllers:
            self._learn_dc(h.lower())
        self.watermark_ms = 0
        self.first_ms = 0
        self.open: dict[tuple[str, int], OpenAlert] = {}
        self.batches = 0
        self.events = 0
        self.hits = 0
        self.detector_ns: dict[str, int] = {d.id: 0 for d in self.detectors}
        # alerts touched since the last render: id -> (open alert, batch, row of its last hit)
        self._touched: dict[str, tuple[OpenAlert, EventBatch, int]] = {}

    # -- DCs ---------------------------------------------------------------------------------
    def _learn_dc(self, host: str) -> None:
        if not host or host in self.dc_names:
            return
        self.features.learn_dc(host)  # configured DCs are already known to the features
        if True:
            from stream.schema import key_hash
            self.dc_names.append(host)
            short = host.split(".", 1)[0]
            keys = [key_hash(host), key_hash(short)]
            if len(self.dc_keys) < (np.count_nonzero(self.dc_keys) + len(keys)) * 2:
                old = self.dc_keys[self.dc_keys != 0]
                self.dc_keys = np.zeros(len(self.dc_keys) * 4, dtype=np.uint64)
                for k in old:
                    slot_of(self.dc_keys, k)
            for k in keys:
                slot_of(self.dc_keys, np.uint64(k))

    def _learn_dcs(self, batch: EventBatch) -> None:
        m = in_table(batch.event_id, _DC_ONLY)
        if not m.any():
            return
        comps = batch.distinct(batch.computer[m])
        known = self.features.dc_short
        # decode_many: the first string() of a batch converts its whole offset table
        for name in batch.decode_many(comps).values():
            if name and name.split(".", 1)[0] not in known:
                self._learn_dc(name)

    # -- main --------------------------------------------------------------------------------
    def process(self, batch: EventBatch, defer: bool = False) -> list[Alert]:
        """Run every detector over the batch; returns alerts created or updated.

        ``defer=True`` returns nothing and keeps the touched alerts for :meth:`flush_alerts`,
        which renders each once, as it stands after the last of the deferred batches: the
        worker defers within one take when a partition is behind, so an alert storm costs
        one version per alert per take instead of one per wire batch. Every version emitted
        either way is one an undeferred run emits too, with the same content."""
        import time
        n = batch.n
        if n == 0:
            return []
        self.batches += 1
        self.events += n
        t = batch.time_ms
        bmax = int(t.max())
        if self.first_ms == 0:
            self.first_ms = int(t.min())
        if bmax > self.watermark_ms:
            self.watermark_ms = bmax
        self._learn_dcs(batch)
        sflags = self.features.compute(batch.str_hash, batch.string, batch.strcols)
        learning = self.settings.sensitivity == "high"
        learn_until = self.first_ms + int(self.settings.learning_days * 86_400_000)
        ctx = BatchContext(sflags=sflags, key=key_hashes(batch, self.key_kind),
                           dc_keys=self.dc_keys, watermark_ms=self.watermark_ms,
                           learning_until_ms=learn_until if learning else 0,
                           learning=learning)
        hits = Hits()
        ids, cnt = np.unique(batch.event_id, return_counts=True)
        event_counts = dict(zip(ids.tolist(), cnt.tolist()))
        for d in self.detectors:
            t0 = time.perf_counter_ns()
            if d.state is not None:
                d.state.reserve(d.max_new_keys(event_counts))
            d.run(batch, ctx, hits)
            self.detector_ns[d.id] += time.perf_counter_ns() - t0
        if len(hits):
            self._alerts(batch, hits)
        if self.batches % _EXPIRE_EVERY == 0:
            self.expire()
        return [] if defer else self.flush_alerts()

    def flush_alerts(self) -> list[Alert]:
        """Render the alerts touched since the last render (see :meth:`process`)."""
        return self._flush(self._to_alert)

    def flush_rendered(self) -> list[RenderedAlert]:
        """:meth:`flush_alerts` for a producer: each alert version as the bytes its
        ``Alert.to_json()`` gives, built straight from the open alert (no model objects and
        no list copies: 2.6 instead of 5.4 us per version; an alert storm renders thousands
        of versions a second)."""
        return self._flush(self._render)

    def _flush(self, make) -> list:
        if not self._touched:
            return []
        out = []
        by_id = self.by_id
        for oa, batch, i in self._touched.values():
            det = by_id[oa.detector]
            first, last = iso_ms(oa.first_ms), iso_ms(oa.last_ms)
            # the description reflects the alert after its last hit (rendered once per alert)
            self._describe(oa, det, batch, i, first, last)
            out.append(make(det, oa, first, last))
        self._touched = {}
        return out

    def expire(self) -> int:
        lateness = int(self.settings.lateness_s * 1000)
        dropped = 0
        for d in self.detectors:
            if d.state is not None:
                dropped += d.state.expire(self.watermark_ms - d.retention_ms() - lateness)
        gap = int(self.settings.episode_gap_s * 1000)
        cutoff = self.watermark_ms - gap - lateness
        for k in [k for k, a in self.open.items() if a.last_ms < cutoff]:
            del self.open[k]
        return dropped

    # -- alerts ------------------------------------------------------------------------------
    def _entity_display(self, det: Detector, batch: EventBatch, i: int) -> str:
        if det.key == "source":
            return (batch.get("src_ip", i) or batch.get("src_host", i) or batch.get("computer", i))
        if det.key == "none":
            custom = getattr(det, "entity_display", None)
            if custom:
                return custom(batch, i)
        return batch.get("account", i) or batch.get("computer", i)

    def _alerts(self, batch: EventBatch, hits: Hits) -> None:
        # process hits in event order, then detector id (deterministic regardless of the
        # detectors' order; a stable sort keeps a detector's own order for one event)
        parts = hits.parts
        names = sorted({pt[0] for pt in parts})
        code = {d: c for c, d in enumerate(names)}
        idx, ent, cnt, first, aux = (np.concatenate([pt[j] for pt in parts])
                                     for j in range(1, 6))
        dcode = np.concatenate([np.full(len(pt[1]), code[pt[0]], np.int64) for pt in parts])
        order = np.lexsort((dcode, idx))
        rows = _Rows(idx[order], dcode[order], ent[order], cnt[order], first[order],
                     aux[order], None, None)
        # the evidence columns (string-table indices) of every hit row
        sidx = batch.strcols[_EV_IDX[:, None], rows.rix[None, :]]
        if not self.global_excl.empty or self.det_excl:
            keep = self._not_excluded(batch, names, rows.dcode, sidx)
            if not keep.all():
                rows = _Rows(*(a[keep] for a in rows[:6]), None, None)
                sidx = sidx[:, keep]
        ts = batch.time_ms[rows.rix].astype(np.int64)
        rows = rows._replace(ts=ts, first=np.where(rows.first >= 0, rows.first, ts),
                             sidx=sidx)
        if len(rows.rix) and not self._alerts_grouped(batch, names, rows):
            self._alerts_per_hit(batch, names, rows)
        self.hits += len(rows.rix)

    def _not_excluded(self, batch: EventBatch, names: list[str], dcode: np.ndarray,
                      sidx: np.ndarray) -> np.ndarray:
        """Per hit row: not excluded by the global or by its detector's exclusions."""
        cols = sidx[:6]            # account, target_account, src_host, target_host, computer, ip
        dec = batch.decode_many(np.unique(cols))
        gex = self.global_excl
        by_id = self.by_id
        keep = []
        for c, account, target, src_host, tgt_host, comp, ip in zip(
                dcode.tolist(), *([dec[x] for x in col] for col in cols.tolist())):
            did = names[c]
            hosts = (src_host, tgt_host)
            if by_id[did].key == "none":  # single-event detectors are about the reporting host
                hosts = hosts + (comp,)
            ex = self.det_excl.get(did)
            keep.append(not (gex.excluded(account, target, hosts, ip)
                             or (ex is not None and ex.excluded(account, target, hosts, ip))))
        return np.array(keep, dtype=bool)

    def _open_alert(self, det: Detector, did: str, e_key: int, batch: EventBatch, i: int,
                    first_ms: int, last_ms: int, count: int, version: int) -> OpenAlert:
        ent_disp = self._entity_display(det, batch, i)
        oa = OpenAlert(id=alert_id(did, f"{ent_disp}|{e_key:016x}", first_ms), detector=did,
                       entity_key=e_key, entity=ent_disp, first_ms=first_ms, last_ms=last_ms,
                       count=count, version=version,
                       entities={k: [] for k in Entities.model_fields})
        self.open[(did, e_key)] = oa
        return oa

    def _alerts_grouped(self, batch: EventBatch, names: list[str], r: "_Rows") -> bool:
        """Apply a batch's hit rows alert by alert: the rows of one (detector, entity) are
        one alert's hits, merged at once (counts and times from numpy reductions, the new
        values of every evidence list from one sort, details by :meth:`Detector.merge_rows`
        once per alert). Alerts are touched in the order of their first hit, as the
        hit-by-hit walk (:meth:`_alerts_per_hit`, the specification) touches them.

        Equal to the walk whenever no episode can end *inside* a group, and returns False
        (nothing applied) otherwise. Sufficient: every group's event times ``ts`` and evidence
        starts ``f`` each span at most the gap. The walk keeps hit j (j >= 1) in the alert of
        the group's first hit when ``ts_j - last <= gap`` and ``f_j >= first - gap``, where
        ``last`` is at least ``ts_0 >= min(ts)`` and ``first`` at most ``f_0 <= max(f)``;
        ``max(ts) - min(ts) <= gap`` and ``max(f) - min(f) <= gap`` give both. Whether the
        first hit continues the open alert or opens one is decided as the walk decides it."""
        gap = int(self.settings.episode_gap_s * 1000)
        n = len(r.rix)
        if n >= 1 << 27 or batch.event_id[r.rix].min() < 0:   # the packed list keys' range
            return False
        go = np.lexsort((r.ent, r.dcode))          # stable: a group's rows in hit order
        dc_s, ent_s, ts_s, f_s = r.dcode[go], r.ent[go], r.ts[go], r.first[go]
        new = np.empty(n, dtype=bool)
        new[0] = True
        np.not_equal(dc_s[1:], dc_s[:-1], out=new[1:])
        new[1:] |= ent_s[1:] != ent_s[:-1]
        starts = np.flatnonzero(new)
        g_max_ts = np.maximum.reduceat(ts_s, starts)
        g_min_f = np.minimum.reduceat(f_s, starts)
        if len(starts) < n and (
                (g_max_ts - np.minimum.reduceat(ts_s, starts)).max() > gap
                or (np.maximum.reduceat(f_s, starts) - g_min_f).max() > gap):
            return False
        ng = len(starts)
        ends = np.empty(ng, dtype=np.int64)
        ends[:-1] = starts[1:]
        ends[-1] = n
        gid = np.cumsum(new) - 1                     # group of each row, in `go` order
        rix_s = r.rix[go]
        seq = np.argsort(go[starts], kind="stable")  # groups in the order of their first hit
        by_id = self.by_id
        opened = self.open
        touched = self._touched
        oas: list[OpenAlert | None] = [None] * ng
        fulls = [0] * ng
        for g, c, e_key, i0, i1, c0, f0, t0, k, mx, mn in zip(
                seq.tolist(), dc_s[starts][seq].tolist(), ent_s[starts][seq].tolist(),
                rix_s[starts][seq].tolist(), rix_s[ends - 1][seq].tolist(),
                r.cnt[go][starts][seq].tolist(), f_s[starts][seq].tolist(),
                ts_s[starts][seq].tolist(), (ends - starts)[seq].tolist(),
                g_max_ts[seq].tolist(), g_min_f[seq].tolist()):
            did = names[c]
            oa = opened.get((did, e_key))
            if oa is not None and t0 - oa.last_ms <= gap and f0 >= oa.first_ms - gap:
                oa.count += k
                oa.version += k
                if mx > oa.last_ms:
                    oa.last_ms = mx
                if mn < oa.first_ms:
                    oa.first_ms = mn
            else:
                oa = self._open_alert(by_id[did], did, e_key, batch, i0, f0, mx,
                                      max(c0, 1) + k - 1, k)
                oa.first_ms = mn
            oas[g] = oa
            fulls[g] = oa.full
            touched[oa.id] = (oa, batch, i1)
        # evidence lists: the new (group, value) pairs of every list from one stable sort,
        # each group's values in the order they first appear (a later duplicate is a no-op
        # in the hit walk); an empty value, a full list or a value already there leaves a
        # list as it is
        sx = r.sidx[:, go]
        gid2 = np.repeat(gid, 2)
        cols = [sx[4], batch.event_id[rix_s], sx[5], sx[6], sx[7], sx[8], sx[0:2].T.ravel(),
                sx[2:4].T.ravel()]
        fm = np.array(fulls, dtype=np.int64)
        if fm.any():                      # no candidates from lists known to be full
            fm_rows = fm[gid]
            for j, v in enumerate(cols):
                bit = (fm_rows >> j) & 1 if len(v) == n else np.repeat((fm_rows >> j) & 1, 2)
                if bit.any():
                    cols[j] = np.where(bit == 1, 0, v)
        keys = np.concatenate([(np.uint64(j) << _U59) | (gid2 if len(v) > n else gid).astype(
            np.uint64) << _U32 | v.astype(np.uint32).astype(np.uint64)
            for j, v in enumerate(cols)])
        pos = np.flatnonzero(keys & _LOW32)
        o = np.argsort(keys[pos], kind="stable")
        ks = keys[pos[o]]
        head = np.empty(len(ks), dtype=bool)
        if len(ks):
            head[0] = True
            np.not_equal(ks[1:], ks[:-1], out=head[1:])
        kc = keys[np.sort(pos[o[head]])]           # list-major, then row order
        c_list = (kc >> _U59).astype(np.int64)
        c_gid = ((kc >> _U32) & _GID).astype(np.int64).tolist()
        c_val = (kc & _LOW32).astype(np.int64)
        bounds = np.searchsorted(c_list, np.arange(len(cols) + 1)).tolist()
        strs = np.concatenate((c_val[:bounds[1]], c_val[bounds[2]:]))   # all but event ids
        dec = batch.decode_many(np.unique(strs)) if len(strs) else {}
        c_val = c_val.tolist()
        for j, name in enumerate(_LIST_NAMES):
            a, b = bounds[j], bounds[j + 1]
            if a == b:
                continue
            if j == 1:                                 # event ids: the values themselves
                for g, v in zip(c_gid[a:b], c_val[a:b]):
                    lst = oas[g].event_ids
                    if len(lst) < _MAX_LIST and v not in lst:
                        lst.append(v)
                        if len(lst) >= _MAX_LIST:
                            oas[g].full |= 2
                continue
            for g, v in zip(c_gid[a:b], c_val[a:b]):
                lst = oas[g].dcs if j == 0 else oas[g].entities[name]
                if len(lst) < _MAX_LIST:
                    s = dec[v]
                    if s and s not in lst:
                        lst.append(s)
                        if len(lst) >= _MAX_LIST:
                            oas[g].full |= 1 << j
        # record ids: almost every hit row is another event, so no de-duplication first;
        # an alert whose list is full is skipped whole
        recs = batch.record_id[rix_s].tolist()
        for oa, p0, p1 in zip(oas, starts.tolist(), ends.tolist()):
            if oa.full & _REC_FULL:
                continue
            lst = oa.record_ids
            if len(lst) >= _MAX_RECORDS:          # filled by the hit-by-hit walk
                oa.full |= _REC_FULL
                continue
            for v in recs[p0:p1]:
                if v and v not in lst:
                    lst.append(v)
                    if len(lst) >= _MAX_RECORDS:
                        oa.full |= _REC_FULL
                        break
        # details: each alert's rows, in order, merged by its detector
        rl, al = rix_s.tolist(), r.aux[go].tolist()
        for oa, c, p0, p1 in zip(oas, dc_s[starts].tolist(), starts.tolist(), ends.tolist()):
            by_id[names[c]].merge_rows(oa.details, batch, rl[p0:p1], al[p0:p1])
        return True

    def _alerts_per_hit(self, batch: EventBatch, names: list[str], r: "_Rows") -> None:
        """Apply a batch's hit rows one by one, in order (episodes may end inside a group)."""
        gap = int(self.settings.episode_gap_s * 1000)
        touched = self._touched
        dec = batch.decode_many(np.unique(r.sidx))
        (acc_c, tgt_c, srch_c, tgth_c, comp_c, ip_c, svc_c, grp_c, obj_c) = (
            [dec[x] for x in col] for col in r.sidx.tolist())
        by_id = self.by_id
        opened = self.open
        ml = _MAX_LIST
        mr = _MAX_RECORDS
        for (i, c, e_key, cn, first_ms, a, account, target, src_host, tgt_host, comp, ip, svc,
             grp, obj, eid, rec, ts) in zip(
                r.rix.tolist(), r.dcode.tolist(), r.ent.tolist(), r.cnt.tolist(),
                r.first.tolist(), r.aux.tolist(), acc_c, tgt_c, srch_c, tgth_c, comp_c, ip_c,
                svc_c, grp_c, obj_c, batch.event_id[r.rix].tolist(),
                batch.record_id[r.rix].tolist(), r.ts.tolist()):
            did = names[c]
            det = by_id[did]
            oa = opened.get((did, e_key))
            if oa is not None and ts - oa.last_ms <= gap and first_ms >= oa.first_ms - gap:
                oa.count += 1
                oa.version += 1
                if ts > oa.last_ms:
                    oa.last_ms = ts
                if first_ms < oa.first_ms:
                    oa.first_ms = first_ms
            else:
                oa = self._open_alert(det, did, e_key, batch, i, first_ms, ts, max(cn, 1), 1)
            # evidence lists, each capped (an empty value, a full list or a value already
            # there leaves a list as it is); accounts and hosts take two columns, in order
            lst = oa.dcs
            if comp and len(lst) < ml and comp not in lst:
                lst.append(comp)
            lst = oa.event_ids
            if eid and len(lst) < ml and eid not in lst:
                lst.append(eid)
            e = oa.entities
            for v, name in ((ip, "ips"), (svc, "spns"), (grp, "groups"), (obj, "objects"),
                            (account, "accounts"), (target, "accounts"),
                            (src_host, "hosts"), (tgt_host, "hosts")):
                if v:
                    lst = e[name]
                    if len(lst) < ml and v not in lst:
                        lst.append(v)
            lst = oa.record_ids
            if rec and len(lst) < mr and rec not in lst:
                lst.append(rec)
            det.merge_details(oa.details, batch, i, a)
            if a:
                merge_distinct(oa.details, a)
            touched[oa.id] = (oa, batch, i)

    def _describe(self, oa: OpenAlert, det: Detector, batch: EventBatch, i: int,
                  first: str, last: str) -> None:
        if type(det).describe is not Detector.describe:
            oa.description = det.describe(self._all_fields(oa, batch, i, first, last))
            return
        # only the placeholders of this detector's template are looked up (each batch field
        # is a string decode; a description uses 3-6 of the 23 facts). Precedence: the
        # alert's own facts, then `source`, then the alert's details, then the event's fields.
        details = oa.details
        facts = {}
        for name in _placeholders(type(det)):
            if name == "count":
                v = oa.count
            elif name == "first_seen":
                v = first
            elif name == "last_seen":
                v = last
            elif name == "minutes":
                v = round((oa.last_ms - oa.first_ms) / 60000, 1)
            elif name == "event_id":
                v = int(batch.event_id[i])
            elif name == "entity":
                v = oa.entity
            elif name == "source":
                v = (_fact(details, batch, i, "src_ip") or _fact(details, batch, i, "src_host")
                     or "an unknown source")
            else:
                v = _fact(details, batch, i, name)
            facts[name] = v
        oa.description = det.description.format_map(facts)

    @staticmethod
    def _all_fields(oa: OpenAlert, batch: EventBatch, i: int, first: str,
                    last: str) -> dict[str, Any]:
        g = batch.get
        fields = {f: g(f, i) for f in _FACT_FIELDS}
        fields.update({k: (", ".join(map(str, v)) if isinstance(v, list) else v)
                       for k, v in oa.details.items()})
        fields["source"] = fields["src_ip"] or fields["src_host"] or "an unknown source"
        fields["count"] = oa.count
        fields["first_seen"] = first
        fields["last_seen"] = last
        fields["minutes"] = round((oa.last_ms - oa.first_ms) / 60000, 1)
        fields["event_id"] = int(batch.event_id[i])
        fields["entity"] = oa.entity
        return fields

    @staticmethod
    def _fields(det: Detector, oa: OpenAlert, first: str, last: str,
                copy: bool) -> dict[str, Any]:
        """An alert version's fields, in the model's order, nested as plain dicts; the open
        alert's own lists copied when ``copy`` (a model outlives the next merge; bytes for
        the producer do not)."""
        e = oa.entities
        c = list if copy else _same
        return {
            "schema_version": 1, "id": oa.id, "version": oa.version, "detector": det.id,
            "title": det.title, "description": oa.description, "severity": det.severity,
            "status": "open", "mitre": list(det.mitre), "mdi_alert_id": list(det.mdi_alert_id),
            "key": det.key, "entity": oa.entity,
            "entities": {
                "accounts": c(e["accounts"]), "hosts": c(e["hosts"]), "ips": c(e["ips"]),
                "spns": c(e["spns"]), "groups": c(e["groups"]), "objects": c(e["objects"])},
            "evidence": {
                "count": oa.count, "first_seen": first, "last_seen": last, "dcs": c(oa.dcs),
                "event_ids": sorted(oa.event_ids), "record_ids": c(oa.record_ids),
                "details": _details_value(oa.details) if copy else _details_json(oa.details)},
            "first_seen": first, "last_seen": last, "first_seen_ms": oa.first_ms,
            "last_seen_ms": oa.last_ms, "next_steps": list(det.next_steps)}

    def _to_alert(self, det: Detector, oa: OpenAlert, first: str, last: str) -> Alert:
        # built without validation: every value comes from this engine with the model's
        # types (details coerced as validation would); tests/stream/test_alert_build.py
        # checks it against the validated model
        f = self._fields(det, oa, first, last, True)
        f["entities"] = construct(Entities, f["entities"])
        f["evidence"] = construct(Evidence, f["evidence"])
        return construct(Alert, f)

    def _render(self, det: Detector, oa: OpenAlert, first: str, last: str) -> RenderedAlert:
        return RenderedAlert(oa.id, det.id, det.severity, oa.last_ms,
                             orjson.dumps(self._fields(det, oa, first, last, False)))

    # -- snapshots ---------------------------------------------------------------------------
    def state_bytes(self) -> int:
        return sum(d.state.nbytes() for d in self.detectors if d.state is not None) + \
            self.dc_keys.nbytes

    def snapshot(self) -> bytes:
        """Exact, self-describing snapshot of this engine's state. Alerts deferred by
        ``process(defer=True)`` are not part of it: render them first (:meth:`flush_alerts`)."""
        if self._touched:
            raise StateError("snapshot with deferred alerts not yet rendered",
                             fix="call flush_alerts() (and emit its alerts) before snapshot()")
        head = {"v": SNAPSHOT_VERSION, "key_kind": self.key_kind, "partition": self.partition,
                "watermark_ms": self.watermark_ms, "first_ms": self.first_ms,
                "dcs": self.dc_names, "batches": self.batches,
                "open": [oa.to_dict() for oa in self.open.values()],
                "states": [d.id for d in self.detectors if d.state is not None]}
        # one copy of the state: each part is length-prefixed and its buffers joined once
        h = orjson.dumps(head)
        bufs: list = [struct.pack("<I", len(h)), h]
        for d in self.detectors:
            if d.state is not None:
                sb = d.state.buffers()
                bufs.append(struct.pack("<I", sum(memoryview(b).nbytes for b in sb)))
                bufs.extend(sb)
        return b"".join(bufs)

    def restore(self, data: bytes) -> None:
        try:
            parts = []
            off = 0
            while off < len(data):
                (ln,) = struct.unpack_from("<I", data, off)
                off += 4
                parts.append(data[off:off + ln])
                off += ln
            head = orjson.loads(parts[0])
        except (struct.error, orjson.JSONDecodeError, IndexError) as e:
            raise StateError(f"corrupt engine snapshot: {e}") from e
        if head.get("v") != SNAPSHOT_VERSION or head.get("key_kind") != self.key_kind:
            raise StateError("snapshot is for another engine kind or version")
        self.watermark_ms = head["watermark_ms"]
        self.first_ms = head["first_ms"]
        self._touched = {}
        self.batches = head.get("batches", 0)
        for h in head["dcs"]:
            self._learn_dc(h)
        self.open = {}
        for od in head["open"]:
            oa = OpenAlert(**od)
            oa.mark_full()
            self.open[(oa.detector, oa.entity_key)] = oa
        for did, blob in zip(head["states"], parts[1:]):
            d = self.by_id.get(did)
            if d is not None and d.state is not None:
                d.state = SlotState.from_bytes(d.STATE, blob)


class EnginePair:
    """Both engines for one partition number (by-account and by-source)."""

    def __init__(self, settings: DetectionSettings | None = None, partition: int = -1):
        self.account = Engine(settings, KEY_ACCOUNT, partition)
        self.source = Engine(settings, KEY_SOURCE, partition)

    def for_kind(self, kind: int) -> Engine:
        return self.account if kind == KEY_ACCOUNT else self.source
