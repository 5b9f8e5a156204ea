"""rbcd-change: 5136 msDS-AllowedToActOnBehalfOfOtherIdentity writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.scan import OfflinePipeline
from stream.settings import DetectionSettings, DetectorOverride, Exclusions

DID = "rbcd-change"
T0 = 1_700_000_000_000
SAMPLES = Path(__file__).parents[2].parent / "shared" / "samples"
DC = "dc01.corp.local"


def ev(t, eid, **kw):
    d = {"time_ms": T0 + int(t * 1000), "event_id": eid, "computer": DC,
         "channel": "security", "account": "corp\\bob"}
    d.update(kw)
    return d


def run(events, **kw):
    kw.setdefault("enabled", [DID])
    p = OfflinePipeline(DetectionSettings(**kw), partitions=4)
    p.feed(sorted(events, key=lambda e: e["time_ms"]))
    return [a for a in p.finish() if a.detector == DID]


def scan_sample(rel):
    from collectors.files import iter_paths
    from stream.scan import scan_records

    path = SAMPLES / rel
    if not path.exists():
        pytest.skip(f"sample {rel} not available (needs ../shared/samples)")
    return [a for a in scan_records(iter_paths([str(path)]), DetectionSettings(), 4)
            if a.detector == DID]


needs_samples = pytest.mark.skipif(not SAMPLES.exists(),
                                   reason="../shared/samples not available")

ATTR = "msDS-AllowedToActOnBehalfOfOtherIdentity"


def test_positive_machine_account_writes_rbcd_on_dc():
    alerts = run([ev(0, 5136, account="corp\\ws01$", flags=1,
                     object="CN=DC02,OU=Domain Controllers,DC=corp,DC=local",
                     object_class="computer", attribute=ATTR,
                     value="O:BAD:(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;S-1-5-21-1-2-3-1234)",
                     extra='{"OperationType":"%%14674"}')])
    assert len(alerts) == 1
    d = alerts[0].evidence.details
    assert d["written_by_machine_account"] and d["target_is_dc"]
    assert alerts[0].entity == "corp\\ws01$"


def test_negative_rbcd_cleared_and_other_attributes():
    evs = [ev(0, 5136, object="CN=SRV1,OU=Servers,DC=corp,DC=local", attribute=ATTR,
              value="O:BA", extra='{"OperationType":"%%14675"}'),
           ev(1, 5136, object="CN=SRV1,OU=Servers,DC=corp,DC=local",
              attribute="msDS-AllowedToDelegateTo", value="cifs/x")]
    assert run(evs) == []


def test_excluded_admin():
    e = ev(0, 5136, object="CN=SRV1,OU=Servers,DC=corp,DC=local", attribute=ATTR, value="x")
    assert len(run([e])) == 1
    assert run([e], detectors={DID: DetectorOverride(
        exclude=Exclusions(accounts=["corp\\bob"]))}) == []
