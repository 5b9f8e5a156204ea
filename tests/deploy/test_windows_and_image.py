"""deploy/windows (collector config, audit policy mapping, forwarding configs) and
deploy/Dockerfile consistency checks. Windows itself cannot run here: these check the files
against the detector catalogue, the product's configuration models and the Helm chart."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WIN = ROOT / "deploy" / "windows"
DETECTIONS_MD = ROOT.parent / "shared" / "docs" / "detections.md"
CHART_VALUES = ROOT / "deploy" / "helm" / "openitdr" / "values.yaml"


def catalogue_events() -> dict[int, set[str]]:
    """event id -> detector ids, parsed from the detector catalogue."""
    if not DETECTIONS_MD.exists():
        pytest.skip("../shared/docs/detections.md not available")
    out: dict[int, set[str]] = {}
    text = DETECTIONS_MD.read_text(encoding="utf-8")
    for did, rest in re.findall(r"^\| `([a-z0-9-]+)` \|([^\n]*)$", text, re.M):
        events = [c.strip() for c in rest.split("|")][3]
        for e in re.findall(r"(?<![0-9x])(\d{3,4})(?![0-9])", events):
            out.setdefault(int(e), set()).add(did)
    return out


def audit_table() -> dict[int, tuple[str, str, set[str]]]:
    rows = {}
    for line in (WIN / "audit-policy.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\| (\d{3,4}) \| ([^|]+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", line)
        if m:
            rows[int(m.group(1))] = (m.group(2).strip(), m.group(3).strip(),
                                     set(re.findall(r"`([a-z0-9-]+)`", m.group(5))))
    return rows


def test_audit_policy_maps_every_catalogue_event_to_its_detectors():
    cat = catalogue_events()
    table = audit_table()
    assert set(table) == set(cat), f"missing {set(cat) - set(table)}, extra {set(table) - set(cat)}"
    for eid, dets in cat.items():
        # honeytoken-activity additionally consumes group changes (documented below the table)
        assert table[eid][2] - {"honeytoken-activity"} == dets - {"honeytoken-activity"}, eid
        assert dets <= table[eid][2], eid


def test_audit_script_enables_every_subcategory_of_the_table():
    script = (WIN / "Set-OpenITDRAuditPolicy.ps1").read_text(encoding="utf-8")
    entries = re.findall(r"Guid = '(\{[0-9A-F-]+\})'; Name = '([^']+)';.*Events = '([\d ]+)'",
                         script)
    assert len(entries) >= 15
    guids = [g for g, _, _ in entries]
    assert len(set(guids)) == len(guids)
    script_events = {int(e) for _, _, evs in entries for e in evs.split()}
    doc = (WIN / "audit-policy.md").read_text(encoding="utf-8")
    for eid, (log, setting, _) in audit_table().items():
        if log == "Security" and "always logged" not in setting:
            assert eid in script_events, f"{eid} ({setting}) not enabled by the script"
    for g, name, _ in entries:
        assert f"`{g}`" in doc and name in doc, name
    assert "auditpol.exe /set" in script and "SupportsShouldProcess" in script
    # SACLs for 4662/5136 on the domain root and AdminSDHolder
    assert "CN=AdminSDHolder,CN=System" in script and "ExtendedRight" in script
    assert "AuditNTLMInDomain" in script


def _ids_in(text: str) -> set[int]:
    return {int(x) for x in re.findall(r"\b(\d{3,4})\b", text)}


def test_forwarding_configs_cover_the_catalogue_events():
    wanted = set(catalogue_events()) - {1644}        # 1644 is optional (LDAP diagnostics)
    xml = (WIN / "wef-subscription.xml").read_text(encoding="utf-8")
    root = ET.fromstring(xml.encode())
    ns = {"s": "http://schemas.microsoft.com/2006/03/windows/events/subscription"}
    assert root.find("s:SubscriptionType", ns).text == "SourceInitiated"
    query = root.find("s:Query", ns).text
    ET.fromstring(query.strip())                       # the embedded QueryList is XML too
    assert wanted <= {int(x) for x in re.findall(r"EventID=(\d+)", query)}
    wlb = yaml.safe_load((WIN / "winlogbeat.yml").read_text(encoding="utf-8"))
    ids = set()
    for log in wlb["winlogbeat.event_logs"]:
        ids |= _ids_in(str(log.get("event_id", "")))
    assert wanted <= ids
    assert ":5080/events" in (WIN / "winlogbeat.yml").read_text()


def test_collector_yaml_is_valid_for_the_product(monkeypatch):
    settings = pytest.importorskip("stream.settings")
    coll = pytest.importorskip("collectors.settings")
    for k in list(__import__("os").environ):
        if k.startswith("ITDR_"):
            monkeypatch.delenv(k, raising=False)
    s = settings.load_settings(WIN / "collector.yaml")
    cs = coll.collector_settings(s)
    assert cs.live is True and "Security" in cs.channels
    assert "Microsoft-Windows-NTLM/Operational" in cs.channels
    assert s.kafka.sasl_password is None               # secrets never in the file
    chart = yaml.safe_load(CHART_VALUES.read_text())
    assert s.topics.prefix == chart["topics"]["prefix"]
    assert s.topics.partitions == chart["topics"]["partitions"]


def test_install_script_service_account_and_groups():
    ps = (WIN / "Install-OpenITDRCollector.ps1").read_text(encoding="utf-8")
    assert 'NT SERVICE\\$ServiceName' in ps                 # virtual account default
    assert "GmsaAccount" in ps
    assert "S-1-5-32-573" in ps                             # Event Log Readers
    assert "collect --config" in ps
    assert "ITDR_SECRETS_DIR" in ps and "itdr_kafka" in ps


# -- Dockerfile -------------------------------------------------------------------------------

def test_dockerfile_conventions():
    df = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", df, re.M)
    assert [s[1] for s in stages] == ["builder", "runtime"]
    assert all("slim" in s[0] for s in stages)
    assert "pip wheel" in df
    assert re.search(r"^USER \$\{UID\}:\$\{GID\}", df, re.M) and "ARG UID=10001" in df
    assert 'ENTRYPOINT ["itdr"]' in df
    assert "warm_up" in df
    chart = yaml.safe_load(CHART_VALUES.read_text())
    # the build-time numba cache is where the chart's init container copies it from
    assert f"NUMBA_CACHE_DIR={chart['numbaCache']['imageDir']}" in df
    assert f"NUMBA_CACHE_DIR={chart['numbaCache']['mountPath']}" in df
    assert chart["podSecurityContext"]["runAsUser"] == 10001
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignore and ".git" in ignore and "tests" in ignore
