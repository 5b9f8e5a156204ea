"""Persistence / privilege escalation: directory and account changes.

Detectors: sensitive-group-change, sid-history-injection, adminsdholder-change, rbcd-change,
delegation-change, risky-account-change, dsrm-password-change.

The events these detectors read (5136, 4738, 4742, 4765, 4781, 4724 ...) are rare compared with
authentication traffic, and their interesting facts live in long strings (DNs, SDDL, SPN lists,
``%%20xx`` UAC texts). Instead of spending global string-feature bits (48 shared by the whole
catalogue) these modules use :class:`LocalFeatures`: predicates evaluated once per *distinct
string* referenced by the rare events of a batch (cached by string hash), giving a per-string
uint64 bit field the kernels test exactly like ``ctx.sflags``. It also yields, per string, the
hash of the bare host / account name (``DC01$`` / ``corp\\dc01$`` / ``dc01.corp.local`` ->
``dc01``) so kernels can compare "target account == reporting computer" without Python.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np
from numba import njit

from stream.schema import (FLAG_ANONYMOUS, FLAG_FAILURE, FLAG_MACHINE, FLAG_TARGET_MACHINE,
                           FLAG_VALUE_DELETED, key_hash, string_index)

from ..base import Detector, Param, register
from ..features import T_DC, T_SENSITIVE_ACCOUNT, T_SENSITIVE_GROUP, DerivedHashes
from ..kernels.common import find_row, id_table, in_table, mix, row_of

# ---------------------------------------------------------------------------------------------
# Local (module-private) string features
# ---------------------------------------------------------------------------------------------

_PREDS: list[tuple[int, Callable[[str, str], bool]]] = []


def _local(pred: Callable[[str, str], bool]) -> np.uint64:
    """Register a local predicate ``pred(original, lower)``; returns its bit."""
    bit = 1 << len(_PREDS)
    if bit >= 1 << 64:
        raise RuntimeError("too many local string features")
    _PREDS.append((bit, pred))
    return np.uint64(bit)


# Replication extended rights (DCSync) and the trustees that hold them by default.
REPL_GUIDS = ("1131f6aa-9c07-11d1-f79f-00c04fc2dcd2", "1131f6ad-9c07-11d1-f79f-00c04fc2dcd2",
              "89e95b76-444d-4c62-991a-0facbeda640c")
_DEFAULT_TRUSTEES = {"ba", "ed", "dd", "da", "ea", "sy", "ro", "s-1-5-9", "s-1-5-18",
                     "s-1-5-32-544"}
_DEFAULT_RIDS = ("-516", "-498", "-521", "-512", "-519")
_ACE_RE = re.compile(r"\(([^()]*)\)")


def replication_grantees(sddl: str) -> list[str]:
    """Trustees (SIDs / SDDL aliases) granted a replication right (or GenericAll / all
    extended rights) by an allow ACE of ``sddl``, excluding the built-in defaults."""
    out: list[str] = []
    low = sddl.lower()
    dacl = low.split("d:", 1)[1] if "d:" in low else low
    for ace in _ACE_RE.findall(dacl):
        parts = ace.split(";")
        if len(parts) < 6:
            continue
        typ, _fl, rights, obj, _inh, sid = parts[:6]
        if typ not in ("a", "oa"):
            continue
        grants = False
        if "ga" in [rights[i:i + 2] for i in range(0, len(rights), 2)]:
            grants = True
        elif "cr" in [rights[i:i + 2] for i in range(0, len(rights), 2)]:
            grants = (not obj) or obj in REPL_GUIDS
        if not grants:
            continue
        sid = sid.strip()
        if sid in _DEFAULT_TRUSTEES or (sid.startswith("s-1-5-21-") and
                                        sid.endswith(_DEFAULT_RIDS)):
            continue
        if sid not in out:
            out.append(sid)
    return out


def _is_domain_root(l: str) -> bool:
    parts = [p.strip() for p in l.split(",")]
    return bool(parts) and all(p.startswith("dc=") for p in parts)


_GPO_RE = re.compile(r"^cn=\{[0-9a-f-]{36}\},cn=policies,cn=system,")
_PRIV_SID_RE = re.compile(r"^s-1-5-21-[\d-]+-(500|502|512|516|518|519|498|521|520)$")
_PRIV_BUILTIN = {"s-1-5-32-544", "s-1-5-32-548", "s-1-5-32-549", "s-1-5-32-551"}
_ADMIN_WORDS = ("admin", "adm_", "adm-", "_adm", "-adm", "krbtgt")


def _uac_int(l: str) -> int | None:
    l = l.strip()
    try:
        return int(l, 16) if l.startswith("0x") else int(l)
    except ValueError:
        return None


def _spn_tokens(l: str) -> list[str]:
    return [t.strip() for t in re.split(r"[\s;,]+", l) if t.strip()]


def _name_part(l: str) -> str:
    return l.rsplit("\\", 1)[-1].split("@", 1)[0]


def is_admin_like(l: str) -> bool:
    n = _name_part(l)
    return any(w in n for w in _ADMIN_WORDS) or n in ("adm", "sa", "da", "root")


def _bad_realm_garbage(s: str) -> bool:
    # (spaces are legal: 'NT AUTHORITY'; mimikatz's historic default is 'eo.oe.kiwi :)')
    return any(c in s for c in ':;,*?"<>|/=+[]()') or "kiwi" in s.lower() or any(
        ord(c) < 32 for c in s)


# raw AD userAccountControl bits (5136)
UF_PASSWD_NOTREQD = 0x20
UF_ENCRYPTED_TEXT_PWD_ALLOWED = 0x80
UF_SERVER_TRUST_ACCOUNT = 0x2000
UF_TRUSTED_FOR_DELEGATION = 0x80000
UF_USE_DES_KEY_ONLY = 0x200000
UF_DONT_REQ_PREAUTH = 0x400000
UF_TRUSTED_TO_AUTH_FOR_DELEGATION = 0x1000000
# SAM account-control bits (4738/4742 OldUacValue/NewUacValue; %%2048+bit / %%2080+bit texts)
SAM_PASSWORD_NOT_REQUIRED = 0x4
SAM_SERVER_TRUST_ACCOUNT = 0x100
SAM_ENCRYPTED_TEXT_PASSWORD_ALLOWED = 0x800
SAM_TRUSTED_FOR_DELEGATION = 0x2000
SAM_USE_DES_KEY_ONLY = 0x8000
SAM_DONT_REQUIRE_PREAUTH = 0x10000
SAM_TRUSTED_TO_AUTH_FOR_DELEGATION = 0x40000
SAM_RISKY = (SAM_DONT_REQUIRE_PREAUTH | SAM_PASSWORD_NOT_REQUIRED |
             SAM_ENCRYPTED_TEXT_PASSWORD_ALLOWED | SAM_USE_DES_KEY_ONLY)
SAM_DELEG = SAM_TRUSTED_FOR_DELEGATION | SAM_TRUSTED_TO_AUTH_FOR_DELEGATION
UAC_TEXT = {  # "enabled" message ids of the 4738/4742 UserAccountControl field
    "%%2082": "Password Not Required", "%%2091": "Encrypted Text Password Allowed",
    "%%2093": "Trusted For Delegation", "%%2095": "Use DES Key Only",
    "%%2096": "Don't Require Preauth", "%%2098": "Trusted To Authenticate For Delegation",
}
SAM_BIT_NAMES = {
    SAM_PASSWORD_NOT_REQUIRED: "Password Not Required",
    SAM_ENCRYPTED_TEXT_PASSWORD_ALLOWED: "Encrypted Text Password Allowed (reversible)",
    SAM_USE_DES_KEY_ONLY: "Use DES Key Only",
    SAM_DONT_REQUIRE_PREAUTH: "Don't Require Preauth",
    SAM_TRUSTED_FOR_DELEGATION: "Trusted For Delegation (unconstrained)",
    SAM_TRUSTED_TO_AUTH_FOR_DELEGATION: "Trusted To Authenticate For Delegation (protocol "
                                        "transition)",
}

L_DOMAIN_ROOT = _local(lambda s, l: _is_domain_root(l))
L_ADMINSDHOLDER = _local(lambda s, l: "cn=adminsdholder,cn=system," in l)
L_GPO = _local(lambda s, l: bool(_GPO_RE.match(l)))
L_DC_OU = _local(lambda s, l: ",ou=domain controllers," in l)
L_KRBTGT = _local(lambda s, l: l.startswith("cn=krbtgt,") or _name_part(l) == "krbtgt")
A_NTSD = _local(lambda s, l: l == "ntsecuritydescriptor")
A_SPN = _local(lambda s, l: l == "serviceprincipalname")
A_SIDHIST = _local(lambda s, l: l == "sidhistory")
A_RBCD = _local(lambda s, l: l == "msds-allowedtoactonbehalfofotheridentity")
A_A2D = _local(lambda s, l: l == "msds-allowedtodelegateto")
A_UAC = _local(lambda s, l: l == "useraccountcontrol")
V_REPL_GRANT = _local(lambda s, l: "(" in l and bool(replication_grantees(l)))
V_DCSHADOW_SPN = _local(lambda s, l: any(
    t.startswith("gc/") or t.startswith("e3514235-4b06-11d1-ab04-00c04fc2dcd2/")
    for t in _spn_tokens(l)))
V_UAC_RISKY_RAW = _local(lambda s, l: (_uac_int(l) or 0) & (
    UF_DONT_REQ_PREAUTH | UF_PASSWD_NOTREQD | UF_ENCRYPTED_TEXT_PWD_ALLOWED |
    UF_USE_DES_KEY_ONLY) != 0)
V_UAC_DELEG_RAW = _local(lambda s, l: (_uac_int(l) or 0) & (
    UF_TRUSTED_FOR_DELEGATION | UF_TRUSTED_TO_AUTH_FOR_DELEGATION) != 0 and not (
    (_uac_int(l) or 0) & UF_SERVER_TRUST_ACCOUNT))
T_UAC_RISKY_TEXT = _local(lambda s, l: any(c in l for c in ("%%2096", "%%2082", "%%2091",
                                                             "%%2095")))
T_UAC_DELEG_TEXT = _local(lambda s, l: "%%2093" in l or "%%2098" in l)
P_SIDHIST = _local(lambda s, l: "sidhistory=" in l)
P_A2D = _local(lambda s, l: "allowedtodelegateto=" in l)
P_PWDLASTSET = _local(lambda s, l: "passwordlastset=" in l)
C_USER = _local(lambda s, l: l in ("user", "inetorgperson"))
C_NTDSDSA = _local(lambda s, l: l == "ntdsdsa")
N_ADMINLIKE = _local(lambda s, l: is_admin_like(l))
AUD_REMOVED = _local(lambda s, l: "%%8448" in l or "%%8450" in l or "removed" in l)
NL_TOOL = _local(lambda s, l: "kali" in l or "mimikatz" in l or "impacket" in l)
PRIV_SID = _local(lambda s, l: bool(_PRIV_SID_RE.match(l)) or l in _PRIV_BUILTIN)
REALM_LOWER_FQDN = _local(lambda s, l: "." in s and s != s.upper())
REALM_GARBAGE = _local(lambda s, l: _bad_realm_garbage(s))

# Rare events whose strings get local features, and the columns inspected.
LOCAL_EIDS = np.array([5136, 5137, 4738, 4742, 4741, 4720, 4765, 4766, 4781, 4724, 4767,
                       4719, 5805, 5827, 5828, 5829, 4794, 1102, 104], dtype=np.int32)
_LOCAL_COLS = np.array([string_index(c) for c in (
    "computer", "object", "object_class", "attribute", "value", "properties",
    "member_sid", "service", "src_host", "target_account", "target_sid")], dtype=np.int64)
# Kerberos events: only their (few distinct) domain strings.
KRB_EIDS = np.array([4769, 4624], dtype=np.int32)
_LOCAL_T = id_table(LOCAL_EIDS)
_KRB_T = id_table(KRB_EIDS)
_KRB_COLS = np.array([string_index("account_domain")], dtype=np.int64)


def short_name(l: str) -> str:
    """Bare machine/host name: 'corp\\dc01$' / 'dc01$' / 'dc01.corp.local' -> 'dc01'."""
    n = _name_part(l).strip().rstrip("$")
    return n.split(".", 1)[0]


class LocalFeatures:
    """Per-batch local string flags + short-name hashes (see module docstring), per distinct
    string of the rare events' columns, cached process-wide by string hash."""

    def __init__(self):
        self._flags = DerivedHashes(self._flags_of)
        self._short = DerivedHashes(self._short_of)
        self._batch = None
        self._out: tuple[np.ndarray, np.ndarray] | None = None

    @staticmethod
    def _flags_of(s: str) -> int:
        low = s.lower()
        f = 0
        for bit, pred in _PREDS:
            try:
                if pred(s, low):
                    f |= bit
            except Exception:  # a predicate must never stop the pipeline
                pass
        return f

    @staticmethod
    def _short_of(s: str) -> int:
        sh = short_name(s.lower())
        return key_hash(sh) if sh else 0

    def get(self, batch) -> tuple[np.ndarray, np.ndarray]:
        if self._batch is batch and self._out is not None:
            return self._out
        ns = batch.n_strings
        flags = np.zeros(ns, dtype=np.uint64)
        short = np.zeros(ns, dtype=np.uint64)
        parts = []
        m = in_table(batch.event_id, _LOCAL_T)
        if m.any():
            parts.append(batch.strcols[_LOCAL_COLS][:, m].ravel())
        k = in_table(batch.event_id, _KRB_T)
        if k.any():
            parts.append(batch.strcols[_KRB_COLS][:, k].ravel())
        if parts:
            idx = batch.distinct(*parts)
            flags[idx] = self._flags.table(batch, idx)
            short[idx] = self._short.table(batch, idx)
        self._batch = batch
        self._out = (flags, short)
        return self._out


LOCAL = LocalFeatures()


def sam_bits_text(old: int, new: int, text: str, mask: int) -> list[str]:
    """Human names of risky/delegation bits newly set (numbers, else the %%20xx texts)."""
    names = [n for b, n in SAM_BIT_NAMES.items() if b & mask and (new & ~old) & b]
    if not names and text:
        for code, n in UAC_TEXT.items():
            if code in text and any(b & mask for b, bn in SAM_BIT_NAMES.items()
                                    if bn.startswith(n)):
                names.append(n)
    return names


# ---------------------------------------------------------------------------------------------
# sensitive-group-change
# ---------------------------------------------------------------------------------------------

@njit(cache=True)
def _sensitive_group(event_id, flags, group, group_sid, sflags, include_removals,
                     include_machine, out):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        add = e == 4728 or e == 4732 or e == 4756
        rem = e == 4729 or e == 4733 or e == 4757
        if not add and not (rem and include_removals):
            continue
        if flags[i] & FLAG_FAILURE:
            continue
        if (flags[i] & FLAG_MACHINE) and not include_machine:
            continue
        if ((sflags[group[i]] | sflags[group_sid[i]]) & T_SENSITIVE_GROUP) == 0:
            continue
        out[m] = i
        m += 1
    return m


@register
class SensitiveGroupChange(Detector):
    id = "sensitive-group-change"
    title = "Member added to a sensitive group"
    description = ("{account} {verb} {member_display} {direction} the sensitive group {group} "
                   "({group_sid}) on {computer}; {count} change(s) by this account between "
                   "{first_seen} and {last_seen}.")
    severity = "high"
    mitre = ("T1098",)
    mdi_alert_id = ("2024",)
    key = "account"
    event_ids = frozenset({4728, 4732, 4756, 4729, 4733, 4757})
    params = (
        Param("include_removals", 0, 0, 1, "also alert on removals (4729/4733/4757)", "bool"),
        Param("include_machine_actors", 0, 0, 1, "also alert when the actor is a machine "
              "account (GPO restricted groups, LAPS/Intune run as SYSTEM)", "bool"),
    )
    next_steps = (
        "Confirm with the actor (and the change ticket) that the membership change was planned.",
        "If not: remove the member, reset its password, and review what it did since the add "
        "(logons to DCs, DCSync, GPO edits).",
        "Check how the actor obtained the right to change the group (ACL on the group, "
        "AdminSDHolder, nested membership).",
    )
    false_positives = (
        "Planned administration (onboarding admins); provisioning/IAM service accounts - "
        "exclude them per detector.",
        "Local Administrators changes pushed by GPO restricted groups / Intune run as the "
        "machine account (ignored unless include_machine_actors).",
    )
    audit = ("Audit Security Group Management (4728/4729/4732/4733/4756/4757) on DCs; on member "
             "servers for local groups.")

    def run(self, batch, ctx, hits):
        out = np.empty(batch.n, np.int64)
        m = _sensitive_group(batch.event_id, batch.flags, batch.group, batch.group_sid,
                             ctx.sflags, int(self.p["include_removals"]),
                             int(self.p["include_machine_actors"]), out)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, ctx.key[idx])

    def details(self, batch, i, aux):
        e = int(batch.event_id[i])
        added = e in (4728, 4732, 4756)
        member = batch.get("member", i) or batch.get("member_sid", i) or "?"
        return {"verb": "added" if added else "removed",
                "group_sid": batch.get("group_sid", i) or "?",
                "direction": "to" if added else "from",
                "member_display": member,
                "members": [member],
                "change": "added" if added else "removed"}


# ---------------------------------------------------------------------------------------------
# sid-history-injection
# ---------------------------------------------------------------------------------------------

@njit(cache=True)
def _sid_history(event_id, attribute, evflags, properties, lf, out):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        hit = False
        if e == 4765 or e == 4766:
            hit = True
        elif e == 4738 or e == 4742:
            hit = (lf[properties[i]] & P_SIDHIST) != 0
        elif e == 5136:
            hit = (lf[attribute[i]] & A_SIDHIST) != 0 and (evflags[i] & FLAG_VALUE_DELETED) == 0
        if hit:
            out[m] = i
            m += 1
    return m


def _sidhistory_of(props: str) -> str:
    for part in props.split(";"):
        if part.lower().startswith("sidhistory="):
            return part.split("=", 1)[1]
    return ""


@register
class SidHistoryInjection(Detector):
    id = "sid-history-injection"
    title = "SID added to an account's SID history"
    description = ("{account} {verb} SID history of {target} on {computer}: {sids}"
                   "{privileged_text} ({count} event(s) between {first_seen} and {last_seen}).")
    severity = "high"
    mitre = ("T1134.005",)
    mdi_alert_id = ("1106",)
    key = "account"
    event_ids = frozenset({4765, 4766, 4738, 4742, 5136})
    next_steps = (
        "Check whether a sanctioned domain migration (ADMT) is running; if not, treat the "
        "target account as a backdoor.",
        "Remove the SID from sIDHistory (Get-ADUser -Properties sIDHistory; Set-ADUser "
        "-Remove) and reset the account's password.",
        "Enable SID filtering on trusts; review who holds the Migrate-SID-History right.",
    )
    false_positives = ("Domain migrations with ADMT / Quest (SID history is their purpose); "
                       "exclude the migration account during the project.",)
    audit = ("Audit User Account Management (4765/4766/4738) and Audit Directory Service "
             "Changes with a SACL on user objects (5136 sIDHistory).")

    def run(self, batch, ctx, hits):
        lf, _ = LOCAL.get(batch)
        out = np.empty(batch.n, np.int64)
        m = _sid_history(batch.event_id, batch.attribute, batch.flags, batch.properties, lf,
                         out)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, ctx.key[idx])

    def details(self, batch, i, aux):
        e = int(batch.event_id[i])
        g = batch.get
        if e in (4765, 4766):
            sids = g("value", i) or g("member_sid", i)
            target = g("target_account", i)
            src = g("member", i)
        elif e == 5136:
            sids = g("value", i)
            target = g("object", i)
            src = ""
        else:
            sids = _sidhistory_of(g("properties", i))
            target = g("target_account", i)
            src = ""
        sid_list = [s for s in re.split(r"[\s,;]+", sids) if s]
        priv = any(_PRIV_SID_RE.match(s.lower()) or s.lower() in _PRIV_BUILTIN
                   for s in sid_list + [g("member_sid", i).lower()])
        d = {"verb": "failed to add to the" if e == 4766 else "added to the",
             "target": target, "sids": ", ".join(sid_list) or "?",
             "privileged_sid": bool(priv),
             "privileged_text": " - a PRIVILEGED SID (domain/enterprise admins or similar)"
             if priv else ""}
        if src:
            d["source_account"] = src
        return d


# ---------------------------------------------------------------------------------------------
# adminsdholder-change
# ---------------------------------------------------------------------------------------------

@njit(cache=True)
def ds_write_hits(event_id, col, obj, evflags, lf, col_bits, obj_bits, out):
    """5136 writes (not value deletions) whose ``col`` string has one of ``col_bits`` and,
    when ``obj_bits`` is non-zero, whose object has one of ``obj_bits`` (local flags ``lf``).
    Shared by adminsdholder-change, rbcd-change and domain-acl-change."""
    m = 0
    for i in range(len(event_id)):
        if event_id[i] != 5136:
            continue
        if (lf[col[i]] & col_bits) == 0 or (evflags[i] & FLAG_VALUE_DELETED) != 0:
            continue
        if obj_bits != 0 and (lf[obj[i]] & obj_bits) == 0:
            continue
        out[m] = i
        m += 1
    return m


@register
class AdminSdHolderChange(Detector):
    id = "adminsdholder-change"
    title = "AdminSDHolder object modified"
    description = ("{account} modified {attribute} of the AdminSDHolder object ({object}) on "
                   "{computer}; SDProp copies its ACL to every protected admin account and "
                   "group within the hour. {count} change(s) between {first_seen} and "
                   "{last_seen}.")
    severity = "high"
    mitre = ("T1098",)
    mdi_alert_id = ("2430",)
    key = "account"
    event_ids = frozenset({5136})
    next_steps = (
        "Compare the AdminSDHolder ACL with a known-good baseline (dsacls \"CN=AdminSDHolder,"
        "CN=System,DC=...\") and remove any added ACE.",
        "Identify the trustee granted rights and the actor's logon session/source host.",
        "After cleanup, let SDProp run (or trigger it) and verify protected objects.",
    )
    false_positives = ("Rare, deliberate hardening changes by domain admins (document them).",)
    audit = ("Audit Directory Service Changes with a SACL (Write all properties / Modify "
             "permissions) on CN=AdminSDHolder,CN=System.")

    def run(self, batch, ctx, hits):
        lf, _ = LOCAL.get(batch)
        out = np.empty(batch.n, np.int64)
        m = ds_write_hits(batch.event_id, batch.object, batch.object, batch.flags, lf,
                          L_ADMINSDHOLDER, np.uint64(0), out)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, ctx.key[idx])

    def details(self, batch, i, aux):
        v = batch.get("value", i)
        d = {"attributes": [batch.get("attribute", i)]}
        if batch.get("attribute", i).lower() == "ntsecuritydescriptor":
            g = replication_grantees(v)
            if g:
                d["rights_granted_to"] = g
        return d


# ---------------------------------------------------------------------------------------------
# rbcd-change
# ---------------------------------------------------------------------------------------------

@register
class RbcdChange(Detector):
    id = "rbcd-change"
    title = "Resource-based constrained delegation configured"
    description = ("{account} wrote msDS-AllowedToActOnBehalfOfOtherIdentity on {object} "
                   "({concern}) on {computer}: accounts listed there can impersonate any user "
                   "to this computer. {count} change(s) between {first_seen} and {last_seen}.")
    severity = "high"
    mitre = ("T1484",)
    mdi_alert_id = ("2423",)
    key = "account"
    event_ids = frozenset({5136})
    next_steps = (
        "Read the attribute (Get-ADComputer -Properties msDS-AllowedToActOnBehalfOfOtherIdentity)"
        " and identify the principal allowed to delegate; was it created recently (4741)?",
        "If unexpected, clear the attribute and check for S4U service tickets (4769 with "
        "Transited Services) to the target since the write.",
        "A write by a machine account usually means NTLM relay to LDAP (KrbRelayUp, "
        "ntlmrelayx --delegate-access): look for coercion/relay alerts.",
    )
    false_positives = ("Administrators deliberately configuring RBCD for a service (e.g. "
                       "file-server/web delegation); document and exclude the actor.",)
    audit = ("Audit Directory Service Changes with a SACL on computer objects (5136); MDI "
             "needs the same.")

    def run(self, batch, ctx, hits):
        lf, _ = LOCAL.get(batch)
        out = np.empty(batch.n, np.int64)
        m = ds_write_hits(batch.event_id, batch.attribute, batch.object, batch.flags, lf,
                          A_RBCD, np.uint64(0), out)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, ctx.key[idx])

    def details(self, batch, i, aux):
        obj = batch.get("object", i).lower()
        machine = bool(int(batch.flags[i]) & FLAG_MACHINE)
        on_dc = ",ou=domain controllers," in obj
        on_krbtgt = obj.startswith("cn=krbtgt,")
        concerns = []
        if machine:
            concerns.append("written by a machine account - typical of NTLM relay")
        if on_dc:
            concerns.append("target is a domain controller")
        if on_krbtgt:
            concerns.append("target is krbtgt - golden-ticket style persistence")
        return {"written_by_machine_account": machine, "target_is_dc": on_dc,
                "target_is_krbtgt": on_krbtgt,
                "concern": "; ".join(concerns) or "review the delegated principal"}


# ---------------------------------------------------------------------------------------------
# delegation-change
# ---------------------------------------------------------------------------------------------

@njit(cache=True)
def _delegation(event_id, uac_old, uac_new, value, properties, attribute, obj, evflags,
                target_account, sflags, lf, out):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        hit = False
        if e == 4738 or e == 4742:
            if sflags[target_account[i]] & T_DC:
                continue
            if uac_new[i] & SAM_SERVER_TRUST_ACCOUNT:  # a DC (promotion sets delegation)
                continue
            newly = uac_new[i] & ~uac_old[i]
            if newly & SAM_DELEG:
                hit = True
            elif uac_new[i] == 0 and uac_old[i] == 0 and (lf[value[i]] & T_UAC_DELEG_TEXT):
                hit = True
            elif lf[properties[i]] & P_A2D:
                hit = True
        elif e == 5136:
            if evflags[i] & FLAG_VALUE_DELETED or lf[obj[i]] & L_DC_OU:
                continue
            a = lf[attribute[i]]
            if a & A_A2D:
                hit = True
            elif (a & A_UAC) and (lf[value[i]] & V_UAC_DELEG_RAW):
                hit = True
        if hit:
            out[m] = i
            m += 1
    return m


@register
class DelegationChange(Detector):
    id = "delegation-change"
    title = "Kerberos delegation enabled on an account"
    description = ("{account} enabled {delegation} on {target} on {computer} ({count} "
                   "change(s) between {first_seen} and {last_seen}).")
    severity = "medium"
    mitre = ("T1098",)
    key = "account"
    event_ids = frozenset({4738, 4742, 5136})
    next_steps = (
        "Confirm the change with the service owner; unconstrained delegation on anything but "
        "a DC is almost never needed.",
        "If unexpected, clear TRUSTED_FOR_DELEGATION / TRUSTED_TO_AUTH_FOR_DELEGATION and "
        "msDS-AllowedToDelegateTo, and reset the account's password.",
        "Mark privileged accounts 'Account is sensitive and cannot be delegated' / add them "
        "to Protected Users.",
    )
    false_positives = ("Application owners configuring constrained delegation for web/SQL "
                       "services; DC promotion (ignored: server trust accounts / known DCs).",)
    audit = ("Audit User Account Management and Audit Computer Account Management (4738/4742); "
             "Audit Directory Service Changes for 5136.")

    def run(self, batch, ctx, hits):
        lf, _ = LOCAL.get(batch)
        out = np.empty(batch.n, np.int64)
        m = _delegation(batch.event_id, batch.uac_old, batch.uac_new, batch.value,
                        batch.properties, batch.attribute, batch.object, batch.flags,
                        batch.target_account, ctx.sflags, lf, out)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, ctx.key[idx])

    def details(self, batch, i, aux):
        e = int(batch.event_id[i])
        g = batch.get
        kinds = []
        if e in (4738, 4742):
            kinds = sam_bits_text(int(batch.uac_old[i]), int(batch.uac_new[i]), g("value", i),
                                  SAM_DELEG)
            props = g("properties", i)
            for part in props.split(";"):
                if part.lower().startswith("allowedtodelegateto="):
                    kinds.append("constrained delegation to " + part.split("=", 1)[1])
            target = g("target_account", i)
        else:
            attr = g("attribute", i)
            if attr.lower() == "msds-allowedtodelegateto":
                kinds.append("constrained delegation to " + g("value", i))
            else:
                v = _uac_int(g("value", i).lower()) or 0
                if v & UF_TRUSTED_FOR_DELEGATION:
                    kinds.append("Trusted For Delegation (unconstrained)")
                if v & UF_TRUSTED_TO_AUTH_FOR_DELEGATION:
                    kinds.append("Trusted To Authenticate For Delegation (protocol transition)")
            target = g("object", i)
        return {"delegation": ", ".join(kinds) or "delegation", "target": target,
                "delegation_kinds": kinds}


# ---------------------------------------------------------------------------------------------
# risky-account-change
# ---------------------------------------------------------------------------------------------

_K_EXPLAIN = np.uint64(0x5EC0DE0F00D5EED5)


@njit(cache=True)
def _risky(event_id, flags, time_ms, key, account, target_account, target_sid, computer,
           uac_old, uac_new, value, service, properties, obj, attribute, object_class,
           str_hash, sflags, lf, short, opaque_on, explain_ms, keys, expl, last, out):
    # pass 1: "explaining" events (account created/unlocked/reset/enabled) per (actor, target)
    for i in range(len(event_id)):
        e = event_id[i]
        if e == 4720 or e == 4741 or e == 4767 or e == 4722 or e == 4724 or e == 4723 \
                or e == 4725:
            t = time_ms[i]
            s = row_of(keys, mix(key[i], str_hash[target_sid[i]] ^ _K_EXPLAIN))
            if t > expl[s]:
                expl[s] = t
            if t > last[s]:
                last[s] = t
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        hit = False
        if e == 4738:
            newly = uac_new[i] & ~uac_old[i]
            if newly & SAM_RISKY:
                hit = True
            elif uac_new[i] == 0 and uac_old[i] == 0 and (lf[value[i]] & T_UAC_RISKY_TEXT):
                hit = True
        elif e == 5136:
            if flags[i] & FLAG_VALUE_DELETED:
                continue
            if (lf[object_class[i]] & C_USER) == 0:
                continue
            a = lf[attribute[i]]
            if a & A_SPN:
                hit = True
            elif (a & A_UAC) and (lf[value[i]] & V_UAC_RISKY_RAW):
                hit = True
        elif e == 4724:
            tf = sflags[target_account[i]]
            if tf & (T_DC | T_SENSITIVE_ACCOUNT):
                hit = True
            elif lf[target_sid[i]] & PRIV_SID:
                hit = True
            elif (flags[i] & FLAG_TARGET_MACHINE) and short[target_account[i]] != 0 and \
                    short[target_account[i]] == short[computer[i]]:
                hit = True  # the reporting DC's own machine account
        elif e == 4781:
            if (flags[i] & FLAG_TARGET_MACHINE) == 0 and (lf[value[i]] & N_ADMINLIKE) and \
                    (lf[target_account[i]] & N_ADMINLIKE) == 0:
                hit = True
        if (not hit) and opaque_on and (e == 4738 or e == 4742):
            # a change whose event lists no attribute: DACL, SPN (users) or another
            # attribute 4738/4742 does not show - made by someone other than the account
            if value[i] == 0 and service[i] == 0 and properties[i] == 0 and obj[i] == 0 \
                    and uac_new[i] == 0 and uac_old[i] == 0 \
                    and (flags[i] & (FLAG_MACHINE | FLAG_ANONYMOUS)) == 0 \
                    and str_hash[account[i]] != str_hash[target_account[i]] \
                    and (sflags[target_account[i]] & T_DC) == 0:
                s = find_row(keys, mix(key[i], str_hash[target_sid[i]] ^ _K_EXPLAIN))
                explained = s >= 0 and abs(time_ms[i] - expl[s]) <= explain_ms
                if not explained:
                    hit = True
        if hit:
            out[m] = i
            m += 1
    return m


@register
class RiskyAccountChange(Detector):
    id = "risky-account-change"
    title = "Account made roastable, weak or impersonating"
    description = ("{account} changed {target} on {computer}: {change} ({count} change(s) "
                   "between {first_seen} and {last_seen}).")
    severity = "medium"
    mitre = ("T1098",)
    mdi_alert_id = ("xdr_SuspiciousAdditionOfSpnToUser",)
    key = "account"
    event_ids = frozenset({4738, 4742, 5136, 4781, 4724, 4720, 4741, 4767, 4722, 4723, 4725})
    params = (
        Param("opaque_changes", 1, 1, 1, "alert on 4738/4742 changes by another account that "
              "list no attribute (DACL or SPN edits: ACL abuse, targeted Kerberoasting) and "
              "are not explained by a create/unlock/reset/enable of the same account", "bool"),
        Param("explain_window_s", 60, 60, 60, "how close a create/unlock/reset must be to "
              "explain an attribute-less change", "s"),
    )
    next_steps = (
        "Ask the actor/owner whether the change was requested; revert it if not (clear the "
        "SPN, re-enable pre-authentication, unset PASSWD_NOTREQD/reversible encryption/DES).",
        "For a roastable account, reset its password to a long random value and check for "
        "4768 (PreAuthType 0) / 4769 RC4 ticket requests for it after the change.",
        "For a DC or privileged account reset, verify the DC's secure channel and look for "
        "Zerologon / DCSync activity from the same source.",
        "For attribute-less changes, read the object's ACL and SPNs (Get-ADUser -Properties "
        "nTSecurityDescriptor,servicePrincipalName) to see what was changed.",
    )
    false_positives = (
        "Service owners adding SPNs to service accounts; legacy applications that need "
        "reversible encryption or no pre-authentication (document and exclude).",
        "Delegated administrators editing ACLs/attributes that 4738 does not list; krbtgt "
        "password rotation (4724 on krbtgt) - expected twice per rotation.",
    )
    audit = ("Audit User Account Management (4738/4724/4781), Audit Computer Account "
             "Management (4742), Audit Directory Service Changes with SACLs on user objects "
             "(5136 servicePrincipalName / userAccountControl).")
    STATE = {"expl": ("i8", ())}
    window_ms = 3_600_000

    def run(self, batch, ctx, hits):
        lf, short = LOCAL.get(batch)
        st = self.state
        out = np.empty(batch.n, np.int64)
        m = _risky(batch.event_id, batch.flags, batch.time_ms, ctx.key, batch.account,
                   batch.target_account, batch.target_sid, batch.computer, batch.uac_old,
                   batch.uac_new, batch.value, batch.service, batch.properties, batch.object,
                   batch.attribute, batch.object_class, batch.str_hash, ctx.sflags,
                   lf, short, int(self.p["opaque_changes"]),
                   int(self.p["explain_window_s"] * 1000), st.index, st["expl"], st["last"],
                   out)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, ctx.key[idx])

    def details(self, batch, i, aux):
        e = int(batch.event_id[i])
        g = batch.get
        target = g("target_account", i)
        if e == 4738:
            names = sam_bits_text(int(batch.uac_old[i]), int(batch.uac_new[i]), g("value", i),
                                  SAM_RISKY)
            if names:
                kind = "userAccountControl: " + ", ".join(n + " enabled" for n in names)
            else:
                kind = ("changed without any attribute listed in 4738 - an ACL (DACL) or SPN "
                        "change, e.g. ACL abuse or targeted Kerberoasting")
        elif e == 4742:
            kind = ("computer account changed without any attribute listed in 4742 - an ACL "
                    "or attribute such as msDS-AllowedToActOnBehalfOfOtherIdentity")
        elif e == 5136:
            target = g("object", i)
            if g("attribute", i).lower() == "serviceprincipalname":
                kind = f"SPN {g('value', i)} added to a user account (Kerberoastable)"
            else:
                v = _uac_int(g("value", i).lower()) or 0
                names = [n for b, n in ((UF_DONT_REQ_PREAUTH, "Don't Require Preauth"),
                                        (UF_PASSWD_NOTREQD, "Password Not Required"),
                                        (UF_ENCRYPTED_TEXT_PWD_ALLOWED, "reversible encryption"),
                                        (UF_USE_DES_KEY_ONLY, "DES only")) if v & b]
                kind = "userAccountControl now has " + ", ".join(names)
        elif e == 4724:
            kind = "password reset of a domain controller / privileged account"
        else:
            kind = f"account renamed to the admin-like name {g('value', i)!r}"
        return {"change": kind, "target": target, "kind": kind}


# ---------------------------------------------------------------------------------------------
# dsrm-password-change
# ---------------------------------------------------------------------------------------------

@njit(cache=True)
def _dsrm(event_id, out):
    m = 0
    for i in range(len(event_id)):
        if event_id[i] == 4794:
            out[m] = i
            m += 1
    return m


@register
class DsrmPasswordChange(Detector):
    id = "dsrm-password-change"
    title = "Directory Services Restore Mode password set"
    description = ("{account} {outcome} the Directory Services Restore Mode (DSRM) "
                   "administrator password on {computer} (event 4794, {count} event(s) between "
                   "{first_seen} and {last_seen}).")
    severity = "medium"
    mitre = ("T1098",)
    mdi_alert_id = ("2438",)
    key = "account"
    event_ids = frozenset({4794})
    next_steps = (
        "Confirm the DSRM password change with the DC owner (ntdsutil \"set dsrm password\").",
        "Check HKLM\\System\\CurrentControlSet\\Control\\Lsa\\DsrmAdminLogonBehavior: a value "
        "of 2 lets the DSRM account log on over the network (persistence).",
        "If unplanned, set a new DSRM password and investigate the actor's session.",
    )
    false_positives = ("Scheduled DSRM password rotation (e.g. LAPS-for-DSRM scripts, "
                       "ntdsutil sync from a domain account).",)
    audit = "Audit User Account Management (4794) on domain controllers."

    def run(self, batch, ctx, hits):
        out = np.empty(batch.n, np.int64)
        m = _dsrm(batch.event_id, out)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, ctx.key[idx])

    def details(self, batch, i, aux):
        failed = bool(int(batch.flags[i]) & FLAG_FAILURE)
        d = {"outcome": "attempted to set (failed)" if failed else "set"}
        if failed:
            d["status"] = hex(int(batch.status[i]))
        return d
