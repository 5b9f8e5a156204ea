"""Identity-event schema: the stream contract.

Light module (pydantic + numpy only; never Faust or numba) imported by collectors, stream,
detectors and sinks.

Two representations of the same thing:

* :class:`IdentityEvent` -- a pydantic v2 model used at the edges (validation, docs, JSON
  schema export, tests, the dead-letter topic).
* :class:`EventBatch` -- the columnar hot-path form: numeric numpy columns plus string
  columns holding indices into a per-batch string table, each string pre-hashed to a 64-bit
  key. See ``stream/wire.py`` and ``docs/wire-format.md`` for its binary layout.

Field documentation with examples lives in ``docs/schema.md`` (generated fields table is
checked by a test against this module).
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

# --------------------------------------------------------------------------------------------
# Hashing: the documented 64-bit key hash. Used for identity keys, partitioning and the
# per-batch string table. blake2b (stdlib), 8-byte digest, little-endian, over UTF-8 bytes of
# the string exactly as stored (account strings are already normalized to lower case).
# The empty string hashes to 0 by definition.
# --------------------------------------------------------------------------------------------


def key_hash(s: str) -> int:
    """64-bit key of a string (0 for the empty string)."""
    if not s:
        return 0
    return int.from_bytes(hashlib.blake2b(s.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "little")


def partition_for(key: int, partitions: int) -> int:
    """Partition of a 64-bit key: ``key % partitions`` (the documented partitioner)."""
    return int(key % partitions)


# --------------------------------------------------------------------------------------------
# Field catalogue
# --------------------------------------------------------------------------------------------

# Numeric columns: name -> numpy dtype. Order is the wire order (v1). Missing values are 0
# except where noted as -1.
NUMERIC_FIELDS: dict[str, str] = {
    "time_ms": "<i8",          # event time, UTC, milliseconds since the epoch
    "record_id": "<i8",        # EventRecordID in the source log
    "event_id": "<i4",         # Windows event id
    "status": "<u4",           # status / failure code (4625: SubStatus when more specific)
    "sub_status": "<u4",       # secondary status (4625 SubStatus)
    "ticket_encryption": "<i4",  # Kerberos ticket encryption type (-1 when absent)
    "ticket_options": "<u4",   # Kerberos ticket options bit field
    "preauth_type": "<i4",     # Kerberos pre-authentication type (-1 when absent)
    "logon_type": "<i4",       # 4624/4625 logon type (-1 when absent)
    "key_length": "<i4",       # 4624 KeyLength (-1 when absent)
    "access_mask": "<u4",      # 4661/4662/5145 access mask
    "uac_old": "<u4",          # 4738/4742 OldUacValue
    "uac_new": "<u4",          # 4738/4742 NewUacValue
    "flags": "<u4",            # bit field, see FLAG_* below
}

# String columns (u4 index into the per-batch string table; 0 = empty). Wire order (v1).
STRING_FIELDS: tuple[str, ...] = (
    "computer",          # reporting computer (DC), lower-case FQDN
    "channel",           # security / system / ...
    "provider",          # event provider name
    "action",            # normalized action, e.g. logon, tgs_request, group_member_added
    "protocol",          # kerberos, ntlm, ldap, smb, samr, rpc, netlogon, local, ...
    "account",           # acting / authenticating identity, normalized `domain\\name`, lower case
    "account_sid",       # SID of the account when present
    "account_domain",    # the domain exactly as written in the event (case preserved)
    "src_ip",            # source IP (empty for '-', local events)
    "src_host",          # source workstation name, lower case
    "target_host",       # target host (4648 TargetServerName, 4624 on a member server ...)
    "target_account",    # target / object account, normalized `domain\\name`
    "target_sid",        # target SID
    "service",           # Kerberos service (4769 ServiceName) or SPN list (4742)
    "logon_process",     # LogonProcessName
    "auth_package",      # AuthenticationPackageName / PackageName
    "object",            # directory object: DN, SAM object name or SID
    "object_class",      # object class / type (4661 ObjectType, 4662 ObjectType, 5136 ObjectClass)
    "object_guid",       # object GUID
    "properties",        # 4662 Properties
    "attribute",         # 5136 AttributeLDAPDisplayName
    "value",             # 5136 AttributeValue, 4738 changed value, 4781 new name ...
    "group",             # group name (group changes, 4799 enumerated group)
    "group_sid",         # group SID
    "member",            # member name or DN
    "member_sid",        # member SID
    "share",             # 5140/5145 ShareName
    "relative_target",   # 5145 RelativeTargetName
    "service_name",      # 7045/4697 service name
    "image_path",        # 7045/4697 ImagePath / ServiceFileName
    "extra",             # JSON object of remaining raw fields (small)
)

# flags bit field
FLAG_MACHINE = 1 << 0        # the account is a machine account (name ends with $)
FLAG_FAILURE = 1 << 1        # the action failed
FLAG_ANONYMOUS = 1 << 2      # ANONYMOUS LOGON / S-1-5-7 / NULL SID subject
FLAG_TARGET_MACHINE = 1 << 3  # target_account is a machine account
FLAG_LOCAL_SOURCE = 1 << 4   # source is the local machine (loopback / '-')
FLAG_NULL_SUBJECT = 1 << 5   # 4624: SubjectUserSid S-1-0-0
FLAG_DELEGATED = 1 << 6      # 4769: TransmittedServices present (S4U2Proxy delegation)
FLAG_VALUE_DELETED = 1 << 7  # 5136: OperationType "value deleted" (%%14675)

FLAG_NAMES = {
    "machine": FLAG_MACHINE,
    "failure": FLAG_FAILURE,
    "anonymous": FLAG_ANONYMOUS,
    "target_machine": FLAG_TARGET_MACHINE,
    "local_source": FLAG_LOCAL_SOURCE,
    "null_subject": FLAG_NULL_SUBJECT,
    "delegated": FLAG_DELEGATED,
    "value_deleted": FLAG_VALUE_DELETED,
}

NUMERIC_DEFAULTS: dict[str, int] = {
    "ticket_encryption": -1, "preauth_type": -1, "logon_type": -1, "key_length": -1,
}

ALL_FIELDS: tuple[str, ...] = tuple(NUMERIC_FIELDS) + STRING_FIELDS


class IdentityEvent(BaseModel):
    """One normalized identity event (edge representation).

    Every field is documented in ``docs/schema.md``. Strings are normalized by the collector:
    accounts ``domain\\name`` lower case, hosts lower case, ``-`` and empty values become ``""``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(SCHEMA_VERSION, description="Schema version of this record.")
    time_ms: int = Field(..., ge=0, description="Event time, UTC, ms since the epoch.")
    record_id: int = Field(0, description="EventRecordID in the source log.")
    event_id: int = Field(..., ge=0, le=65535, description="Windows event id.")
    status: int = Field(0, ge=0, le=0xFFFFFFFF, description="Status / failure code.")
    sub_status: int = Field(0, ge=0, le=0xFFFFFFFF, description="Secondary status (4625 SubStatus).")
    ticket_encryption: int = Field(-1, description="Kerberos ticket encryption type, -1 if none.")
    ticket_options: int = Field(0, ge=0, le=0xFFFFFFFF, description="Kerberos ticket options.")
    preauth_type: int = Field(-1, description="Kerberos pre-authentication type, -1 if none.")
    logon_type: int = Field(-1, description="Logon type (4624/4625), -1 if none.")
    key_length: int = Field(-1, description="4624 KeyLength, -1 if none.")
    access_mask: int = Field(0, ge=0, le=0xFFFFFFFF, description="Access mask (4661/4662/5145).")
    uac_old: int = Field(0, ge=0, le=0xFFFFFFFF, description="Old userAccountControl (4738/4742).")
    uac_new: int = Field(0, ge=0, le=0xFFFFFFFF, description="New userAccountControl (4738/4742).")
    flags: int = Field(0, ge=0, le=0xFFFFFFFF, description="Bit field: machine=1, failure=2, "
                       "anonymous=4, target_machine=8, local_source=16, "
                       "null_subject=32, delegated=64.")

    computer: str = Field("", description="Reporting computer (domain controller), lower case.")
    channel: str = Field("", description="Event log channel, lower case (security, system).")
    provider: str = Field("", description="Event provider name.")
    action: str = Field("", description="Normalized action (logon, tgt_request, ...).")
    protocol: str = Field("", description="kerberos, ntlm, ldap, smb, samr, rpc, netlogon, local.")
    account: str = Field("", description="Acting identity, `domain\\name`, lower case.")
    account_sid: str = Field("", description="SID of the acting identity.")
    account_domain: str = Field("", description="Domain as written in the event (case kept).")
    src_ip: str = Field("", description="Source IP address.")
    src_host: str = Field("", description="Source workstation, lower case.")
    target_host: str = Field("", description="Target host, lower case.")
    target_account: str = Field("", description="Target / object account, `domain\\name`.")
    target_sid: str = Field("", description="Target SID.")
    service: str = Field("", description="Kerberos service name / SPNs.")
    logon_process: str = Field("", description="Logon process name.")
    auth_package: str = Field("", description="Authentication package.")
    object: str = Field("", description="Directory object (DN, name or SID).")
    object_class: str = Field("", description="Object class / type.")
    object_guid: str = Field("", description="Object GUID.")
    properties: str = Field("", description="4662 Properties (GUIDs).")
    attribute: str = Field("", description="5136 LDAP display name of the changed attribute.")
    value: str = Field("", description="Changed value (5136 AttributeValue, 4781 new name, ...).")
    group: str = Field("", description="Group name.")
    group_sid: str = Field("", description="Group SID.")
    member: str = Field("", description="Member name or DN.")
    member_sid: str = Field("", description="Member SID.")
    share: str = Field("", description="Share name (5140/5145).")
    relative_target: str = Field("", description="5145 RelativeTargetName (pipe or file).")
    service_name: str = Field("", description="Installed service name (7045/4697).")
    image_path: str = Field("", description="Installed service image path (7045/4697).")
    extra: str = Field("", description="JSON object of remaining raw fields.")

    @property
    def is_machine(self) -> bool:
        return bool(self.flags & FLAG_MACHINE)

    def account_key(self) -> str:
        """String the by-account topic is keyed and partitioned by."""
        return account_key_string(self.account, self.computer)

    def source_key(self) -> str:
        """String the by-source topic is keyed and partitioned by."""
        return source_key_string(self.src_ip, self.src_host, self.computer)


def account_key_string(account: str, computer: str) -> str:
    """The by-account identity: the account, or the reporting computer for account-less events."""
    return account or computer


def source_key_string(src_ip: str, src_host: str, computer: str) -> str:
    """The by-source identity: source IP, else source host, else the reporting computer."""
    return src_ip or src_host or computer


def export_json_schema() -> dict[str, Any]:
    return IdentityEvent.model_json_schema()


# --------------------------------------------------------------------------------------------
# Columnar batch
# --------------------------------------------------------------------------------------------

KEY_ACCOUNT = 0
KEY_SOURCE = 1


class EventBatch:
    """Columnar micro-batch of identity events (struct of arrays).

    Attributes: one numpy array per field in :data:`NUMERIC_FIELDS`; ``strcols`` a 2-D uint32
    array ``(len(STRING_FIELDS), n)`` of indices into the string table; ``str_hash`` uint64
    per table entry; ``str_offsets`` / ``str_blob`` the UTF-8 table. Entry 0 is the empty
    string. String columns are also reachable by name (``batch.account`` -> index array).
    """

    __slots__ = ("n", "numeric", "strcols", "str_hash", "str_offsets", "str_blob",
                 "key_kind", "partition", "_strings", "_scache", "_offs")

    def __init__(self, n: int, numeric: dict[str, np.ndarray], strcols: np.ndarray,
                 str_hash: np.ndarray, str_offsets: np.ndarray, str_blob: bytes,
                 key_kind: int = KEY_ACCOUNT, partition: int = -1):
        self.n = n
        self.numeric = numeric
        self.strcols = strcols
        self.str_hash = str_hash
        self.str_offsets = str_offsets
        self.str_blob = str_blob
        self.key_kind = key_kind
        self.partition = partition
        self._strings: list[str] | None = None
        self._scache: dict[int, str] | None = None
        self._offs: list[int] | None = None

    def __len__(self) -> int:
        return self.n

    def __getattr__(self, name: str) -> np.ndarray:
        numeric = object.__getattribute__(self, "numeric")
        if name in numeric:
            return numeric[name]
        idx = _STRING_INDEX.get(name)
        if idx is not None:
            return object.__getattribute__(self, "strcols")[idx]
        raise AttributeError(name)

    def col(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def hashes(self, name: str) -> np.ndarray:
        """uint64 key hash per event for a string column (0 where empty)."""
        return self.str_hash[self.strcols[_STRING_INDEX[name]]]

    @property
    def n_strings(self) -> int:
        return len(self.str_hash)

    def distinct(self, *cols: np.ndarray) -> np.ndarray:
        """Sorted distinct non-empty string-table indices among ``cols`` (arrays of indices into
        this batch's string table): ``np.unique`` without its sort, by marking the table
        (O(values + strings); a few times faster on 8192-event columns)."""
        seen = np.zeros(len(self.str_hash), dtype=np.bool_)
        for c in cols:
            seen[c] = True
        if len(seen):
            seen[0] = False
        return np.flatnonzero(seen)

    def strings(self) -> list[str]:
        if self._strings is None:
            offs = self.str_offsets
            blob = self.str_blob
            self._strings = [bytes(blob[offs[i]:offs[i + 1]]).decode("utf-8", "surrogatepass")
                             for i in range(len(offs) - 1)]
        return self._strings

    def string(self, idx: int) -> str:
        if self._strings is not None:
            return self._strings[int(idx)]
        i = int(idx)
        cache = self._scache
        if cache is None:
            # decode entries on demand, each once: decoding the whole table for a few lookups
            # (e.g. the engine's DC learning) costs ~10 ms per 4096-event batch
            cache = self._scache = {0: ""} if len(self.str_offsets) > 1 and \
                self.str_offsets[1] == 0 else {}
            self._offs = self.str_offsets.tolist()
        s = cache.get(i)
        if s is None:
            offs = self._offs
            s = cache[i] = str(self.str_blob[offs[i]:offs[i + 1]], "utf-8", "surrogatepass")
        return s

    def decode_many(self, idx: np.ndarray) -> dict[int, str]:
        """``{i: string(i)}`` for the string-table indices ``idx`` (distinct), decoded in one
        pass over their offsets (a per-index :meth:`string` call costs ~3x more per string;
        the engine decodes the evidence strings of every hit row of a batch at once)."""
        keys = idx.tolist()
        if self._strings is not None:
            table = self._strings
            return {i: table[i] for i in keys}
        offs = self.str_offsets
        blob = self.str_blob
        return dict(zip(keys, [str(blob[a:b], "utf-8", "surrogatepass") for a, b in
                               zip(offs[idx].tolist(), offs[idx + 1].tolist())]))

    def get(self, name: str, i: int) -> Any:
        j = _STRING_INDEX.get(name)
        if j is None:
            return int(self.numeric[name][i])
        return self.string(self.strcols[j, i])

    def event(self, i: int) -> IdentityEvent:
        d = {f: int(self.numeric[f][i]) for f in NUMERIC_FIELDS}
        strs = self.strings()
        for j, f in enumerate(STRING_FIELDS):
            d[f] = strs[self.strcols[j][i]]
        return IdentityEvent.model_construct(**d)

    def events(self) -> list[IdentityEvent]:
        return [self.event(i) for i in range(self.n)]

    def key_hashes(self) -> np.ndarray:
        """uint64 identity key per event for this batch's key kind."""
        return key_hashes(self, self.key_kind)



_STRING_INDEX = {f: i for i, f in enumerate(STRING_FIELDS)}


def string_index(name: str) -> int:
    return _STRING_INDEX[name]


def key_hashes(batch: EventBatch, kind: int) -> np.ndarray:
    """Vectorized identity keys (same rule as account_key_string / source_key_string)."""
    h = batch.str_hash
    if kind == KEY_ACCOUNT:
        k = h[batch.strcols[_STRING_INDEX["account"]]]
        comp = h[batch.strcols[_STRING_INDEX["computer"]]]
        return np.where(k != 0, k, comp)
    k = h[batch.strcols[_STRING_INDEX["src_ip"]]]
    host = h[batch.strcols[_STRING_INDEX["src_host"]]]
    comp = h[batch.strcols[_STRING_INDEX["computer"]]]
    return np.where(k != 0, k, np.where(host != 0, host, comp))


class BatchBuilder:
    """Accumulates events (as dicts or IdentityEvent) into an :class:`EventBatch`.

    Interns strings per batch and hashes each distinct string once.
    """

    def __init__(self, key_kind: int = KEY_ACCOUNT, partition: int = -1, capacity: int = 4096):
        self.key_kind = key_kind
        self.partition = partition
        self._cap = capacity
        self._num = {f: [] for f in NUMERIC_FIELDS}
        self._str = [[] for _ in STRING_FIELDS]
        self._intern: dict[str, int] = {"": 0}
        self._table: list[str] = [""]
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def _idx(self, s: str) -> int:
        i = self._intern.get(s)
        if i is None:
            i = len(self._table)
            self._intern[s] = i
            self._table.append(s)
        return i

    def add(self, ev: dict | IdentityEvent) -> None:
        if isinstance(ev, IdentityEvent):
            get = ev.__dict__.get
        else:
            get = ev.get
        for f in NUMERIC_FIELDS:
            v = get(f)
            self._num[f].append(NUMERIC_DEFAULTS.get(f, 0) if v is None else v)
        intern = self._intern
        for j, f in enumerate(STRING_FIELDS):
            s = get(f) or ""
            i = intern.get(s)
            if i is None:
                i = self._idx(s)
            self._str[j].append(i)
        self.n += 1

    def extend(self, events: Iterable[dict | IdentityEvent]) -> None:
        for e in events:
            self.add(e)

    def build(self) -> EventBatch:
        n = self.n
        numeric = {f: np.asarray(self._num[f], dtype=dt) if n else np.zeros(0, dtype=dt)
                   for f, dt in NUMERIC_FIELDS.items()}
        strcols = (np.asarray(self._str, dtype="<u4").reshape(len(STRING_FIELDS), n)
                   if n else np.zeros((len(STRING_FIELDS), 0), dtype="<u4"))
        enc = [s.encode("utf-8", "surrogatepass") for s in self._table]
        offsets = np.zeros(len(enc) + 1, dtype="<u4")
        if enc:
            offsets[1:] = np.cumsum([len(b) for b in enc])
        str_hash = np.fromiter((key_hash(s) for s in self._table), dtype="<u8",
                               count=len(self._table))
        b = EventBatch(n, numeric, strcols, str_hash, offsets, b"".join(enc), self.key_kind,
                       self.partition)
        b._strings = list(self._table)
        return b


def batch_from_events(events: Iterable[dict | IdentityEvent], key_kind: int = KEY_ACCOUNT,
                      partition: int = -1) -> EventBatch:
    bb = BatchBuilder(key_kind, partition)
    bb.extend(events)
    return bb.build()
