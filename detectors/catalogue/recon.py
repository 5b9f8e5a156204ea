"""Reconnaissance / discovery: account-enumeration, samr-recon, ldap-recon,
smb-session-enumeration, honeytoken-activity.

Keying notes (see ``collectors/batcher.py``): on the by-source engine an event is routed by
``src_ip`` else ``src_host`` else the reporting computer. SAM-R (4661), directory-access (4662)
and local-group enumeration (4798/4799) events carry no client address, so they arrive keyed by
the reporting DC/server; the recon detectors then keep their state per (reporting computer,
acting account) -- ``mix(ctx.key, account)`` -- which is still partition-local because every
event of one computer without a source lands on the same partition.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from stream.schema import FLAG_LOCAL_SOURCE, FLAG_MACHINE

from ..base import Detector, Param, register
from ..features import (T_ADMIN_HOST, T_DC, T_HONEYTOKEN, T_SENSITIVE_ACCOUNT,
                        T_SENSITIVE_GROUP, T_SYNC_ACCOUNT, string_feature)
from ..kernels.common import distinct_in_window, distinct_push, mix, row_of, set_contains

# -- string features (evaluated once per distinct string) --------------------------------------
# Well-known service identities of the reporting machine itself (never a remote attacker).
F_NT_AUTHORITY = string_feature(
    "nt_authority_subject",
    lambda s: s.startswith(("nt authority\\", "s-1-5-18", "s-1-5-19", "s-1-5-20"))
    or s in ("system", "local service", "network service"))
F_SAM_ENTITY = string_feature("sam_entity_handle",
                              lambda s: s in ("sam_user", "sam_group", "sam_alias"), columns=("object_class",))
F_SAM_GROUP = string_feature("sam_group_handle", lambda s: s in ("sam_group", "sam_alias"), columns=("object_class",))
F_BUILTIN_ADMIN_SID = string_feature(
    "builtin_admin_sid", lambda s: s.startswith("s-1-5-21-") and s.endswith(("-500", "-502")))
F_DS_PRINCIPAL_CLASS = string_feature(
    "ds_principal_class",
    lambda s: any(g in s for g in ("bf967aba-0de6-11d0-a285-00aa003049e2",   # user
                                    "bf967a9c-0de6-11d0-a285-00aa003049e2",   # group
                                    "bf967a86-0de6-11d0-a285-00aa003049e2")), columns=("object_class",))  # computer
F_IPC_SHARE = string_feature("ipc_share", lambda s: s.endswith("ipc$"), columns=("share",))
F_PIPE_SESSION = string_feature("pipe_session_enum",
                                lambda s: s.lstrip("\\") in ("srvsvc", "wkssvc"), columns=("relative_target",))
F_PIPE_RECON = string_feature("pipe_recon",
                              lambda s: s.lstrip("\\") in ("srvsvc", "wkssvc", "winreg",
                                                           "lsarpc", "samr"), columns=("relative_target",))

_KRB_UNKNOWN = np.uint32(0x6)          # KDC_ERR_C_PRINCIPAL_UNKNOWN
_NTLM_NO_SUCH_USER = np.uint32(0xC0000064)
_KRB_WRONG_PW = np.uint32(0x18)
_NTLM_WRONG_PW = np.uint32(0xC000006A)


# ============================================================================================
# account-enumeration
# ============================================================================================

@njit(cache=True)
def _recent(d_val, d_ts, slot, t, window):
    """Distinct values seen in ``[t - window, t]`` and the earliest of their times."""
    c = 0
    first = t
    for j in range(d_val.shape[1]):
        if d_val[slot, j] != 0:
            x = d_ts[slot, j]
            if x >= t - window and x <= t:
                c += 1
                if x < first:
                    first = x
    return c, first


@njit(cache=True)
def _account_enum(event_id, status, sub_status, flags, time_ms, acc_hash, key, keys, u_val,
                  u_ts, m_val, m_ts, last, window, threshold, burst_window, burst_threshold,
                  out_idx, out_cnt, out_first, out_aux, out_matched):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        if e != 4768 and e != 4771 and e != 4776 and e != 4625:
            continue
        if flags[i] & FLAG_MACHINE:
            continue
        if e == 4625 and flags[i] & FLAG_LOCAL_SOURCE:
            continue  # interactive typo on the console, not a network guess
        name = acc_hash[i]
        if name == 0:
            continue
        st = status[i]
        unknown = False
        matched = False
        if e == 4768 or e == 4771:
            if st == _KRB_UNKNOWN:
                unknown = True
            elif e == 4771 and st == _KRB_WRONG_PW:
                matched = True
        elif e == 4776:
            if st == _NTLM_NO_SUCH_USER:
                unknown = True
            elif st == _NTLM_WRONG_PW:
                matched = True
        else:  # 4625
            if sub_status[i] == _NTLM_NO_SUCH_USER or st == _NTLM_NO_SUCH_USER:
                unknown = True
            elif sub_status[i] == _NTLM_WRONG_PW or st == _NTLM_WRONG_PW:
                matched = True
        if not unknown and not matched:
            continue
        t = time_ms[i]
        s = row_of(keys, key[i])
        if t > last[s]:
            last[s] = t
        if matched:
            distinct_push(m_val, m_ts, s, name, t)
        else:
            distinct_push(u_val, u_ts, s, name, t)
        # a wrong-password guess inside an ongoing enumeration updates the alert (it tells how
        # many guessed names matched real accounts) but never starts one
        if matched:
            c, f = _recent(u_val, u_ts, s, t, window)
            cb, fb = _recent(u_val, u_ts, s, t, burst_window)
        else:
            c, f, _l = distinct_in_window(u_val, u_ts, s, t, window)
            cb, fb, _lb = distinct_in_window(u_val, u_ts, s, t, burst_window)
        if c >= threshold or cb >= burst_threshold:
            mc, _mf, _ml = distinct_in_window(m_val, m_ts, s, t, window)
            out_idx[m] = i
            out_cnt[m] = c
            out_first[m] = f if c >= threshold else fb
            out_aux[m] = c
            out_matched[m] = mc
            m += 1
    return m


@register
class AccountEnumeration(Detector):
    id = "account-enumeration"
    title = "Account enumeration reconnaissance (unknown user names)"
    description = ("{entity} tried {distinct} distinct non-existent account names against the "
                   "domain (Kerberos 0x6 / NTLM 0xC0000064) between {first_seen} and "
                   "{last_seen}; {matched_accounts} other guessed names from the same source "
                   "matched real accounts (wrong password). Names tried include: "
                   "{guessed_names}. Reported by {computer}.")
    severity = "medium"
    mitre = ("T1087.002",)
    mdi_alert_id = ("2003",)
    key = "source"
    event_ids = frozenset({4768, 4771, 4776, 4625})
    params = (
        Param("threshold", 10, 7, 5, "distinct unknown names from one source in the window",
              "names"),
        Param("window_s", 300, 300, 600, "sliding window for the volume rule", "s"),
        Param("burst_threshold", 5, 4, 3,
              "distinct unknown names within the burst window (tool-speed guessing: no person "
              "types this many different non-existent names in seconds)", "names"),
        Param("burst_s", 10, 10, 30, "burst window", "s"),
    )
    next_steps = (
        "Identify the device behind the source IP / workstation and the process that sent the "
        "authentication requests (kerbrute, Rubeus brute, CrackMapExec, a script).",
        "Check the guessed names that matched real accounts: they are now known to the "
        "attacker; look for later wrong-password bursts (password-spray) or successes for them.",
        "If the source is a legitimate application with a stale user list, fix its "
        "configuration or add an exclusion for that source.",
    )
    false_positives = (
        "Applications or scripts configured with a list of accounts of which many were deleted "
        "or renamed (one source, repeats the same names).",
        "Shared hosts (terminal servers, VPN/NAT gateways) where many users mistype their user "
        "name -- usually spread over time, rarely 10 distinct names in 5 minutes.",
    )
    audit = ("Audit Kerberos Authentication Service (4768/4771) and Audit Credential Validation "
             "(4776) - Failure on DCs; Audit Logon (4625) - Failure.")
    STATE = {"u_val": ("u8", (64,)), "u_ts": ("i8", (64,)),
             "m_val": ("u8", (32,)), "m_ts": ("i8", (32,))}
    window_ms = 600_000

    def retention_ms(self):
        return int(max(self.p["window_s"], self.p["burst_s"]) * 1000)

    def run(self, batch, ctx, hits):
        st = self.state
        n = batch.n
        out_idx = np.empty(n, np.int64)
        out_cnt = np.empty(n, np.int64)
        out_first = np.empty(n, np.int64)
        out_aux = np.empty(n, np.int64)
        out_matched = np.empty(n, np.int64)
        m = _account_enum(batch.event_id, batch.status, batch.sub_status, batch.flags,
                          batch.time_ms, batch.hashes("account"), ctx.key, st.index,
                          st["u_val"], st["u_ts"], st["m_val"], st["m_ts"], st["last"],
                          int(self.p["window_s"] * 1000), int(self.p["threshold"]),
                          int(self.p["burst_s"] * 1000), int(self.p["burst_threshold"]),
                          out_idx, out_cnt, out_first, out_aux, out_matched)
        self._matched = dict(zip(out_idx[:m].tolist(), out_matched[:m].tolist()))
        if m:
            idx = out_idx[:m]
            hits.add(self.id, idx, ctx.key[idx], out_cnt[:m], out_first[:m], out_aux[:m])

    def details(self, batch, i, aux):
        return {"matched_accounts": int(getattr(self, "_matched", {}).get(i, 0)),
                "unknown_names": int(aux),
                "guessed_names": [batch.get("account", i)]}


# ============================================================================================
# samr-recon
# ============================================================================================

@njit(cache=True)
def _samr_recon(event_id, flags, time_ms, acc_hash, account, obj, obj_class, group, group_sid,
                target, str_hash, sflags, key, keys, o_val, o_ts, s_val, s_ts, last, window,
                obj_threshold, sens_threshold, group_lookup, out_idx, out_ent, out_cnt,
                out_first, out_aux, out_kind):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        if e != 4661 and e != 4799 and e != 4798:
            continue
        if flags[i] & FLAG_MACHINE:
            continue
        af = sflags[account[i]]
        if af & (F_NT_AUTHORITY | T_SYNC_ACCOUNT):
            continue
        sens = False
        glookup = False
        if e == 4661:
            cf = sflags[obj_class[i]]
            if not (cf & F_SAM_ENTITY):
                continue  # SAM_SERVER / SAM_DOMAIN handles are opened by every session
            of = sflags[obj[i]]
            sens = (of & (T_SENSITIVE_GROUP | T_SENSITIVE_ACCOUNT | T_HONEYTOKEN
                          | F_BUILTIN_ADMIN_SID)) != 0
            glookup = (cf & F_SAM_GROUP) != 0 and (of & T_SENSITIVE_GROUP) != 0
        elif e == 4799:
            if obj[i] != 0:
                continue  # CallerProcessName set: local enumeration on that host
            gf = sflags[group[i]] | sflags[group_sid[i]]
            sens = (gf & T_SENSITIVE_GROUP) != 0
            glookup = sens
        else:  # 4798
            if obj[i] != 0:
                continue
            tf = sflags[target[i]]
            sens = (tf & (T_SENSITIVE_ACCOUNT | T_HONEYTOKEN)) != 0
        t = time_ms[i]
        k = mix(key[i], acc_hash[i])
        s = row_of(keys, k)
        if t > last[s]:
            last[s] = t
        if e == 4661:
            oh = str_hash[obj[i]]
        elif e == 4799:
            oh = str_hash[group_sid[i]] if group_sid[i] != 0 else str_hash[group[i]]
        else:
            oh = str_hash[target[i]]
        oh = mix(np.uint64(e), oh)
        distinct_push(o_val, o_ts, s, oh, t)
        c, f, _l = distinct_in_window(o_val, o_ts, s, t, window)
        cs = 0
        fs = t
        if sens:
            distinct_push(s_val, s_ts, s, oh, t)
            cs, fs, _ls = distinct_in_window(s_val, s_ts, s, t, window)
        kind = 0
        if glookup and group_lookup > 0:
            kind = 1
        if sens and cs >= sens_threshold:
            kind = 2
        if c >= obj_threshold:
            kind = 3
        if kind:
            out_idx[m] = i
            out_ent[m] = k
            out_cnt[m] = max(c, 1)
            out_first[m] = f if kind == 3 else (fs if kind == 2 else t)
            out_aux[m] = c
            out_kind[m] = kind
            m += 1
    return m


@register
class SamrRecon(Detector):
    id = "samr-recon"
    title = "User and group membership reconnaissance (SAM-R)"
    description = ("{account} enumerated users / groups over SAM-R on {computer}: {reason}. "
                   "{distinct} distinct SAM object(s) between {first_seen} and {last_seen}; "
                   "sensitive objects: {sensitive_objects}.")
    severity = "medium"
    mitre = ("T1087.002", "T1069.002")
    mdi_alert_id = ("2021", "2439")
    key = "source"
    event_ids = frozenset({4661, 4798, 4799})
    params = (
        Param("sensitive_threshold", 5, 3, 2,
              "distinct sensitive SAM objects (privileged groups, built-in admin, sensitive "
              "or honeytoken accounts) in the window", "objects"),
        Param("object_threshold", 20, 15, 10, "distinct SAM objects in the window", "objects"),
        Param("window_s", 900, 900, 1800, "sliding window", "s"),
        Param("group_lookup", 1, 1, 1,
              "1 = a single membership lookup of a privileged group (Domain/Enterprise/Schema "
              "Admins, Administrators ...) by a user account alerts on its own (the classic "
              "`net group \"domain admins\" /domain`); 0 = only count it", "flag"),
    )
    next_steps = (
        "Find the client the account used (5145 `samr` pipe / 4624 logon of the account on this "
        "DC at the same time) and the process that issued the queries.",
        "Confirm with the account owner whether the query was an administrative task; a "
        "standard user listing Domain Admins is typical post-compromise discovery (net, "
        "PowerView, BloodHound/SharpHound).",
        "Restrict remote SAM-R calls to administrators (policy 'Network access: Restrict "
        "clients allowed to make remote calls to SAM').",
    )
    false_positives = (
        "Administrators and helpdesk tools reading group membership over SAM-R (exclude their "
        "accounts or admin hosts).",
        "Identity-governance / inventory products that crawl groups with a service account "
        "(exclude the account).",
    )
    audit = ("4661: Audit SAM / Directory Service Access with the default SAM SACLs on DCs; "
             "4798/4799: Audit Security Group Management on the enumerated hosts.")
    STATE = {"o_val": ("u8", (32,)), "o_ts": ("i8", (32,)),
             "s_val": ("u8", (16,)), "s_ts": ("i8", (16,))}
    window_ms = 1_800_000

    _REASONS = {1: "membership of a privileged group was read",
                2: "several sensitive accounts/groups were opened",
                3: "many users/groups were opened in a short time"}

    retention_param = ("window_s", 1000)

    def run(self, batch, ctx, hits):
        st = self.state
        n = batch.n
        out = [np.empty(n, np.int64) for _ in range(6)]
        out[1] = np.empty(n, np.uint64)
        m = _samr_recon(batch.event_id, batch.flags, batch.time_ms, batch.hashes("account"),
                        batch.account, batch.object, batch.object_class, batch.group,
                        batch.group_sid, batch.target_account, batch.str_hash, ctx.sflags,
                        ctx.key, st.index,
                        st["o_val"], st["o_ts"], st["s_val"], st["s_ts"], st["last"],
                        int(self.p["window_s"] * 1000), int(self.p["object_threshold"]),
                        int(self.p["sensitive_threshold"]), int(self.p["group_lookup"]),
                        *out)
        self._kind = dict(zip(out[0][:m].tolist(), out[5][:m].tolist()))
        if m:
            hits.add(self.id, out[0][:m], out[1][:m], out[2][:m], out[3][:m], out[4][:m])

    def details(self, batch, i, aux):
        kind = getattr(self, "_kind", {}).get(i, 0)
        e = int(batch.event_id[i])
        obj = (batch.get("object", i) if e == 4661 else
               batch.get("group", i) or batch.get("group_sid", i) if e == 4799 else
               batch.get("target_account", i))
        d = {"reason": [self._REASONS.get(kind, "enumeration")], "objects": [obj]}
        if kind in (1, 2) or e == 4799:
            d["sensitive_objects"] = [obj]
        return d


# ============================================================================================
# ldap-recon
# ============================================================================================

@njit(cache=True)
def _ldap_recon(event_id, flags, time_ms, acc_hash, account, obj, obj_class, access_mask,
                str_hash, sflags, key, keys, o_val, o_ts, last, window, threshold, out_idx, out_ent,
                out_cnt, out_first, out_aux):
    m = 0
    for i in range(len(event_id)):
        if event_id[i] != 4662:
            continue
        if flags[i] & FLAG_MACHINE:
            continue
        if not (access_mask[i] & 0x10):  # ADS_RIGHT_DS_READ_PROP
            continue
        if not (sflags[obj_class[i]] & F_DS_PRINCIPAL_CLASS):
            continue
        if sflags[account[i]] & (F_NT_AUTHORITY | T_SYNC_ACCOUNT):
            continue
        t = time_ms[i]
        k = mix(key[i], acc_hash[i])
        s = row_of(keys, k)
        if t > last[s]:
            last[s] = t
        distinct_push(o_val, o_ts, s, mix(np.uint64(4662), str_hash[obj[i]]), t)
        c, f, _l = distinct_in_window(o_val, o_ts, s, t, window)
        if c >= threshold:
            out_idx[m] = i
            out_ent[m] = k
            out_cnt[m] = c
            out_first[m] = f
            out_aux[m] = c
            m += 1
    return m


@register
class LdapRecon(Detector):
    id = "ldap-recon"
    title = "Security principal reconnaissance (bulk directory reads)"
    description = ("{account} read the properties of {distinct} distinct user/group/computer "
                   "objects on {computer} between {first_seen} and {last_seen} (directory "
                   "service access auditing, 4662 Read Property).")
    severity = "medium"
    mitre = ("T1087.002",)
    mdi_alert_id = ("2038",)
    key = "source"
    event_ids = frozenset({4662})
    params = (
        Param("threshold", 20, 15, 10, "distinct principal objects read in the window",
              "objects"),
        Param("window_s", 300, 300, 600, "sliding window", "s"),
    )
    next_steps = (
        "Find the client of the account's LDAP session on this DC (4624 of the account at the "
        "same time) and the tool used (BloodHound/SharpHound, PowerView, ADExplorer, ldapsearch).",
        "Check whether the account is a standard user; review its other activity for "
        "Kerberoasting or group changes following the enumeration.",
    )
    false_positives = (
        "Identity-management, HR-sync, backup or inventory service accounts that read many "
        "objects (exclude the account or configure it as a sync account).",
    )
    audit = ("Audit Directory Service Access (Success) and a SACL on user/group/computer objects "
             "auditing Read Property for Everyone (high volume: scope it to sensitive OUs or "
             "decoy objects). LDAP search event 1644 is not used (its client field carries the "
             "port, so it cannot be keyed by source).")
    STATE = {"o_val": ("u8", (64,)), "o_ts": ("i8", (64,))}
    window_ms = 600_000

    retention_param = ("window_s", 1000)

    def run(self, batch, ctx, hits):
        st = self.state
        n = batch.n
        out_idx = np.empty(n, np.int64)
        out_ent = np.empty(n, np.uint64)
        out_cnt = np.empty(n, np.int64)
        out_first = np.empty(n, np.int64)
        out_aux = np.empty(n, np.int64)
        m = _ldap_recon(batch.event_id, batch.flags, batch.time_ms, batch.hashes("account"),
                        batch.account, batch.object, batch.object_class, batch.access_mask,
                        batch.str_hash, ctx.sflags, ctx.key, st.index, st["o_val"], st["o_ts"],
                        st["last"], int(self.p["window_s"] * 1000), int(self.p["threshold"]),
                        out_idx, out_ent, out_cnt, out_first, out_aux)
        if m:
            hits.add(self.id, out_idx[:m], out_ent[:m], out_cnt[:m], out_first[:m],
                     out_aux[:m])

    def details(self, batch, i, aux):
        return {"objects": [batch.get("object", i)]}


# ============================================================================================
# smb-session-enumeration
# ============================================================================================

@njit(cache=True)
def _smb_enum(event_id, flags, time_ms, account, share, rel, src_ip, src_host, computer,
              str_hash, sflags, dc_keys, key, keys, p_val, p_ts, sess_t, last, burst_window,
              burst_pipes, out_idx, out_aux, out_kind):
    m = 0
    for i in range(len(event_id)):
        if event_id[i] != 5145:
            continue
        rf = sflags[rel[i]]
        if not (rf & F_PIPE_RECON):
            continue
        if not (sflags[share[i]] & F_IPC_SHARE):
            continue
        fl = flags[i]
        if fl & (FLAG_MACHINE | FLAG_LOCAL_SOURCE):
            continue
        if (sflags[src_ip[i]] | sflags[src_host[i]]) & T_ADMIN_HOST:
            continue
        if sflags[account[i]] & F_NT_AUTHORITY:
            continue
        t = time_ms[i]
        s = row_of(keys, key[i])
        if t > last[s]:
            last[s] = t
        distinct_push(p_val, p_ts, s, str_hash[rel[i]], t)
        is_sess = (rf & F_PIPE_SESSION) != 0
        if is_sess and (sess_t[s] == 0 or t > sess_t[s]):
            sess_t[s] = t
        kind = 0
        c, _f, _l = distinct_in_window(p_val, p_ts, s, t, burst_window)
        on_dc = (sflags[computer[i]] & T_DC) != 0 or set_contains(dc_keys,
                                                                  str_hash[computer[i]])
        if is_sess and on_dc:
            kind = 1
        elif c >= burst_pipes and sess_t[s] != 0 and abs(t - sess_t[s]) <= burst_window:
            kind = 2
        if kind:
            out_idx[m] = i
            out_aux[m] = c
            out_kind[m] = kind
            m += 1
    return m


@register
class SmbSessionEnumeration(Detector):
    id = "smb-session-enumeration"
    title = "User and IP address reconnaissance (SMB session enumeration)"
    description = ("{account} from {source} opened the {relative_target} pipe on {computer} "
                   "({reason}); up to {distinct} distinct enumeration pipes (srvsvc, wkssvc, "
                   "winreg, lsarpc, samr) in a burst; {count} event(s) between {first_seen} and "
                   "{last_seen}.")
    severity = "medium"
    mitre = ("T1049", "T1087.002")
    mdi_alert_id = ("2012",)
    key = "source"
    event_ids = frozenset({5145})
    params = (
        Param("burst_pipes", 3, 3, 2,
              "distinct enumeration pipes (srvsvc, wkssvc, winreg, lsarpc, samr) opened by one "
              "source within the burst, one of them srvsvc/wkssvc, on a host not known as a DC",
              "pipes"),
        Param("burst_s", 10, 10, 30, "burst window", "s"),
    )
    next_steps = (
        "Identify the process on the source host that enumerated sessions (BloodHound/"
        "SharpHound session collection, PowerView Invoke-UserHunter, PsLoggedOn, net session).",
        "Session enumeration maps where privileged users are logged on: check the source for "
        "follow-up lateral movement towards those hosts.",
        "Harden NetSessionEnum (NetCease / SrvsvcSessionInfo permissions) on DCs and servers.",
    )
    false_positives = (
        "Administrators' management consoles and monitoring tools querying servers (configure "
        "their workstations as admin hosts).",
        "Share browsing (Explorer / net view) against a DC opens srvsvc too.",
    )
    audit = ("Audit Detailed File Share (5145, Success) on DCs and servers: high volume; "
             "filter to IPC$ at the collector if needed.")
    STATE = {"p_val": ("u8", (8,)), "p_ts": ("i8", (8,)), "sess_t": ("i8", ())}
    window_ms = 60_000

    def retention_ms(self):
        return int(max(self.p["burst_s"] * 1000, 60_000))

    def run(self, batch, ctx, hits):
        st = self.state
        n = batch.n
        out_idx = np.empty(n, np.int64)
        out_aux = np.empty(n, np.int64)
        out_kind = np.empty(n, np.int64)
        m = _smb_enum(batch.event_id, batch.flags, batch.time_ms, batch.account, batch.share,
                      batch.relative_target, batch.src_ip, batch.src_host, batch.computer,
                      batch.str_hash, ctx.sflags, ctx.dc_keys, ctx.key, st.index, st["p_val"],
                      st["p_ts"], st["sess_t"], st["last"], int(self.p["burst_s"] * 1000),
                      int(self.p["burst_pipes"]), out_idx, out_aux, out_kind)
        self._kind = dict(zip(out_idx[:m].tolist(), out_kind[:m].tolist()))
        if m:
            idx = out_idx[:m]
            hits.add(self.id, idx, ctx.key[idx], aux=out_aux[:m])

    def details(self, batch, i, aux):
        kind = getattr(self, "_kind", {}).get(i, 0)
        reason = ("session/share enumeration pipe on a domain controller" if kind == 1 else
                  "burst of enumeration pipes: sessions, users, groups and SID lookups")
        return {"reason": [reason], "pipes": [batch.get("relative_target", i).lower()]}


# ============================================================================================
# honeytoken-activity
# ============================================================================================

_HONEY_IDS = np.array(sorted({4624, 4625, 4648, 4768, 4769, 4770, 4771, 4776, 8004,
                              4661, 4662, 4738, 4742, 5136, 4720, 4722, 4723, 4724, 4725,
                              4726, 4740, 4767, 4781, 4765, 4766, 4798, 4799,
                              4728, 4729, 4732, 4733, 4756, 4757}), dtype=np.int32)


@njit(cache=True)
def _honeytoken(event_id, ids, cols, sflags, out_idx, out_aux):
    m = 0
    ncol = cols.shape[0]
    for i in range(len(event_id)):
        e = event_id[i]
        ok = False
        for j in range(len(ids)):
            if ids[j] == e:
                ok = True
                break
        if not ok:
            continue
        for c in range(ncol):
            if sflags[cols[c, i]] & T_HONEYTOKEN:
                out_idx[m] = i
                out_aux[m] = c
                m += 1
                break
    return m


_HONEY_COLS = ("account", "target_account", "service", "member", "member_sid", "target_sid",
               "object", "group", "group_sid", "account_sid")


@register
class HoneytokenActivity(Detector):
    id = "honeytoken-activity"
    title = "Honeytoken activity"
    description = ("Activity involving honeytoken {honeytoken}: {action} (event {event_id}) by "
                   "{account} from {source} on {computer}; {count} event(s) between "
                   "{first_seen} and {last_seen}.")
    severity = "high"
    mitre = ("T1098", "T1087.002")
    mdi_alert_id = ("2014", "2427", "2428", "2439")
    key = "account"
    event_ids = frozenset(int(x) for x in _HONEY_IDS)
    next_steps = (
        "A honeytoken has no legitimate use: treat the source host and the acting account as "
        "compromised until explained.",
        "Find the process on the source host that used or queried the decoy (credential "
        "harvesting, Kerberoasting of the decoy SPN, directory enumeration).",
        "Check the decoy's group memberships and attributes for changes made by the attacker.",
    )
    false_positives = (
        "Scheduled maintenance that touches every account (password-expiry scripts, HR sync): "
        "exclude the maintenance account for this detector.",
    )
    audit = ("Configure `honeytoken_accounts` with bare names (they match `domain\\name` accounts "
             "and the bare service name of 4769), SIDs, and "
             "the decoy's DN or a glob such as `cn=decoy,*` to catch directory reads/changes). "
             "Needs the authentication audits (4768/4769/4771/4776/4624/4625), Directory Service "
             "Access/Changes (4662/5136) and SAM auditing (4661).")

    def run(self, batch, ctx, hits):
        n = batch.n
        if not np.any(ctx.sflags & T_HONEYTOKEN):
            return
        cols = np.stack([batch.col(c) for c in _HONEY_COLS])
        out_idx = np.empty(n, np.int64)
        out_aux = np.empty(n, np.int64)
        m = _honeytoken(batch.event_id, _HONEY_IDS, cols, ctx.sflags, out_idx, out_aux)
        self._col = dict(zip(out_idx[:m].tolist(), out_aux[:m].tolist()))
        if m:
            idx = out_idx[:m]
            hits.add(self.id, idx, ctx.key[idx])

    def details(self, batch, i, aux):
        c = getattr(self, "_col", {}).get(i, 0)
        return {"honeytoken": batch.get(_HONEY_COLS[c], i),
                "action": batch.get("action", i) or "event"}
