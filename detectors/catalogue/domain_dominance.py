"""Domain dominance: golden-ticket, dcshadow, domain-acl-change, zerologon.

Uses the local string features of :mod:`detectors.catalogue.persistence` (see its docstring).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from stream.schema import (FLAG_ANONYMOUS, FLAG_DELEGATED, FLAG_FAILURE, FLAG_TARGET_MACHINE,
                           FLAG_VALUE_DELETED,
                           key_hash)

from ..base import Detector, Param, register
from ..features import T_DC
from ..kernels.common import find_row, mix, row_of
from .persistence import (A_NTSD, A_SPN, C_NTDSDSA, L_ADMINSDHOLDER, L_DC_OU, L_DOMAIN_ROOT,
                          L_GPO, LOCAL, NL_TOOL, P_PWDLASTSET, REALM_GARBAGE,
                          REALM_LOWER_FQDN, V_DCSHADOW_SPN,
                          ds_write_hits, replication_grantees)

# 4769 for S4U2Proxy (constrained delegation) carries TransmittedServices: the named account
# never asked the KDC for a TGT itself, so the golden-ticket join must skip it.
# (the normalizer sets FLAG_DELEGATED on such 4769 events)

_KERBEROS = np.uint64(key_hash("kerberos"))
_KRBTGT_HASHES = np.array(sorted({key_hash(s) for s in ("krbtgt", "KRBTGT", "Krbtgt")}),
                          dtype=np.uint64)

# ---------------------------------------------------------------------------------------------
# golden-ticket
# ---------------------------------------------------------------------------------------------

_G_FIRST = np.uint64(0x607D7E1C4E7F1257)   # state slot: first event time seen by the engine
_G_REALM = np.uint64(0x4EA1E5EED0C0FFEE)   # state slots: realms seen in successful 4768s

KIND_NO_TGT = 1
KIND_BAD_DOMAIN = 2


@njit(cache=True)
def _is_krbtgt(h, krbtgt_hashes):
    for j in range(len(krbtgt_hashes)):
        if krbtgt_hashes[j] == h:
            return True
    return False


@njit(cache=True)
def _golden(event_id, flags, time_ms, key, service, account_domain, protocol, str_hash,
            sflags, lf, krbtgt_hashes, lifetime, keys, tgt, first, last, out, out_first):
    m = 0
    gs = -1
    for i in range(len(event_id)):
        e = event_id[i]
        if e != 4768 and e != 4769 and e != 4770 and e != 4624 and e != 5140:
            continue
        t = time_ms[i]
        if gs < 0:
            gs = row_of(keys, _G_FIRST)
        if first[gs] == 0 or t < first[gs]:
            first[gs] = t
        if t > last[gs]:
            last[gs] = t
        if e == 4768 or (e == 4770 and _is_krbtgt(str_hash[service[i]], krbtgt_hashes)):
            if flags[i] & FLAG_FAILURE:
                continue
            s = row_of(keys, key[i])
            if t > tgt[s]:
                tgt[s] = t
            if t > last[s]:
                last[s] = t
            if e == 4768 and account_domain[i] != 0:
                rs = row_of(keys, mix(_G_REALM, str_hash[account_domain[i]]))
                if t > last[rs]:
                    last[rs] = t
            continue
        if e == 4624 or e == 5140:
            # forged PAC/ticket with a garbage domain name (e.g. mimikatz 'eo.oe.kiwi :)')
            if e == 4624 and str_hash[protocol[i]] != _KERBEROS:
                continue
            if lf[account_domain[i]] & REALM_GARBAGE:
                out[m] = i
                out_first[m] = t
                m += 1
            continue
        if e != 4769 or (flags[i] & FLAG_FAILURE):
            continue
        d = lf[account_domain[i]]
        if d & (REALM_GARBAGE | REALM_LOWER_FQDN):
            # the KDC writes the realm of a genuine TGT in upper case
            out[m] = i
            out_first[m] = t
            m += 1
            continue
        if _is_krbtgt(str_hash[service[i]], krbtgt_hashes):
            continue
        if flags[i] & FLAG_DELEGATED:
            continue
        if t < first[gs] + lifetime:
            continue  # not yet a full TGT lifetime of history: TGTs may predate the engine
        if account_domain[i] == 0:
            continue
        rs = find_row(keys, mix(_G_REALM, str_hash[account_domain[i]]))
        if rs < 0:
            continue  # realm never seen in a TGT here (trusted domain / partial coverage)
        s = find_row(keys, key[i])
        lt = tgt[s] if s >= 0 else 0
        if lt == 0 or lt < t - lifetime:
            out[m] = i
            out_first[m] = lt if lt > 0 else t
            m += 1
    return m


@register
class GoldenTicket(Detector):
    id = "golden-ticket"
    title = "Suspected Golden Ticket usage (forged TGT)"
    description = ("Kerberos activity of {account} from {source} on {computer} that no "
                   "genuine TGT explains: {reason}. {count} event(s) between {first_seen} and "
                   "{last_seen}.")
    severity = "high"
    mitre = ("T1558.001",)
    mdi_alert_id = ("2009", "2022", "2027")
    key = "account"
    event_ids = frozenset({4768, 4769, 4770, 4624, 5140})
    params = (
        Param("tgt_lifetime_h", 10, 10, 10, "maximum TGT lifetime (domain Kerberos policy); "
              "also the warm-up before the join may alert", "h"),
    )
    next_steps = (
        "Check which host used the ticket (source IP of the 4769) and the account's logon "
        "sessions there (klist); purge tickets and isolate the host.",
        "If forgery is confirmed, reset the krbtgt password twice (10+ hours apart, or per "
        "the krbtgt reset script) and hunt for DCSync / NTDS.dit theft that exposed it.",
        "Verify that every DC's Security log is collected: a TGT issued by an unmonitored DC "
        "looks exactly like a forged one.",
    )
    false_positives = (
        "TGTs issued by a DC whose events are not collected (collect every DC), or issued "
        "before the engine started (the first TGT lifetime is a warm-up).",
        "Non-Windows Kerberos clients that request a lower-case realm (flagged as a forged "
        "realm); protocol transition (S4U2Self) services.",
    )
    audit = ("Audit Kerberos Authentication Service (4768) and Audit Kerberos Service Ticket "
             "Operations (4769/4770) on EVERY domain controller; Audit Logon (4624).")
    STATE = {"tgt": ("i8", ()), "first": ("i8", ())}
    # per event: the account and its realm; once per batch the engine-wide first-seen key
    keys_per_event = 3
    window_ms = 10 * 3_600_000

    def retention_ms(self):
        return int(self.p["tgt_lifetime_h"] * 3_600_000) + 3_600_000

    def run(self, batch, ctx, hits):
        lf, _ = LOCAL.get(batch)
        st = self.state
        out = np.empty(batch.n, np.int64)
        out_first = np.empty(batch.n, np.int64)
        m = _golden(batch.event_id, batch.flags, batch.time_ms, ctx.key, batch.service,
                    batch.account_domain, batch.protocol, batch.str_hash, ctx.sflags, lf,
                    _KRBTGT_HASHES, int(self.p["tgt_lifetime_h"] * 3_600_000), st.index,
                    st["tgt"], st["first"], st["last"], out, out_first)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, ctx.key[idx], first_ms=out_first[:m])

    def details(self, batch, i, aux):
        dom = batch.get("account_domain", i)
        e = int(batch.event_id[i])
        low = dom.lower()
        if any(c in dom for c in ':;,*?"<>|/=+[]()') or "kiwi" in low:
            reason = f"malformed domain name {dom!r} in event {e} (forged ticket)"
        elif e == 4769 and "." in dom and dom != dom.upper():
            reason = (f"service ticket for realm {dom!r} written in lower case - genuine TGTs "
                      f"carry the upper-case realm")
        else:
            reason = (f"service ticket for {batch.get('service', i)} with no TGT (4768/4770) "
                      f"issued to the account within the TGT lifetime on any monitored DC")
        return {"reason": reason, "domain_as_written": dom,
                "services": [batch.get("service", i)] if e == 4769 else []}


# ---------------------------------------------------------------------------------------------
# dcshadow
# ---------------------------------------------------------------------------------------------

@njit(cache=True)
def _dcshadow(event_id, flags, service, value, attribute, obj, object_class,
              target_account, computer, sflags, lf, short, out):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        hit = False
        if e == 4742:
            if lf[service[i]] & V_DCSHADOW_SPN:
                tgt = target_account[i]
                is_dc = (sflags[tgt] & T_DC) != 0 or (short[tgt] != 0 and
                                                       short[tgt] == short[computer[i]])
                hit = not is_dc
        elif e == 5136:
            if (lf[attribute[i]] & A_SPN) and (lf[value[i]] & V_DCSHADOW_SPN) and \
                    (flags[i] & FLAG_VALUE_DELETED) == 0 and (lf[obj[i]] & L_DC_OU) == 0:
                hit = True
        elif e == 5137:
            hit = (lf[object_class[i]] & C_NTDSDSA) != 0
        if hit:
            out[m] = i
            m += 1
    return m


@register
class DcShadow(Detector):
    id = "dcshadow"
    title = "Suspected DCShadow attack (rogue domain controller registration)"
    description = ("{account} {what} on {computer} - the registration steps of a rogue domain "
                   "controller (DCShadow) that pushes changes through replication without "
                   "audit. {count} event(s) between {first_seen} and {last_seen}.")
    severity = "high"
    mitre = ("T1207",)
    mdi_alert_id = ("2028", "2029")
    key = "account"
    event_ids = frozenset({4742, 5136, 5137})
    next_steps = (
        "Check whether a DC promotion was planned for that computer; if not, treat the actor "
        "as holding domain/enterprise admin rights.",
        "Remove the GC/ and E3514235-4B06-11D1-AB04-00C04FC2DCD2/ SPNs and any nTDSDSA / "
        "server object under CN=Sites that does not belong to a real DC.",
        "Review replication metadata (repadmin /showobjmeta) of sensitive objects for changes "
        "originating from the rogue DSA.",
    )
    false_positives = ("A genuine DC promotion (the new DC's account gets these SPNs and an "
                       "nTDSDSA object): list DCs in detection.domain_controllers.",)
    audit = ("Audit Computer Account Management (4742); Audit Directory Service Changes with "
             "SACLs on computer objects and the Configuration partition Sites container "
             "(5136/5137).")

    def run(self, batch, ctx, hits):
        lf, short = LOCAL.get(batch)
        out = np.empty(batch.n, np.int64)
        m = _dcshadow(batch.event_id, batch.flags, batch.service, batch.value,
                      batch.attribute, batch.object, batch.object_class,
                      batch.target_account, batch.computer, ctx.sflags, lf, short, out)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, ctx.key[idx])

    def details(self, batch, i, aux):
        e = int(batch.event_id[i])
        g = batch.get
        if e == 4742:
            spns = [t for t in g("service", i).split() if t.lower().startswith(
                ("gc/", "e3514235-4b06-11d1-ab04-00c04fc2dcd2/"))]
            what = (f"added domain-controller SPNs ({', '.join(spns)}) to "
                    f"{g('target_account', i)}, which is not a known DC")
            return {"what": what, "spns": spns, "target": g("target_account", i)}
        if e == 5136:
            what = f"added the DC SPN {g('value', i)} to {g('object', i)}"
            return {"what": what, "spns": [g("value", i)], "target": g("object", i)}
        return {"what": f"created an nTDSDSA (DC settings) object {g('object', i)}",
                "target": g("object", i)}


# ---------------------------------------------------------------------------------------------
# domain-acl-change
# ---------------------------------------------------------------------------------------------



@register
class DomainAclChange(Detector):
    id = "domain-acl-change"
    title = "Permissions changed on the domain root, AdminSDHolder or a GPO"
    description = ("{account} changed the security descriptor of the {object_kind} {object} on "
                   "{computer}{grant_text}. {count} change(s) between {first_seen} and "
                   "{last_seen}.")
    severity = "high"
    mitre = ("T1222.001", "T1098")
    mdi_alert_id = ("xdr_SuspiciousAdditionOfAcl",)
    key = "account"
    event_ids = frozenset({5136})
    next_steps = (
        "Compare the new ACL with the previous value (the paired 5136 'value deleted' event) "
        "and identify added ACEs and trustees.",
        "Remove replication rights (DS-Replication-Get-Changes[-All]) granted to anything but "
        "DCs / documented sync accounts; then hunt for DCSync (4662) by those trustees.",
        "Find how the actor got WRITE_DAC (Exchange Windows Permissions, relayed machine "
        "account - PrivExchange, ntlmrelayx --escalate-user).",
    )
    false_positives = ("Exchange / Entra Connect setup and delegation wizards granting "
                       "documented rights; GPMC delegation of GPOs by admins.",)
    audit = ("Audit Directory Service Changes with a SACL (Modify permissions) on the domain "
             "root, CN=AdminSDHolder,CN=System and CN=Policies,CN=System.")

    def run(self, batch, ctx, hits):
        lf, _ = LOCAL.get(batch)
        out = np.empty(batch.n, np.int64)
        m = ds_write_hits(batch.event_id, batch.attribute, batch.object, batch.flags, lf,
                          A_NTSD, L_DOMAIN_ROOT | L_ADMINSDHOLDER | L_GPO, out)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, ctx.key[idx])

    def details(self, batch, i, aux):
        obj = batch.get("object", i).lower()
        if "cn=adminsdholder,cn=system," in obj:
            kind = "AdminSDHolder object"
        elif ",cn=policies,cn=system," in obj:
            kind = "Group Policy container"
        else:
            kind = "domain root"
        grantees = replication_grantees(batch.get("value", i))
        text = ""
        if grantees:
            text = ("; replication (DCSync) or full-control rights are now granted to "
                    + ", ".join(grantees))
        return {"object_kind": kind, "replication_rights_granted_to": grantees,
                "grant_text": text}


# ---------------------------------------------------------------------------------------------
# zerologon
# ---------------------------------------------------------------------------------------------

@njit(cache=True)
def _zerologon(event_id, flags, properties, src_host, target_account, computer, value, sflags,
               lf, short, dc_only, any_5805, out):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        hit = False
        if e == 4742:
            if (flags[i] & FLAG_ANONYMOUS) and (flags[i] & FLAG_TARGET_MACHINE) and \
                    (lf[properties[i]] & P_PWDLASTSET):
                tgt = target_account[i]
                is_dc = (sflags[tgt] & T_DC) != 0 or (short[tgt] != 0 and
                                                       short[tgt] == short[computer[i]])
                hit = is_dc or not dc_only
        elif e == 5805:
            h = src_host[i]
            if any_5805:
                hit = True
            elif (sflags[h] & T_DC) or (short[h] != 0 and short[h] == short[computer[i]]):
                hit = True  # a client claiming to be a DC (itself) failed the secure channel
            elif (lf[h] & NL_TOOL) or (lf[value[i]] & NL_TOOL):
                hit = True
        elif e == 5827 or e == 5828 or e == 5829:
            hit = True
        if hit:
            out[m] = i
            m += 1
    return m


@register
class Zerologon(Detector):
    id = "zerologon"
    title = "Netlogon privilege elevation attempt (Zerologon, CVE-2020-1472)"
    description = ("{what} on {computer} (event {event_id}); {count} event(s) from {entity} "
                   "between {first_seen} and {last_seen}.")
    severity = "high"
    mitre = ("T1210",)
    mdi_alert_id = ("2411",)
    key = "source"
    event_ids = frozenset({4742, 5805, 5827, 5828, 5829})
    params = (
        Param("dc_only", 1, 1, 0, "4742: only alert when the anonymously changed machine "
              "account is a DC (low: any machine account)", "bool"),
        Param("any_5805", 0, 0, 1, "alert on every Netlogon 5805 session-setup failure, not "
              "only those claiming to be a DC or naming an attack tool", "bool"),
    )
    next_steps = (
        "Make sure the DC is patched and in Netlogon enforcement mode (FullSecureChannel"
        "Protection=1).",
        "If a DC's machine password was changed by ANONYMOUS LOGON, the DC's secure channel "
        "is broken and the attacker likely ran DCSync: restore the DC's password "
        "(netdom resetpwd), reset krbtgt twice, and hunt for replication by non-DCs.",
        "Identify the source IP of the anonymous Netlogon session (4624 LogonType 3 ANONYMOUS "
        "LOGON just before) and isolate it.",
    )
    false_positives = (
        "5827/5828/5829 from legacy non-compliant devices (NAS, old Samba) using vulnerable "
        "Netlogon secure channels; add them to the allow-list GPO or exclude the host.",
        "5805 for a computer whose machine password is out of sync (only alerted when the "
        "client claims to be the DC itself, unless any_5805).",
    )
    audit = ("System log Netlogon events (5805, 5827-5829) on DCs; Audit Computer Account "
             "Management (4742).")

    def run(self, batch, ctx, hits):
        lf, short = LOCAL.get(batch)
        out = np.empty(batch.n, np.int64)
        m = _zerologon(batch.event_id, batch.flags, batch.properties, batch.src_host,
                       batch.target_account, batch.computer, batch.value, ctx.sflags, lf,
                       short, int(self.p["dc_only"]), int(self.p["any_5805"]), out)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, ctx.key[idx])

    def details(self, batch, i, aux):
        e = int(batch.event_id[i])
        g = batch.get
        if e == 4742:
            what = (f"ANONYMOUS LOGON changed the password of the domain controller account "
                    f"{g('target_account', i)} (Zerologon exploitation / NetrServerPassword"
                    f"Set2 with an empty password)")
        elif e == 5805:
            what = (f"Netlogon session setup from a client claiming to be "
                    f"{g('src_host', i) or '?'} failed to authenticate (Zerologon attempts "
                    f"impersonate the DC itself)")
        elif e == 5829:
            what = f"a vulnerable Netlogon secure channel from {g('account', i)} was ALLOWED"
        else:
            what = f"a vulnerable Netlogon secure channel from {g('account', i)} was denied"
        return {"what": what, "target": g("target_account", i) or g("src_host", i)}
