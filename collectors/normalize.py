"""Normalization: flat record (``collectors/records.py``) -> identity event dict.

Table-driven: :data:`EVENT_TABLE` maps each consumed event id to an action, a protocol and
which raw fields fill which schema fields (documented in ``docs/normalization.md``).
Unknown ids return ``None`` (the caller counts and drops them); malformed records raise
:class:`~stream.errors.NormalizationError` with the reason.

Normalization rules
-------------------
* accounts: ``domain\\name`` lower case; ``user@realm`` -> ``realm\\user``; a domain written
  as an FQDN is reduced to its first label (``corp.local`` -> ``corp``) so that Kerberos
  (FQDN realm) and NTLM/logon (NetBIOS) events of one user share one key; an event with no
  domain takes the domain label of the reporting DC's FQDN (4776, 4771).
* hosts lower case; ``\\\\`` prefixes stripped; IPv4-mapped IPv6 (``::ffff:10.0.0.5``)
  reduced to IPv4; ``-``, ``::1``/``127.0.0.1`` recorded as a local source.
* hex strings (``0xC000006A``) and decimals parsed to integers.
"""

from __future__ import annotations

from typing import Any, Callable

import orjson

from stream.errors import NormalizationError

from . import native
from stream.schema import (FLAG_ANONYMOUS, FLAG_FAILURE, FLAG_LOCAL_SOURCE, FLAG_MACHINE,
                           FLAG_TARGET_MACHINE, NUMERIC_DEFAULTS)

from stream.schema import FLAG_DELEGATED, FLAG_NULL_SUBJECT, FLAG_VALUE_DELETED  # noqa: E402,F401

_EMPTY = {"", "-", "%%1793", "null", "none", "n/a"}
_INT64_MAX = 2**63 - 1  # numeric columns of the wire format are int64


def _s(v: Any) -> str:
    if v is None:
        return ""
    s = str(v).strip()
    return "" if s.lower() in _EMPTY else s


def is_value_deleted(v: Any) -> bool:
    """5136 OperationType: ``%%14675`` (as EVTX/WEF render it) or its text "Value Deleted"
    (Winlogbeat / NXLog with message rendering)."""
    t = _s(v).lower()
    return "%%14675" in t or "value deleted" in t


def parse_int(v: Any, default: int = 0) -> int:
    s = _s(v)
    if not s:
        return default
    try:
        if s[:2] in ("0x", "0X"):
            return int(s, 16)
        return int(s)
    except ValueError:
        return default


def _u32(v: Any) -> int:
    return parse_int(v) & 0xFFFFFFFF


def norm_host(v: Any) -> str:
    s = _s(v).lower().lstrip("\\")
    return s


def norm_ip(v: Any) -> str:
    s = _s(v).lower()
    if s.startswith("::ffff:"):
        s = s[7:]
    return s


def _dom_label(d: str) -> str:
    d = d.strip().lower()
    if not d:
        return ""
    return d.split(".", 1)[0]


def _computer_domain(computer: str) -> str:
    parts = computer.lower().split(".")
    return parts[1] if len(parts) > 2 else ""


def norm_account(name: Any, domain: Any = "", computer: str = "") -> str:
    """``domain\\name`` lower case (see module docstring)."""
    n = _s(name)
    if not n:
        return ""
    n = n.lower()
    d = _s(domain).lower()
    if "\\" in n:
        d, n = n.split("\\", 1)
    elif "@" in n:
        n, realm = n.split("@", 1)
        if not d:
            d = realm
    d = _dom_label(d) if d else _computer_domain(computer)
    return f"{d}\\{n}" if d else n


def is_local_ip(ip: str) -> bool:
    return ip in ("", "127.0.0.1", "::1", "localhost") or ip.startswith("127.")


# -- table ------------------------------------------------------------------------------------
# Each spec: action, protocol (str or callable(rec)->str), account (name key, domain key,
# sid key), target (name, domain, sid), field map {schema_field: raw_key or tuple of keys},
# int map {schema_field: raw_key}, failure predicate.

SUBJ = ("SubjectUserName", "SubjectDomainName", "SubjectUserSid")
TARGET = ("TargetUserName", "TargetDomainName", "TargetSid")
TARGET_U = ("TargetUserName", "TargetDomainName", "TargetUserSid")


def _proto_auth(rec: dict) -> str:
    p = (_s(rec.get("AuthenticationPackageName")) or _s(rec.get("LogonProcessName"))).lower()
    if "kerberos" in p:
        return "kerberos"
    if "ntlm" in p:
        return "ntlm"
    if "negotiate" in p:
        return "negotiate"
    return p or ""


def _status_fail(rec: dict) -> bool:
    return parse_int(rec.get("Status")) != 0


def _always(rec: dict) -> bool:
    """Failure predicate of ids that only record failures (4625, 4771, ...)."""
    return True


GROUP_CHANGE = dict(protocol="samr", account=SUBJ, target=None,
                    fields={"group": "TargetUserName", "group_sid": "TargetSid",
                            "member": "MemberName", "member_sid": "MemberSid"})
ACCOUNT_CHANGE = dict(protocol="samr", account=SUBJ, target=TARGET,
                      fields={}, ints={"uac_old": "OldUacValue", "uac_new": "NewUacValue"})

EVENT_TABLE: dict[int, dict[str, Any]] = {
    # logon / authentication
    4624: dict(action="logon", protocol=_proto_auth, account=TARGET_U, target=None,
               fields={"src_ip": "IpAddress", "src_host": "WorkstationName",
                       "logon_process": "LogonProcessName",
                       "auth_package": "AuthenticationPackageName"},
               ints={"logon_type": "LogonType", "key_length": "KeyLength"}),
    4625: dict(action="logon_failed", protocol=_proto_auth, account=TARGET_U, target=None,
               fields={"src_ip": "IpAddress", "src_host": "WorkstationName",
                       "logon_process": "LogonProcessName",
                       "auth_package": "AuthenticationPackageName"},
               ints={"logon_type": "LogonType", "status": "Status", "sub_status": "SubStatus"},
               failure=_always),
    4648: dict(action="explicit_credentials", protocol="local", account=SUBJ,
               target=("TargetUserName", "TargetDomainName", None),
               fields={"src_ip": "IpAddress", "target_host": "TargetServerName",
                       "service": "TargetInfo"}),
    4672: dict(action="privileged_logon", protocol="local", account=SUBJ, target=None, fields={}),
    4768: dict(action="tgt_request", protocol="kerberos", account=TARGET, target=None,
               fields={"src_ip": "IpAddress", "service": "ServiceName"},
               ints={"status": "Status", "ticket_encryption": "TicketEncryptionType",
                     "ticket_options": "TicketOptions", "preauth_type": "PreAuthType"},
               failure=_status_fail),
    4769: dict(action="tgs_request", protocol="kerberos",
               account=("TargetUserName", "TargetDomainName", None), target=None,
               fields={"src_ip": "IpAddress", "service": "ServiceName",
                       "target_sid": "ServiceSid"},
               ints={"status": "Status", "ticket_encryption": "TicketEncryptionType",
                     "ticket_options": "TicketOptions"},
               failure=_status_fail),
    4770: dict(action="tgs_renewed", protocol="kerberos",
               account=("TargetUserName", "TargetDomainName", None), target=None,
               fields={"src_ip": "IpAddress", "service": "ServiceName"},
               ints={"ticket_encryption": "TicketEncryptionType",
                     "ticket_options": "TicketOptions"}),
    4771: dict(action="preauth_failed", protocol="kerberos",
               account=("TargetUserName", None, "TargetSid"), target=None,
               fields={"src_ip": "IpAddress", "service": "ServiceName"},
               ints={"status": "Status", "preauth_type": "PreAuthType",
                     "ticket_options": "TicketOptions"},
               failure=_always),
    4776: dict(action="ntlm_validate", protocol="ntlm", account=("TargetUserName", None, None),
               target=None, fields={"src_host": "Workstation", "auth_package": "PackageName"},
               ints={"status": "Status"}, failure=_status_fail),
    8004: dict(action="ntlm_auth", protocol="ntlm", account=("UserName", "DomainName", None),
               target=None, fields={"src_host": "WorkstationName",
                                    "target_host": "SChannelName"}),
    # directory / object access
    4661: dict(action="object_handle", protocol="samr", account=SUBJ, target=None,
               fields={"object": "ObjectName", "object_class": "ObjectType",
                       "properties": "Properties"},
               ints={"access_mask": "AccessMask"}),
    4662: dict(action="object_access", protocol="ds", account=SUBJ, target=None,
               fields={"object": "ObjectName", "object_class": "ObjectType",
                       "properties": "Properties", "value": "AdditionalInfo"},
               ints={"access_mask": "AccessMask"}),
    5136: dict(action="ds_change", protocol="ldap", account=SUBJ, target=None,
               fields={"object": "ObjectDN", "object_class": "ObjectClass",
                       "object_guid": "ObjectGUID", "attribute": "AttributeLDAPDisplayName",
                       "value": "AttributeValue"}),
    5137: dict(action="ds_object_created", protocol="ldap", account=SUBJ, target=None,
               fields={"object": "ObjectDN", "object_class": "ObjectClass",
                       "object_guid": "ObjectGUID"}),
    5140: dict(action="share_access", protocol="smb", account=SUBJ, target=None,
               fields={"src_ip": "IpAddress", "share": "ShareName",
                       "object_class": "ObjectType"},
               ints={"access_mask": "AccessMask"}),
    5145: dict(action="share_object_access", protocol="smb", account=SUBJ, target=None,
               fields={"src_ip": "IpAddress", "share": "ShareName",
                       "relative_target": "RelativeTargetName", "object_class": "ObjectType"},
               ints={"access_mask": "AccessMask"}),
    # services, tasks, policy, logs
    4697: dict(action="service_installed", protocol="local", account=SUBJ, target=None,
               fields={"service_name": "ServiceName", "image_path": "ServiceFileName",
                       "value": "ServiceStartType"}),
    7045: dict(action="service_installed", protocol="local", account=None,
               target=("AccountName", None, None),
               fields={"service_name": "ServiceName", "image_path": "ImagePath",
                       "value": "StartType"}),
    4698: dict(action="task_created", protocol="local", account=SUBJ, target=None,
               fields={"object": "TaskName", "value": "TaskContent"}),
    4719: dict(action="audit_policy_changed", protocol="local", account=SUBJ, target=None,
               fields={"object": "SubcategoryGuid", "object_class": "CategoryId",
                       "value": "AuditPolicyChanges", "properties": "SubcategoryId"}),
    1102: dict(action="log_cleared", protocol="local", account=SUBJ, target=None,
               fields={}),
    104: dict(action="log_cleared", protocol="local", account=SUBJ, target=None,
              fields={"value": "Channel", "object": "BackupPath"}),
    # account management
    4720: dict(action="user_created", **ACCOUNT_CHANGE),
    4722: dict(action="user_enabled", **ACCOUNT_CHANGE),
    4723: dict(action="password_change_attempt", **ACCOUNT_CHANGE),
    4724: dict(action="password_reset", **ACCOUNT_CHANGE),
    4725: dict(action="user_disabled", **ACCOUNT_CHANGE),
    4726: dict(action="user_deleted", **ACCOUNT_CHANGE),
    4738: dict(action="user_changed", **ACCOUNT_CHANGE),
    4740: dict(action="user_locked_out", protocol="samr", account=SUBJ, target=TARGET,
                fields={"src_host": "TargetDomainName"}),
    4741: dict(action="computer_created", **ACCOUNT_CHANGE),
    4742: dict(action="computer_changed", **ACCOUNT_CHANGE),
    4743: dict(action="computer_deleted", **ACCOUNT_CHANGE),
    4767: dict(action="user_unlocked", **ACCOUNT_CHANGE),
    4765: dict(action="sid_history_added", protocol="samr", account=SUBJ, target=TARGET,
               fields={"value": "SidList", "member": "SourceUserName",
                       "member_sid": "SourceSid"}),
    4766: dict(action="sid_history_failed", protocol="samr", account=SUBJ, target=TARGET,
               fields={"value": "SidList", "member": "SourceUserName",
                       "member_sid": "SourceSid"}, failure=_always),
    4781: dict(action="account_renamed", protocol="samr", account=SUBJ,
               target=("OldTargetUserName", "TargetDomainName", "TargetSid"),
               fields={"value": "NewTargetUserName"}),
    4794: dict(action="dsrm_password_set", protocol="samr", account=SUBJ, target=None,
               fields={"src_host": "Workstation"}, ints={"status": "Status"},
               failure=_status_fail),
    4798: dict(action="user_groups_enumerated", protocol="samr", account=SUBJ, target=TARGET,
               fields={"object": "CallerProcessName"}),
    4799: dict(action="group_members_enumerated", protocol="samr", account=SUBJ, target=None,
               fields={"group": "TargetUserName", "group_sid": "TargetSid",
                       "object": "CallerProcessName"}),
    # group management
    **{eid: dict(action=act, **GROUP_CHANGE) for eid, act in {
        4727: "group_created", 4731: "group_created", 4754: "group_created",
        4728: "group_member_added", 4732: "group_member_added", 4756: "group_member_added",
        4729: "group_member_removed", 4733: "group_member_removed",
        4757: "group_member_removed", 4730: "group_deleted", 4734: "group_deleted",
        4758: "group_deleted", 4735: "group_changed", 4737: "group_changed",
        4755: "group_changed", 4764: "group_type_changed"}.items()},
    # netlogon (System)
    5805: dict(action="netlogon_auth_failed", protocol="netlogon", account=None, target=None,
               fields={"src_host": "Data0", "value": "Data2"}, failure=_always),
    5827: dict(action="netlogon_vulnerable_denied", protocol="netlogon",
               account=("MachineSamAccountName", "DomainName", None), target=None,
               fields={"value": "AccountType"}, failure=_always),
    5828: dict(action="netlogon_vulnerable_denied", protocol="netlogon",
               account=("MachineSamAccountName", "DomainName", None), target=None,
               fields={"value": "AccountType"}, failure=_always),
    5829: dict(action="netlogon_vulnerable_allowed", protocol="netlogon",
               account=("MachineSamAccountName", "DomainName", None), target=None,
               fields={"value": "AccountType"}),
    4626: dict(action="logon_claims", protocol="local", account=TARGET_U, target=None,
               fields={}, ints={"logon_type": "LogonType"}),
    1644: dict(action="ldap_search", protocol="ldap", account=None, target=None,
               fields={"src_ip": "Data4", "value": "Data1", "object": "Data0"}),
}

# Channel guard: which channels/providers may carry each id (ids are only unique per
# provider: Sysmon 1-29, PowerShell 4103/4104 ... must not be mistaken for Security events).
SYSTEM_IDS = {104, 7045, 5805, 5827, 5828, 5829}
OTHER_CHANNEL_IDS = {8004: "microsoft-windows-ntlm/operational", 1644: "directory service"}

# Extra raw fields kept in ``extra`` (small): per id.
EXTRA_KEYS: dict[int, tuple[str, ...]] = {
    4624: ("SubjectUserSid", "SubjectUserName", "TargetLogonId", "LogonGuid",
           "ElevatedToken", "ProcessName", "ImpersonationLevel"),
    4625: ("SubjectUserName", "ProcessName", "FailureReason"),
    4648: ("ProcessName", "TargetServerName"),
    4662: ("OperationType", "ObjectServer", "HandleId"),
    4661: ("ObjectServer", "ProcessName", "PrivilegeList"),
    4738: ("UserAccountControl", "SidHistory", "AllowedToDelegateTo", "ServicePrincipalNames",
           "SamAccountName", "UserPrincipalName", "PasswordLastSet", "DisplayName"),
    4742: ("UserAccountControl", "SidHistory", "AllowedToDelegateTo", "ServicePrincipalNames",
           "SamAccountName", "DnsHostName", "PasswordLastSet"),
    4741: ("UserAccountControl", "ServicePrincipalNames", "SamAccountName", "DnsHostName"),
    4720: ("UserAccountControl", "SamAccountName", "UserPrincipalName"),
    5136: ("OperationType", "AttributeSyntaxOID"),
    5145: ("AccessList", "IpPort"),
    4698: ("ClientProcessId",),
    7045: ("ServiceType",),
    4697: ("ServiceType", "ServiceAccount"),
    4769: ("LogonGuid", "TransmittedServices"),
    4768: ("CertIssuerName",),
}

_UNSIGNED = {"status", "sub_status", "ticket_options", "access_mask", "uac_old", "uac_new"}

# 4738/4742/4741/4720: changed attributes folded into schema fields.
_ACCOUNT_ATTR_IDS = {4720, 4722, 4738, 4741, 4742}


def channel_ok(eid: int, channel: str, provider: str) -> bool:
    ch = channel.lower()
    pv = provider.lower()
    if eid in SYSTEM_IDS:
        if eid == 104:
            return ch == "system" or "eventlog" in pv
        if eid == 7045:
            return ch == "system" or "service control manager" in pv
        return ch == "system" or "netlogon" in pv
    if eid in OTHER_CHANNEL_IDS:
        return ch == OTHER_CHANNEL_IDS[eid] or ch == "" or (eid == 8004 and "ntlm" in pv) \
            or (eid == 1644 and "activedirectory" in pv)
    return ch == "security" or pv == "microsoft-windows-security-auditing" or (
        ch == "" and pv == "")


def _unexpected(e: Exception) -> NormalizationError:
    return NormalizationError(f"normalization failed: {type(e).__name__}: {str(e)[:300]}")


class Normalizer:
    """Stateless-ish normalizer with counters (unknown / normalized / errors)."""

    def __init__(self):
        self.normalized = 0
        self.unknown = 0
        self.unknown_ids: dict[int, int] = {}

    def __call__(self, rec: dict) -> dict | None:
        return self.normalize(rec)

    def normalize(self, rec: dict) -> dict | None:
        """Flat record -> event dict (``None`` for ids / channels the product does not
        consume). Well-formed records of consumed ids run the function compiled for their id
        from :data:`EVENT_TABLE`; anything else takes :meth:`normalize_reference` (the
        generic table walk). Both give identical dicts (tests/collectors/
        test_normalize_equivalence.py). Any failure is a :class:`NormalizationError` (the
        caller dead-letters the record and goes on)."""
        try:
            return self._normalize(rec)
        except NormalizationError:
            raise
        except Exception as e:  # noqa: BLE001 - e.g. a value orjson cannot encode
            raise _unexpected(e) from e

    def _normalize(self, rec: dict) -> dict | None:
        try:
            eid = rec["_eid"]
            time_ms = rec["_time_ms"]
        except KeyError as e:
            raise NormalizationError(f"flat record without {e.args[0]}") from None
        if eid.__class__ is int:
            fn = _COMPILED.get(eid)
            if fn is not None:
                ck = (eid, rec.get("_channel", ""), rec.get("_provider", ""))
                try:
                    ok = _CHAN_CACHE[ck]
                except KeyError:
                    ok = channel_ok(eid, str(ck[1]), str(ck[2]))
                    if len(_CHAN_CACHE) > 4096:
                        _CHAN_CACHE.clear()
                    _CHAN_CACHE[ck] = ok
                except TypeError:               # unhashable channel/provider: generic path
                    ok = False
                if ok and time_ms.__class__ is int and 0 <= time_ms <= _INT64_MAX:
                    rid = rec.get("_record") or 0
                    if rid.__class__ is int and -_INT64_MAX - 1 <= rid <= _INT64_MAX:
                        ev = None
                        if _NATIVE_NORM is not None:
                            ev = _NATIVE_NORM(rec, eid, time_ms, rid)
                        if ev is None:
                            ev = fn(rec, eid, time_ms, rid)
                        self.normalized += 1
                        return ev
            elif eid not in EVENT_TABLE:
                self.unknown += 1
                self.unknown_ids[eid] = self.unknown_ids.get(eid, 0) + 1
                return None
        return self._normalize_reference(rec)

    def normalize_reference(self, rec: dict) -> dict | None:
        """The generic walk over :data:`EVENT_TABLE`: the specification of
        :meth:`normalize` (kept for the equivalence test and for unusual records)."""
        try:
            return self._normalize_reference(rec)
        except NormalizationError:
            raise
        except Exception as e:  # noqa: BLE001 - as normalize()
            raise _unexpected(e) from e

    def _normalize_reference(self, rec: dict) -> dict | None:
        try:
            eid = rec["_eid"]
            time_ms = rec["_time_ms"]
        except KeyError as e:
            raise NormalizationError(f"flat record without {e.args[0]}") from None
        if type(eid) is not int:
            raise NormalizationError(f"event id {str(eid)[:40]!r} is not an integer")
        spec = EVENT_TABLE.get(eid)
        if spec is None or not channel_ok(eid, str(rec.get("_channel", "")),
                                          str(rec.get("_provider", ""))):
            self.unknown += 1
            self.unknown_ids[eid] = self.unknown_ids.get(eid, 0) + 1
            return None
        if type(time_ms) is not int or not 0 <= time_ms <= _INT64_MAX:
            raise NormalizationError(f"event {eid}: bad event time {str(time_ms)[:40]!r}")
        record_id = rec.get("_record") or 0
        if type(record_id) is not int:
            record_id = parse_int(record_id, None)  # type: ignore[arg-type]
        if record_id is None or not -_INT64_MAX - 1 <= record_id <= _INT64_MAX:
            raise NormalizationError(f"event {eid}: bad event record id "
                                     f"{str(rec.get('_record'))[:40]!r} (not a 64-bit integer)")
        computer = norm_host(rec.get("_computer"))
        ev: dict[str, Any] = {
            "time_ms": time_ms, "record_id": record_id, "event_id": eid,
            "computer": computer, "channel": str(rec.get("_channel", "")).lower(),
            "provider": str(rec.get("_provider", "")), "action": spec["action"],
        }
        proto = spec.get("protocol", "")
        ev["protocol"] = proto(rec) if callable(proto) else proto
        flags = 0
        acc = spec.get("account")
        if acc:
            name_k, dom_k, sid_k = acc
            raw_name = _s(rec.get(name_k))
            ev["account"] = norm_account(raw_name, rec.get(dom_k) if dom_k else "", computer)
            if dom_k:
                ev["account_domain"] = _s(rec.get(dom_k))
            if sid_k:
                ev["account_sid"] = _s(rec.get(sid_k)).upper()
            if raw_name.endswith("$"):
                flags |= FLAG_MACHINE
            low = raw_name.lower()
            if low in ("anonymous logon", "anonymous") or ev.get("account_sid") == "S-1-5-7":
                flags |= FLAG_ANONYMOUS
        elif eid in (7045,):
            ev["account_sid"] = _s(rec.get("_user_sid")).upper()
        tgt = spec.get("target")
        if tgt:
            name_k, dom_k, sid_k = tgt
            raw_t = _s(rec.get(name_k))
            ev["target_account"] = norm_account(raw_t, rec.get(dom_k) if dom_k else "",
                                                computer)
            if sid_k:
                ev["target_sid"] = _s(rec.get(sid_k)).upper()
            if raw_t.endswith("$"):
                flags |= FLAG_TARGET_MACHINE
        for f, k in spec.get("fields", {}).items():
            v = _s(rec.get(k))
            if not v:
                continue
            if f == "src_ip":
                v = norm_ip(v)
            elif f in ("src_host", "target_host"):
                v = norm_host(v)
            elif f in ("group", "member"):
                v = v.lower()
            ev[f] = v
        for f, k in spec.get("ints", {}).items():
            if k in rec:
                dflt = NUMERIC_DEFAULTS.get(f, 0)
                val = parse_int(rec.get(k), dflt)
                if f in _UNSIGNED:
                    val &= 0xFFFFFFFF
                elif not -0x80000000 <= val <= 0x7FFFFFFF:
                    val = dflt  # e.g. TicketEncryptionType 0xffffffff = none
                ev[f] = val
        if eid == 4625 and ev.get("sub_status") and ev.get("status") == 0xC000006D:
            pass  # keep both; detectors read sub_status for the precise reason
        if eid in _ACCOUNT_ATTR_IDS:
            self._account_attrs(rec, ev)
        if eid == 4624 and _s(rec.get("SubjectUserSid")).upper() == "S-1-0-0":
            flags |= FLAG_NULL_SUBJECT
        if eid in (4742, 4738) and _s(rec.get("SubjectUserSid")).upper() == "S-1-5-7":
            flags |= FLAG_ANONYMOUS
        if eid == 4781:
            ev["value"] = ev.get("value", "").lower()
        if eid == 4769 and ev.get("service", "").lower().endswith("$"):
            flags |= FLAG_TARGET_MACHINE
        if eid == 4769 and _s(rec.get("TransmittedServices")):
            flags |= FLAG_DELEGATED
        if eid == 5136 and is_value_deleted(rec.get("OperationType")):
            flags |= FLAG_VALUE_DELETED
        fail = spec.get("failure")
        if fail is not None and fail(rec):
            flags |= FLAG_FAILURE
        ip = ev.get("src_ip", "")
        if "src_ip" in spec.get("fields", {}) and is_local_ip(ip):
            flags |= FLAG_LOCAL_SOURCE
            if ip in ("127.0.0.1", "::1"):
                ev["src_ip"] = ""
        ev["flags"] = flags
        keys = EXTRA_KEYS.get(eid)
        if keys:
            extra = {k: _s(rec.get(k)) for k in keys if _s(rec.get(k))}
            if extra:
                ev["extra"] = orjson.dumps(extra).decode()[:4000]
        self.normalized += 1
        return ev

    @staticmethod
    def _account_attrs(rec: dict, ev: dict) -> None:
        """4720/4722/4738/4741/4742: fold changed attributes into schema fields.

        value = UserAccountControl text (%%20xx codes), service = ServicePrincipalNames,
        object = SamAccountName, properties = "SidHistory=...;AllowedToDelegateTo=...;
        PasswordLastSet=...;UserPrincipalName=..." (non-empty ones only).
        """
        uac = _s(rec.get("UserAccountControl"))
        if uac:
            ev["value"] = uac
        spn = _s(rec.get("ServicePrincipalNames"))
        if spn:
            ev["service"] = spn
        sam = _s(rec.get("SamAccountName"))
        if sam:
            ev["object"] = sam.lower()
        props = []
        for k in ("SidHistory", "AllowedToDelegateTo", "PasswordLastSet", "UserPrincipalName",
                  "DnsHostName"):
            v = _s(rec.get(k))
            if v:
                props.append(f"{k}={v}")
        if props:
            ev["properties"] = ";".join(props)


NORMALIZED_EVENT_IDS = frozenset(EVENT_TABLE)


def normalize_reference(rec: dict) -> dict | None:
    """Reference (generic, uncompiled) normalization of one flat record."""
    return Normalizer().normalize_reference(rec)


# -- compiled per-event-id normalizers ---------------------------------------------------------
# One Python function per id of EVENT_TABLE, generated once from its spec: the same steps as
# Normalizer.normalize_reference in the same order (so the dicts are identical, key order
# included), without the generic loops, spec lookups and repeated helper calls.

_CHAN_CACHE: dict[tuple, bool] = {}


def _fs(v: Any) -> str:
    """Same as :func:`_s` (strings are the common case; the longest empty marker is 6
    characters and lower() never shortens a string)."""
    if v.__class__ is str:
        s = v.strip()
    elif v is None:
        return ""
    else:
        s = str(v).strip()
    if len(s) <= 6 and s.lower() in _EMPTY:
        return ""
    return s


def _pint(v: Any, default: int) -> int:
    """Same as :func:`parse_int`."""
    s = _fs(v)
    if not s:
        return default
    try:
        if s[:2] in ("0x", "0X"):
            return int(s, 16)
        return int(s)
    except ValueError:
        return default


def _gen_source(eid: int, spec: dict) -> tuple[str, dict]:
    env: dict[str, Any] = {}
    L = [f"def _norm_{eid}(rec, eid, time_ms, record_id):",
         "    g = rec.get",
         "    computer = _fs(g('_computer')).lower().lstrip('\\\\')",
         "    ch = g('_channel', '')",
         "    pv = g('_provider', '')",
         "    ev = {'time_ms': time_ms, 'record_id': record_id, 'event_id': eid,",
         "          'computer': computer,",
         "          'channel': (ch if ch.__class__ is str else str(ch)).lower(),",
         "          'provider': pv if pv.__class__ is str else str(pv),",
         f"          'action': {spec['action']!r}}}"]
    proto = spec.get("protocol", "")
    if callable(proto):
        env["_proto"] = proto
        L.append("    ev['protocol'] = _proto(rec)")
    else:
        L.append(f"    ev['protocol'] = {proto!r}")
    L.append("    flags = 0")
    acc = spec.get("account")
    has_acc_sid = False
    if acc:
        name_k, dom_k, sid_k = acc
        L.append(f"    raw_name = _fs(g({name_k!r}))")
        if dom_k:
            L.append(f"    ev['account'] = norm_account(raw_name, g({dom_k!r}), computer)")
            L.append(f"    ev['account_domain'] = _fs(g({dom_k!r}))")
        else:
            L.append("    ev['account'] = norm_account(raw_name, '', computer)")
        if sid_k:
            has_acc_sid = True
            L.append(f"    ev['account_sid'] = _fs(g({sid_k!r})).upper()")
        L.append("    if raw_name.endswith('$'):")
        L.append(f"        flags |= {FLAG_MACHINE}")
        cond = "raw_name.lower() in ('anonymous logon', 'anonymous')"
        if has_acc_sid:
            cond += " or ev['account_sid'] == 'S-1-5-7'"
        L.append(f"    if {cond}:")
        L.append(f"        flags |= {FLAG_ANONYMOUS}")
    elif eid == 7045:
        L.append("    ev['account_sid'] = _fs(g('_user_sid')).upper()")
    tgt = spec.get("target")
    if tgt:
        name_k, dom_k, sid_k = tgt
        L.append(f"    raw_t = _fs(g({name_k!r}))")
        dom = f"g({dom_k!r})" if dom_k else "''"
        L.append(f"    ev['target_account'] = norm_account(raw_t, {dom}, computer)")
        if sid_k:
            L.append(f"    ev['target_sid'] = _fs(g({sid_k!r})).upper()")
        L.append("    if raw_t.endswith('$'):")
        L.append(f"        flags |= {FLAG_TARGET_MACHINE}")
    fields = spec.get("fields", {})
    for f, k in fields.items():
        L.append(f"    v = _fs(g({k!r}))")
        L.append("    if v:")
        if f == "src_ip":
            L.append("        v = v.lower()")
            L.append("        if v.startswith('::ffff:'):")
            L.append("            v = v[7:]")
        elif f in ("src_host", "target_host"):
            L.append("        v = v.lower().lstrip('\\\\')")
        elif f in ("group", "member"):
            L.append("        v = v.lower()")
        L.append(f"        ev[{f!r}] = v")
    for f, k in spec.get("ints", {}).items():
        dflt = NUMERIC_DEFAULTS.get(f, 0)
        L.append(f"    if {k!r} in rec:")
        L.append(f"        val = _pint(g({k!r}), {dflt!r})")
        if f in _UNSIGNED:
            L.append("        val &= 0xFFFFFFFF")
        else:
            L.append("        if not -0x80000000 <= val <= 0x7FFFFFFF:")
            L.append(f"            val = {dflt!r}")
        L.append(f"        ev[{f!r}] = val")
    if eid in _ACCOUNT_ATTR_IDS:
        L.append("    _account_attrs(rec, ev)")
    if eid == 4624:
        L.append("    if _fs(g('SubjectUserSid')).upper() == 'S-1-0-0':")
        L.append(f"        flags |= {FLAG_NULL_SUBJECT}")
    if eid in (4742, 4738):
        L.append("    if _fs(g('SubjectUserSid')).upper() == 'S-1-5-7':")
        L.append(f"        flags |= {FLAG_ANONYMOUS}")
    if eid == 4781:
        L.append("    ev['value'] = ev.get('value', '').lower()")
    if eid == 4769:
        L.append("    if ev.get('service', '').lower().endswith('$'):")
        L.append(f"        flags |= {FLAG_TARGET_MACHINE}")
        L.append("    if _fs(g('TransmittedServices')):")
        L.append(f"        flags |= {FLAG_DELEGATED}")
    if eid == 5136:
        env["_deleted"] = is_value_deleted
        L.append("    if _deleted(g('OperationType')):")
        L.append(f"        flags |= {FLAG_VALUE_DELETED}")
    fail = spec.get("failure")
    if fail is not None:
        env["_fail"] = fail
        L.append("    if _fail(rec):")
        L.append(f"        flags |= {FLAG_FAILURE}")
    if "src_ip" in fields:
        L.append("    ip = ev.get('src_ip', '')")
        L.append("    if ip in ('', '127.0.0.1', '::1', 'localhost') or ip.startswith('127.'):")
        L.append(f"        flags |= {FLAG_LOCAL_SOURCE}")
        L.append("        if ip in ('127.0.0.1', '::1'):")
        L.append("            ev['src_ip'] = ''")
    L.append("    ev['flags'] = flags")
    keys = EXTRA_KEYS.get(eid)
    if keys:
        L.append("    extra = {}")
        for k in keys:
            L.append(f"    v = _fs(g({k!r}))")
            L.append("    if v:")
            L.append(f"        extra[{k!r}] = v")
        L.append("    if extra:")
        L.append("        ev['extra'] = _dumps(extra).decode()[:4000]")
    L.append("    return ev")
    return "\n".join(L) + "\n", env


def _compile(eid: int, spec: dict) -> Callable[[dict, int, int, int], dict]:
    src, env = _gen_source(eid, spec)
    ns: dict[str, Any] = {"_fs": _fs, "_pint": _pint, "norm_account": norm_account,
                          "_account_attrs": Normalizer._account_attrs,
                          "_dumps": orjson.dumps, **env}
    exec(compile(src, f"<normalize {eid}>", "exec"), ns)  # noqa: S102 - generated from EVENT_TABLE
    return ns[f"_norm_{eid}"]


_COMPILED: dict[int, Callable[[dict, int, int, int], dict]] = {
    eid: _compile(eid, spec) for eid, spec in EVENT_TABLE.items()}


# -- the same functions in C (collectors/_native.c), loaded from this table -------------------
# Field kinds, special steps and failure kinds as _native.c numbers them.
_FK = {"src_ip": 1, "src_host": 2, "target_host": 2, "group": 3, "member": 3}
_SP_NULL_SUBJECT, _SP_VALUE_LOWER, _SP_TGS, _SP_VALUE_DELETED, _SP_USER_SID, \
    _SP_HAS_SRC_IP, _SP_ACCOUNT_ATTRS, _SP_SUBJECT_ANON = 1, 2, 4, 8, 16, 32, 64, 128


def native_table() -> dict[int, tuple]:
    """:data:`EVENT_TABLE` in the form ``_native.set_table`` takes. Ids whose steps the C
    side does not model (a protocol or failure rule other than the ones below) would be left
    out and keep their Python function; today every id is modelled. Every step here mirrors
    one of :func:`_gen_source`."""
    out = {}
    for eid, spec in EVENT_TABLE.items():
        proto = spec.get("protocol", "")
        fail = spec.get("failure")
        if (callable(proto) and proto is not _proto_auth) or \
                fail not in (None, _always, _status_fail):
            continue
        fields = spec.get("fields", {})
        special = ((_SP_NULL_SUBJECT if eid == 4624 else 0)
                   | (_SP_VALUE_LOWER if eid == 4781 else 0)
                   | (_SP_TGS if eid == 4769 else 0)
                   | (_SP_VALUE_DELETED if eid == 5136 else 0)
                   | (_SP_USER_SID if eid == 7045 and not spec.get("account") else 0)
                   | (_SP_HAS_SRC_IP if "src_ip" in fields else 0)
                   | (_SP_ACCOUNT_ATTRS if eid in _ACCOUNT_ATTR_IDS else 0)
                   | (_SP_SUBJECT_ANON if eid in (4742, 4738) else 0))
        out[eid] = (
            spec["action"], None if callable(proto) else proto,
            spec.get("account") or None, spec.get("target") or None,
            tuple((f, k, _FK.get(f, 0)) for f, k in fields.items()),
            tuple((f, k, NUMERIC_DEFAULTS.get(f, 0), f in _UNSIGNED)
                  for f, k in spec.get("ints", {}).items()),
            special, 0 if fail is None else 1 if fail is _always else 2,
            EXTRA_KEYS.get(eid, ()), _chan_rule(eid))
    return out


def _chan_rule(eid: int) -> int:
    """Which branch of :func:`channel_ok` an id takes (numbered as _native.c's chan_ok)."""
    if eid in SYSTEM_IDS:
        return {104: 1, 7045: 2}.get(eid, 3)
    if eid in OTHER_CHANNEL_IDS:
        return {8004: 4, 1644: 5}[eid]
    return 0


_NATIVE_NORM = None
if native.AVAILABLE:
    native.ext.set_table(native_table(), NORMALIZED_EVENT_IDS)
    _NATIVE_NORM = native.ext.normalize



def normalize_all(records, on_error: Callable[[dict, Exception], None] | None = None):
    """Generator: flat records -> normalized events (unknown ids skipped)."""
    n = Normalizer()
    for rec in records:
        try:
            ev = n.normalize(rec)
        except NormalizationError as e:
            if on_error:
                on_error(rec, e)
            continue
        if ev is not None:
            yield ev
