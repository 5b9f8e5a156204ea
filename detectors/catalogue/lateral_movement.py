"""Lateral movement: pass-the-hash, overpass-the-hash, pass-the-ticket, remote-execution,
suspicious-service, coercion, ntlm-relay.

Conventions used by every kernel here:

* string tests go through ``ctx.sflags`` bits (registered below with :func:`string_feature`) or
  through exact 64-bit hashes of normalized constant strings (``protocol`` is normalized to
  ``ntlm`` / ``kerberos`` / ``negotiate``; ``logon_process`` keeps the raw name, e.g. ``seclogo``);
* a "remote" source is an event with a non-empty ``src_ip`` and without FLAG_LOCAL_SOURCE;
* stateful kernels update ``last[slot] = max(last, t)`` whenever they touch a slot.
"""

from __future__ import annotations

import re

import numpy as np
from numba import njit

from collectors.normalize import FLAG_NULL_SUBJECT
from stream.schema import (FLAG_ANONYMOUS, FLAG_FAILURE, FLAG_LOCAL_SOURCE, FLAG_MACHINE,
                           key_hash)

from ..base import Detector, Param, register
from ..features import (T_ADMIN_HOST, T_ANONYMOUS, T_DC, T_SENSITIVE_HOST, DerivedHashes,
                        contains_any, string_feature)
from ..kernels.common import distinct_push, find_row, mix, row_of

# -- constant hashes of normalized strings ----------------------------------------------------
H_NTLM = np.uint64(key_hash("ntlm"))
H_KERBEROS = np.uint64(key_hash("kerberos"))
H_NEGOTIATE = np.uint64(key_hash("negotiate"))
H_SECLOGO = np.uint64(key_hash("seclogo"))

# -- string features --------------------------------------------------------------------------


def _pipe(s: str) -> str:
    return s.strip().lstrip("\\").rsplit("\\", 1)[-1]


def _share(s: str) -> str:
    return s.strip().rsplit("\\", 1)[-1]


_EXEC_EXT = (".exe", ".dll", ".bat", ".cmd", ".ps1", ".vbs", ".sys", ".scr", ".hta", ".js",
             ".msi", ".com")

F_IPC = string_feature("lm_share_ipc", lambda s: _share(s) == "ipc$", columns=("share",))
F_ADMIN_SHARE = string_feature("lm_share_admin", lambda s: _share(s) in ("admin$", "c$"), columns=("share",))
# remote service control / task scheduler pipes, and the pipes of PsExec-like tools
F_PIPE_REMOTE_EXEC = string_feature(
    "lm_pipe_remote_exec",
    lambda s: _pipe(s) in ("svcctl", "atsvc")
    or _pipe(s).startswith(("psexesvc", "remcom", "paexe", "csexec", "winexesvc"))
    or _pipe(s).endswith(("-stdin", "-stdout", "-stderr")), columns=("relative_target",))
F_PIPE_COERCE = string_feature("lm_pipe_coerce", lambda s: _pipe(s) in ("efsrpc", "lsass",
                                                                         "netdfs"), columns=("relative_target",))
F_PIPE_SPOOLSS = string_feature("lm_pipe_spoolss", lambda s: _pipe(s) == "spoolss", columns=("relative_target",))
F_PIPE_COERCE_WEAK = string_feature("lm_pipe_coerce_weak",
                                    lambda s: _pipe(s) in ("lsarpc", "samr", "netlogon"), columns=("relative_target",))
# an executable written into ADMIN$ (the Windows folder) or C$\Windows
F_EXEC_FILE = string_feature(
    "lm_exec_file", lambda s: s.strip().endswith(_EXEC_EXT)
    and (not s.lstrip("\\").startswith(("users\\", "programdata\\"))), columns=("relative_target",))
F_IPV6 = string_feature("lm_ipv6", lambda s: ":" in s, columns=("src_ip",))

_SUSP_IMAGE_NEEDLES = (
    "cmd /c", "cmd.exe /c", "cmd /q", "cmd.exe /q", "%comspec%", "powershell", "pwsh",
    " -enc", " -nop", "-w hidden", "-windowstyle hidden", "\\\\127.0.0.1\\", "\\\\localhost\\",
    "\\admin$\\", "\\c$\\", "\\temp\\", "\\tmp\\", "\\appdata\\", "\\users\\public\\",
    "\\perflogs\\", "mshta", "rundll32", "regsvr32", "wscript", "cscript", "certutil",
    "bitsadmin", "\\\\.\\pipe\\", "echo ", "&&", "^>", "downloadstring", "frombase64",
    "iex(", "iex (", "invoke-expression", "psexesvc", "mimikatz", "mimidrv", "mimilib",
    "remcom", "btobto", "__output", "execute.bat", "csexec", "paexec", "winexesvc",
    "meterpreter", "procdump", "nc.exe", "ncat", "-nop ", "/c start", "javaw -jar",
)
_BARE_IMAGE = re.compile(r'^"?[^\\/"\s]+\.(exe|com|bat|cmd)"?(\s|$)')
_WINROOT_IMAGE = re.compile(
    r'^"?(%systemroot%|%windir%|c:\\windows|\\systemroot)\\[^\\"\s]+\.exe"?(\s|$)')
_WINROOT_OK = ("explorer.exe", "regedit.exe", "hh.exe", "notepad.exe", "winhlp32.exe")


def _susp_image(s: str) -> bool:
    s = s.strip()
    if not s:
        return False
    if any(n in s for n in _SUSP_IMAGE_NEEDLES):
        return True
    if _BARE_IMAGE.match(s):  # "cmd.exe", "calc.exe": no directory at all
        return True
    m = _WINROOT_IMAGE.match(s)  # binary dropped in the root of the Windows folder (ADMIN$)
    if m and not s.strip('"').rsplit("\\", 1)[-1].split()[0].strip('"') in _WINROOT_OK:
        return True
    return False


F_SVC_SUSP = string_feature("lm_service_image_suspicious", _susp_image, columns=("image_path",))
F_SVC_REMOTE_TOOL = string_feature("lm_service_remote_exec_tool", contains_any(
    "psexesvc", "remcomsvc", "paexec", "csexec", "winexesvc", "__output", "execute.bat",
    "\\\\127.0.0.1\\admin$", "\\\\127.0.0.1\\c$", "btobto"), columns=("image_path",))
# impacket atexec: task action "cmd.exe /C <cmd> > %windir%\Temp\<rand>.tmp 2>&1" and its
# fixed trigger StartBoundary template
F_TASK_REMOTE_EXEC = string_feature("lm_task_remote_exec", lambda s: (
    "2015-07-15t20:35:13.2757294" in s
    or ("\\temp\\" in s and ".tmp 2&gt;&amp;1" in s)
    or ("\\temp\\" in s and ".tmp 2>&1" in s)), columns=("value",))

_WRITE_MASK = np.uint32(0x2 | 0x4)  # WriteData/AddFile | AppendData/AddSubdirectory


def _host_of(s: str) -> str:
    """Comparable host label: account `dom\\name$` -> name, fqdn -> first label."""
    s = s.strip().lower().rsplit("\\", 1)[-1].split("@", 1)[0]
    return s.rstrip("$").split(".", 1)[0]


def host_hash_table(batch, cols, mask) -> np.ndarray:
    """uint64 per string-table entry: hash of the comparable host label (see ``_host_of``) for
    the strings of ``cols`` used by the rows in ``mask`` (0 elsewhere). Python work is per
    distinct string never seen before (process-wide cache by string hash)."""
    out = np.zeros(batch.n_strings, dtype=np.uint64)
    if not mask.any():
        return out
    idx = batch.distinct(*[batch.col(c)[mask] for c in cols])
    out[idx] = _HOST_HASHES.table(batch, idx)
    return out


_HOST_HASHES = DerivedHashes(lambda s: key_hash(_host_of(s)))


# ============================================================================================
# pass-the-hash
# ============================================================================================

@njit(cache=True)
def _pth(event_id, logon_type, key_length, flags, time_ms, proto_h, lproc_h, ip_h, host_h,
         acc_flags, key, keys, d_val, d_ts, last, learning, learn_until, anon_bit,
         out_idx):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        if e != 4624 and e != 4776:
            continue
        f = flags[i]
        if f & (FLAG_MACHINE | FLAG_ANONYMOUS | FLAG_FAILURE):
            continue
        if acc_flags[i] & anon_bit:
            continue
        t = time_ms[i]
        src = ip_h[i] if ip_h[i] != 0 else host_h[i]
        if e == 4776:
            if src != 0:
                s = row_of(keys, key[i])
                distinct_push(d_val, d_ts, s, src, t)
                if t > last[s]:
                    last[s] = t
            continue
        lt = logon_type[i]
        if lt == 9 and lproc_h[i] == H_SECLOGO:
            out_idx[m] = i
            m += 1
            continue
        ntlm_no_key = (lt == 3 and proto_h[i] == H_NTLM and key_length[i] == 0
                       and (f & FLAG_NULL_SUBJECT) != 0)
        if ntlm_no_key and (f & FLAG_LOCAL_SOURCE) != 0:
            # NTLM network logon without session key looped back to the machine itself
            out_idx[m] = i
            m += 1
            continue
        if src == 0 or (f & FLAG_LOCAL_SOURCE):
            continue
        s = row_of(keys, key[i])
        new = distinct_push(d_val, d_ts, s, src, t)
        if t > last[s]:
            last[s] = t
        if ntlm_no_key and new and (not learning or t >= learn_until):
            out_idx[m] = i
            m += 1
    return m


@register
class PassTheHash(Detector):
    id = "pass-the-hash"
    title = "Suspected identity theft (pass-the-hash)"
    description = ("{account} {pth_reason} on {computer} from {source} (event {event_id}); "
                   "{count} such logon(s) between {first_seen} and {last_seen}.")
    severity = "high"
    mitre = ("T1550.002",)
    mdi_alert_id = ("2017",)
    key = "account"
    event_ids = frozenset({4624, 4625, 4776})
    params = (
        Param("host_history_days", 30, 30, 30, "how long a source host stays 'known' for the "
              "account", "days"),
    )
    learning_days = 7
    next_steps = (
        "On the logging host, find the process that created the logon (4624 ProcessName / "
        "TargetLogonId, Sysmon 1/10) - mimikatz sekurlsa::pth, Invoke-TheHash, impacket.",
        "Check where the account's NTLM hash could have been dumped (LSASS access on hosts the "
        "account logged on to) and reset its password (twice for krbtgt-like accounts).",
        "List the account's other logons from the same source in the last hours to scope "
        "lateral movement.",
    )
    false_positives = (
        "`runas /netonly` (LogonType 9, seclogo) used by administrators on purpose.",
        "Non-Windows NTLM clients (Samba, some appliances) that do not negotiate a session key "
        "(KeyLength 0): exclude their hosts or IPs.",
    )
    audit = "Audit Logon (Success) on workstations and servers (4624); Audit Credential "\
            "Validation on DCs (4776)."
    STATE = {"d_val": ("u8", (16,)), "d_ts": ("i8", (16,))}
    window_ms = 30 * 86_400_000

    retention_param = ("host_history_days", 86_400_000)

    def run(self, batch, ctx, hits):
        st = self.state
        h = batch.str_hash
        out = np.empty(batch.n, np.int64)
        m = _pth(batch.event_id, batch.logon_type, batch.key_length, batch.flags,
                 batch.time_ms, h[batch.protocol], h[batch.logon_process], h[batch.src_ip],
                 h[batch.src_host], ctx.sflags[batch.account], ctx.key, st.index,
                 st["d_val"], st["d_ts"], st["last"], ctx.learning, ctx.learning_until_ms,
                 T_ANONYMOUS, out)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, ctx.key[idx])

    def details(self, batch, i, aux):
        lt = int(batch.logon_type[i])
        if lt == 9:
            reason = ("started a process with alternate credentials (LogonType 9, seclogo: "
                      "sekurlsa::pth / runas /netonly)")
        elif int(batch.flags[i]) & FLAG_LOCAL_SOURCE:
            reason = ("made an NTLM network logon without a session key (KeyLength 0) "
                      "looped back to the machine itself (local pass-the-hash)")
        else:
            reason = ("made an NTLM network logon without a session key (KeyLength 0) from "
                      "a host the account never used before")
        return {"pth_reason": reason, "logon_type": lt,
                "logon_process": batch.get("logon_process", i)}


# ============================================================================================
# overpass-the-hash
# ============================================================================================

@njit(cache=True)
def _opth(event_id, logon_type, ticket_enc, status, flags, time_ms, proto_h, lproc_h, ip_h,
          key, keys, n_aes, n_tgt, d_val, d_ts, last, learning, learn_until, seclogo,
          rc4_any, out_idx, out_aux):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        if e == 4624:
            if (seclogo and logon_type[i] == 9 and lproc_h[i] == H_SECLOGO
                    and proto_h[i] == H_NEGOTIATE and not (flags[i] & FLAG_MACHINE)):
                out_idx[m] = i
                out_aux[m] = 3
                m += 1
            continue
        if e != 4768 and e != 4771:
            continue
        f = flags[i]
        if f & FLAG_MACHINE:
            continue
        t = time_ms[i]
        s = row_of(keys, key[i])
        if t > last[s]:
            last[s] = t
        if e == 4771 or status[i] != 0:
            continue
        et = ticket_enc[i]
        src = ip_h[i] if not (f & FLAG_LOCAL_SOURCE) else np.uint64(0)
        known_host = True
        if src != 0:
            known_host = not distinct_push(d_val, d_ts, s, src, t)
        had_aes = n_aes[s] > 0
        had_history = n_tgt[s] > 0
        n_tgt[s] += 1
        if et == 0x11 or et == 0x12:
            n_aes[s] += 1
            continue
        if et != 0x17 and et != 0x18:
            continue
        if learning and t < learn_until:
            continue
        reason = 0
        if had_aes:
            reason = 1          # downgrade: the account normally gets AES tickets
        elif not known_host and (had_history or rc4_any):
            reason = 2          # RC4 TGT from a host the account does not normally use
        if reason:
            out_idx[m] = i
            out_aux[m] = reason
            m += 1
    return m


@register
class OverpassTheHash(Detector):
    id = "overpass-the-hash"
    title = "Suspected overpass-the-hash attack (Kerberos)"
    description = ("{account} {opth_reason} from {source} (reported by {computer}); {count} "
                   "event(s) between {first_seen} and {last_seen}.")
    severity = "high"
    mitre = ("T1550.002",)
    mdi_alert_id = ("2002", "2008")
    key = "account"
    event_ids = frozenset({4768, 4771, 4624})
    params = (
        Param("seclogo_indicator", 0, 1, 1, "also alert on the source-host indicator (4624 "
              "LogonType 9 seclogo Negotiate); at high it is reported by pass-the-hash only, "
              "to avoid two alerts for one event", "bool"),
        Param("rc4_without_history", 0, 1, 1, "alert on an RC4 TGT from a new host even when "
              "the account has no Kerberos history yet", "bool"),
        Param("history_days", 30, 30, 30, "how long the encryption/host profile is kept",
              "days"),
    )
    learning_days = 7
    next_steps = (
        "Find the process on the source host that requested the RC4 TGT (Rubeus asktgt /rc4, "
        "mimikatz sekurlsa::pth, impacket getTGT) - Sysmon 1/10, EDR.",
        "Reset the account's password: the NTLM hash (RC4 key) is compromised.",
        "Review the service tickets (4769) requested with that TGT from the same IP.",
    )
    false_positives = (
        "Legacy clients or accounts without AES keys (password not changed since the domain "
        "functional level was raised) - fix by resetting the password, or exclude.",
        "Non-Windows Kerberos clients (Java, MIT krb5 with RC4 in the etype list).",
    )
    audit = "Audit Kerberos Authentication Service (4768, 4771) on DCs; Audit Logon on "\
            "hosts for the seclogo indicator."
    STATE = {"n_aes": ("i8", ()), "n_tgt": ("i8", ()), "d_val": ("u8", (16,)),
             "d_ts": ("i8", (16,))}
    window_ms = 30 * 86_400_000

    retention_param = ("history_days", 86_400_000)

    def run(self, batch, ctx, hits):
        st = self.state
        h = batch.str_hash
        n = batch.n
        out = np.empty(n, np.int64)
        aux = np.empty(n, np.int64)
        m = _opth(batch.event_id, batch.logon_type, batch.ticket_encryption, batch.status,
                  batch.flags, batch.time_ms, h[batch.protocol], h[batch.logon_process],
                  h[batch.src_ip], ctx.key, st.index, st["n_aes"], st["n_tgt"], st["d_val"],
                  st["d_ts"], st["last"], ctx.learning, ctx.learning_until_ms,
                  bool(self.p["seclogo_indicator"]), bool(self.p["rc4_without_history"]),
                  out, aux)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, ctx.key[idx])
            self._reasons = dict(zip(idx.tolist(), aux[:m].tolist()))
        else:
            self._reasons = {}

    def details(self, batch, i, aux):
        r = getattr(self, "_reasons", {}).get(int(i), 0)
        if int(batch.event_id[i]) == 4624:
            text = ("started a process with alternate credentials (LogonType 9, seclogo, "
                    "Negotiate) - the source-host side of overpass-the-hash")
        elif r == 1:
            text = ("obtained a TGT with RC4 encryption (downgrade: the account normally "
                    "gets AES tickets)")
        else:
            text = "obtained a TGT with RC4 encryption from a host it does not normally use"
        return {"opth_reason": text, "ticket_encryption": hex(int(batch.ticket_encryption[i]))}


# ============================================================================================
# pass-the-ticket
# ============================================================================================

@njit(cache=True)
def _ptt(event_id, logon_type, status, flags, time_ms, proto_h, ip_h, ip_flags, key, keys,
         d_val, d_ts, last, lifetime, v6_bit, machines, out_idx, out_first):
    m = 0
    width = d_val.shape[1]
    for i in range(len(event_id)):
        e = event_id[i]
        if e != 4768 and e != 4769 and e != 4624:
            continue
        f = flags[i]
        if (f & (FLAG_ANONYMOUS | FLAG_LOCAL_SOURCE | FLAG_FAILURE)) or ip_h[i] == 0:
            continue
        if (f & FLAG_MACHINE) and not machines:
            continue
        if e != 4624 and status[i] != 0:
            continue
        if e == 4624 and not (logon_type[i] == 3 and proto_h[i] == H_KERBEROS):
            continue
        t = time_ms[i]
        ip = ip_h[i]
        v6 = (ip_flags[i] & v6_bit) != 0
        # store IPv6 TGT sources with the low bit set, IPv4 with it clear, so that a host
        # using both families is never compared across families
        tag = (ip | np.uint64(1)) if v6 else (ip & ~np.uint64(1))
        if tag == 0:
            tag = np.uint64(2)
        if e == 4768:
            s = row_of(keys, key[i])
            distinct_push(d_val, d_ts, s, tag, t)
            if t > last[s]:
                last[s] = t
            continue
        s = find_row(keys, key[i])
        if s < 0:
            continue  # no TGT seen for the account at all: golden-ticket territory
        own = False
        other = False
        other_t = t
        for j in range(width):
            v = d_val[s, j]
            if v == 0:
                continue
            if (v & np.uint64(1)) != (tag & np.uint64(1)):
                continue
            ts = d_ts[s, j]
            if ts > t or t - ts > lifetime:
                continue
            if v == tag:
                own = True
                break
            other = True
            if ts < other_t:
                other_t = ts
        if other and not own:
            if t > last[s]:
                last[s] = t
            out_idx[m] = i
            out_first[m] = other_t
            m += 1
    return m


@register
class PassTheTicket(Detector):
    id = "pass-the-ticket"
    title = "Suspected identity theft (pass-the-ticket)"
    description = ("Kerberos tickets of {account} were used from {source} (event {event_id}, "
                   "service {service}), although within the TGT lifetime only {tgt_sources} "
                   "obtained a TGT for it; {count} use(s) between {first_seen} and "
                   "{last_seen}.")
    severity = "high"
    mitre = ("T1550.003",)
    mdi_alert_id = ("2018",)
    key = "account"
    event_ids = frozenset({4768, 4769, 4624})
    params = (
        Param("tgt_lifetime_h", 10, 10, 10, "maximum TGT lifetime (domain Kerberos policy)",
              "h"),
        Param("machine_accounts", 0, 0, 1, "also follow computer accounts", "bool"),
    )
    next_steps = (
        "Identify the host behind the IP that used the ticket and look for ticket export / "
        "import tooling (mimikatz kerberos::ptt, Rubeus ptt, .kirbi / .ccache files).",
        "Purge the account's tickets (klist purge) on the legitimate host, reset the password "
        "and review what the foreign IP accessed with the ticket (4769 service names).",
    )
    false_positives = (
        "NAT, VPN concentrators or proxies that change the client IP between the TGT and the "
        "service-ticket request: exclude those IPs or subnets.",
        "Hosts with several IPv4 addresses (multi-homed servers, Wi-Fi + wired).",
        "Remote Credential Guard / delegated TGTs (forwarded to the RDP/remote host).",
    )
    audit = "Audit Kerberos Authentication Service (4768) and Audit Kerberos Service Ticket "\
            "Operations (4769) on all DCs; Audit Logon on servers (4624)."
    STATE = {"d_val": ("u8", (8,)), "d_ts": ("i8", (8,))}
    window_ms = 10 * 3_600_000

    def retention_ms(self):
        return int(self.p["tgt_lifetime_h"] * 3_600_000)

    def run(self, batch, ctx, hits):
        st = self.state
        h = batch.str_hash
        n = batch.n
        out = np.empty(n, np.int64)
        first = np.empty(n, np.int64)
        m = _ptt(batch.event_id, batch.logon_type, batch.status, batch.flags, batch.time_ms,
                 h[batch.protocol], h[batch.src_ip], ctx.sflags[batch.src_ip], ctx.key,
                 st.index, st["d_val"], st["d_ts"], st["last"],
                 int(self.p["tgt_lifetime_h"] * 3_600_000), F_IPV6,
                 bool(self.p["machine_accounts"]), out, first)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, ctx.key[idx], first_ms=first[:m])

    def details(self, batch, i, aux):
        return {"tgt_sources": "other IP address(es)"}


# ============================================================================================
# remote-execution
# ============================================================================================

@njit(cache=True)
def _remote_exec(event_id, access_mask, flags, ip_h, share_f, target_f, ip_f, host_f,
                 image_f, value_f, out_idx):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        if e == 5145:
            f = flags[i]
            if (f & (FLAG_MACHINE | FLAG_ANONYMOUS | FLAG_LOCAL_SOURCE)) or ip_h[i] == 0:
                continue
            if (ip_f[i] | host_f[i]) & T_ADMIN_HOST:
                continue
            sf = share_f[i]
            tf = target_f[i]
            hit = False
            if (sf & F_IPC) and (tf & F_PIPE_REMOTE_EXEC):
                hit = True
            elif (sf & F_ADMIN_SHARE) and (tf & F_EXEC_FILE) and (access_mask[i] & _WRITE_MASK):
                hit = True
            if hit:
                out_idx[m] = i
                m += 1
        elif e == 7045 or e == 4697:
            if image_f[i] & F_SVC_REMOTE_TOOL:
                out_idx[m] = i
                m += 1
        elif e == 4698:
            if value_f[i] & F_TASK_REMOTE_EXEC:
                out_idx[m] = i
                m += 1
    return m


@register
class RemoteExecution(Detector):
    id = "remote-execution"
    title = "Remote code execution attempt (service / task / PsExec-like)"
    description = ("{source} {rexec_reason} on {computer} as {account} (event {event_id}); "
                   "{count} related event(s) between {first_seen} and {last_seen}.")
    severity = "high"
    mitre = ("T1021.002", "T1569.002")
    mdi_alert_id = ("2019",)
    key = "source"
    event_ids = frozenset({5145, 4697, 7045, 4698})
    next_steps = (
        "Confirm with the account owner whether remote administration from this source was "
        "planned (change ticket); if not, isolate the source host.",
        "On the target, list services and scheduled tasks created at that time (7045/4697/"
        "4698) and the binaries written to ADMIN$; collect them for analysis.",
        "Check how the account authenticated from the source (4624 on the target, 4768/4769/"
        "4776 on DCs) - stolen credentials are usually involved.",
    )
    false_positives = (
        "Administrators and management tools (PsExec by IT, SCCM/Intune, monitoring agents "
        "querying services remotely): tag their hosts as admin_hosts or exclude them.",
    )
    audit = "Audit Detailed File Share (5145) on DCs and servers; Audit Security System "\
            "Extension (4697); System log 7045; Audit Other Object Access Events (4698)."

    def run(self, batch, ctx, hits):
        sf = ctx.sflags
        out = np.empty(batch.n, np.int64)
        m = _remote_exec(batch.event_id, batch.access_mask, batch.flags,
                         batch.str_hash[batch.src_ip], sf[batch.share],
                         sf[batch.relative_target], sf[batch.src_ip], sf[batch.src_host],
                         sf[batch.image_path], sf[batch.value], out)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, ctx.key[idx])

    def details(self, batch, i, aux):
        e = int(batch.event_id[i])
        if e == 5145:
            pipe = batch.get("relative_target", i)
            share = batch.get("share", i)
            if _share(share.lower()) == "ipc$":
                low = _pipe(pipe.lower())
                what = {"svcctl": "opened the service control manager pipe (svcctl)",
                        "atsvc": "opened the task scheduler pipe (atsvc)"}.get(
                    low, f"opened the PsExec-like named pipe {pipe}")
            else:
                what = f"wrote the executable {pipe} to the {share} share"
            return {"rexec_reason": what, "pipes": [pipe]}
        if e == 4698:
            return {"rexec_reason": f"got the task {batch.get('object', i)} created with an "
                    "impacket-atexec-style command (output redirected to %windir%\\Temp)"}
        return {"rexec_reason": f"got the service {batch.get('service_name', i)} installed "
                f"with the remote-execution tool image {batch.get('image_path', i)}"}


# ============================================================================================
# suspicious-service
# ============================================================================================

@njit(cache=True)
def _susp_service(event_id, image_f, out_idx):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        if e != 7045 and e != 4697:
            continue
        if image_f[i] & F_SVC_SUSP:
            out_idx[m] = i
            m += 1
    return m


@njit(cache=True)
def _mix_arrays(a, b):
    out = np.empty(len(a), np.uint64)
    for i in range(len(a)):
        out[i] = mix(a[i], b[i])
    return out


@register
class SuspiciousService(Detector):
    id = "suspicious-service"
    title = "Suspicious service installation"
    description = ("Service {service_name} was installed on {computer} with the suspicious "
                   "image path `{image_path}` (event {event_id}, runs as {target_account}); "
                   "{count} installation(s) between {first_seen} and {last_seen}.")
    severity = "high"
    mitre = ("T1543.003", "T1569.002")
    mdi_alert_id = ("2026",)
    key = "none"
    event_ids = frozenset({7045, 4697})
    next_steps = (
        "Inspect the service's command line and binary on the host; collect the binary.",
        "Find who installed it: 4697 SubjectUserName, or the remote SCM access (5145 svcctl, "
        "4624 type 3) on the host just before.",
        "Delete the service if unauthorised and look for the same service on other hosts.",
    )
    false_positives = (
        "Installers or admin scripts that register services through cmd /c or from a "
        "temporary folder; software deployment agents.",
    )
    audit = "System log (7045, always on); Audit Security System Extension (4697)."

    def run(self, batch, ctx, hits):
        out = np.empty(batch.n, np.int64)
        m = _susp_service(batch.event_id, ctx.sflags[batch.image_path], out)
        if m:
            idx = out[:m]
            h = batch.str_hash
            ent = _mix_arrays(h[batch.computer[idx]], h[batch.service_name[idx]])
            hits.add(self.id, idx, ent)

    def entity_display(self, batch, i):
        return f"{batch.get('service_name', i)} on {batch.get('computer', i)}"

    def details(self, batch, i, aux):
        return {"service_account": batch.get("target_account", i) or batch.get("account", i)}


# ============================================================================================
# coercion
# ============================================================================================

_C_CLIENTS = np.uint64(0xC0E2C10E5EED0001)


@njit(cache=True)
def _coercion(event_id, logon_type, flags, time_ms, proto_h, ip_h, comp_h, share_f, target_f,
              ip_f, host_f, comp_f, acc_f, key, keys, pipe_t, d_val, d_ts, last,
              print_clients, relay_window, out_idx):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        f = flags[i]
        if e == 5145:
            if (f & (FLAG_ANONYMOUS | FLAG_LOCAL_SOURCE)) or ip_h[i] == 0:
                continue
            if not (share_f[i] & F_IPC):
                continue
            tf = target_f[i]
            if not (tf & (F_PIPE_COERCE | F_PIPE_SPOOLSS | F_PIPE_COERCE_WEAK)):
                continue
            if (ip_f[i] | host_f[i]) & T_ADMIN_HOST:
                continue
            t = time_ms[i]
            s = row_of(keys, key[i])
            if t > last[s]:
                last[s] = t
            if t > pipe_t[s]:
                pipe_t[s] = t
            on_dc = (comp_f[i] & T_DC) != 0
            if tf & F_PIPE_COERCE:
                out_idx[m] = i
                m += 1
            elif tf & F_PIPE_SPOOLSS:
                if f & FLAG_MACHINE:
                    continue
                # print servers: hosts that serve spoolss to many distinct clients
                cs = row_of(keys, mix(comp_h[i], _C_CLIENTS))
                distinct_push(d_val, d_ts, cs, key[i], t)
                if t > last[cs]:
                    last[cs] = t
                n = 0
                for j in range(d_val.shape[1]):
                    if d_val[cs, j] != 0:
                        n += 1
                if on_dc or n < print_clients:
                    out_idx[m] = i
                    m += 1
        elif e == 4624:
            # the coerced machine account authenticating from the coercing source (relay)
            if logon_type[i] != 3 or not (f & FLAG_MACHINE) or ip_h[i] == 0:
                continue
            if not (acc_f[i] & (T_DC | T_SENSITIVE_HOST)):
                continue
            if f & FLAG_LOCAL_SOURCE:
                continue
            if proto_h[i] != H_NTLM:
                continue
            s = find_row(keys, key[i])
            if s < 0 or pipe_t[s] == 0:
                continue
            t = time_ms[i]
            if abs(t - pipe_t[s]) <= relay_window:
                if t > last[s]:
                    last[s] = t
                out_idx[m] = i
                m += 1
    return m


@register
class Coercion(Detector):
    id = "coercion"
    title = "Suspected authentication coercion (PetitPotam / PrinterBug / DFSCoerce)"
    description = ("{source} {coerce_reason} on {computer} as {account} (event {event_id}); "
                   "{count} event(s) between {first_seen} and {last_seen}.")
    severity = "high"
    mitre = ("T1187",)
    mdi_alert_id = ("2416", "2426")
    key = "source"
    event_ids = frozenset({5145, 4624})
    params = (
        Param("print_server_clients", 3, 3, 5, "a non-DC host that served the spoolss pipe to "
              "at least this many distinct sources (per partition) is treated as a print "
              "server", "sources"),
        Param("relay_window_s", 300, 300, 600, "machine-account NTLM logon from the same "
              "source within this time of a coercion pipe = coerced authentication relayed",
              "s"),
        Param("history_days", 7, 7, 7, "how long pipe use and print-server clients are kept",
              "days"),
    )
    next_steps = (
        "Identify the source host and the process that made the RPC call (PetitPotam, "
        "SpoolSample/printerbug.py, DFSCoerce, Coercer).",
        "Check for authentications of the target's machine account from unexpected IPs right "
        "after (NTLM relay to LDAP / AD CS web enrolment) and for certificates issued to it.",
        "Disable the Print Spooler on DCs, enable EPA on AD CS/IIS, and require LDAP signing "
        "and channel binding.",
    )
    false_positives = (
        "Clients printing to a print server (spoolss): learned automatically; tag management "
        "hosts as admin_hosts.",
        "Legitimate LSA/SAMR RPC over lsarpc/samr pipes only alerts when a machine account "
        "then authenticates with NTLM from the same source.",
    )
    audit = "Audit Detailed File Share (5145) on DCs and servers; Audit Logon (4624)."
    STATE = {"pipe_t": ("i8", ()), "d_val": ("u8", (8,)), "d_ts": ("i8", (8,))}
    # per event: the source and the print-server client set of the reporting host
    keys_per_event = 2
    window_ms = 7 * 86_400_000

    retention_param = ("history_days", 86_400_000)

    def run(self, batch, ctx, hits):
        st = self.state
        sf = ctx.sflags
        h = batch.str_hash
        out = np.empty(batch.n, np.int64)
        m = _coercion(batch.event_id, batch.logon_type, batch.flags, batch.time_ms,
                      h[batch.protocol], h[batch.src_ip], h[batch.computer], sf[batch.share],
                      sf[batch.relative_target], sf[batch.src_ip], sf[batch.src_host],
                      sf[batch.computer], sf[batch.account], ctx.key, st.index, st["pipe_t"],
                      st["d_val"], st["d_ts"], st["last"],
                      int(self.p["print_server_clients"]),
                      int(self.p["relay_window_s"] * 1000), out)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, ctx.key[idx])

    def details(self, batch, i, aux):
        if int(batch.event_id[i]) == 4624:
            return {"coerce_reason": "authenticated with NTLM as machine account "
                    f"{batch.get('account', i)} shortly after calling a coercible RPC pipe "
                    "(coerced authentication relayed)"}
        pipe = batch.get("relative_target", i)
        kind = {"spoolss": "PrinterBug (MS-RPRN)", "efsrpc": "PetitPotam (MS-EFSR)",
                "lsass": "PetitPotam (MS-EFSR)", "netdfs": "DFSCoerce (MS-DFSNM)"}.get(
            _pipe(pipe.lower()), "RPC")
        return {"coerce_reason": f"opened the {pipe} pipe used for {kind} coercion",
                "pipes": [pipe]}


# ============================================================================================
# ntlm-relay
# ============================================================================================

@njit(cache=True)
def _ntlm_relay(event_id, logon_type, key_length, status, flags, time_ms, proto_h, ip_h,
                ip_f, acc_f, acc_host_h, src_host_h, key, keys, d_val, d_ts, last,
                any_machine_ip, v6_bit, out_idx, out_aux):
    m = 0
    width = d_val.shape[1]
    for i in range(len(event_id)):
        e = event_id[i]
        if e != 4624 and e != 4768 and e != 4776 and e != 8004:
            continue
        f = flags[i]
        if not (f & FLAG_MACHINE) or (f & (FLAG_ANONYMOUS | FLAG_FAILURE)):
            continue
        t = time_ms[i]
        if e == 4776 or e == 8004:
            # NTLM validation of a DC machine account for a workstation that is not that DC
            if (acc_f[i] & T_DC) and src_host_h[i] != 0 and acc_host_h[i] != 0 \
                    and src_host_h[i] != acc_host_h[i]:
                out_idx[m] = i
                out_aux[m] = 3
                m += 1
            continue
        ip = ip_h[i]
        if ip == 0 or (f & FLAG_LOCAL_SOURCE) or (ip_f[i] & v6_bit):
            continue
        if e == 4768:
            if status[i] == 0:
                s = row_of(keys, key[i])
                distinct_push(d_val, d_ts, s, ip, t)
                if t > last[s]:
                    last[s] = t
            continue
        if logon_type[i] != 3:
            continue
        if proto_h[i] == H_KERBEROS:
            s = row_of(keys, key[i])
            distinct_push(d_val, d_ts, s, ip, t)
            if t > last[s]:
                last[s] = t
            continue
        if proto_h[i] != H_NTLM:
            continue
        reason = 0
        if key_length[i] == 0:
            reason = 1  # no session key: unsigned, typical of relayed NTLM
        elif src_host_h[i] != 0 and acc_host_h[i] != 0 and src_host_h[i] != acc_host_h[i]:
            reason = 3  # workstation name is not the machine's own name
        elif (acc_f[i] & (T_DC | T_SENSITIVE_HOST)) or any_machine_ip:
            s = find_row(keys, key[i])
            if s >= 0:
                known = 0
                mine = False
                for j in range(width):
                    if d_val[s, j] != 0:
                        known += 1
                        if d_val[s, j] == ip:
                            mine = True
                if known > 0 and not mine:
                    reason = 2
        if reason:
            out_idx[m] = i
            out_aux[m] = reason
            m += 1
    return m


@register
class NtlmRelay(Detector):
    id = "ntlm-relay"
    title = "Suspected NTLM relay attack (machine account)"
    description = ("Machine account {account} authenticated with NTLM on {computer} from "
                   "{source} (workstation {src_host}): {relay_reason}; {count} event(s) "
                   "between {first_seen} and {last_seen}.")
    severity = "high"
    mitre = ("T1557.001",)
    mdi_alert_id = ("2037",)
    key = "account"
    event_ids = frozenset({4624, 4776, 8004, 4768})
    params = (
        Param("any_machine_ip", 0, 1, 1, "compare the source IP with the learned Kerberos IPs "
              "for every machine account (high: DCs and sensitive hosts only)", "bool"),
        Param("history_days", 14, 14, 14, "how long a machine account's Kerberos source IPs "
              "are remembered", "days"),
    )
    next_steps = (
        "Identify the host behind the source IP: it is the relay (ntlmrelayx, PrivExchange, "
        "PetitPotam relay) unless it is the machine itself.",
        "Review what the relayed session did on the target (5136 directory changes - e.g. "
        "domain ACL / RBCD / shadow credentials; 4662; certificate requests on AD CS).",
        "Enforce LDAP signing and channel binding, SMB signing, EPA on AD CS, and disable "
        "NTLM where possible.",
    )
    false_positives = (
        "Non-Windows or legacy clients joined as computers that do not negotiate an NTLM "
        "session key (KeyLength 0): exclude their hosts.",
        "Machines that changed IP address (DHCP) - only DCs and sensitive hosts are compared "
        "with their learned IPs at high sensitivity.",
    )
    audit = "Audit Logon (4624) on DCs and servers; Audit Credential Validation (4776); "\
            "NTLM operational log (8004) where NTLM auditing is enabled."
    STATE = {"d_val": ("u8", (8,)), "d_ts": ("i8", (8,))}
    window_ms = 14 * 86_400_000

    retention_param = ("history_days", 86_400_000)

    def run(self, batch, ctx, hits):
        st = self.state
        sf = ctx.sflags
        h = batch.str_hash
        ev = batch.event_id
        cand = ((ev == 4624) | (ev == 4776) | (ev == 8004)) & ((batch.flags & FLAG_MACHINE) != 0)
        hh = host_hash_table(batch, ("account", "src_host"), cand)
        out = np.empty(batch.n, np.int64)
        aux = np.empty(batch.n, np.int64)
        m = _ntlm_relay(ev, batch.logon_type, batch.key_length, batch.status, batch.flags,
                        batch.time_ms, h[batch.protocol], h[batch.src_ip], sf[batch.src_ip],
                        sf[batch.account], hh[batch.account], hh[batch.src_host], ctx.key,
                        st.index, st["d_val"], st["d_ts"], st["last"],
                        bool(self.p["any_machine_ip"]), F_IPV6, out, aux)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, ctx.key[idx])
            self._reasons = dict(zip(idx.tolist(), aux[:m].tolist()))
        else:
            self._reasons = {}

    def details(self, batch, i, aux):
        r = getattr(self, "_reasons", {}).get(int(i), 0)
        text = {1: "no NTLM session key was negotiated (KeyLength 0), as in relayed "
                   "authentication that strips signing",
                2: "the source IP is not one the machine uses for its own Kerberos "
                   "authentication",
                3: "the workstation name in the NTLM message is not the machine's own name"
                }.get(r, "suspicious NTLM authentication")
        return {"relay_reason": text}
