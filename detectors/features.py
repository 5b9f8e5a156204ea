"""String features: predicates evaluated once per *distinct string*, not per event.

Kernels cannot run regexes or substring tests. Instead, every string in a batch's string table
gets a uint64 bit field (``ctx.sflags[string_index]``) computed in Python the first time its
hash is seen (then cached by hash), and kernels test bits: ``sflags[col[i]] & SUSP_IMAGE``.

Bits 0..15 are configuration tags (honeytoken, sensitive, DC, sync account, admin host ...),
bits 16..63 are static predicates registered by detector modules with :func:`string_feature`.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
from collections import OrderedDict
from typing import Callable

import numpy as np
from numba import njit

from stream.settings import DetectionSettings

from .kernels.common import find_slot, mix, slot_of

# -- configuration tags ----------------------------------------------------------------------
T_HONEYTOKEN = np.uint64(1 << 0)        # account name tagged honeytoken
T_SENSITIVE_ACCOUNT = np.uint64(1 << 1)  # sensitive account (config or built-in admin names)
T_SENSITIVE_GROUP = np.uint64(1 << 2)   # sensitive group (built-in list + config), name or SID
T_SENSITIVE_HOST = np.uint64(1 << 3)
T_DC = np.uint64(1 << 4)                # DC host name (fqdn/short) or DC machine account
T_SYNC_ACCOUNT = np.uint64(1 << 5)      # directory-sync account (config)
T_ADMIN_HOST = np.uint64(1 << 6)        # admin workstation / jump host (config)
T_MACHINE_NAME = np.uint64(1 << 7)      # looks like a machine account (`name$`)
T_LOOPBACK = np.uint64(1 << 8)          # loopback / local IP or '::1'
T_ANONYMOUS = np.uint64(1 << 9)         # anonymous logon / S-1-5-7
(_I_HONEYTOKEN, _I_SENSITIVE_ACCOUNT, _I_SENSITIVE_GROUP, _I_SENSITIVE_HOST, _I_DC,
 _I_SYNC_ACCOUNT, _I_ADMIN_HOST, _I_MACHINE_NAME, _I_LOOPBACK, _I_ANONYMOUS) = (
    1 << i for i in range(10))     # the same bits as Python ints (flags_of, per string)

# Built-in sensitive groups (names as normalized: lower case, no domain) and RIDs/SIDs.
SENSITIVE_GROUP_NAMES = frozenset({
    "domain admins", "enterprise admins", "schema admins", "administrators",
    "account operators", "server operators", "backup operators", "print operators",
    "dnsadmins", "group policy creator owners", "enterprise key admins", "key admins",
    "domain controllers", "read-only domain controllers", "cert publishers",
    "exchange trusted subsystem", "exchange windows permissions", "organization management",
    "remote desktop users", "protected users", "cryptographic operators",
    "distributed com users", "incoming forest trust builders", "remote management users",
})
SENSITIVE_RIDS = ("-512", "-518", "-519", "-520", "-526", "-527", "-516", "-498", "-1101",
                  "-1102")
SENSITIVE_BUILTIN_SIDS = frozenset({"s-1-5-32-544", "s-1-5-32-548", "s-1-5-32-549",
                                    "s-1-5-32-550", "s-1-5-32-551", "s-1-5-32-580",
                                    "s-1-5-32-562", "s-1-5-32-569"})

_STATIC: list[tuple[str, np.uint64, Callable[[str], bool], int]] = []

from stream.schema import STRING_FIELDS as _SF  # noqa: E402

_COLBIT = {f: 1 << i for i, f in enumerate(_SF)}
# Columns whose strings are (nearly) unique per event and carry no entity: never featurized
# unless a feature asks for them explicitly.
_BULK = ("extra",)
ALL_COLUMNS = sum(b for f, b in _COLBIT.items() if f not in _BULK)
# Columns the configuration tags (honeytoken, sensitive, DC, sync, admin host...) apply to.
CONFIG_COLUMNS = ALL_COLUMNS


def column_bits(columns) -> int:
    if columns is None:
        return ALL_COLUMNS
    try:
        return sum(_COLBIT[c] for c in columns)
    except KeyError as e:
        raise ValueError(f"unknown string column {e.args[0]!r} for a string feature") from None


# Stable bit numbers. Kernels read feature bits as compile-time constants and numba caches
# compiled kernels per source file, so a bit must never depend on import order: every
# feature gets its pinned bit here (APPEND ONLY -- never reorder or remove an entry).
PINNED_FEATURES: tuple[str, ...] = (
    "lm_share_ipc", "lm_share_admin", "lm_pipe_remote_exec", "lm_pipe_coerce",
    "lm_pipe_spoolss", "lm_pipe_coerce_weak", "lm_exec_file", "lm_ipv6",
    "lm_service_image_suspicious", "lm_service_remote_exec_tool", "lm_task_remote_exec",
    "bh_builtin_admin", "nt_authority_subject", "builtin_admin_sid", "krbtgt_service",
    "replication_rights", "dpapi_backupkey_secret", "pipe_protected_storage", "ipc_share",
    "attr_key_credential_link", "sam_entity_handle", "sam_group_handle", "ds_principal_class",
    "pipe_session_enum", "pipe_recon",
)
_PIN = {n: 16 + i for i, n in enumerate(PINNED_FEATURES)}
assert 16 + len(PINNED_FEATURES) <= 64


def string_feature(name: str, predicate: Callable[[str], bool],
                   columns: tuple[str, ...] | None = None) -> np.uint64:
    """Register a static string predicate (called with the *lower-cased* string); returns
    its bit. ``columns``: the string columns it applies to (default: every column except
    ``extra``) -- restricting it keeps the per-distinct-string cost low. Idempotent per name
    (a second registration widens the columns)."""
    bits = column_bits(columns)
    for i, (n, bit, pred, cb) in enumerate(_STATIC):
        if n == name:
            _STATIC[i] = (n, bit, pred, cb | bits)
            return bit
    if name not in _PIN:
        raise ValueError(f"string feature {name!r} has no pinned bit: append it to "
                         "detectors.features.PINNED_FEATURES (bits must not depend on "
                         "import order: numba caches kernels with the bits inlined)")
    bit = np.uint64(1 << _PIN[name])
    _STATIC.append((name, bit, predicate, bits))
    return bit


def contains_any(*needles: str) -> Callable[[str], bool]:
    n = tuple(x.lower() for x in needles)
    return lambda s: any(x in s for x in n)



def _name_part(s: str) -> str:
    return s.rsplit("\\", 1)[-1].split("@", 1)[0]


def _short_host(s: str) -> str:
    if _looks_like_ip(s):
        return s
    return s.split(".", 1)[0]


@functools.lru_cache(maxsize=1 << 16)
def _looks_like_ip(s: str) -> bool:
    if not s or not (s[0].isdigit() or s[0] == ":" or ":" in s):
        return False
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


class _Matcher:
    """Case-insensitive name matcher: exact `domain\\name`, bare name, or glob."""

    def __init__(self, patterns: list[str], host: bool = False):
        self.exact: set[str] = set()
        self.globs: list[str] = []
        self.host = host
        for p in patterns:
            p = p.strip().lower()
            if not p:
                continue
            if any(c in p for c in "*?["):
                self.globs.append(p)
            else:
                self.exact.add(p)
                if host:
                    self.exact.add(_short_host(p))

    def __bool__(self) -> bool:
        return bool(self.exact or self.globs)

    def match(self, s: str) -> bool:
        if not s:
            return False
        cands = {s, _name_part(s)}
        if self.host:
            cands.add(_short_host(s))
            cands.add(_short_host(_name_part(s)).rstrip("$"))
        if cands & self.exact:
            return True
        return any(fnmatch.fnmatchcase(c, g) for c in cands for g in self.globs)


class _FlagCache:
    """Open-addressing table ``mix(string hash, column set) -> uint64`` (numba lookup; the
    misses are computed in Python and inserted)."""

    __slots__ = ("keys", "vals", "count")

    def __init__(self, capacity: int = 1 << 12):
        self.keys = np.zeros(capacity, dtype=np.uint64)
        self.vals = np.zeros(capacity, dtype=np.uint64)
        self.count = 0

    def make_room(self, m: int) -> None:
        """Room for ``m`` more keys (load <= 0.5); starts over past ``_CACHE_MAX``."""
        if self.count + m > _CACHE_MAX:
            self.keys = np.zeros(1 << 12, dtype=np.uint64)
            self.vals = np.zeros(1 << 12, dtype=np.uint64)
            self.count = 0
        need = (self.count + m) * 2
        if need > len(self.keys):
            cap = len(self.keys)
            while cap < need:
                cap *= 2
            old_k, old_v = self.keys, self.vals
            self.keys = np.zeros(cap, dtype=np.uint64)
            self.vals = np.zeros(cap, dtype=np.uint64)
            live = old_k != 0
            _cache_insert(self.keys, self.vals, old_k[live], old_v[live])

    def insert(self, ckeys: np.ndarray, vals: np.ndarray) -> None:
        _cache_insert(self.keys, self.vals, ckeys, vals)
        self.count += len(ckeys)


class DerivedHashes:
    """A value derived from a string (e.g. the hash of its bare host or account name), per
    distinct string, cached by string hash across batches: ``table(batch, idx)`` returns the
    values for string-table entries ``idx``; only strings never seen before reach Python."""

    def __init__(self, fn: Callable[[str], int]):
        self.fn = fn
        self.cache = _FlagCache()

    def table(self, batch, idx: np.ndarray) -> np.ndarray:
        n = len(idx)
        hs = np.ascontiguousarray(batch.str_hash[idx], dtype=np.uint64)
        out = np.zeros(n, dtype=np.uint64)
        miss = np.empty(n, dtype=np.int64)
        ckeys = np.empty(n, dtype=np.uint64)
        c = self.cache
        m = _cache_lookup(c.keys, c.vals, hs, np.ones(n, dtype=np.uint64), out, miss, ckeys)
        if m:
            c.make_room(m)
            mi = miss[:m]
            S = batch.string
            vals = np.fromiter((self.fn(S(i)) for i in idx[mi].tolist()), dtype=np.uint64,
                               count=m)
            c.insert(ckeys[mi], vals)
            out[mi] = vals
        return out



# Flags are a pure function of (string, column set, the tagging settings, the DC names known,
# the registered features): engines whose inputs agree share one cache, so a worker with 8
# engines (4 partitions x 2 key kinds) computes each distinct string once, not 8 times.
# An engine that learns a new DC moves to the cache of its new fingerprint.
_SHARED: "OrderedDict[tuple, _FlagCache]" = OrderedDict()
_SHARED_MAX = 16
_TAG_FIELDS = {"honeytoken_accounts", "sensitive_accounts", "sensitive_groups",
               "sensitive_hosts", "sync_accounts", "admin_hosts", "domain_controllers"}


def _shared_cache(fingerprint: tuple) -> _FlagCache:
    c = _SHARED.get(fingerprint)
    if c is None:
        c = _SHARED[fingerprint] = _FlagCache()
        while len(_SHARED) > _SHARED_MAX:
            _SHARED.popitem(last=False)
    else:
        _SHARED.move_to_end(fingerprint)
    return c


class FeatureComputer:
    """Computes and caches the flags of strings, by 64-bit hash."""

    def __init__(self, settings: DetectionSettings):
        self.settings = settings
        self.honey = _Matcher(settings.honeytoken_accounts)
        self.sens_acc = _Matcher(settings.sensitive_accounts)
        self.sens_grp = _Matcher(settings.sensitive_groups)
        self.sens_host = _Matcher(settings.sensitive_hosts, host=True)
        self.sync = _Matcher(settings.sync_accounts)
        self.admin = _Matcher(settings.admin_hosts, host=True)
        self.dc_short: set[str] = {_short_host(h.lower()) for h in settings.domain_controllers}
        self._preds: dict[tuple[int, int], list] = {}
        self._tags = settings.model_dump_json(include=_TAG_FIELDS)
        self._bind()

    def _bind(self) -> None:
        self._cache = _shared_cache((self._tags, frozenset(self.dc_short), len(_STATIC)))

    def learn_dc(self, host: str) -> bool:
        """Add a DC host name; returns True if new (the flags cache changes with it)."""
        short = _short_host(host.lower())
        if not short or short in self.dc_short:
            return False
        self.dc_short.add(short)
        self._bind()
        return True

    def _static_for(self, colmask: int) -> list[tuple[int, Callable[[str], bool]]]:
        """The static predicates that apply to strings seen in ``colmask``, with their bits
        as Python ints (per column set, recomputed if a feature is registered later)."""
        key = (colmask, len(_STATIC))
        preds = self._preds.get(key)
        if preds is None:
            preds = self._preds[key] = [(int(bit), pred) for _, bit, pred, cb in _STATIC
                                        if cb & colmask]
        return preds

    def flags_of(self, s: str, colmask: int = -1) -> int:
        """Flags of one string appearing in the columns of ``colmask`` (-1 = all)."""
        low = s.lower()
        f = 0
        if not low:
            return 0
        for bit, pred in self._static_for(colmask):
            try:
                if pred(low):
                    f |= bit
            except Exception:  # a predicate must never stop the pipeline
                pass
        if not colmask & CONFIG_COLUMNS:
            return f
        name = _name_part(low)
        if self.honey and self.honey.match(low):
            f |= _I_HONEYTOKEN
        if self.sens_acc and self.sens_acc.match(low):
            f |= _I_SENSITIVE_ACCOUNT
        if (name in SENSITIVE_GROUP_NAMES or low in SENSITIVE_BUILTIN_SIDS
                or (low.startswith("s-1-5-21-") and low.endswith(SENSITIVE_RIDS))
                or (self.sens_grp and self.sens_grp.match(low))):
            f |= _I_SENSITIVE_GROUP
        if self.sens_host and self.sens_host.match(low):
            f |= _I_SENSITIVE_HOST
        if self.dc_short:
            cand = _short_host(name).rstrip("$")
            if cand in self.dc_short and (name.endswith("$") or "\\" not in low):
                f |= _I_DC
        if self.sync and self.sync.match(low):
            f |= _I_SYNC_ACCOUNT
        if self.admin and self.admin.match(low):
            f |= _I_ADMIN_HOST
        if name.endswith("$"):
            f |= _I_MACHINE_NAME
        if low in ("127.0.0.1", "::1", "-", "localhost") or low.startswith("::ffff:127."):
            f |= _I_LOOPBACK
        if name in ("anonymous logon", "anonymous") or low == "s-1-5-7":
            f |= _I_ANONYMOUS
        return f

    def compute(self, str_hash: np.ndarray, strings_at: Callable[[int], str],
                strcols: np.ndarray | None = None) -> np.ndarray:
        """Flags per string-table entry; ``strings_at(i)`` decodes entry i (misses only).

        With ``strcols`` (the batch's string index columns), each string is evaluated only
        for the features of the columns it appears in, and strings that appear only in
        ``extra`` are skipped. The cache lookup is one numba pass over the table (keyed by
        string hash and column set); only unseen (string, columns) pairs reach Python.
        """
        hs = np.ascontiguousarray(str_hash, dtype=np.uint64)
        if strcols is not None:
            colmask = _colmask(strcols, len(hs), ALL_COLUMNS)
        else:
            colmask = np.full(len(hs), ALL_COLUMNS, dtype=np.uint64)
        out = np.zeros(len(hs), dtype=np.uint64)
        miss = np.empty(len(hs), dtype=np.int64)
        ckeys = np.empty(len(hs), dtype=np.uint64)
        c = self._cache
        m = _cache_lookup(c.keys, c.vals, hs, colmask, out, miss, ckeys)
        if m:
            c.make_room(m)
            idx = miss[:m]
            cm = colmask[idx].tolist()
            vals = np.fromiter((self.flags_of(strings_at(i), c_)
                                for i, c_ in zip(idx.tolist(), cm)), dtype=np.uint64, count=m)
            c.insert(ckeys[idx], vals)
            out[idx] = vals
        return out


_CACHE_MAX = 2_000_000


@njit(cache=True)
def _colmask(strcols, ns, allowed):
    cm = np.zeros(ns, dtype=np.uint64)
    for j in range(strcols.shape[0]):
        bit = np.uint64(1) << np.uint64(j)
        if not (bit & allowed):
            continue
        row = strcols[j]
        # most columns are empty (index 0) for most events: writing cm[0] every time chains
        # each iteration to the previous store; mark it once instead
        zero = False
        for i in range(len(row)):
            v = row[i]
            if v == 0:
                zero = True
            else:
                cm[v] |= bit
        if zero and ns > 0:
            cm[0] |= bit
    return cm


@njit(cache=True)
def _cache_lookup(keys, vals, hs, colmask, out, miss, ckeys):
    m = 0
    for i in range(len(hs)):
        h = hs[i]
        c = colmask[i]
        if h == 0 or c == 0:
            continue
        k = mix(h, c)
        ckeys[i] = k
        s = find_slot(keys, k)
        if s >= 0:
            out[i] = vals[s]
        else:
            miss[m] = i
            m += 1
    return m


@njit(cache=True)
def _cache_insert(keys, vals, hs, v):
    for i in range(len(hs)):
        s = slot_of(keys, hs[i])
        vals[s] = v[i]
