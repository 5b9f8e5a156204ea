"""Credential access: password-spray, kerberoasting, asrep-roasting, dcsync, dpapi-backup-key,
shadow-credentials, samaccountname-spoofing. (brute-force lives in
``credential_access_bruteforce.py``.)"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

from stream.schema import (FLAG_LOCAL_SOURCE, FLAG_MACHINE, FLAG_TARGET_MACHINE, key_hash)

from ..base import MAX_DETAIL_ITEMS, Detector, Param, merge_distinct, register
from ..features import (T_DC, T_HONEYTOKEN, T_MACHINE_NAME,
                        T_SENSITIVE_ACCOUNT, T_SYNC_ACCOUNT, DerivedHashes, string_feature)
from ..kernels.common import distinct_in_window, distinct_push, row_of, set_contains

F_NT_AUTHORITY = string_feature(
    "nt_authority_subject",
    lambda s: s.startswith(("nt authority\\", "s-1-5-18", "s-1-5-19", "s-1-5-20"))
    or s in ("system", "local service", "network service"))
F_BUILTIN_ADMIN_SID = string_feature(
    "builtin_admin_sid", lambda s: s.startswith("s-1-5-21-") and s.endswith(("-500", "-502")))
F_KRBTGT = string_feature("krbtgt_service",
                          lambda s: s.startswith("krbtgt") or s.split("\\")[-1].startswith(
                              "krbtgt"))
# DS-Replication-Get-Changes, -Get-Changes-All, -Get-Changes-In-Filtered-Set
F_REPL_RIGHTS = string_feature(
    "replication_rights",
    lambda s: any(g in s for g in ("1131f6aa-9c07-11d1-f79f-00c04fc2dcd2",
                                    "1131f6ad-9c07-11d1-f79f-00c04fc2dcd2",
                                    "89e95b76-444d-4c62-991a-0facbeda640c")), columns=("properties",))
F_BCKUPKEY = string_feature("dpapi_backupkey_secret", lambda s: "bckupkey" in s, columns=("object",))
F_PIPE_PROTECTED_STORAGE = string_feature(
    "pipe_protected_storage", lambda s: s.lstrip("\\") == "protected_storage", columns=("relative_target",))
F_IPC_SHARE = string_feature("ipc_share", lambda s: s.endswith("ipc$"), columns=("share",))
F_KEYCRED_ATTR = string_feature("attr_key_credential_link",
                                lambda s: s == "msds-keycredentiallink", columns=("attribute",))

_WRONG_PW_NTLM = np.uint32(0xC000006A)


# ============================================================================================
# password-spray
# ============================================================================================

@njit(cache=True)
def _password_spray(event_id, status, sub_status, flags, time_ms, acc_hash, tgt_hash, tflags,
                    key, keys, d_val, d_ts, last, window, threshold, out_idx, out_cnt,
                    out_first, out_aux):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        if e != 4771 and e != 4776 and e != 4625 and e != 4648:
            continue
        fl = flags[i]
        if fl & FLAG_MACHINE:
            continue
        name = acc_hash[i]
        if e == 4771:
            if status[i] != 0x18:
                continue
        elif e == 4776:
            if status[i] != _WRONG_PW_NTLM:
                continue
        elif e == 4625:
            if fl & FLAG_LOCAL_SOURCE:
                continue
            if sub_status[i] != _WRONG_PW_NTLM and status[i] != _WRONG_PW_NTLM:
                continue
        else:  # 4648: explicit credentials for another account, logged on the spraying host
            if tflags[i] & (T_MACHINE_NAME | F_NT_AUTHORITY):
                continue
            name = tgt_hash[i]
        if name == 0:
            continue
        t = time_ms[i]
        s = row_of(keys, key[i])
        if t > last[s]:
            last[s] = t
        distinct_push(d_val, d_ts, s, name, t)
        c, f, _l = distinct_in_window(d_val, d_ts, s, t, window)
        if c >= threshold:
            out_idx[m] = i
            out_cnt[m] = c
            out_first[m] = f
            out_aux[m] = c
            m += 1
    return m


@register
class PasswordSpray(Detector):
    id = "password-spray"
    title = "Suspected password spray (many accounts, few passwords)"
    description = ("{entity} failed to authenticate with a wrong password as {distinct} distinct "
                   "accounts between {first_seen} and {last_seen} (reported by {computer}). "
                   "Accounts include: {accounts}.")
    severity = "medium"
    mitre = ("T1110.003",)
    mdi_alert_id = ("2023", "xdr_OnPremPasswordSpray")
    key = "source"
    event_ids = frozenset({4771, 4776, 4625, 4648})
    params = (
        Param("threshold", 10, 7, 5, "distinct accounts with a wrong password from one source",
              "accounts"),
        Param("window_s", 600, 600, 1800, "sliding window", "s"),
    )
    next_steps = (
        "Identify the device and process behind the source (DomainPasswordSpray, kerbrute, "
        "CrackMapExec, Spray, Rubeus brute).",
        "Look for successful logons of the sprayed accounts from the same source after the "
        "failures and reset those passwords.",
        "Block the source; enforce smart lockout / fine-grained password policies and MFA.",
    )
    false_positives = (
        "Shared kiosks / terminal servers / NAT gateways where many users mistype their "
        "passwords at the same time (raise the threshold or exclude the gateway IP).",
        "A service rolled out with a wrong credential to many hosts is vertical (one account), "
        "not a spray.",
    )
    audit = ("Audit Kerberos Authentication Service (4771), Audit Credential Validation (4776), "
             "Audit Logon (4625) - Failure on DCs; 4648 (Audit Logon, Success) on member hosts.")
    STATE = {"d_val": ("u8", (64,)), "d_ts": ("i8", (64,))}
    window_ms = 1_800_000

    retention_param = ("window_s", 1000)

    def run(self, batch, ctx, hits):
        st = self.state
        n = batch.n
        out_idx = np.empty(n, np.int64)
        out_cnt = np.empty(n, np.int64)
        out_first = np.empty(n, np.int64)
        out_aux = np.empty(n, np.int64)
        m = _password_spray(batch.event_id, batch.status, batch.sub_status, batch.flags,
                            batch.time_ms, batch.hashes("account"),
                            batch.hashes("target_account"),
                            ctx.sflags[batch.target_account], ctx.key, st.index, st["d_val"],
                            st["d_ts"], st["last"], int(self.p["window_s"] * 1000),
                            int(self.p["threshold"]), out_idx, out_cnt, out_first, out_aux)
        if m:
            idx = out_idx[:m]
            hits.add(self.id, idx, ctx.key[idx], out_cnt[:m], out_first[:m], out_aux[:m])

    def details(self, batch, i, aux):
        name = (batch.get("target_account", i) if int(batch.event_id[i]) == 4648
                else batch.get("account", i))
        return {"accounts": [name]}


# ============================================================================================
# kerberoasting
# ============================================================================================

@njit(cache=True)
def _kerberoast(event_id, status, enc, flags, time_ms, svc, svc_sid, str_hash, sflags, key,
                keys, r_val, r_ts, a_val, a_ts, last, window, threshold, fanout,
                out_idx, out_cnt, out_first, out_aux, out_kind):
    m = 0
    for i in range(len(event_id)):
        if event_id[i] != 4769:
            continue
        if status[i] != 0:
            continue
        fl = flags[i]
        if fl & (FLAG_MACHINE | FLAG_TARGET_MACHINE | FLAG_LOCAL_SOURCE):
            continue
        sf = sflags[svc[i]]
        if sf & (F_KRBTGT | T_MACHINE_NAME) or svc[i] == 0:
            continue
        t = time_ms[i]
        s = row_of(keys, key[i])
        if t > last[s]:
            last[s] = t
        h = str_hash[svc[i]]
        e = enc[i]
        weak = e == 0x17 or e == 0x18 or e == 0x1 or e == 0x3
        distinct_push(a_val, a_ts, s, h, t)
        ca, fa, _la = distinct_in_window(a_val, a_ts, s, t, window)
        kind = 0
        c = 0
        f = t
        if weak:
            distinct_push(r_val, r_ts, s, h, t)
            c, f, _l = distinct_in_window(r_val, r_ts, s, t, window)
            if (sf & (T_SENSITIVE_ACCOUNT | T_HONEYTOKEN)) or \
                    (sflags[svc_sid[i]] & F_BUILTIN_ADMIN_SID):
                kind = 2
            elif c >= threshold:
                kind = 1
        if kind == 0 and ca >= fanout:
            kind = 3
            c = ca
            f = fa
        if kind:
            out_idx[m] = i
            out_cnt[m] = max(c, 1)
            out_first[m] = f
            out_aux[m] = c
            out_kind[m] = kind
            m += 1
    return m


@register
class Kerberoasting(Detector):
    id = "kerberoasting"
    title = "Suspected Kerberoasting (service tickets for user-account SPNs)"
    description = ("{account} requested service tickets for {distinct} distinct user-account "
                   "service(s) from {source} between {first_seen} and {last_seen} ({reason}). "
                   "Services: {spns}.")
    severity = "high"
    mitre = ("T1558.003",)
    mdi_alert_id = ("2410",)
    key = "account"
    event_ids = frozenset({4769})
    params = (
        Param("threshold", 3, 2, 2, "distinct user-account services with RC4/DES tickets",
              "services"),
        Param("window_s", 300, 300, 600, "sliding window", "s"),
        Param("fanout_threshold", 20, 15, 10,
              "distinct user-account services with tickets of any encryption type (AES "
              "roasting)", "services"),
    )
    next_steps = (
        "List the services whose tickets were requested and make sure their passwords are long "
        "and random (gMSA); reset them if the requester is not trusted.",
        "Find the process on the source host that requested the tickets (Rubeus, "
        "GetUserSPNs.py, Invoke-Kerberoast).",
        "Remove RC4 from the service accounts' msDS-SupportedEncryptionTypes.",
    )
    false_positives = (
        "Legacy applications whose service accounts only support RC4 (one or two services per "
        "client, steady pattern).",
        "Monitoring / vulnerability scanners that test many services (exclude the scanner).",
    )
    audit = "Audit Kerberos Service Ticket Operations (4769, Success) on DCs."
    STATE = {"r_val": ("u8", (32,)), "r_ts": ("i8", (32,)),
             "a_val": ("u8", (32,)), "a_ts": ("i8", (32,))}
    window_ms = 600_000

    _REASONS = {1: "RC4/DES-encrypted tickets for several services",
                2: "RC4/DES-encrypted ticket for a sensitive or decoy service account",
                3: "tickets for an unusually large number of user-account services"}

    retention_param = ("window_s", 1000)
    # every reason the last batch's hits give (merge_rows: a list holding them all is closed)
    _batch_reasons: frozenset[str] | None = None

    def run(self, batch, ctx, hits):
        st = self.state
        n = batch.n
        out_idx = np.empty(n, np.int64)
        out_cnt = np.empty(n, np.int64)
        out_first = np.empty(n, np.int64)
        out_aux = np.empty(n, np.int64)
        out_kind = np.empty(n, np.int64)
        m = _kerberoast(batch.event_id, batch.status, batch.ticket_encryption, batch.flags,
                        batch.time_ms, batch.service, batch.target_sid, batch.str_hash,
                        ctx.sflags, ctx.key, st.index, st["r_val"], st["r_ts"], st["a_val"],
                        st["a_ts"], st["last"], int(self.p["window_s"] * 1000),
                        int(self.p["threshold"]), int(self.p["fanout_threshold"]),
                        out_idx, out_cnt, out_first, out_aux, out_kind)
        self._facts = {}
        self._batch_reasons = None
        if m:
            idx = out_idx[:m]
            hits.add(self.id, idx, ctx.key[idx], out_cnt[:m], out_first[:m], out_aux[:m])
            # per hit: (reason, encryption as text, service), for details / merge_details (a
            # roasting storm merges one per hit)
            reason = [self._REASONS.get(k, "roasting") for k in range(4)]
            kinds = out_kind[:m].tolist()
            enc, enc_at = np.unique(batch.ticket_encryption[idx], return_inverse=True)
            enc_text = [_hex(e) for e in enc.tolist()]
            svc = batch.service[idx]
            svc_text = batch.decode_many(np.unique(svc))
            self._facts = dict(zip(idx.tolist(), zip(
                map(reason.__getitem__, kinds), map(enc_text.__getitem__, enc_at.tolist()),
                map(svc_text.__getitem__, svc.tolist()))))
            self._batch_reasons = frozenset(map(reason.__getitem__, set(kinds)))

    def _fact(self, batch, i) -> tuple[str, str, str]:
        f = getattr(self, "_facts", {}).get(i)
        if f is None:       # not a hit of this detector's last run
            f = ("roasting", _hex(int(batch.ticket_encryption[i])), batch.get("service", i))
        return f

    def details(self, batch, i, aux):
        reason, enc, svc = self._fact(batch, i)
        return {"reason": [reason], "spns": [svc], "encryption": enc}

    def merge_details(self, into, batch, i, aux):
        # details() merged without building it: the same keys in the same order
        reason, enc, svc = self._fact(batch, i)
        cur = into.setdefault("reason", [])
        if isinstance(cur, list) and reason not in cur and len(cur) < MAX_DETAIL_ITEMS:
            cur.append(reason)
        cur = into.setdefault("spns", [])
        if isinstance(cur, list) and svc and len(cur) < MAX_DETAIL_ITEMS and svc not in cur:
            cur.append(svc)
        into["encryption"] = enc

    def merge_rows(self, into, batch, rows, auxs):
        # the first row as merge_details does it (creates the keys, in order); the others
        # only add to the two lists until they are full, and the last one sets the
        # encryption; `distinct` is the largest aux
        self.merge_details(into, batch, rows[0], auxs[0])
        if len(rows) > 1:
            reasons, spns = into.get("reason"), into.get("spns")
            every = self._batch_reasons
            open_r = (isinstance(reasons, list) and len(reasons) < MAX_DETAIL_ITEMS
                      and not (every is not None and every.issubset(reasons)))
            open_s = isinstance(spns, list) and len(spns) < MAX_DETAIL_ITEMS
            if open_r or open_s:
                facts = getattr(self, "_facts", {})
                for i in rows[1:]:
                    f = facts.get(i)
                    reason, _enc, svc = f if f is not None else self._fact(batch, i)
                    if open_r and reason not in reasons:
                        reasons.append(reason)
                        open_r = len(reasons) < MAX_DETAIL_ITEMS
                    if open_s and svc and svc not in spns:
                        spns.append(svc)
                        open_s = len(spns) < MAX_DETAIL_ITEMS
                    if not (open_r or open_s):
                        break
            into["encryption"] = self._fact(batch, rows[-1])[1]
        a = max(auxs)
        if a:
            merge_distinct(into, a)


# a roasting storm renders the same few encryption types for every hit
_hex = functools.lru_cache(maxsize=256)(hex)


# ============================================================================================
# asrep-roasting
# ============================================================================================

@njit(cache=True)
def _asrep(event_id, status, preauth, enc, require_rc4, out_idx):
    m = 0
    for i in range(len(event_id)):
        if event_id[i] != 4768 or status[i] != 0 or preauth[i] != 0:
            continue
        if require_rc4 > 0 and enc[i] != 0x17 and enc[i] != 0x18:
            continue
        out_idx[m] = i
        m += 1
    return m


@register
class AsrepRoasting(Detector):
    id = "asrep-roasting"
    title = "Suspected AS-REP roasting (TGT issued without pre-authentication)"
    description = ("A TGT for {account} was issued without Kerberos pre-authentication "
                   "(PreAuthType 0, encryption {encryption}) to {source}, reported by "
                   "{computer}; {count} request(s) between {first_seen} and {last_seen}.")
    severity = "high"
    mitre = ("T1558.004",)
    mdi_alert_id = ("2412",)
    key = "account"
    event_ids = frozenset({4768})
    params = (
        Param("require_rc4", 0, 0, 0,
              "1 = only alert on RC4/DES AS-REPs (the fast-to-crack ones)", "flag"),
    )
    next_steps = (
        "Check why the account has 'Do not require Kerberos preauthentication' set "
        "(userAccountControl DONT_REQ_PREAUTH) and clear it unless a documented legacy client "
        "needs it.",
        "Reset the account's password to a long random value: the AS-REP can be cracked "
        "offline.",
        "Identify the requesting host (Rubeus asreproast, GetNPUsers.py).",
    )
    false_positives = (
        "Legacy Kerberos clients (old Unix/MIT, appliances) configured for accounts with "
        "pre-authentication disabled: exclude the account or the client IP.",
    )
    audit = "Audit Kerberos Authentication Service (4768, Success) on DCs."

    def run(self, batch, ctx, hits):
        out_idx = np.empty(batch.n, np.int64)
        m = _asrep(batch.event_id, batch.status, batch.preauth_type, batch.ticket_encryption,
                   int(self.p["require_rc4"]), out_idx)
        if m:
            idx = out_idx[:m]
            hits.add(self.id, idx, ctx.key[idx])

    def details(self, batch, i, aux):
        return {"encryption": hex(int(batch.ticket_encryption[i]))}


# ============================================================================================
# dcsync
# ============================================================================================

@njit(cache=True)
def _dcsync(event_id, access_mask, flags, props, account, account_sid, sflags, out_idx):
    m = 0
    for i in range(len(event_id)):
        if event_id[i] != 4662:
            continue
        if not (access_mask[i] & 0x100):  # ADS_RIGHT_DS_CONTROL_ACCESS
            continue
        if not (sflags[props[i]] & F_REPL_RIGHTS):
            continue
        af = sflags[account[i]] | sflags[account_sid[i]]
        if af & (T_DC | T_SYNC_ACCOUNT | F_NT_AUTHORITY):
            continue  # a DC replicating, a configured sync account, or the DC's own SYSTEM
        out_idx[m] = i
        m += 1
    return m


@register
class DcSync(Detector):
    id = "dcsync"
    title = "Suspected DCSync attack (directory replication by a non-DC)"
    description = ("{account} exercised directory replication rights ({rights}) on {computer} "
                   "at {first_seen}; {count} replication request(s) until {last_seen}. "
                   "Only domain controllers (and configured sync accounts) should replicate.")
    severity = "high"
    mitre = ("T1003.006",)
    mdi_alert_id = ("2006",)
    key = "account"
    event_ids = frozenset({4662})
    next_steps = (
        "Find the host the account used (4624 logon of the account on this DC at the same "
        "time) and isolate it: DCSync returns password hashes, including krbtgt's.",
        "Reset the passwords of the replicated accounts (krbtgt twice) if the request is not "
        "explained.",
        "Review who holds 'Replicating Directory Changes (All)' on the domain root.",
    )
    false_positives = (
        "Entra/Azure AD Connect (MSOL_*), ADSync, MIM or other directory-sync accounts: add "
        "them to `sync_accounts` in the configuration.",
        "`dcdiag /test:replications` run by an administrator; new DCs not yet known (list "
        "them under `domain_controllers`).",
    )
    audit = ("Audit Directory Service Access (Success) on DCs and a SACL on the domain naming "
             "context root auditing Control Access for Everyone (or the replication rights).")

    def run(self, batch, ctx, hits):
        out_idx = np.empty(batch.n, np.int64)
        m = _dcsync(batch.event_id, batch.access_mask, batch.flags, batch.properties,
                    batch.account, batch.account_sid, ctx.sflags, out_idx)
        if m:
            idx = out_idx[:m]
            hits.add(self.id, idx, ctx.key[idx])

    def details(self, batch, i, aux):
        p = batch.get("properties", i).lower()
        rights = []
        for g, n in (("1131f6aa-9c07-11d1-f79f-00c04fc2dcd2", "Get-Changes"),
                     ("1131f6ad-9c07-11d1-f79f-00c04fc2dcd2", "Get-Changes-All"),
                     ("89e95b76-444d-4c62-991a-0facbeda640c", "Get-Changes-In-Filtered-Set")):
            if g in p:
                rights.append(n)
        return {"rights": rights}


# ============================================================================================
# dpapi-backup-key
# ============================================================================================

@njit(cache=True)
def _dpapi(event_id, flags, account, obj, share, rel, src_ip, src_host, sflags, out_idx):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        if e != 4662 and e != 5145:
            continue
        fl = flags[i]
        if fl & FLAG_MACHINE:
            continue
        if sflags[account[i]] & (F_NT_AUTHORITY | T_DC):
            continue
        if e == 4662:
            if not (sflags[obj[i]] & F_BCKUPKEY):
                continue
        else:
            if not (sflags[rel[i]] & F_PIPE_PROTECTED_STORAGE):
                continue
            if not (sflags[share[i]] & F_IPC_SHARE):
                continue
            if fl & FLAG_LOCAL_SOURCE:
                continue
            if (sflags[src_ip[i]] | sflags[src_host[i]]) & T_DC:
                continue
        out_idx[m] = i
        m += 1
    return m


@register
class DpapiBackupKey(Detector):
    id = "dpapi-backup-key"
    title = "Malicious request of the DPAPI domain backup key"
    description = ("{account} {what} on {computer} (event {event_id}) from {source}; {count} "
                   "event(s) between {first_seen} and {last_seen}. The domain backup key "
                   "decrypts every domain user's DPAPI master keys.")
    severity = "high"
    mitre = ("T1555",)
    mdi_alert_id = ("2020",)
    key = "account"
    event_ids = frozenset({4662, 5145})
    next_steps = (
        "Treat the account and its source host as compromised (mimikatz lsadump::backupkeys, "
        "SharpDPAPI backupkey, dpapi::masterkey /rpc).",
        "If the key itself was read (4662 on G$BCKUPKEY), plan the DPAPI backup-key rotation "
        "procedure: stolen backup keys do not expire.",
    )
    false_positives = (
        "Windows clients restoring a user's master key after a password reset open the "
        "protected_storage pipe (MS-BKRP) -- rare; reading the BCKUPKEY secret itself has no "
        "benign use by a user account.",
    )
    audit = ("4662: Audit Directory Service Access / Other Object Access with LSA secret "
             "auditing on DCs; 5145: Audit Detailed File Share (Success) on DCs.")

    def run(self, batch, ctx, hits):
        out_idx = np.empty(batch.n, np.int64)
        m = _dpapi(batch.event_id, batch.flags, batch.account, batch.object, batch.share,
                   batch.relative_target, batch.src_ip, batch.src_host, ctx.sflags, out_idx)
        if m:
            idx = out_idx[:m]
            hits.add(self.id, idx, ctx.key[idx])

    def details(self, batch, i, aux):
        if int(batch.event_id[i]) == 4662:
            return {"what": "accessed the DPAPI backup key secret", "secrets":
                    [batch.get("object", i)]}
        return {"what": "opened the protected_storage (MS-BKRP BackupKey) pipe"}


# ============================================================================================
# shadow-credentials
# ============================================================================================

@njit(cache=True)
def _shadow_creds(event_id, attr, account, sflags, out_idx):
    m = 0
    for i in range(len(event_id)):
        if event_id[i] != 5136:
            continue
        if not (sflags[attr[i]] & F_KEYCRED_ATTR):
            continue
        if sflags[account[i]] & (T_SYNC_ACCOUNT | F_NT_AUTHORITY):
            continue
        out_idx[m] = i
        m += 1
    return m


def _dn_cn(dn: str) -> str:
    d = dn.strip().lower()
    if not d.startswith("cn="):
        return ""
    out = []
    j = 3
    while j < len(d):
        ch = d[j]
        if ch == "\\" and j + 1 < len(d):
            out.append(d[j + 1])
            j += 2
            continue
        if ch == ",":
            break
        out.append(ch)
        j += 1
    return "".join(out)


@register
class ShadowCredentials(Detector):
    id = "shadow-credentials"
    title = "Suspected account takeover using shadow credentials"
    description = ("{account} wrote msDS-KeyCredentialLink of {object} on {computer} at "
                   "{first_seen}: a key credential lets its holder obtain a TGT for that "
                   "account with PKINIT. {count} change(s) until {last_seen}.")
    severity = "high"
    mitre = ("T1556", "T1098")
    mdi_alert_id = ("2431",)
    key = "account"
    event_ids = frozenset({5136})
    next_steps = (
        "Inspect the object's msDS-KeyCredentialLink values and remove the key that was added "
        "(Whisker/pyWhisker/Certipy shadow).",
        "Look for a 4768 certificate (PKINIT) logon of the target account after the change.",
        "Review who holds write access to msDS-KeyCredentialLink on the object.",
    )
    false_positives = (
        "Windows Hello for Business key trust: Entra Connect sync account or the AD FS device "
        "registration service writing keys (add them to `sync_accounts`); a computer "
        "registering its own key (ignored automatically).",
    )
    audit = "Audit Directory Service Changes (5136, Success) on DCs with the default SACLs."

    def run(self, batch, ctx, hits):
        out_idx = np.empty(batch.n, np.int64)
        m = _shadow_creds(batch.event_id, batch.attribute, batch.account, ctx.sflags, out_idx)
        if not m:
            return
        # self-registration check (rare hits only): a computer writing its own key
        keep = []
        for i in out_idx[:m].tolist():
            actor = batch.get("account", i).rsplit("\\", 1)[-1].rstrip("$")
            if actor and actor == _dn_cn(batch.get("object", i)) and \
                    batch.get("account", i).endswith("$"):
                continue
            keep.append(i)
        if keep:
            idx = np.asarray(keep, np.int64)
            hits.add(self.id, idx, ctx.key[idx])


# ============================================================================================
# samaccountname-spoofing
# ============================================================================================

@njit(cache=True)
def _nopac(event_id, status, flags, account, target, value, obj, name_hash, dc_name, sflags,
           dc_keys, out_idx, out_kind):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        kind = 0
        if e == 4781:
            # computer (old name ends with $) renamed to a name without the trailing $
            if (flags[i] & FLAG_TARGET_MACHINE) and value[i] != 0 and \
                    not (sflags[value[i]] & T_MACHINE_NAME):
                kind = 2 if sflags[value[i]] & T_DC else 1
        elif e == 4742 or e == 4741:
            # sAMAccountName of a computer set to a value without the trailing $
            if obj[i] != 0 and not (sflags[obj[i]] & T_MACHINE_NAME):
                kind = 2 if sflags[obj[i]] & T_DC else 1
        elif e == 4768 or e == 4769:
            if status[i] == 0 and not (flags[i] & FLAG_MACHINE):
                h = name_hash[account[i]]
                if h != 0 and (set_contains(dc_keys, h) or dc_name[account[i]]):
                    kind = 3
        if kind:
            out_idx[m] = i
            out_kind[m] = kind
            m += 1
    return m


def _bare_name_hash(s: str) -> int:
    """Hash of the name part of an account (no domain, no @realm); 0 for machine accounts."""
    name = s.rsplit("\\", 1)[-1].split("@", 1)[0]
    return 0 if (not name or name.endswith("$")) else key_hash(name)


_NAME_HASHES = DerivedHashes(_bare_name_hash)


@register
class SamAccountNameSpoofing(Detector):
    id = "samaccountname-spoofing"
    title = "Suspicious modification of a sAMAccountName (noPac, CVE-2021-42278/42287)"
    description = ("{reason}: {items}. Acting / requesting account {account}, reported by "
                   "{computer} (event {event_id}); {count} related event(s) between "
                   "{first_seen} and {last_seen}.")
    severity = "high"
    mitre = ("T1068", "T1558")
    mdi_alert_id = ("2419",)
    key = "account"
    event_ids = frozenset({4781, 4742, 4741, 4768, 4769})
    next_steps = (
        "Find the computer account that was renamed (TargetSid) and who created it "
        "(4741; ms-DS-MachineAccountQuota abuse); disable and delete it.",
        "Treat any ticket issued to the DC-named account as a domain compromise: check for "
        "DCSync and new privileged accounts after the event; reset krbtgt.",
        "Install the November 2021 updates (KB5008380 / KB5008602) on every DC and set "
        "ms-DS-MachineAccountQuota to 0.",
    )
    false_positives = (
        "None known: computer accounts always end with `$`; a rename without it is not made "
        "by Windows tooling.",
    )
    audit = ("Audit Computer Account Management (4741/4742), Audit User Account Management "
             "(4781), Audit Kerberos Authentication Service / Service Ticket Operations "
             "(4768/4769) on DCs.")

    _REASONS = {1: "A computer account was renamed to a sAMAccountName without the trailing $",
                2: "A computer account was renamed to the name of a domain controller (no $)",
                3: "A Kerberos ticket was issued for an account named like a domain controller "
                   "without the trailing $"}

    def _name_hashes(self, batch, ctx, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per string-table entry (accounts of candidate events only, whose name does not end
        with `$`): the hash of the name part (no domain), and 1 if that name is the short name
        of a DC reporting in this batch (``T_DC`` on the computer column: configured or learned
        DCs). The learned ``ctx.dc_keys`` set is checked in the kernel as well."""
        out = np.zeros(batch.n_strings, np.uint64)
        is_dc = np.zeros(batch.n_strings, np.uint8)
        if not cand.any():
            return out, is_dc
        sis = batch.distinct(batch.account[cand])
        out[sis] = _NAME_HASHES.table(batch, sis)
        comps = batch.distinct(batch.computer)
        dc_short = [key_hash(batch.string(c).split(".", 1)[0])
                    for c in comps[(ctx.sflags[comps] & T_DC) != 0].tolist()]
        if dc_short:
            is_dc[(out != 0) & np.isin(out, np.array(dc_short, dtype=np.uint64))] = 1
        return out, is_dc

    def run(self, batch, ctx, hits):
        ev = batch.event_id
        cand = ((ev == 4768) | (ev == 4769)) & (batch.status == 0) & \
            ((batch.flags & FLAG_MACHINE) == 0)
        name_hash, dc_name = self._name_hashes(batch, ctx, cand)
        out_idx = np.empty(batch.n, np.int64)
        out_kind = np.empty(batch.n, np.int64)
        m = _nopac(ev, batch.status, batch.flags, batch.account, batch.target_account,
                   batch.value, batch.object, name_hash, dc_name, ctx.sflags, ctx.dc_keys,
                   out_idx, out_kind)
        self._kind = dict(zip(out_idx[:m].tolist(), out_kind[:m].tolist()))
        if m:
            idx = out_idx[:m]
            hits.add(self.id, idx, ctx.key[idx])

    def details(self, batch, i, aux):
        kind = getattr(self, "_kind", {}).get(i, 0)
        e = int(batch.event_id[i])
        d = {"reason": [self._REASONS.get(kind, "sAMAccountName spoofing")]}  # all reasons
        if e == 4781:
            d["items"] = [f"renamed {batch.get('target_account', i)} -> {batch.get('value', i)}"]
        elif e in (4741, 4742):
            d["items"] = [f"{batch.get('target_account', i)} sAMAccountName set to "
                          f"{batch.get('object', i)}"]
        else:
            what = "TGT" if e == 4768 else f"service ticket for {batch.get('service', i)}"
            d["items"] = [f"{what} issued to {batch.get('account', i)} from "
                          f"{batch.get('src_ip', i) or 'an unknown address'}"]
        return d
