"""Fast synthetic identity traffic for benchmarks and tests (numpy, no per-event Python).

Generates a realistic mix of the event ids the catalogue consumes (4624/4625/4768/4769/
4771/4776/4662/5136/5145/4661/7045/1102 ...) over many identities, with a few injected attacks
(brute force, password spray, kerberoasting, DCSync-like replication, log clear), and turns it
into wire batches exactly as the collectors' :class:`~collectors.batcher.Batcher` would
(one (key kind, partition) per batch, dual keying by source), but vectorized.

    traffic = generate(SynthConfig(events=2_000_000, partitions=4))
    for kind, partition, value, n in traffic.wire_messages():
        producer.produce(topic_of[kind], value, partition=partition)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from . import wire
from .settings import DEFAULT_BATCH_EVENTS
from .schema import (FLAG_FAILURE, FLAG_MACHINE, KEY_ACCOUNT, KEY_SOURCE, NUMERIC_DEFAULTS,
                     NUMERIC_FIELDS, STRING_FIELDS, EventBatch, key_hash, string_index)

# event id -> weight in benign traffic
EVENT_MIX = {4624: 0.22, 4634: 0.04, 4625: 0.02, 4768: 0.12, 4769: 0.20, 4771: 0.01,
             4776: 0.14, 4662: 0.08, 5136: 0.01, 5145: 0.08, 4661: 0.03, 4648: 0.02,
             4672: 0.025, 4728: 0.002, 4738: 0.002, 7045: 0.0005, 4697: 0.0005, 4799: 0.003}

_SI = {f: string_index(f) for f in STRING_FIELDS}
_NS = len(STRING_FIELDS)


@dataclass(frozen=True)
class SynthConfig:
    events: int = 1_000_000        # benign logical events (attacks are added on top)
    partitions: int = 4
    identities: int = 50_000       # user accounts
    hosts: int = 5_000             # workstations (each with one IP)
    dcs: int = 3
    seed: int = 7
    batch_events: int = DEFAULT_BATCH_EVENTS
    time_base_ms: int = 1_767_225_600_000   # 2026-01-01T00:00:00Z
    duration_s: float = 3600.0
    attacks: int = 20              # injected attacks of each kind (scaled down if tiny)
    dual_key: bool = True
    cover_all: bool = False        # every identity gets events (state benchmark)


class _Pool:
    """Global string pool: index 0 is the empty string."""

    def __init__(self):
        self.strings: list[str] = [""]
        self._index: dict[str, int] = {"": 0}

    def add(self, s: str) -> int:
        i = self._index.get(s)
        if i is None:
            i = len(self.strings)
            self._index[s] = i
            self.strings.append(s)
        return i

    def add_many(self, items: list[str]) -> np.ndarray:
        return np.array([self.add(s) for s in items], dtype=np.int64)

    def freeze(self) -> None:
        self.enc = [s.encode("utf-8") for s in self.strings]
        self.lens = np.array([len(b) for b in self.enc], dtype=np.int64)
        self.hash = np.array([key_hash(s) for s in self.strings], dtype=np.uint64)


class Traffic:
    """Columnar logical events + the string pool; cut into wire batches on demand."""

    def __init__(self, cfg: SynthConfig, numeric: dict[str, np.ndarray], strcols: np.ndarray,
                 pool: _Pool):
        self.cfg = cfg
        self.numeric = numeric
        self.strcols = strcols          # (_NS, n) int64 pool indices
        self.pool = pool
        self.n = len(numeric["time_ms"])

    def partitions_for(self, kind: int) -> tuple[np.ndarray, np.ndarray]:
        """(selected event indices, partition per selected event) for a key kind."""
        h = self.pool.hash
        P = self.cfg.partitions
        comp = h[self.strcols[_SI["computer"]]]
        if kind == KEY_ACCOUNT:
            k = h[self.strcols[_SI["account"]]]
            key = np.where(k != 0, k, comp)
            sel = np.arange(self.n)
        else:
            from collectors.batcher import SOURCE_EVENT_IDS

            ip = h[self.strcols[_SI["src_ip"]]]
            host = h[self.strcols[_SI["src_host"]]]
            ids = np.fromiter(SOURCE_EVENT_IDS, dtype=np.int32)
            m = (ip != 0) | (host != 0) | np.isin(self.numeric["event_id"], ids)
            sel = np.nonzero(m)[0]
            key = np.where(ip != 0, ip, np.where(host != 0, host, comp))[sel]
        return sel, (key % np.uint64(P)).astype(np.int64)

    def batches(self, kind: int) -> list[tuple[int, EventBatch]]:
        """Wire-ready batches of one key kind, in time order per partition, interleaved
        across partitions (round robin) as a live collector would emit them."""
        sel, part = self.partitions_for(kind)
        per_part: list[list[EventBatch]] = []
        B = self.cfg.batch_events
        for p in range(self.cfg.partitions):
            idx = sel[part == p]      # already time-ordered (events are generated sorted)
            per_part.append([self._batch(idx[i:i + B], kind, p) for i in range(0, len(idx), B)])
        out = []
        for r in range(max((len(x) for x in per_part), default=0)):
            for p, lst in enumerate(per_part):
                if r < len(lst):
                    out.append((p, lst[r]))
        return out

    def _batch(self, idx: np.ndarray, kind: int, partition: int) -> EventBatch:
        n = len(idx)
        numeric = {f: np.ascontiguousarray(self.numeric[f][idx]) for f in NUMERIC_FIELDS}
        g = self.strcols[:, idx]
        uniq, inv = np.unique(g, return_inverse=True)
        if uniq[0] != 0:
            uniq = np.concatenate([[0], uniq])
            inv = inv + 1
        strcols = inv.reshape(_NS, n).astype("<u4")
        lens = self.pool.lens[uniq]
        offsets = np.zeros(len(uniq) + 1, dtype="<u4")
        offsets[1:] = np.cumsum(lens)
        enc = self.pool.enc
        blob = b"".join([enc[i] for i in uniq.tolist()])
        return EventBatch(n, numeric, strcols, self.pool.hash[uniq].astype("<u8"), offsets,
                          blob, kind, partition)

    def wire_messages(self) -> list[tuple[int, int, bytes, int]]:
        """``(kind, partition, value, n_events)`` for both topics, interleaved."""
        kinds = [KEY_ACCOUNT, KEY_SOURCE] if self.cfg.dual_key else [KEY_ACCOUNT]
        lists = [[(k, p, wire.encode(b), b.n) for p, b in self.batches(k)] for k in kinds]
        out = []
        for r in range(max(len(x) for x in lists)):
            for lst in lists:
                if r < len(lst):
                    out.append(lst[r])
        return out


def restamp(value: bytes, time_ms: int) -> bytes:
    """Copy of a wire batch with every event time set to ``time_ms`` (latency runs: event
    time = wall clock at production), in the batch's own wire version. v1 patches the time
    column in place (the first numeric column); v2 decodes, sets the time and re-encodes
    (a constant column costs no bytes)."""
    version = value[4]
    if version == 1:
        buf = bytearray(value)
        n = int.from_bytes(buf[12:16], "little")
        np.frombuffer(buf, dtype="<i8", count=n, offset=wire.HEADER.size)[:] = time_ms
        return bytes(buf)
    b = wire.decode(value)
    b.numeric["time_ms"] = np.full(b.n, time_ms, dtype=b.numeric["time_ms"].dtype)
    return wire.encode(b, version=version)


def shift(value: bytes, delta_ms: int) -> bytes:
    """Copy of a wire batch with every event time moved by ``delta_ms`` (spacing kept), in
    the batch's own wire version: the same traffic an hour later, say."""
    b = wire.decode(value)
    b.numeric["time_ms"] = b.numeric["time_ms"] + np.int64(delta_ms)
    return wire.encode(b, version=value[4])


def generate(cfg: SynthConfig) -> Traffic:
    rng = np.random.default_rng(cfg.seed)
    pool = _Pool()
    domain = "corp"
    users = pool.add_many([f"{domain}\\user{i:07d}" for i in range(cfg.identities)])
    machines = pool.add_many([f"{domain}\\ws{i:06d}$" for i in range(cfg.hosts)])
    hosts = pool.add_many([f"ws{i:06d}.corp.local" for i in range(cfg.hosts)])
    ips = pool.add_many([f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
                         for i in range(cfg.hosts)])
    dcs = pool.add_many([f"dc{i + 1}.corp.local" for i in range(cfg.dcs)])
    n_svc = max(16, cfg.identities // 50)
    services = pool.add_many([f"http/app{i:05d}.corp.local" for i in range(n_svc)])
    svc_accounts = pool.add_many([f"{domain}\\svc_app{i:05d}" for i in range(n_svc)])
    objects = pool.add_many([f"cn=user{i:07d},ou=staff,dc=corp,dc=local"
                             for i in range(0, cfg.identities, 7)] or ["cn=x,dc=corp,dc=local"])
    c = pool.add
    S = {k: c(v) for k, v in {
        "security": "security", "system": "system",
        "prov": "Microsoft-Windows-Security-Auditing", "scm": "Service Control Manager",
        "kerberos": "kerberos", "ntlm": "ntlm", "ldap": "ldap", "smb": "smb", "samr": "samr",
        "logon": "logon", "logon_failed": "logon_failed", "tgt_request": "tgt_request",
        "tgs_request": "tgs_request", "preauth_failed": "preauth_failed",
        "credential_validation": "credential_validation", "directory_access": "directory_access",
        "object_modified": "object_modified", "share_access": "share_access",
        "sam_access": "sam_access", "service_installed": "service_installed",
        "log_cleared": "log_cleared", "explicit_logon": "explicit_logon",
        "special_privileges": "special_privileges", "logoff": "logoff",
        "group_member_added": "group_member_added", "account_changed": "account_changed",
        "group_enumerated": "group_enumerated",
        "ipc": "\\\\*\\ipc$", "lsarpc": "lsarpc", "srvsvc": "srvsvc", "samr_pipe": "samr",
        "netlogon": "netlogon", "ntlmssp": "NtLmSsp", "negotiate": "Negotiate",
        "kerb_pkg": "Kerberos", "user_class": "user", "samdomain": "SAM_DOMAIN",
        "prop_read": "{bf967aba-0de6-11d0-a285-00aa003049e2}",
        "prop_repl": "{1131f6aa-9c07-11d1-f79f-00c04fc2dcd2} {1131f6ad-9c07-11d1-f79f-00c04fc2dcd2}",
        "attr_desc": "description", "domain_admins": "domain admins",
        "svc_name": "backupagent", "svc_img": "c:\\program files\\backup\\agent.exe",
        "bad_svc": "psexesvc", "bad_img": "%systemroot%\\psexesvc.exe",
        "domain_up": "CORP",
        "sysvol": "\\\\*\\sysvol", "gpt_ini": "corp.local\\policies\\{31b2f340-016d-11d2-945f-00c04fb984f9}\\gpt.ini",
        "helpdesk": "helpdesk operators", "users_grp": "users",
        "svchost": "c:\\windows\\system32\\svchost.exe",
    }.items()}

    n = cfg.events
    ids = np.array(list(EVENT_MIX), dtype=np.int32)
    w = np.array(list(EVENT_MIX.values()))
    eid = rng.choice(ids, size=n, p=w / w.sum()).astype(np.int32)
    dur = int(cfg.duration_s * 1000)
    t = np.sort(rng.integers(0, dur, size=n)).astype(np.int64) + cfg.time_base_ms
    # identities: Zipf-ish activity (a few very active accounts, a long tail)
    ui = np.minimum((rng.pareto(1.2, size=n) * cfg.identities / 20).astype(np.int64),
                    cfg.identities - 1)
    ui = rng.permutation(cfg.identities)[ui]
    if cfg.cover_all:
        ui = rng.permutation(np.arange(n, dtype=np.int64) % cfg.identities)
    machine_evt = rng.random(n) < 0.25
    # benign users work from their own workstation (a stable source per identity); machine
    # events come from any host
    hi = np.where(machine_evt, rng.integers(0, cfg.hosts, size=n), ui % cfg.hosts)
    di = rng.integers(0, cfg.dcs, size=n)
    si = rng.integers(0, n_svc, size=n)

    num = {f: np.full(n, NUMERIC_DEFAULTS.get(f, 0), dtype=dt) for f, dt in NUMERIC_FIELDS.items()}
    num["time_ms"] = t
    num["event_id"] = eid
    num["record_id"] = np.arange(1, n + 1, dtype=np.int64)
    sc = np.zeros((_NS, n), dtype=np.int64)

    def col(name):
        return sc[_SI[name]]

    acct = np.where(machine_evt, machines[hi], users[ui])
    col("account")[:] = acct
    col("computer")[:] = dcs[di]
    col("channel")[:] = S["security"]
    col("provider")[:] = S["prov"]
    col("account_domain")[:] = S["domain_up"]
    col("src_ip")[:] = ips[hi]
    col("src_host")[:] = hosts[hi]
    flags = np.where(machine_evt, FLAG_MACHINE, 0).astype(np.uint32)

    def setm(mask, **kw):
        for k, v in kw.items():
            if k in NUMERIC_FIELDS:
                num[k][mask] = v if np.isscalar(v) else v[mask]
            else:
                col(k)[mask] = v if np.isscalar(v) else v[mask]

    m = eid == 4624
    setm(m, action=S["logon"], logon_type=3, protocol=S["kerberos"], auth_package=S["kerb_pkg"],
         target_host=hosts[(hi + 1) % cfg.hosts])
    m = eid == 4634
    setm(m, action=S["logoff"], logon_type=3)
    m = eid == 4625
    setm(m, action=S["logon_failed"], logon_type=3, protocol=S["ntlm"], status=0xC000006D,
         sub_status=np.where(rng.random(n) < 0.5, 0xC000006A, 0xC0000064).astype(np.uint32),
         auth_package=S["ntlmssp"])
    flags[m] |= FLAG_FAILURE
    m = eid == 4768
    setm(m, action=S["tgt_request"], protocol=S["kerberos"], ticket_encryption=0x12,
         preauth_type=2, ticket_options=0x40810010)
    m = eid == 4769
    setm(m, action=S["tgs_request"], protocol=S["kerberos"], service=services[si],
         target_account=svc_accounts[si], ticket_encryption=0x12, ticket_options=0x40810000)
    m = eid == 4771
    setm(m, action=S["preauth_failed"], protocol=S["kerberos"], status=0x18, preauth_type=2)
    flags[m] |= FLAG_FAILURE
    m = eid == 4776
    fail = (rng.random(n) < 0.03) & m
    setm(m, action=S["credential_validation"], protocol=S["ntlm"], auth_package=S["ntlmssp"])
    num["status"][fail] = 0xC000006A
    flags[fail] |= FLAG_FAILURE
    m = eid == 4662
    setm(m, action=S["directory_access"], protocol=S["ldap"], object_class=S["user_class"],
         object=objects[ui % len(objects)], properties=S["prop_read"], access_mask=0x10)
    m = eid == 5136
    setm(m, action=S["object_modified"], protocol=S["ldap"], object_class=S["user_class"],
         object=objects[ui % len(objects)], attribute=S["attr_desc"])
    m = eid == 5145
    # benign DC share access: group policy reads from SYSVOL
    setm(m, action=S["share_access"], protocol=S["smb"], share=S["sysvol"],
         relative_target=S["gpt_ini"], access_mask=0x120089)
    m = eid == 4661
    setm(m, action=S["sam_access"], protocol=S["samr"], object_class=S["samdomain"],
         access_mask=0x2000000)
    m = eid == 4648
    setm(m, action=S["explicit_logon"], target_host=hosts[(hi + 3) % cfg.hosts],
         target_account=users[(ui + 1) % cfg.identities])
    m = eid == 4672
    setm(m, action=S["special_privileges"])
    m = eid == 4728
    setm(m, action=S["group_member_added"], group=S["helpdesk"], member=users[ui])
    m = eid == 4738
    setm(m, action=S["account_changed"], target_account=users[ui])
    m = eid == 4799
    setm(m, action=S["group_enumerated"], group=S["users_grp"], object=S["svchost"])
    m = (eid == 7045) | (eid == 4697)
    setm(m, action=S["service_installed"], service_name=S["svc_name"], image_path=S["svc_img"],
         channel=np.where(eid == 7045, S["system"], S["security"]).astype(np.int64))
    col("provider")[eid == 7045] = S["scm"]
    col("src_ip")[m] = 0
    col("src_host")[m] = 0
    # DC-local events carry no source
    for e in (4662, 5136, 4672, 4634):
        col("src_ip")[eid == e] = 0
        col("src_host")[eid == e] = 0
    num["flags"] = flags

    # ---- attacks ------------------------------------------------------------------------
    A = max(1, min(cfg.attacks, n // 20_000 or 1))
    att: list[dict] = []
    for a in range(A):
        t0 = cfg.time_base_ms + int(rng.integers(0, max(1, dur - 120_000)))
        victim = users[int(rng.integers(0, cfg.identities))]
        src = int(rng.integers(0, cfg.hosts))
        for j in range(15):   # brute force: wrong passwords for one account
            att.append(dict(time_ms=t0 + j * 2000, event_id=4771, status=0x18,
                            preauth_type=2, account=victim, computer=dcs[0],
                            src_ip=ips[src], src_host=hosts[src], protocol=S["kerberos"],
                            action=S["preauth_failed"], flags=FLAG_FAILURE))
        src = int(rng.integers(0, cfg.hosts))
        for j in range(30):   # password spray: one source, many accounts
            att.append(dict(time_ms=t0 + 500 * j, event_id=4776, status=0xC000006A,
                            account=users[int(rng.integers(0, cfg.identities))],
                            computer=dcs[0], src_ip=ips[src], src_host=hosts[src],
                            protocol=S["ntlm"], action=S["credential_validation"],
                            flags=FLAG_FAILURE))
        roaster = users[int(rng.integers(0, cfg.identities))]
        for j in range(12):   # kerberoasting: RC4 TGS for many SPNs
            k = int(rng.integers(0, n_svc))
            att.append(dict(time_ms=t0 + 300 * j, event_id=4769, ticket_encryption=0x17,
                            ticket_options=0x40810000, account=roaster, computer=dcs[0],
                            service=services[k], target_account=svc_accounts[k],
                            src_ip=ips[src], src_host=hosts[src], protocol=S["kerberos"],
                            action=S["tgs_request"]))
        att.append(dict(time_ms=t0 + 5000, event_id=4662, account=victim, computer=dcs[0],
                        properties=S["prop_repl"], access_mask=0x100,
                        object_class=S["samdomain"], action=S["directory_access"],
                        protocol=S["ldap"]))
        if a % 4 == 0:
            att.append(dict(time_ms=t0 + 9000, event_id=1102, account=victim,
                            computer=dcs[0], action=S["log_cleared"]))
            att.append(dict(time_ms=t0 + 9500, event_id=7045, account=victim,
                            computer=hosts[src], channel=S["system"], provider=S["scm"],
                            service_name=S["bad_svc"], image_path=S["bad_img"],
                            action=S["service_installed"]))
    if att:
        m2 = len(att)
        anum = {f: np.full(m2, NUMERIC_DEFAULTS.get(f, 0), dtype=dt)
                for f, dt in NUMERIC_FIELDS.items()}
        asc = np.zeros((_NS, m2), dtype=np.int64)
        for i, d in enumerate(att):
            for k, v in d.items():
                if k in NUMERIC_FIELDS:
                    anum[k][i] = v
                else:
                    asc[_SI[k], i] = v
            if not d.get("channel"):
                asc[_SI["channel"], i] = S["security"]
        anum["record_id"] = np.arange(n + 1, n + m2 + 1, dtype=np.int64)
        order = np.argsort(np.concatenate([num["time_ms"], anum["time_ms"]]), kind="stable")
        num = {f: np.concatenate([num[f], anum[f]])[order] for f in NUMERIC_FIELDS}
        sc = np.concatenate([sc, asc], axis=1)[:, order]
    pool.freeze()
    return Traffic(cfg, num, sc, pool)


def synth_batches(cfg: SynthConfig, kind: int = KEY_ACCOUNT) -> Iterator[EventBatch]:
    """Decoded batches of one key kind (warm-up, state benchmark)."""
    for _, b in generate(cfg).batches(kind):
        yield b
