"""Behavioural (learned baselines): abnormal-logon, lateral-movement-fanout.

Both keep a per-account profile in :class:`~detectors.state.SlotState` and, at sensitivity
``high``, stay silent until ``ctx.learning_until_ms`` (the profile is still learned). At
``medium``/``low`` the learning period is ignored (MDI semantics): alerts fire as soon as the
profile has the minimum history the parameters ask for.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from stream.schema import (FLAG_ANONYMOUS, FLAG_FAILURE, FLAG_LOCAL_SOURCE, FLAG_MACHINE,
                           FLAG_TARGET_MACHINE, key_hash)

from ..base import Detector, Param, register
from ..features import T_DC, T_HONEYTOKEN, T_SENSITIVE_ACCOUNT, string_feature
from ..kernels.common import distinct_in_window, distinct_push, row_of
from .lateral_movement import host_hash_table

H_KRBTGT = np.uint64(key_hash("krbtgt"))

# built-in administrator: account name "administrator" or a SID ending in -500
F_BUILTIN_ADMIN = string_feature(
    "bh_builtin_admin",
    lambda s: s.rsplit("\\", 1)[-1] == "administrator"
    or (s.startswith("s-1-5-21-") and s.endswith("-500")))

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


# ============================================================================================
# abnormal-logon
# ============================================================================================

@njit(cache=True)
def _abnormal_logon(event_id, logon_type, status, flags, time_ms, ip_h, host_h, host_hh,
                    comp_hh, acc_f, sid_f, key, keys, d_val, d_ts, n_ev, hours, last, learning, learn_until,
                    all_accounts, min_profile, min_hour_events, sens_bits, out_idx, out_aux):
    m = 0
    width = d_val.shape[1]
    for i in range(len(event_id)):
        e = event_id[i]
        if e != 4624 and e != 4768 and e != 4769 and e != 4776:
            continue
        f = flags[i]
        if f & (FLAG_MACHINE | FLAG_ANONYMOUS | FLAG_FAILURE | FLAG_LOCAL_SOURCE):
            continue
        if e != 4624 and status[i] != 0:
            continue
        if e == 4624:
            lt = logon_type[i]
            if lt != 2 and lt != 3 and lt != 7 and lt != 8 and lt != 10 and lt != 11:
                continue
        if not all_accounts and not ((acc_f[i] | sid_f[i]) & sens_bits):
            continue
        src = ip_h[i] if ip_h[i] != 0 else host_h[i]
        if src == 0:
            continue
        if ip_h[i] == 0 and host_hh[i] == comp_hh[i]:
            continue  # workstation name = the reporting machine itself: a local logon
        t = time_ms[i]
        s = row_of(keys, key[i])
        if t > last[s]:
            last[s] = t
        filled = 0
        for j in range(width):
            if d_val[s, j] != 0:
                filled += 1
        new = distinct_push(d_val, d_ts, s, src, t)
        h = (t // HOUR_MS) % 24
        past = (not learning) or t >= learn_until
        if past and n_ev[s] >= min_profile:
            if new and filled < width:
                out_idx[m] = i
                out_aux[m] = 1
                m += 1
            elif n_ev[s] >= min_hour_events:
                near = hours[s, (h + 23) % 24] + hours[s, h] + hours[s, (h + 1) % 24]
                if near == 0:
                    out_idx[m] = i
                    out_aux[m] = 2
                    m += 1
        n_ev[s] += 1
        hours[s, h] += 1
    return m


@register
class AbnormalLogon(Detector):
    id = "abnormal-logon"
    title = "Abnormal logon of a sensitive account"
    description = ("Sensitive account {account} {abnormal_reason}: {source} (event {event_id}, "
                   "reported by {computer}); {count} anomalous authentication(s) between "
                   "{first_seen} and {last_seen}.")
    severity = "medium"
    mitre = ("T1078.002",)
    key = "account"
    event_ids = frozenset({4624, 4768, 4769, 4776})
    params = (
        Param("all_accounts", 0, 0, 1, "profile every user account, not only sensitive ones "
              "(sensitive_accounts, honeytokens, built-in Administrator)", "bool"),
        Param("min_profile_events", 5, 3, 1, "authentications the account's profile needs "
              "before a new source is called abnormal (an account never seen has no "
              "profile)", "events"),
        Param("min_hour_events", 50, 30, 20, "authentications in the profile before the "
              "hour-of-day check applies", "events"),
        Param("profile_days", 30, 30, 30, "how long the profile is kept without activity",
              "days"),
    )
    learning_days = 7
    next_steps = (
        "Ask the account owner whether they used the new source host at that time.",
        "Review what the account did from that source (4624/4769 targets, directory changes).",
        "If unexplained, reset the password and check the source host for compromise.",
    )
    false_positives = (
        "New workstation, travel, VPN address pools; administrators working from a new jump "
        "host (tag it as an admin host or exclude it).",
    )
    audit = "Audit Logon (4624); Audit Kerberos Authentication Service and Service Ticket "\
            "Operations (4768/4769); Audit Credential Validation (4776)."
    STATE = {"d_val": ("u8", (32,)), "d_ts": ("i8", (32,)), "n_ev": ("i8", ()),
             "hours": ("i8", (24,))}
    window_ms = 30 * DAY_MS

    def retention_ms(self):
        return int(self.p["profile_days"] * DAY_MS)

    def run(self, batch, ctx, hits):
        st = self.state
        sf = ctx.sflags
        h = batch.str_hash
        n = batch.n
        out = np.empty(n, np.int64)
        aux = np.empty(n, np.int64)
        sens = np.uint64(int(T_SENSITIVE_ACCOUNT) | int(T_HONEYTOKEN) | int(F_BUILTIN_ADMIN))
        ev = batch.event_id
        cand = ((ev == 4624) | (ev == 4776)) & (batch.src_ip == 0)
        hh = host_hash_table(batch, ("src_host", "computer"), cand)
        m = _abnormal_logon(ev, batch.logon_type, batch.status, batch.flags,
                            batch.time_ms, h[batch.src_ip], h[batch.src_host],
                            hh[batch.src_host], hh[batch.computer], sf[batch.account], sf[batch.account_sid], ctx.key, st.index,
                            st["d_val"], st["d_ts"], st["n_ev"], st["hours"], st["last"],
                            ctx.learning, ctx.learning_until_ms, bool(self.p["all_accounts"]),
                            int(self.p["min_profile_events"]), int(self.p["min_hour_events"]),
                            sens, out, aux)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, ctx.key[idx])
            self._reasons = dict(zip(idx.tolist(), aux[:m].tolist()))
        else:
            self._reasons = {}

    def details(self, batch, i, aux):
        r = getattr(self, "_reasons", {}).get(int(i), 0)
        src = batch.get("src_ip", i) or batch.get("src_host", i)
        if r == 2:
            return {"abnormal_reason": "authenticated at an hour outside its profile "
                    f"({int(batch.time_ms[i]) // HOUR_MS % 24:02d}:00 UTC)",
                    "sources": [src]}
        return {"abnormal_reason": "authenticated from a source it never used before",
                "sources": [src]}


# ============================================================================================
# lateral-movement-fanout
# ============================================================================================

@njit(cache=True)
def _fanout(event_id, logon_type, status, flags, time_ms, comp_hh, svc_hh, svc_h, comp_f,
            svc_f, key, keys, d_val, d_ts, period, cur_max, base, last, learning, learn_until,
            window, threshold, multiplier, out_idx, out_cnt, out_first):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        f = flags[i]
        if e == 4624:
            lt = logon_type[i]
            if lt != 3 and lt != 10:
                continue
            if f & (FLAG_MACHINE | FLAG_ANONYMOUS | FLAG_FAILURE | FLAG_LOCAL_SOURCE):
                continue
            if comp_f[i] & T_DC:
                continue
            target = comp_hh[i]
        elif e == 4769:
            if status[i] != 0 or (f & (FLAG_MACHINE | FLAG_FAILURE)):
                continue
            if not (f & FLAG_TARGET_MACHINE) or (svc_f[i] & T_DC) or svc_h[i] == H_KRBTGT:
                continue
            target = svc_hh[i]
        else:
            continue
        if target == 0:
            continue
        t = time_ms[i]
        s = row_of(keys, key[i])
        if t > last[s]:
            last[s] = t
        day = t // DAY_MS
        if day > period[s]:
            if period[s] > 0:
                decayed = base[s] - base[s] // 4
                base[s] = cur_max[s] if cur_max[s] > decayed else decayed
            cur_max[s] = 0
            period[s] = day
        distinct_push(d_val, d_ts, s, target, t)
        c, fst, lst = distinct_in_window(d_val, d_ts, s, t, window)
        if c > cur_max[s] and day == period[s]:
            cur_max[s] = c
        if learning and t < learn_until:
            continue
        b = base[s] if base[s] > 1 else 1
        if c >= threshold and c >= multiplier * b:
            out_idx[m] = i
            out_cnt[m] = c
            out_first[m] = fst
            m += 1
    return m


@register
class LateralMovementFanout(Detector):
    id = "lateral-movement-fanout"
    title = "Account fanning out to many hosts (lateral movement)"
    description = ("{account} opened network logons / service tickets to {distinct} distinct "
                   "hosts within {window_min} minutes (baseline {baseline}), last {target}, "
                   "between {first_seen} and {last_seen}.")
    severity = "medium"
    mitre = ("T1021",)
    key = "account"
    event_ids = frozenset({4624, 4769})
    params = (
        Param("threshold", 15, 10, 7, "distinct target hosts in the window", "hosts"),
        Param("window_s", 600, 600, 600, "sliding window", "s"),
        Param("multiplier", 5, 3, 2, "times above the account's usual daily peak "
              "(decaying maximum of previous days)", "x"),
    )
    learning_days = 7
    next_steps = (
        "Check what the account did on the targets (service creation, scheduled tasks, "
        "remote WMI/PowerShell, file copies).",
        "Identify the source host(s) of the logons and whether the account's credentials "
        "were used by an automated tool (PsExec sweeps, CrackMapExec, BloodHound sessions).",
    )
    false_positives = (
        "Vulnerability scanners, inventory/backup/deployment service accounts and admins "
        "running fleet-wide scripts (their baseline usually covers this; exclude dedicated "
        "scanner accounts).",
    )
    audit = "Audit Logon (4624) on servers/workstations; Audit Kerberos Service Ticket "\
            "Operations (4769) on DCs."
    STATE = {"d_val": ("u8", (64,)), "d_ts": ("i8", (64,)), "period": ("i8", ()),
             "cur_max": ("i8", ()), "base": ("i8", ())}
    window_ms = 30 * DAY_MS

    def run(self, batch, ctx, hits):
        st = self.state
        sf = ctx.sflags
        ev = batch.event_id
        cand = (ev == 4624) | (ev == 4769)
        hh = host_hash_table(batch, ("computer", "service"), cand)
        n = batch.n
        out = np.empty(n, np.int64)
        cnt = np.empty(n, np.int64)
        first = np.empty(n, np.int64)
        m = _fanout(ev, batch.logon_type, batch.status, batch.flags, batch.time_ms,
                    hh[batch.computer], hh[batch.service], batch.str_hash[batch.service],
                    sf[batch.computer], sf[batch.service], ctx.key, st.index, st["d_val"],
                    st["d_ts"], st["period"], st["cur_max"], st["base"], st["last"],
                    ctx.learning, ctx.learning_until_ms, int(self.p["window_s"] * 1000),
                    int(self.p["threshold"]), float(self.p["multiplier"]), out, cnt, first)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, ctx.key[idx], cnt[:m], first[:m], aux=cnt[:m])

    def details(self, batch, i, aux):
        st = self.state
        slot = st.lookup(int(self._key_of(batch, i)))
        base = int(st["base"][slot]) if slot >= 0 else 0
        e = int(batch.event_id[i])
        target = batch.get("computer", i) if e == 4624 else batch.get("service", i)
        return {"window_min": round(self.p["window_s"] / 60, 1), "baseline": base,
                "target": target, "targets": [target]}

    @staticmethod
    def _key_of(batch, i):
        from stream.schema import account_key_string
        return key_hash(account_key_string(batch.get("account", i), batch.get("computer", i)))
