"""Synthetic Active Directory domain: benign traffic + injected attacks, as raw flat records.

Used by ``itdr demo``, the demo tests and the benchmarks. Seeded and deterministic: the same
``(seed, users, days, events)`` always yields the same records, in time order, in the *flat
record* format of :mod:`collectors.records` (``_eid``, ``_time_ms``, ``_computer``,
``_channel``, ``_provider``, ``_record``, ``_user_sid`` + the raw EventData field names and
values as Windows writes them), so the demo exercises normalization too.

The domain (``corp.local`` / NetBIOS ``CORP``):

* 3 domain controllers (DC01-DC03) replicating with each other (4662 with the replication
  rights, by the DC machine accounts);
* N users, each with a workstation (``WS-0001`` ...), working weekdays 07:00-19:00: Kerberos
  TGT (4768, AES) from their workstation, service tickets (4769) for hosts and for the SPN
  service accounts (two legacy services only support RC4), SYSVOL/GPO reads (5145), network
  logons on the DCs (4624 type 3), NTLM validations (4776) for a legacy application, a few
  wrong passwords (typos: 4771 0x18) and mistyped user names (4768 0x6);
* computers and servers: machine TGTs every ~8 h, machine service tickets, GPO refresh;
* 3 tier-0 admins (``adm.<name>``, Domain Admins) on their own admin workstations
  (PAW01-PAW03, configured as ``admin_hosts``): logons to the DCs, service control / share
  enumeration from the PAWs, group changes on non-sensitive groups, password resets;
* an Entra (Azure AD) Connect server AADC01 whose ``MSOL_`` account replicates
  (configured as ``sync_accounts``) and writes back Windows Hello key credentials;
* a vulnerability scanner SCAN01 (``svc_nessus``) that scans weekly: unknown default user
  names, wrong passwords for Administrator, remote registry / service control on the DCs,
  logons to every host -- configured as a global *exclusion*;
* a honeytoken account (``adm.sqlbackup``) nobody uses (configured as ``honeytoken_accounts``);
* a remote-desktop server RDS01 that a fifth of the users use every day;
* Windows Defender definition updates installing the ``MpKsl<8 hex>`` driver service (7045)
  on the DCs; computers rotating their own machine password (4742) and writing their own key
  credential (5136 msDS-KeyCredentialLink).

Benign look-alikes of attacks are handled as *configuration* (:meth:`DomainSimulator.demo_config`),
never by hiding events.

Attacks are injected on the last simulated day (after the 7-day learning period), as one
intrusion story: a phished user on WS-0042, then a stolen Domain Admin credential, plus a
rogue laptop on the network. Each expected detection is an :class:`InjectedAttack` in
:attr:`DomainSimulator.ground_truth` (detector id, entity, time, description). See
``docs/demo.md`` for the list and the events each attack leaves.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

SEC = "Security"
SEC_PROV = "Microsoft-Windows-Security-Auditing"
DOMAIN_FQDN = "corp.local"
REALM = "CORP.LOCAL"
NETBIOS = "CORP"
START = datetime(2026, 3, 2, tzinfo=timezone.utc)  # a Monday
HOUR = 3_600_000
MIN = 60_000
DAY = 24 * HOUR

# Well-known GUIDs (schema / extended rights) as Windows writes them
GUID_DOMAIN_DNS = "19195a5b-6da0-11d0-afd3-00c04fd930c9"
GUID_USER_CLASS = "bf967aba-0de6-11d0-a285-00aa003049e2"
GUID_GET_CHANGES = "1131f6aa-9c07-11d1-f79f-00c04fc2dcd2"
GUID_GET_CHANGES_ALL = "1131f6ad-9c07-11d1-f79f-00c04fc2dcd2"
GUID_IN_FILTERED_SET = "89e95b76-444d-4c62-991a-0facbeda640c"
GUID_DRS_SPN = "E3514235-4B06-11D1-AB04-00C04FC2DCD2"
GPO_DEFAULT_DOMAIN = "{31B2F340-016D-11D2-945F-00C04FB984F9}"
GPO_DEFAULT_DC = "{6AC1786C-016F-11D2-945F-00C04FB984F9}"
IPC_ACCESS_LIST = ("%%1538\r\n\t\t\t\t%%1541\r\n\t\t\t\t%%4416\r\n\t\t\t\t%%4417\r\n\t\t\t\t"
                   "%%4418\r\n\t\t\t\t%%4419\r\n\t\t\t\t%%4420\r\n\t\t\t\t%%4423\r\n\t\t\t\t"
                   "%%4424\r\n\t\t\t\t")

FIRST = ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
         "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas",
         "Sarah", "Charles", "Karen", "Daniel", "Lisa", "Matthew", "Nancy", "Anthony", "Betty",
         "Mark", "Sandra", "Donald", "Ashley", "Steven", "Kimberly", "Paul", "Emily", "Andrew",
         "Donna", "Joshua", "Michelle", "Kenneth", "Carol", "Kevin", "Amanda", "Brian",
         "Melissa", "George", "Deborah", "Timothy", "Stephanie", "Ronald", "Rebecca", "Jason",
         "Laura", "Edward", "Sharon", "Jeffrey", "Cynthia", "Ryan", "Kathleen", "Jacob", "Amy"]
LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
        "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson",
        "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White",
        "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen",
        "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams",
        "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Chen"]
GUESSED_NAMES = ["admin", "administrador", "backup", "test", "test1", "guest1", "user",
                 "support", "helpdesk", "scanner", "ftp", "oracle", "sql", "sqladmin", "root",
                 "info", "sales", "marketing", "hr", "it", "web", "webadmin", "security",
                 "operator", "manager", "office", "print", "demo", "training", "temp",
                 "j.smith", "jsmith1", "mjohnson1", "owner", "svc_admin", "exchange", "vpn",
                 "remote", "adm", "da"]


@dataclass(frozen=True)
class InjectedAttack:
    """One expected detection: ``detector`` must raise an alert on ``entity``.

    ``aliases``: every string an alert's entity may legitimately show for this attack
    (account as ``corp\\\\name``, IP, host) -- source-keyed detectors display the source IP
    or, for events without one (4661, 4742), the reporting DC. ``also``: other detectors
    whose logic the same events legitimately satisfy (their alerts on these entities are
    attributed to this attack, not counted as false positives; they do not count as the
    detection). ``window_ms``: alerts whose evidence starts within this window after
    ``time_ms`` (or up to 10 min before) match.
    """

    detector: str
    entity: str
    time_ms: int
    description: str
    technique: str = ""
    aliases: tuple[str, ...] = ()
    also: tuple[str, ...] = ()
    window_ms: int = 2 * HOUR

    def to_dict(self) -> dict:
        return {"detector": self.detector, "entity": self.entity, "time_ms": self.time_ms,
                "time": _iso(self.time_ms), "description": self.description,
                "technique": self.technique, "aliases": list(self.aliases),
                "also": list(self.also)}

    def matches(self, detector: str, entity: str, first_ms: int,
                last_ms: int | None = None) -> bool:
        """Same (or an ``also``) detector; alert evidence ``[first_ms, last_ms]`` overlaps
        ``[time_ms - 10 min, time_ms + window_ms]``; entity equal to the entity or an alias
        (or containing one, e.g. ``PSEXESVC on dc02.corp.local``)."""
        if detector != self.detector and detector not in self.also:
            return False
        last_ms = first_ms if last_ms is None else last_ms
        if last_ms < self.time_ms - 10 * MIN or first_ms > self.time_ms + self.window_ms:
            return False
        ent = entity.lower()
        for a in (self.entity.lower(), *self.aliases):
            if ent == a or (len(a) >= 6 and _contains_token(ent, a)):
                return True
        return False


def _contains_token(text: str, token: str) -> bool:
    """``token`` occurs in ``text`` delimited by non-name characters (so that 10.1.0.4 does
    not match 10.1.0.42)."""
    start = 0
    while True:
        i = text.find(token, start)
        if i < 0:
            return False
        j = i + len(token)
        before = text[i - 1] if i > 0 else " "
        after = text[j] if j < len(text) else " "
        if not (before.isalnum() or before in "._-$") and not (after.isalnum() or
                                                               after in "._-$"):
            return True
        start = i + 1


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[
        :-3] + "Z"


@dataclass
class Account:
    sam: str
    rid: int
    display: str = ""
    ws: "Host | None" = None
    kind: str = "user"        # user | admin | service | machine | honeytoken | sync
    aes: bool = True
    spn: str = ""
    uac: int = 0x210          # SAM internal flags as 4738 logs them (normal + don't expire)


@dataclass
class Host:
    name: str                 # short upper-case name, e.g. WS-0042
    ip: str
    rid: int
    kind: str = "workstation"  # workstation | server | dc | paw | scanner | rogue

    @property
    def fqdn(self) -> str:
        return f"{self.name.lower()}.{DOMAIN_FQDN}"

    @property
    def sam(self) -> str:
        return f"{self.name}$"


class DomainSimulator:
    """Seeded synthetic domain. ``records()`` yields flat records in time order.

    ``events``: approximate number of benign records to generate (the domain size and the
    filler activity scale with it); ``users`` (default derived from ``events``); ``days``
    (>= 9: 8 days of learning-period traffic, then the attack day).
    """

    def __init__(self, seed: int = 7, users: int | None = None, days: int = 9,
                 events: int = 200_000, attacks: bool = True):
        if days < 2:
            raise ValueError("days must be >= 2 (the last day carries the attacks)")
        self.seed = seed
        self.days = days
        self.events = max(1000, int(events))
        self.n_users = users if users is not None else max(50, min(3000, self.events // 600))
        if self.n_users < 50:
            raise ValueError("users must be >= 50 (the attacks need a victim on WS-0042, 30 "
                             "spray targets and 20 hosts to fan out to)")
        self.attacks_enabled = attacks
        self.rng = random.Random(seed)
        r = self.rng
        self.domain_sid = f"S-1-5-21-{r.randint(10**9, 4 * 10**9)}-{r.randint(10**9, 4 * 10**9)}-" \
                          f"{r.randint(10**9, 4 * 10**9)}"
        self.start_ms = int(START.timestamp() * 1000)
        self.attack_day = days - 1
        self._build_domain()
        self._ground_truth: list[InjectedAttack] = []
        self._gt_built = False
        self.stats: dict[str, int] = {"benign": 0, "attack": 0}

    # -- domain ---------------------------------------------------------------------------
    def sid(self, rid: int) -> str:
        return f"{self.domain_sid}-{rid}"

    def _build_domain(self) -> None:
        r = self.rng
        rid = [1100]

        def next_rid() -> int:
            rid[0] += 1
            return rid[0]

        self.dcs = [Host(f"DC0{i + 1}", f"10.0.0.{10 + i}", 1000 + i, "dc") for i in range(3)]
        self.servers = {n: Host(n, ip, next_rid(), "server") for n, ip in [
            ("FS01", "10.0.1.10"), ("SQL01", "10.0.1.11"), ("WEB01", "10.0.1.12"),
            ("APP01", "10.0.1.13"), ("RDS01", "10.0.1.14"), ("CA01", "10.0.1.15"),
            ("AADC01", "10.0.1.20")]}
        self.scanner = Host("SCAN01", "10.0.9.50", next_rid(), "scanner")
        self.paws = [Host(f"PAW0{i + 1}", f"10.0.5.{11 + i}", next_rid(), "paw") for i in range(3)]
        self.rogue = Host("KALI", "10.1.250.13", 0, "rogue")
        used: set[str] = set()
        self.users: list[Account] = []
        self.workstations: list[Host] = []
        for i in range(self.n_users):
            while True:
                fn, ln = r.choice(FIRST), r.choice(LAST)
                sam = (fn[0] + ln).lower()
                if sam in used:
                    sam = f"{sam}{r.randint(2, 99)}"
                if sam not in used:
                    break
            used.add(sam)
            ws = Host(f"WS-{i + 1:04d}", f"10.1.{i // 250}.{i % 250 + 1}", next_rid())
            self.workstations.append(ws)
            self.users.append(Account(sam, next_rid(), f"{fn} {ln}", ws))
        self.admins: list[Account] = []
        for i in range(3):
            u = self.users[i]
            a = Account(f"adm.{u.sam}", next_rid(), f"{u.display} (admin)", self.paws[i], "admin")
            self.admins.append(a)
        # service accounts with SPNs (two legacy services only support RC4)
        self.services = [
            Account("svc_sql", next_rid(), "SQL Server", self.servers["SQL01"], "service",
                    True, "MSSQLSvc/sql01.corp.local:1433"),
            Account("svc_web", next_rid(), "Intranet", self.servers["WEB01"], "service", True,
                    "HTTP/web01.corp.local"),
            Account("svc_erp", next_rid(), "ERP (legacy)", self.servers["APP01"], "service",
                    False, "HTTP/app01.corp.local"),
            Account("svc_report", next_rid(), "Reporting (legacy)", self.servers["SQL01"],
                    "service", False, "MSSQLSvc/sql01.corp.local:2383"),
            Account("svc_backup", next_rid(), "Backup", self.servers["FS01"], "service", True,
                    "BackupAgent/fs01.corp.local"),
            Account("svc_crm", next_rid(), "CRM", self.servers["WEB01"], "service", True,
                    "HTTP/crm.corp.local"),
        ]
        self.svc = {a.sam: a for a in self.services}
        self.msol = Account(f"MSOL_{r.getrandbits(48):012x}", next_rid(), "AAD Connect", 
                            self.servers["AADC01"], "sync")
        self.nessus = Account("svc_nessus", next_rid(), "Vulnerability scanner", self.scanner,
                              "service")
        self.honeytoken = Account("adm.sqlbackup", next_rid(), "SQL backup admin", None,
                                  "honeytoken")
        self.asrep_target = Account("svc_printer", next_rid(), "Old print service", None,
                                    "user", False, uac=0x10210)
        self.administrator = Account("Administrator", 500, "Administrator", None, "admin")
        self.rds_users = set(range(3, self.n_users, 5))
        self.legacy_app_users = set(range(1, self.n_users, 7))
        self.victim_i = 41
        self.victim = self.users[self.victim_i]
        self.da = self.admins[1]
        # hosts every user may request tickets for (besides own WS and DCs)
        self.user_services = [("host", self.servers["FS01"]), ("host", self.servers["WEB01"]),
                              ("svc", self.svc["svc_sql"]), ("svc", self.svc["svc_web"]),
                              ("svc", self.svc["svc_crm"]), ("svc", self.svc["svc_erp"]),
                              ("svc", self.svc["svc_report"])]
        self.groups = {"VPN-Users": 1201, "Sales": 1202, "FS01-Finance-RW": 1203,
                       "Marketing": 1204, "Intranet-Editors": 1205}

    def demo_config(self) -> dict[str, Any]:
        """``detection`` settings the demo runs with (benign look-alikes as configuration)."""
        return {
            "domain_controllers": [h.fqdn for h in self.dcs],
            # names and addresses: 5145 / 4624 carry only the source IP
            "admin_hosts": [h.fqdn for h in self.paws] + [h.ip for h in self.paws],
            "sync_accounts": ["msol_*"],
            "honeytoken_accounts": [f"{NETBIOS.lower()}\\{self.honeytoken.sam}"],
            "sensitive_accounts": [a.sam for a in self.admins],
            "exclude": {"hosts": [self.scanner.fqdn], "ips": [self.scanner.ip],
                        "accounts": [self.nessus.sam]},
        }

    # -- record builders -------------------------------------------------------------------
    def _rec(self, eid: int, t: int, computer: Host, channel: str = SEC,
             provider: str = SEC_PROV, user_sid: str = "", **data: Any) -> dict:
        d = {"_eid": eid, "_time_ms": int(t), "_computer": computer.fqdn, "_channel": channel,
             "_provider": provider, "_record": 0, "_user_sid": user_sid}
        d.update(data)
        return d

    def _logon_id(self) -> str:
        return hex(self.rng.randint(0x100000, 0x7FFFFFFF))

    def _port(self) -> str:
        return str(self.rng.randint(49152, 65535))

    def _guid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128))).upper()

    def tgt(self, t, dc, acct: Account, ip, status="0x0", etype=None, preauth="2",
            options="0x40810010", machine=False):
        name = acct.sam
        ok = status == "0x0"
        if etype is None:
            etype = "0x12" if acct.aes else "0x17"
        return self._rec(4768, t, dc, TargetUserName=name,
                         TargetDomainName=REALM,
                         TargetSid=self.sid(acct.rid) if ok or status != "0x6" else "S-1-0-0",
                         ServiceName="krbtgt" if ok else f"krbtgt/{REALM}",
                         ServiceSid=self.sid(502) if ok else "S-1-0-0",
                         TicketOptions=options, Status=status,
                         TicketEncryptionType=etype if ok else "0xffffffff",
                         PreAuthType=preauth if ok else "-", IpAddress=f"::ffff:{ip}",
                         IpPort=self._port(), CertIssuerName="", CertSerialNumber="",
                         CertThumbprint="")

    def tgs(self, t, dc, client: str, ip, service: str, service_rid: int, etype="0x12",
            options="0x40810000", status="0x0", realm=REALM):
        return self._rec(4769, t, dc, TargetUserName=f"{client}@{realm}",
                         TargetDomainName=realm, ServiceName=service,
                         ServiceSid=self.sid(service_rid), TicketOptions=options,
                         TicketEncryptionType=etype, IpAddress=f"::ffff:{ip}",
                         IpPort=self._port(), Status=status,
                         LogonGuid="{" + self._guid() + "}", TransmittedServices="-")

    def logon(self, t, computer, name, domain, sid, ltype, ip, ws="-", proc="Kerberos",
              pkg="Kerberos", key="0", subject=None, lmpkg="-"):
        s_sid, s_name, s_dom, s_lid = subject or ("S-1-0-0", "-", "-", "0x0")
        return self._rec(4624, t, computer, SubjectUserSid=s_sid, SubjectUserName=s_name,
                         SubjectDomainName=s_dom, SubjectLogonId=s_lid, TargetUserSid=sid,
                         TargetUserName=name, TargetDomainName=domain,
                         TargetLogonId=self._logon_id(), LogonType=str(ltype),
                         LogonProcessName=proc, AuthenticationPackageName=pkg,
                         WorkstationName=ws, LogonGuid="{" + (
                             self._guid() if pkg == "Kerberos" else
                             "00000000-0000-0000-0000-000000000000") + "}",
                         TransmittedServices="-", LmPackageName=lmpkg, KeyLength=key,
                         ProcessId="0x0", ProcessName="-", IpAddress=ip, IpPort=self._port(),
                         ImpersonationLevel="%%1833", RestrictedAdminMode="-",
                         TargetOutboundUserName="-", TargetOutboundDomainName="-",
                         VirtualAccount="%%1843", TargetLinkedLogonId="0x0",
                         ElevatedToken="%%1842")

    def interactive(self, t, host: Host, acct: Account, ltype: int, ip="127.0.0.1",
                    ws: str | None = None):
        """4624 type 2 (console), 7 (unlock) or 10 (RDP) in the Security log of ``host``
        (workstation logs forwarded with WEF)."""
        r = self.logon(t, host, acct.sam, NETBIOS, self.sid(acct.rid), ltype, ip,
                       ws=ws or host.name, proc="User32 ", pkg="Negotiate",
                       subject=("S-1-5-18", host.sam, NETBIOS, "0x3e7"))
        r.update(LogonGuid="{" + self._guid() + "}", ProcessId=hex(self.rng.randint(0x200, 0x2000)),
                 ProcessName="C:\\Windows\\System32\\svchost.exe",
                 IpPort="0" if ip == "127.0.0.1" else self._port(),
                 RestrictedAdminMode="%%1843" if ltype == 10 else "-",
                 ElevatedToken="%%1842" if acct.kind == "admin" else "%%1843")
        return r

    def ntlm(self, t, dc, name, ws, status="0x0"):
        return self._rec(4776, t, dc, PackageName="MICROSOFT_AUTHENTICATION_PACKAGE_V1_0",
                         TargetUserName=name, Workstation=ws, Status=status)

    def _subject(self, acct: Account) -> dict:
        return {"SubjectUserSid": self.sid(acct.rid), "SubjectUserName": acct.sam,
                "SubjectDomainName": NETBIOS, "SubjectLogonId": self._logon_id()}

    def share(self, t, computer, acct: Account, ip, share, target, mask="0x12019f",
              access=IPC_ACCESS_LIST):
        return self._rec(5145, t, computer, **self._subject(acct), ObjectType="File",
                         IpAddress=ip, IpPort=self._port(), ShareName=f"\\\\*\\{share}",
                         ShareLocalPath="" if share == "IPC$" else (
                             "\\??\\C:\\Windows\\SYSVOL\\sysvol" if share == "SYSVOL"
                             else "\\??\\C:\\Windows"),
                         RelativeTargetName=target, AccessMask=mask, AccessList=access,
                         AccessReason="-")

    def ds_access(self, t, dc, acct: Account, props: list[str], mask="0x100",
                  otype=GUID_DOMAIN_DNS, oname=None, access="%%7688"):
        p = f"{access}\r\n\t\t" + "".join(f"{{{g}}}\r\n\t" for g in props) + \
            f"{{{otype}}}\r\n"
        return self._rec(4662, t, dc, **self._subject(acct), ObjectServer="DS",
                         ObjectType=f"%{{{otype}}}",
                         ObjectName=oname or "%{" + self.domain_guid + "}",
                         OperationType="Object Access", HandleId="0x0",
                         AccessList=f"{access}\r\n\t\t\t\t", AccessMask=mask, Properties=p,
                         AdditionalInfo="-", AdditionalInfo2="")

    def ds_change(self, t, dc, acct: Account, dn, cls, attr, value, op="%%14674",
                  syntax="2.5.5.10", guid=None, corr=None):
        return self._rec(5136, t, dc, OpCorrelationID="{" + (corr or self._guid()) + "}",
                         AppCorrelationID="-", **self._subject(acct), DSName=DOMAIN_FQDN,
                         DSType="%%14676", ObjectDN=dn, ObjectGUID="{" + (guid or self._guid())
                         + "}", ObjectClass=cls, AttributeLDAPDisplayName=attr,
                         AttributeSyntaxOID=syntax, AttributeValue=value, OperationType=op)

    def account_change(self, eid, t, dc, actor: Account, target_name, target_rid, **changes):
        base = {k: "-" for k in ("SamAccountName", "DisplayName", "UserPrincipalName",
                                 "HomeDirectory", "HomePath", "ScriptPath", "ProfilePath",
                                 "UserWorkstations", "PasswordLastSet", "AccountExpires",
                                 "PrimaryGroupId", "AllowedToDelegateTo", "OldUacValue",
                                 "NewUacValue", "UserAccountControl", "UserParameters",
                                 "SidHistory", "LogonHours")}
        if eid in (4741, 4742):
            base.update(ComputerAccountChange="-", DnsHostName="-", ServicePrincipalNames="-")
        else:
            base.update(Dummy="-")
        base.update(changes)
        return self._rec(eid, t, dc, TargetUserName=target_name, TargetDomainName=NETBIOS,
                         TargetSid=self.sid(target_rid), **self._subject(actor),
                         PrivilegeList="-", **base)

    def group_change(self, eid, t, dc, actor: Account, group, group_sid, member: Account):
        return self._rec(eid, t, dc, MemberName=f"CN={member.display},OU=Users,OU=Corp,"
                         "DC=corp,DC=local", MemberSid=self.sid(member.rid),
                         TargetUserName=group, TargetDomainName=NETBIOS if not
                         group_sid.startswith("S-1-5-32") else "Builtin", TargetSid=group_sid,
                         **self._subject(actor), PrivilegeList="-")

    def service_install(self, t, computer, name, image, user_sid, stype="user mode service",
                        start="demand start", account="LocalSystem"):
        return self._rec(7045, t, computer, channel="System", provider="Service Control Manager",
                         user_sid=user_sid, ServiceName=name, ImagePath=image,
                         ServiceType=stype, StartType=start, AccountName=account)

    # -- benign ----------------------------------------------------------------------------
    def _dc_for(self, i: int) -> Host:
        return self.dcs[i % 2] if self.rng.random() < 0.85 else self.rng.choice(self.dcs)

    def _user_day(self, out: list, day0: int, i: int, u: Account, start_h: float,
                  end_h: float, fill: int) -> None:
        r = self.rng
        ws = u.ws
        t = day0 + int(start_h * HOUR) + r.randint(0, 59_999)
        end = day0 + int(end_h * HOUR)
        dc = self._dc_for(i)
        # occasionally a typo at logon (wrong password: 4771 0x18), then the real logon
        if r.random() < 0.03:
            for k in range(r.choice((1, 1, 2))):
                out.append(self._rec(4771, t - 20_000 + k * 4000, dc, TargetUserName=u.sam,
                                     TargetSid=self.sid(u.rid), ServiceName=f"krbtgt/{REALM}",
                                     TicketOptions="0x40810010", Status="0x18", PreAuthType="2",
                                     IpAddress=f"::ffff:{ws.ip}", IpPort=self._port(),
                                     CertIssuerName="", CertSerialNumber="", CertThumbprint=""))
        if r.random() < 0.004:  # mistyped user name at the logon screen
            out.append(self.tgt(t - 40_000, dc, Account(u.sam[:-1] + u.sam[-1] * 2, 0), ws.ip,
                                status="0x6"))
        out.append(self.tgt(t, dc, u, ws.ip))
        out.append(self.tgs(t + 150, dc, u.sam, ws.ip, ws.sam, ws.rid))
        out.append(self.interactive(t + 1400, ws, u, 2))
        if end - t > 5 * HOUR:   # back from lunch: unlock
            out.append(self.interactive(t + r.randint(3 * HOUR, 5 * HOUR), ws, u, 7))
        out.append(self.tgs(t + 900, dc, u.sam, ws.ip, dc.sam, dc.rid))
        out.append(self.logon(t + 1200, dc, u.sam, NETBIOS, self.sid(u.rid), 3, ws.ip))
        for k, g in enumerate((GPO_DEFAULT_DOMAIN,)):
            out.append(self.share(t + 1500 + k, dc, u, ws.ip, "SYSVOL",
                                  f"{DOMAIN_FQDN}\\Policies\\{g}\\gpt.ini", "0x120089",
                                  "%%1538\r\n\t\t\t\t%%1541\r\n\t\t\t\t%%4416\r\n\t\t\t\t"
                                  "%%4423\r\n\t\t\t\t"))
        tr = end + 1
        if i in self.rds_users:  # RDP to RDS01; RDS01 gets its own TGT for the user (NLA)
            rds = self.servers["RDS01"]
            tr = t + r.randint(10, 60) * MIN
            out.append(self.tgs(tr, dc, u.sam, ws.ip, rds.sam, rds.rid))
            out.append(self.tgt(tr + 2500, dc, u, rds.ip))
            out.append(self.interactive(tr + 2800, rds, u, 10, ws.ip, ws.name))
            out.append(self.tgs(tr + 3000, dc, u.sam, rds.ip, dc.sam, dc.rid))
        for _ in range(fill):
            tt = r.randint(t + 5 * MIN, max(t + 6 * MIN, end))
            ip = ws.ip
            if tt > tr + 5000 and r.random() < 0.3:  # work inside the RDS session
                ip = self.servers["RDS01"].ip
            kind, obj = r.choice(self.user_services)
            d = self._dc_for(i)
            if kind == "host":
                out.append(self.tgs(tt, d, u.sam, ip, obj.sam, obj.rid))
            else:
                out.append(self.tgs(tt, d, u.sam, ip, obj.sam, obj.rid,
                                    etype="0x12" if obj.aes else "0x17"))
        if i in self.legacy_app_users:  # legacy app on APP01 authenticates users with NTLM
            for _ in range(r.randint(1, 3)):
                tt = r.randint(t + 10 * MIN, max(t + 11 * MIN, end))
                out.append(self.ntlm(tt, self._dc_for(i), u.sam, ws.name))

    def _machine_day(self, out: list, day0: int, h: Host, on: bool, dc: Host) -> None:
        if not on:
            return
        r = self.rng
        acct = Account(h.sam, h.rid, kind="machine")
        for base in (0.1, 8.1, 16.1):
            t = day0 + int(base * HOUR) + r.randint(0, 40 * MIN)
            out.append(self.tgt(t, dc, acct, h.ip, machine=True))
            out.append(self.tgs(t + 40, dc, h.sam, h.ip, dc.sam, dc.rid))
            out.append(self.logon(t + 90, dc, h.sam, REALM if h.kind == "dc" else NETBIOS,
                                  self.sid(h.rid), 3, h.ip))
            out.append(self.share(t + 200, dc, acct, h.ip, "SYSVOL",
                                  f"{DOMAIN_FQDN}\\Policies\\{GPO_DEFAULT_DOMAIN}\\gpt.ini",
                                  "0x120089", "%%1538\r\n\t\t\t\t%%1541\r\n\t\t\t\t"
                                  "%%4416\r\n\t\t\t\t%%4423\r\n\t\t\t\t"))

    def _benign_day(self, d: int) -> list[dict]:
        r = self.rng
        out: list[dict] = []
        day0 = self.start_ms + d * DAY
        weekend = (START.weekday() + d) % 7 >= 5
        budget = self.events // self.days
        # machines
        for k, h in enumerate(self.workstations):
            self._machine_day(out, day0, h, not weekend or r.random() < 0.3, self.dcs[k % 2])
        for k, h in enumerate([*self.servers.values(), *self.paws, self.scanner]):
            self._machine_day(out, day0, h, True, self.dcs[k % 3])
        # DC machine accounts and replication (each DC pulls from its partners every 15 min)
        for k, dc in enumerate(self.dcs):
            self._machine_day(out, day0, dc, True, self.dcs[(k + 1) % 3])
        dca = {dc.name: Account(dc.sam, dc.rid, kind="machine") for dc in self.dcs}
        for slot in range(0, 96):
            for k, dc in enumerate(self.dcs):
                partner = self.dcs[(k + 1) % 3]
                t = day0 + slot * 15 * MIN + r.randint(0, 30_000)
                for g in (GUID_GET_CHANGES, GUID_GET_CHANGES_ALL):
                    out.append(self.ds_access(t, partner, dca[dc.name], [g]))
        # Entra Connect: MSOL_ replicates every 30 min (password hash sync), Kerberos from AADC01
        aadc = self.servers["AADC01"]
        for base in (0.2, 8.2, 16.2):
            t = day0 + int(base * HOUR)
            out.append(self.tgt(t, self.dcs[0], self.msol, aadc.ip))
        for slot in range(48):
            t = day0 + slot * 30 * MIN + 5 * MIN + r.randint(0, 60_000)
            out.append(self.tgs(t - 500, self.dcs[0], self.msol.sam, aadc.ip,
                                self.dcs[0].sam, self.dcs[0].rid))
            out.append(self.logon(t - 300, self.dcs[0], self.msol.sam, NETBIOS,
                                  self.sid(self.msol.rid), 3, aadc.ip))
            for g in (GUID_GET_CHANGES, GUID_GET_CHANGES_ALL, GUID_IN_FILTERED_SET):
                out.append(self.ds_access(t, self.dcs[0], self.msol, [g]))
        # service accounts log on as services on their servers
        for k, s in enumerate(self.services):
            for base in (0.3, 10.3):
                t = day0 + int(base * HOUR) + r.randint(0, 20 * MIN)
                out.append(self.tgt(t, self.dcs[k % 2], s, s.ws.ip))
                out.append(self.tgs(t + 60, self.dcs[k % 2], s.sam, s.ws.ip,
                                    self.dcs[k % 2].sam, self.dcs[k % 2].rid))
        # nightly backup: svc_backup to the servers (same set every night)
        bk = self.svc["svc_backup"]
        t = day0 + int(1.0 * HOUR)
        for k, h in enumerate(self.servers.values()):
            out.append(self.tgs(t + k * 40_000, self.dcs[0], bk.sam, bk.ws.ip, h.sam, h.rid))
        # users
        n_work = 0
        for i, u in enumerate(self.users):
            if weekend and r.random() > 0.08:
                continue
            n_work += 1
        fixed = len(out) + n_work * 11
        fill_per_user = max(0, (budget - fixed) // max(1, n_work))
        for i, u in enumerate(self.users):
            if i == self.victim_i and d == self.attack_day:
                self._user_day(out, day0, i, u, 8.0, 17.5, fill_per_user)
                continue
            if weekend and r.random() > 0.08:
                continue
            start = min(10.0, max(7.0, r.gauss(8.4, 0.6)))
            end = start + r.uniform(7.0, 9.4)
            f = max(0, int(r.gauss(fill_per_user, fill_per_user / 4 + 0.5)))
            self._user_day(out, day0, i, u, start, end, f)
        # admins: from their PAW, every weekday
        if not weekend:
            for k, a in enumerate(self.admins):
                self._admin_day(out, day0, k, a)
        # Defender definition update: MpKsl driver service on a DC every other day
        if d % 2 == 1:
            dc = self.dcs[d % 3]
            out.append(self.service_install(
                day0 + int(r.uniform(2, 5) * HOUR), dc, f"MpKsl{r.getrandbits(32):08x}",
                "C:\\ProgramData\\Microsoft\\Windows Defender\\Definition Updates\\{"
                + self._guid() + "}\\MpKslDrv.sys", "S-1-5-18", "kernel mode driver",
                "manual start", ""))
        # computers rotate their machine password (30-day cycle) and register their own key
        for k, h in enumerate(self.workstations):
            if (k + d) % 30 == 0 and not weekend:
                t = day0 + int(r.uniform(9, 16) * HOUR)
                acct = Account(h.sam, h.rid, kind="machine")
                out.append(self.account_change(4742, t, self.dcs[k % 2], acct, h.sam, h.rid,
                                               PasswordLastSet=_win_time(t)))
            if (k * 7 + d) % 45 == 0 and not weekend:
                t = day0 + int(r.uniform(9, 16) * HOUR)
                acct = Account(h.sam, h.rid, kind="machine")
                out.append(self.ds_change(t, self.dcs[k % 2], acct,
                                          f"CN={h.name},OU=Workstations,OU=Corp,DC=corp,DC=local",
                                          "computer", "msDS-KeyCredentialLink",
                                          f"B:828:{self._keycred()}:CN={h.name},OU=Workstations,"
                                          "OU=Corp,DC=corp,DC=local", syntax="2.5.5.7"))
        # Entra Connect writes back Windows Hello for Business keys of a few users
        if not weekend:
            for _ in range(2):
                u = r.choice(self.users)
                t = day0 + int(r.uniform(9, 17) * HOUR)
                out.append(self.ds_change(t, self.dcs[0], self.msol,
                                          f"CN={u.display},OU=Users,OU=Corp,DC=corp,DC=local",
                                          "user", "msDS-KeyCredentialLink",
                                          f"B:854:{self._keycred()}:CN={u.display},OU=Users,"
                                          "OU=Corp,DC=corp,DC=local", syntax="2.5.5.7"))
        # weekly vulnerability scan (excluded by configuration): day 2 and the attack day
        if d in (2, self.attack_day):
            self._scan(out, day0 + 2 * HOUR)
        return out

    def _keycred(self) -> str:
        return "".join(f"{self.rng.getrandbits(32):08X}" for _ in range(8))

    def _admin_day(self, out: list, day0: int, k: int, a: Account) -> None:
        r = self.rng
        paw = a.ws
        t = day0 + int(r.uniform(7.8, 9.0) * HOUR)
        end = t + int(r.uniform(8.0, 9.0) * HOUR)
        dc = self.dcs[k % 2]
        out.append(self.tgt(t, dc, a, paw.ip))
        out.append(self.interactive(t + 1500, paw, a, 2))
        for d2 in self.dcs:
            tt = t + r.randint(1, 30) * MIN
            out.append(self.tgs(tt, dc, a.sam, paw.ip, d2.sam, d2.rid))
            out.append(self.logon(tt + 200, d2, a.sam, NETBIOS, self.sid(a.rid), 3, paw.ip))
            # remote management from the PAW: services, shares, registry
            for pipe in ("svcctl", "srvsvc", "winreg"):
                if r.random() < 0.5:
                    out.append(self.share(tt + 900, d2, a, paw.ip, "IPC$", pipe))
        for _ in range(r.randint(2, 6)):
            h = r.choice(list(self.servers.values()))
            out.append(self.tgs(r.randint(t, end), dc, a.sam, paw.ip, h.sam, h.rid))
        # group membership changes on non-sensitive groups; password resets
        for _ in range(r.randint(0, 3)):
            g = r.choice(list(self.groups))
            m = r.choice(self.users)
            eid = 4728 if r.random() < 0.7 else 4729
            out.append(self.group_change(eid, r.randint(t, end), dc, a, g,
                                         self.sid(self.groups[g]), m))
        if r.random() < 0.5:
            m = r.choice(self.users)
            tt = r.randint(t, end)
            out.append(self.account_change(4724, tt, dc, a, m.sam, m.rid))
            out.append(self.account_change(4738, tt + 5, dc, a, m.sam, m.rid,
                                           PasswordLastSet=_win_time(tt)))

    def _scan(self, out: list, t: int) -> None:
        """Authenticated vulnerability scan from SCAN01 (svc_nessus)."""
        s, n = self.scanner, self.nessus
        dc = self.dcs[0]
        out.append(self.tgt(t, dc, n, s.ip))
        hosts = [*self.dcs, *self.servers.values(), *self.workstations[:60]]
        for k, h in enumerate(hosts):
            tt = t + k * 3000
            out.append(self.tgs(tt, dc, n.sam, s.ip, h.sam, h.rid))
            if h.kind == "dc":
                out.append(self.logon(tt + 100, h, n.sam, NETBIOS, self.sid(n.rid), 3, s.ip))
                for pipe in ("winreg", "svcctl", "srvsvc", "samr", "lsarpc"):
                    out.append(self.share(tt + 200, h, n, s.ip, "IPC$", pipe))
        # default / guessed credentials (NTLM) validated by the DC
        for k, g in enumerate(["admin", "root", "test", "guest1", "oracle", "sa", "cisco",
                               "postgres", "ubnt", "pi", "user", "support", "db2admin",
                               "tomcat"]):
            out.append(self.ntlm(t + 30 * MIN + k * 2000, dc, g, "SCAN01", "0xC0000064"))
        for k in range(12):
            out.append(self.ntlm(t + 32 * MIN + k * 2000, dc, "Administrator", "SCAN01",
                                 "0xC000006A"))

    # -- attacks ---------------------------------------------------------------------------
    def _attack(self, det, entity, t, desc, technique, aliases=(), also=()):
        self._ground_truth.append(InjectedAttack(det, entity, t, desc, technique,
                                                tuple(a.lower() for a in aliases), tuple(also)))

    def _acc(self, a: Account | str) -> str:
        return f"{NETBIOS.lower()}\\{(a.sam if isinstance(a, Account) else a).lower()}"

    def _attacks(self) -> list[dict]:
        r = self.rng
        out: list[dict] = []
        self._ground_truth = []
        day0 = self.start_ms + self.attack_day * DAY
        v, ws, da = self.victim, self.victim.ws, self.da
        dc1, dc2, dc3 = self.dcs
        rogue = self.rogue
        at = lambda h, m, s=0: day0 + int(h * HOUR + m * MIN + s * 1000)  # noqa: E731
        V = self._acc(v)
        DA = self._acc(da)

        # 1. SAM-R recon: `net group "Domain Admins" /domain`, BloodHound-style, from WS-0042
        t = at(10, 5)
        out.append(self.share(t, dc1, v, ws.ip, "IPC$", "samr"))
        objs = [("SAM_DOMAIN", "DC=corp,DC=local")] + [
            ("SAM_GROUP", self.sid(x)) for x in (512, 519, 518, 520, 516)] + [
            ("SAM_ALIAS", s) for s in ("S-1-5-32-544", "S-1-5-32-548", "S-1-5-32-551")] + [
            ("SAM_USER", self.sid(x)) for x in (500, self.admins[0].rid, da.rid,
                                                self.admins[2].rid)]
        for k, (ot, on) in enumerate(objs):
            out.append(self._rec(4661, t + 20 + k * 150, dc1, **self._subject(v),
                                 ObjectServer="Security Account Manager", ObjectType=ot,
                                 ObjectName=on, HandleId=hex(r.getrandbits(40)),
                                 TransactionId="00000000-0000-0000-0000-000000000000",
                                 AccessList="%%1538\r\n\t\t\t\t%%5410\r\n\t\t\t\t",
                                 AccessMask="0x2d", PrivilegeList="-",
                                 Properties="---\r\n\t{bf967a9c-0de6-11d0-a285-00aa003049e2}\r\n",
                                 RestrictedSidCount="0", ProcessId="0x2a4",
                                 ProcessName="C:\\Windows\\System32\\lsass.exe"))
        self._attack("samr-recon", ws.ip, t, f"{v.sam} enumerates Domain/Enterprise Admins and "
                     "admin accounts over SAM-R from WS-0042 (5145 samr + 4661 on privileged "
                     "RIDs)", "T1087.002", (V, dc1.fqdn, dc1.name, ws.fqdn, ws.name))
        # 2. SMB session enumeration against every DC (srvsvc)
        t = at(10, 8)
        for k, dc in enumerate(self.dcs):
            out.append(self.share(t + k * 700, dc, v, ws.ip, "IPC$", "srvsvc"))
        self._attack("smb-session-enumeration", ws.ip, t, "NetSessionEnum (srvsvc) against the "
                     "three DCs from WS-0042", "T1049", (V, ws.fqdn, ws.name, dc1.fqdn))
        # 3. LDAP recon: bulk read of user objects (4662 Read Property on the user class)
        t = at(10, 10)
        for k in range(60):
            out.append(self.ds_access(t + k * 400, dc1, v, [
                "bf967a68-0de6-11d0-a285-00aa003049e2", "28630ebf-41d5-11d1-a9c1-0000f80367c1"],
                mask="0x10", otype=GUID_USER_CLASS, oname="%{" + self._guid().lower() + "}",
                access="%%7684"))
        self._attack("ldap-recon", ws.ip, t, f"{v.sam} reads 60 user objects in 24 s "
                     "(BloodHound-style LDAP collection)", "T1087.002",
                     (V, dc1.fqdn, dc1.name, ws.fqdn))
        # 4. Kerberoasting: RC4 service tickets for every SPN account in one minute
        t = at(10, 20)
        for k, s in enumerate(self.services):
            out.append(self.tgs(t + k * 900, dc1, v.sam, ws.ip, s.sam, s.rid, etype="0x17",
                                options="0x40810000"))
        self._attack("kerberoasting", V, t, f"{v.sam} requests RC4 service tickets for "
                     f"{len(self.services)} SPN accounts in 5 s (Rubeus kerberoast)", "T1558.003",
                     (ws.ip,))
        # 5. AS-REP roasting of the pre-auth-disabled legacy account
        t = at(10, 25)
        out.append(self.tgt(t, dc2, self.asrep_target, ws.ip, etype="0x17", preauth="0",
                            options="0x40800010"))
        self._attack("asrep-roasting", self._acc(self.asrep_target), t, "TGT for "
                     f"{self.asrep_target.sam} issued without pre-authentication (RC4) to WS-0042",
                     "T1558.004", (ws.ip,))
        # 6. Lateral movement fan-out: service tickets for 24 hosts in 6 minutes
        t = at(10, 40)
        targets = [h for h in self.workstations if h is not ws][:20] + \
            [self.servers[n] for n in ("FS01", "SQL01", "APP01", "CA01")]
        for k, h in enumerate(targets):
            out.append(self.tgs(t + k * 15_000, dc1, v.sam, ws.ip, h.sam, h.rid))
        self._attack("lateral-movement-fanout", V, t, f"{v.sam} requests service tickets "
                     f"for {len(targets)} hosts in 6 minutes (share / local-admin hunting)",
                     "T1021", (ws.ip,))
        # 7. Shadow credentials on SQL01 (Whisker) by the phished user
        t = at(11, 0)
        out.append(self.ds_change(t, dc1, v, "CN=SQL01,OU=Servers,OU=Corp,DC=corp,DC=local",
                                  "computer", "msDS-KeyCredentialLink",
                                  f"B:828:{self._keycred()}:CN=SQL01,OU=Servers,OU=Corp,DC=corp,"
                                  "DC=local", syntax="2.5.5.7"))
        self._attack("shadow-credentials", V, t, f"{v.sam} adds a key credential to SQL01's "
                     "msDS-KeyCredentialLink (Whisker)", "T1556", ("cn=sql01,ou=servers,ou=corp,"
                                                                  "dc=corp,dc=local",))
        # 8. RBCD: new machine account (MachineAccountQuota), then write on FS01
        t = at(11, 5)
        evil_rid = 3101
        out.append(self.account_change(
            4741, t, dc1, v, "EVILPC$", evil_rid, SamAccountName="EVILPC$",
            PasswordLastSet=_win_time(t), AccountExpires="%%1794", PrimaryGroupId="515",
            OldUacValue="0x0", NewUacValue="0x80", UserAccountControl="\r\n\t\t%%2087",
            LogonHours="%%1793", DnsHostName="EVILPC.corp.local",
            ServicePrincipalNames="\r\n\t\tHOST/EVILPC.corp.local\r\n\t\tRestrictedKrbHost/"
            "EVILPC.corp.local\r\n\t\tHOST/EVILPC\r\n\t\tRestrictedKrbHost/EVILPC"))
        out.append(self.ds_change(t + 30_000, dc1, v, "CN=FS01,OU=Servers,OU=Corp,DC=corp,DC=local",
                                  "computer", "msDS-AllowedToActOnBehalfOfOtherIdentity",
                                  f"O:BAD:(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;{self.sid(evil_rid)})",
                                  syntax="2.5.5.15"))
        self._attack("rbcd-change", V, t + 30_000, f"{v.sam} sets resource-based constrained "
                     "delegation on FS01 for the new machine account EVILPC$", "T1484",
                     ("cn=fs01,ou=servers,ou=corp,dc=corp,dc=local",))
        # 9. noPac (sAMAccountName spoofing): computer renamed to "DC01", TGT, renamed back
        t = at(11, 10)
        np_rid = 3102
        out.append(self.account_change(
            4741, t, dc1, v, "YOGA01$", np_rid, SamAccountName="YOGA01$",
            PasswordLastSet=_win_time(t), AccountExpires="%%1794", PrimaryGroupId="515",
            OldUacValue="0x0", NewUacValue="0x80", UserAccountControl="\r\n\t\t%%2087",
            LogonHours="%%1793", DnsHostName="YOGA01.corp.local",
            ServicePrincipalNames="\r\n\t\tHOST/YOGA01.corp.local\r\n\t\tHOST/YOGA01"))
        out.append(self.account_change(4742, t + 2000, dc1, v, "YOGA01$", np_rid,
                                       ServicePrincipalNames="%%1793"))
        out.append(self._rec(4781, t + 3000, dc1, OldTargetUserName="YOGA01$",
                             NewTargetUserName="DC01", TargetDomainName=NETBIOS,
                             TargetSid=self.sid(np_rid), **self._subject(v), PrivilegeList="-"))
        out.append(self.account_change(4742, t + 3001, dc1, v, "DC01", np_rid,
                                       SamAccountName="DC01"))
        out.append(self.tgt(t + 5000, dc1, Account("DC01", np_rid, kind="user"), ws.ip))
        out.append(self._rec(4781, t + 7000, dc1, OldTargetUserName="DC01",
                             NewTargetUserName="YOGA01$", TargetDomainName=NETBIOS,
                             TargetSid=self.sid(np_rid), **self._subject(v), PrivilegeList="-"))
        out.append(self.tgs(t + 9000, dc1, "DC01", ws.ip, dc1.sam, dc1.rid,
                            options="0x40810000"))
        self._attack("samaccountname-spoofing", V, t + 3000, f"{v.sam} renames new computer "
                     "YOGA01$ to 'DC01' (no $), gets a TGT as DC01, renames it back and requests "
                     "a service ticket (noPac, CVE-2021-42278/42287)", "T1068",
                     ("corp\\dc01", ws.ip, "dc01"))
        # 10. Pass-the-hash on WS-0042 (sekurlsa::pth as svc_sql), then NTLM from WS-0042
        t = at(11, 30)
        out.append(self._rec(4624, t, ws, SubjectUserSid=self.sid(v.rid), SubjectUserName=v.sam,
                             SubjectDomainName=NETBIOS, SubjectLogonId=self._logon_id(),
                             TargetUserSid=self.sid(v.rid), TargetUserName=v.sam,
                             TargetDomainName=NETBIOS, TargetLogonId=self._logon_id(),
                             LogonType="9", LogonProcessName="seclogo",
                             AuthenticationPackageName="Negotiate", WorkstationName="-",
                             LogonGuid="{00000000-0000-0000-0000-000000000000}",
                             TransmittedServices="-", LmPackageName="-", KeyLength="0",
                             ProcessId="0x1a4c",
                             ProcessName="C:\\Windows\\System32\\svchost.exe", IpAddress="::1",
                             IpPort="0", ImpersonationLevel="%%1833", RestrictedAdminMode="-",
                             TargetOutboundUserName="svc_sql", TargetOutboundDomainName=NETBIOS,
                             VirtualAccount="%%1843", TargetLinkedLogonId="0x0",
                             ElevatedToken="%%1842"))
        out.append(self.ntlm(t + 20_000, dc2, "svc_sql", ws.name))
        self._attack("pass-the-hash", V, t, f"sekurlsa::pth on WS-0042: {v.sam} starts a "
                     "process with svc_sql's NTLM hash (4624 type 9 seclogo), then NTLM as "
                     "svc_sql from WS-0042", "T1550.002", ("corp\\svc_sql", ws.ip, ws.fqdn),
                     ("overpass-the-hash",))
        # 11. Overpass-the-hash: RC4 TGT for svc_sql (an AES account) from WS-0042
        t = at(11, 35)
        out.append(self.tgt(t, dc1, self.svc["svc_sql"], ws.ip, etype="0x17"))
        out.append(self.tgs(t + 500, dc1, "svc_sql", ws.ip, self.servers["SQL01"].sam,
                            self.servers["SQL01"].rid, etype="0x12"))
        self._attack("overpass-the-hash", "corp\\svc_sql", t, "Rubeus asktgt /rc4: RC4 TGT for "
                     "svc_sql (normally AES, from SQL01) requested from WS-0042", "T1550.002",
                     (ws.ip,), ("pass-the-hash", "abnormal-logon"))
        # 12. Stolen Domain Admin credential used from WS-0042 (abnormal logon)
        t = at(12, 30)
        out.append(self.tgt(t, dc1, da, ws.ip))
        out.append(self.tgs(t + 300, dc1, da.sam, ws.ip, dc1.sam, dc1.rid))
        out.append(self.logon(t + 600, dc1, da.sam, NETBIOS, self.sid(da.rid), 3, ws.ip))
        self._attack("abnormal-logon", DA, t, f"Domain Admin {da.sam} authenticates from WS-0042 "
                     "(a host it never used; it works from PAW02)", "T1078.002", (ws.ip,),
                     ("overpass-the-hash", "pass-the-ticket"))
        # 13. DCSync with the DA credential
        t = at(12, 40)
        for k, g in enumerate((GUID_GET_CHANGES, GUID_GET_CHANGES_ALL, GUID_IN_FILTERED_SET)):
            out.append(self.ds_access(t + k * 20, dc1, da, [g]))
        self._attack("dcsync", DA, t, f"{da.sam} replicates directory changes (DRSUAPI "
                     "GetNCChanges) from WS-0042: lsadump::dcsync", "T1003.006", (ws.ip,))
        # 14. DPAPI domain backup key (lsadump::backupkeys) over lsarpc
        t = at(12, 50)
        for k, nm in enumerate(("G$BCKUPKEY_PREFERRED", f"G$BCKUPKEY_{self._guid().lower()}",
                                "G$BCKUPKEY_P")):
            out.append(self.share(t + k * 30, dc1, da, ws.ip, "IPC$", "lsarpc"))
            out.append(self._rec(4662, t + k * 30 + 5, dc1, ObjectServer="LSA",
                                 **self._subject(da), ObjectType="SecretObject",
                                 ObjectName=f"Policy\\Secrets\\{nm}", OperationType="Query",
                                 HandleId=hex(r.getrandbits(40)), AccessList="%%5649\r\n\t\t\t\t",
                                 AccessMask="0x2", Properties="-", AdditionalInfo="-",
                                 AdditionalInfo2="-"))
        self._attack("dpapi-backup-key", DA, t, f"{da.sam} retrieves the DPAPI domain backup "
                     "keys (BCKUPKEY secrets over lsarpc) from DC01", "T1555",
                     (ws.ip, dc1.fqdn))
        # 15. Golden ticket: forged TGT for Administrator used from WS-0042 (no AS exchange)
        t = at(13, 0)
        out.append(self.tgs(t, dc2, "Administrator", ws.ip, dc2.sam, dc2.rid,
                            realm="corp.local"))
        out.append(self.logon(t + 400, dc2, "Administrator", "corp.local", self.sid(500), 3,
                              ws.ip))
        self._attack("golden-ticket", "corp\\administrator", t, "Service ticket and logon as "
                     "Administrator with no TGT ever issued, domain name 'corp.local' in lower "
                     "case (mimikatz kerberos::golden)", "T1558.001", (ws.ip,),
                     ("abnormal-logon", "pass-the-ticket"))
        # 16. PsExec to DC02 as Administrator (golden ticket) -> remote execution + service
        t = at(13, 10)
        adm = self.administrator
        out.append(self.share(t, dc2, adm, ws.ip, "ADMIN$", "PSEXESVC.exe", "0x2",
                              "%%4417\r\n\t\t\t\t"))
        out.append(self.share(t + 500, dc2, adm, ws.ip, "IPC$", "svcctl"))
        out.append(self.service_install(t + 900, dc2, "PSEXESVC", "%SystemRoot%\\PSEXESVC.exe",
                                        self.sid(500)))
        for k, p in enumerate(("stdin", "stdout", "stderr")):
            out.append(self.share(t + 1500 + k, dc2, adm, ws.ip, "IPC$",
                                  f"PSEXESVC-WS-0042-{5212}-{p}"))
        self._attack("remote-execution", ws.ip, t, "PsExec from WS-0042 to DC02: PSEXESVC.exe "
                     "written to ADMIN$, service control over svcctl, PSEXESVC pipes",
                     "T1569.002", ("corp\\administrator", ws.fqdn, dc2.fqdn))
        self._attack("suspicious-service", dc2.fqdn, t + 900, "PSEXESVC service installed on "
                     "DC02 (7045)", "T1569.002", (dc2.name, "psexesvc", ws.ip))
        # 17. smbexec-style service on DC03
        t = at(13, 20)
        out.append(self.share(t, dc3, da, ws.ip, "IPC$", "svcctl"))
        out.append(self.service_install(
            t + 600, dc3, "BTOBTO",
            "%COMSPEC% /Q /c echo cd  ^> \\\\127.0.0.1\\C$\\__output 2^>^&1 > "
            "%TEMP%\\execute.bat & %COMSPEC% /Q /c %TEMP%\\execute.bat & del "
            "%TEMP%\\execute.bat", self.sid(da.rid)))
        self._attack("suspicious-service", dc3.fqdn, t + 600, "smbexec service BTOBTO "
                     "(%COMSPEC% /Q /c ... \\\\127.0.0.1\\C$\\__output) on DC03", "T1543.003",
                     (dc3.name, "btobto"), ("remote-execution",))
        # 18. DCShadow: GC + DRS SPNs on WS-0042$, nTDSDSA object created
        t = at(13, 30)
        spns = (f"\r\n\t\tHOST/{ws.fqdn}\r\n\t\tRestrictedKrbHost/{ws.fqdn}\r\n\t\tHOST/{ws.name}"
                f"\r\n\t\tRestrictedKrbHost/{ws.name}\r\n\t\tGC/{ws.fqdn}/{DOMAIN_FQDN}")
        out.append(self.account_change(4742, t, dc1, da, ws.sam, ws.rid,
                                       ServicePrincipalNames=spns))
        out.append(self.account_change(
            4742, t + 20, dc1, da, ws.sam, ws.rid, ServicePrincipalNames=spns +
            f"\r\n\t\t{GUID_DRS_SPN}/{self._guid().lower()}/{DOMAIN_FQDN}"))
        site = "CN=Default-First-Site-Name,CN=Sites,CN=Configuration,DC=corp,DC=local"
        out.append(self._rec(5137, t + 40, dc1, OpCorrelationID="{" + self._guid() + "}",
                             AppCorrelationID="-", **self._subject(da), DSName=DOMAIN_FQDN,
                             DSType="%%14676", ObjectDN=f"CN={ws.name},CN=Servers,{site}",
                             ObjectGUID="{" + self._guid() + "}", ObjectClass="server"))
        out.append(self._rec(5137, t + 60, dc1, OpCorrelationID="{" + self._guid() + "}",
                             AppCorrelationID="-", **self._subject(da), DSName=DOMAIN_FQDN,
                             DSType="%%14676",
                             ObjectDN=f"CN=NTDS Settings,CN={ws.name},CN=Servers,{site}",
                             ObjectGUID="{" + self._guid() + "}", ObjectClass="nTDSDSA"))
        self._attack("dcshadow", DA, t, f"{da.sam} registers WS-0042 as a domain controller "
                     "(GC/ and E3514235-... SPNs, nTDSDSA object): lsadump::dcshadow",
                     "T1207", (ws.fqdn, ws.ip, f"corp\\{ws.sam.lower()}"))
        # 19. SID history injection
        t = at(13, 45)
        out.append(self._rec(4765, t, dc1, SourceUserName=f"{DOMAIN_FQDN}\\Domain Admins",
                             SourceSid=self.sid(512), TargetUserName=v.sam,
                             TargetDomainName=NETBIOS, TargetSid=self.sid(v.rid),
                             **self._subject(da), PrivilegeList="-", SidList="-"))
        self._attack("sid-history-injection", DA, t, f"{da.sam} adds the Domain Admins SID to "
                     f"{v.sam}'s sIDHistory", "T1134.005", (V,))
        # 20. Sensitive group change: the phished user added to Domain Admins
        t = at(13, 50)
        out.append(self.group_change(4728, t, dc1, da, "Domain Admins", self.sid(512), v))
        self._attack("sensitive-group-change", DA, t, f"{da.sam} adds {v.sam} to Domain Admins",
                     "T1098", (V,))
        # 21. AdminSDHolder ACL backdoor
        t = at(14, 0)
        corr = self._guid()
        old_sd = "O:DAG:DAD:PAI(A;;LCRPLORC;;;AU)(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;SY)" \
                 "(A;;CCDCLCSWRPWPLOCRRCWDWO;;;BA)(A;;CCDCLCSWRPWPLOCRRCWDWO;;;DA)"
        out.append(self.ds_change(t, dc1, da, "CN=AdminSDHolder,CN=System,DC=corp,DC=local",
                                  "container", "nTSecurityDescriptor", old_sd, "%%14675",
                                  "2.5.5.15", corr=corr))
        out.append(self.ds_change(t, dc1, da, "CN=AdminSDHolder,CN=System,DC=corp,DC=local",
                                  "container", "nTSecurityDescriptor",
                                  old_sd + f"(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;{self.sid(v.rid)})",
                                  "%%14674", "2.5.5.15", corr=corr))
        self._attack("adminsdholder-change", DA, t, f"{da.sam} grants {v.sam} full control on "
                     "AdminSDHolder", "T1098", (V,), ("domain-acl-change",))
        # 22. DCSync rights backdoor on the domain root
        t = at(14, 5)
        corr = self._guid()
        root_sd = "O:BAG:BAD:AI(A;;RPWPCRCCDCLCLORCWOWDSDDTSW;;;DA)(A;;RPLCLORC;;;AU)" \
                  "(OA;;CR;1131f6aa-9c07-11d1-f79f-00c04fc2dcd2;;ED)"
        out.append(self.ds_change(t, dc1, da, "DC=corp,DC=local", "domainDNS",
                                  "nTSecurityDescriptor", root_sd, "%%14675", "2.5.5.15",
                                  guid=self.domain_guid.upper(), corr=corr))
        out.append(self.ds_change(
            t, dc1, da, "DC=corp,DC=local", "domainDNS", "nTSecurityDescriptor",
            root_sd + f"(OA;;CR;{GUID_GET_CHANGES};;{self.sid(v.rid)})"
            f"(OA;;CR;{GUID_GET_CHANGES_ALL};;{self.sid(v.rid)})"
            f"(OA;;CR;{GUID_IN_FILTERED_SET};;{self.sid(v.rid)})", "%%14674", "2.5.5.15",
            guid=self.domain_guid.upper(), corr=corr))
        self._attack("domain-acl-change", DA, t, f"{da.sam} grants {v.sam} the replication "
                     "rights on the domain root (DCSync backdoor, Add-DomainObjectAcl)",
                     "T1222.001", (V,))
        # 23. Unconstrained delegation enabled on APP01
        t = at(14, 15)
        app = self.servers["APP01"]
        out.append(self.account_change(4742, t, dc1, da, app.sam, app.rid, OldUacValue="0x80",
                                       NewUacValue="0x2080",
                                       UserAccountControl="\r\n\t\t%%2093"))
        self._attack("delegation-change", DA, t, f"{da.sam} enables unconstrained delegation "
                     "(Trusted For Delegation) on APP01$", "T1098", ("corp\\app01$",))
        # 24. Risky account change: Don't Require Preauth enabled on a user (targeted AS-REP)
        t = at(14, 20)
        tu = self.users[(self.victim_i + 7) % self.n_users]
        out.append(self.account_change(4738, t, dc1, da, tu.sam, tu.rid, OldUacValue="0x210",
                                       NewUacValue="0x10210",
                                       UserAccountControl="\r\n\t\t%%2096"))
        self._attack("risky-account-change", DA, t, f"{da.sam} disables Kerberos "
                     f"pre-authentication for {tu.sam} ('Don't Require Preauth' - Enabled)",
                     "T1098", (self._acc(tu),))
        # 25. DSRM password change on DC02
        t = at(14, 30)
        out.append(self._rec(4794, t, dc2, **self._subject(da), Workstation="DC02", Status="0x0"))
        self._attack("dsrm-password-change", DA, t, f"{da.sam} sets the Directory Services "
                     "Restore Mode administrator password on DC02", "T1098", (dc2.fqdn,))
        # 26. Security log cleared on DC03
        t = at(15, 0)
        out.append(self._rec(1102, t, dc3, provider="Microsoft-Windows-Eventlog",
                             **self._subject(da)))
        self._attack("audit-tampering", dc3.fqdn, t, f"{da.sam} clears the Security log of DC03 "
                     "(1102)", "T1070.001", (dc3.name, DA))
        # -- the rogue laptop ------------------------------------------------------------
        # 27. Account enumeration (kerbrute userenum): 40 guessed names, KDC_ERR_C_PRINCIPAL_UNKNOWN
        t = at(16, 0)
        for k, g in enumerate(GUESSED_NAMES):
            out.append(self.tgt(t + k * 150, dc1, Account(g, 0), rogue.ip, status="0x6",
                                options="0x10"))
        self._attack("account-enumeration", rogue.ip, t, f"{len(GUESSED_NAMES)} unknown user "
                     "names tried over Kerberos from 10.1.250.13 in 6 s (kerbrute userenum)",
                     "T1087.002", (rogue.name,))
        # 28. Password spray: one wrong password for 30 accounts incl. the honeytoken
        t = at(16, 10)
        sprayed = [u for u in self.users[5:]][:29] + [self.honeytoken]
        hp_t = t
        for k, u in enumerate(sprayed):
            tt = t + k * 400
            if u is self.honeytoken:
                hp_t = tt
            out.append(self._rec(4771, tt, dc1, TargetUserName=u.sam,
                                 TargetSid=self.sid(u.rid), ServiceName=f"krbtgt/{REALM}",
                                 TicketOptions="0x10", Status="0x18", PreAuthType="2",
                                 IpAddress=f"::ffff:{rogue.ip}", IpPort=self._port(),
                                 CertIssuerName="", CertSerialNumber="", CertThumbprint=""))
        self._attack("password-spray", rogue.ip, t, f"one wrong password for {len(sprayed)} "
                     "accounts over Kerberos from 10.1.250.13 (kerbrute passwordspray)",
                     "T1110.003", (rogue.name,))
        self._attack("honeytoken-activity", self._acc(self.honeytoken), hp_t, "the honeytoken "
                     f"{self.honeytoken.sam} is targeted by the password spray (4771)",
                     "T1098", (rogue.ip,))
        # 29. Brute force of one account over NTLM
        t = at(16, 30)
        bf = self.users[(self.victim_i + 11) % self.n_users]
        for k in range(25):
            out.append(self.ntlm(t + k * 9000, dc2, bf.sam, rogue.name, "0xC000006A"))
        self._attack("brute-force", self._acc(bf), t, f"25 wrong passwords for {bf.sam} over "
                     "NTLM from workstation KALI in 4 minutes", "T1110.001",
                     (rogue.name, rogue.ip, "kali"))
        # 30. Zerologon against DC01
        t = at(17, 0)
        for k in range(3):
            out.append(self._rec(5805, t + k * 100, dc1, channel="System", provider="NETLOGON",
                                 Data0="DC01", Data1="%%5"))
        out.append(self.logon(t + 2000, dc1, "ANONYMOUS LOGON", "NT AUTHORITY", "S-1-5-7", 3,
                              rogue.ip, ws="-", proc="NtLmSsp ", pkg="NTLM", lmpkg="NTLM V1"))
        out.append(self._rec(4742, t + 2500, dc1, ComputerAccountChange="-",
                             TargetUserName=dc1.sam, TargetDomainName=NETBIOS,
                             TargetSid=self.sid(dc1.rid), SubjectUserSid="S-1-5-7",
                             SubjectUserName="ANONYMOUS LOGON", SubjectDomainName="NT AUTHORITY",
                             SubjectLogonId="0x3e6", PrivilegeList="-",
                             **{k: "-" for k in ("SamAccountName", "DisplayName",
                                                 "UserPrincipalName", "HomeDirectory",
                                                 "HomePath", "ScriptPath", "ProfilePath",
                                                 "UserWorkstations", "AccountExpires",
                                                 "PrimaryGroupId", "AllowedToDelegateTo",
                                                 "OldUacValue", "NewUacValue",
                                                 "UserAccountControl", "UserParameters",
                                                 "SidHistory", "LogonHours", "DnsHostName",
                                                 "ServicePrincipalNames")},
                             PasswordLastSet=_win_time(t + 2500)))
        self._attack("zerologon", rogue.ip, t, "Netlogon authentication failures (5805), "
                     "anonymous logon, then DC01$'s password reset by ANONYMOUS LOGON "
                     "(CVE-2020-1472)", "T1210",
                     (dc1.fqdn, dc1.name, "corp\\dc01$", "corp\\anonymous logon",
                      "nt authority\\anonymous logon"))
        # 31. Coercion (PetitPotam) of DC02, relayed to DC01 (NTLM relay of DC02$)
        t = at(17, 10)
        out.append(self._rec(5145, t, dc2, SubjectUserSid="S-1-5-7",
                             SubjectUserName="ANONYMOUS LOGON", SubjectDomainName="NT AUTHORITY",
                             SubjectLogonId="0x3e6", ObjectType="File", IpAddress=rogue.ip,
                             IpPort=self._port(), ShareName="\\\\*\\IPC$", ShareLocalPath="",
                             RelativeTargetName="lsarpc", AccessMask="0x12019f",
                             AccessList=IPC_ACCESS_LIST, AccessReason="-"))
        out.append(self._rec(5145, t + 200, dc2, **self._subject(v), ObjectType="File",
                             IpAddress=rogue.ip, IpPort=self._port(), ShareName="\\\\*\\IPC$",
                             ShareLocalPath="", RelativeTargetName="efsrpc",
                             AccessMask="0x12019f", AccessList=IPC_ACCESS_LIST,
                             AccessReason="-"))
        self._attack("coercion", rogue.ip, t, "PetitPotam: EFSRPC over the lsarpc / efsrpc "
                     "pipes of DC02 from 10.1.250.13", "T1187", (rogue.name, dc2.fqdn))
        out.append(self.ntlm(t + 1500, dc1, dc2.sam, dc2.name))
        out.append(self.logon(t + 1600, dc1, dc2.sam, NETBIOS, self.sid(dc2.rid), 3, rogue.ip,
                              ws=dc2.name, proc="NtLmSsp ", pkg="NTLM", key="0",
                              lmpkg="NTLM V2"))
        self._attack("ntlm-relay", "corp\\dc02$", t + 1500, "DC02$ authenticates with NTLM to "
                     "DC01 from 10.1.250.13 (relayed coerced authentication)", "T1557.001",
                     (rogue.ip, dc2.fqdn))
        # 32. Pass-the-ticket: the phished user's TGT used from the rogue laptop
        t = at(17, 20)
        out.append(self.tgs(t, dc1, v.sam, rogue.ip, self.servers["FS01"].sam,
                            self.servers["FS01"].rid))
        out.append(self.tgs(t + 3000, dc1, v.sam, rogue.ip, self.servers["SQL01"].sam,
                            self.servers["SQL01"].rid))
        self._attack("pass-the-ticket", V, t, f"service tickets for {v.sam} requested from "
                     "10.1.250.13, which never obtained a TGT for it (WS-0042 did)",
                     "T1550.003", (rogue.ip,), ("golden-ticket",))
        return out

    # -- output ----------------------------------------------------------------------------
    @property
    def domain_guid(self) -> str:
        return str(uuid.UUID(int=random.Random(self.seed * 7919 + 1).getrandbits(128)))

    def records(self) -> Iterator[dict]:
        """Flat records of every simulated day, in time order (record ids per log)."""
        self.rng = random.Random(self.seed * 1_000_003 + 17)
        counters: dict[tuple[str, str], int] = {}
        self.stats = {"benign": 0, "attack": 0}
        attacks: list[dict] = []
        if self.attacks_enabled:
            attacks = self._attacks()
            self._gt_built = True
        for d in range(self.days):
            day = self._benign_day(d)
            self.stats["benign"] += len(day)
            if d == self.attack_day and attacks:
                self.stats["attack"] += len(attacks)
                day.extend(attacks)
            day.sort(key=lambda x: x["_time_ms"])
            for rec in day:
                k = (rec["_computer"], rec["_channel"])
                c = counters.get(k, 100_000 if rec["_channel"] == SEC else 5_000) + 1
                counters[k] = c
                rec["_record"] = c
                yield rec

    @property
    def ground_truth(self) -> list[InjectedAttack]:
        """The injected attacks (expected detections), available before generating."""
        return self.injected()

    def injected(self) -> list[InjectedAttack]:
        """Ground truth without generating the traffic."""
        if not self._gt_built and self.attacks_enabled:
            saved = self.rng
            self.rng = random.Random(self.seed * 1_000_003 + 17)
            self._attacks()
            self.rng = saved
            self._gt_built = True
        return list(self._ground_truth)


def _win_time(ms: int) -> str:
    """4738/4742 PasswordLastSet as Windows renders it: '3/2/2026 9:57:52 AM'."""
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    h = dt.hour % 12 or 12
    return f"{dt.month}/{dt.day}/{dt.year} {h}:{dt.minute:02d}:{dt.second:02d} " \
           f"{'AM' if dt.hour < 12 else 'PM'}"


def match_alerts(ground_truth: list[InjectedAttack], alerts: list[dict]) -> dict[str, Any]:
    """Match alerts (dicts: detector, entity, first_seen_ms, id, severity) to ground truth.

    An attack is detected when an alert of its detector matches its entity (or an alias)
    within its time window. Alerts of an attack's ``also`` detectors on its entities are
    attributed to it. Every other alert is a false positive.
    """
    detected: dict[int, dict] = {}
    attributed: set[str] = set()
    for a in alerts:
        for k, g in enumerate(ground_truth):
            if g.matches(a["detector"], a["entity"], int(a["first_seen_ms"]),
                         int(a.get("last_seen_ms") or a["first_seen_ms"])):
                attributed.add(a["id"])
                if a["detector"] == g.detector and k not in detected:
                    detected[k] = a
    rows = []
    for k, g in enumerate(ground_truth):
        hit = detected.get(k)
        rows.append({**g.to_dict(), "detected": hit is not None,
                     "alert_id": hit["id"] if hit else None,
                     "severity": hit["severity"] if hit else None})
    fps = [a for a in alerts if a["id"] not in attributed]
    primary = {a["id"] for a in detected.values()}
    extra = [a for a in alerts if a["id"] in attributed and a["id"] not in primary]
    return {"attacks": rows, "false_positives": fps, "corroborating": extra,
            "detected": sum(1 for x in rows if x["detected"]),
            "missed": [x for x in rows if not x["detected"]]}


def scan_simulation(sim: DomainSimulator, partitions: int = 4, detection: dict | None = None
                    ) -> tuple[list, dict[str, Any]]:
    """Offline run (``stream.scan.OfflinePipeline``: the streaming code path without Kafka)
    of a simulation with its demo configuration; returns ``(alerts, match_alerts result)``."""
    from collectors.normalize import Normalizer
    from stream.scan import OfflinePipeline
    from stream.settings import DetectionSettings

    cfg = sim.demo_config()
    cfg.update(detection or {})
    pipe = OfflinePipeline(DetectionSettings(**cfg), partitions)
    norm = Normalizer()
    pipe.feed(ev for ev in map(norm.normalize, sim.records()) if ev is not None)
    alerts = pipe.finish()
    return alerts, match_alerts(sim.ground_truth, [a.model_dump() for a in alerts])
