"""Defense evasion: audit-tampering (event log cleared, auditing removed)."""

from __future__ import annotations

import numpy as np
from numba import njit

from ..base import Detector, Param, register
from ..kernels.common import mix
from .persistence import AUD_REMOVED, LOCAL

# 4719 AuditPolicyChanges message ids: %%8448 Success removed, %%8449 Success added,
# %%8450 Failure removed, %%8451 Failure added.
_AUDIT_CHANGE_TEXT = {"%%8448": "success auditing removed", "%%8449": "success auditing added",
                      "%%8450": "failure auditing removed", "%%8451": "failure auditing added"}


@njit(cache=True)
def _audit_tampering(event_id, value, computer, str_hash, lf, include_additions, out, ent):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        kind = 0
        if e == 1102 or e == 104:
            kind = 1
        elif e == 4719:
            # a GPO refresh re-applies (adds) auditing; only removal is tampering
            if (lf[value[i]] & AUD_REMOVED) or include_additions:
                kind = 2
        if kind == 0:
            continue
        out[m] = i
        # one alert per host and kind (log clear vs. audit policy removal)
        ent[m] = mix(str_hash[computer[i]], np.uint64(kind))
        m += 1
    return m


@register
class AuditTampering(Detector):
    id = "audit-tampering"
    title = "Event log cleared or auditing disabled"
    description = ("{what} on {computer} by {account} (event {event_id}); {count} such "
                   "event(s) between {first_seen} and {last_seen}.")
    severity = "high"
    mitre = ("T1070.001", "T1562.002")
    key = "none"
    event_ids = frozenset({1102, 104, 4719})
    params = (
        Param("include_policy_additions", 0, 0, 1, "also alert on 4719 that only ADD auditing "
              "(GPO refreshes; noisy)", "bool"),
    )
    next_steps = (
        "Confirm with the owner of the account whether the log clear / policy change was "
        "planned.",
        "Collect the forwarded copy of the cleared log (WEF / SIEM) for the period before the "
        "clear.",
        "Check the account's other activity on the host in the hour before the clear; restore "
        "the audit policy (auditpol /get /category:*) if auditing was removed.",
    )
    false_positives = (
        "Planned log maintenance; lab/test machines whose logs are cleared before recordings.",
        "Audit policy rollouts through GPO that deliberately reduce auditing (4719 by the "
        "machine account removing success/failure auditing).",
    )
    audit = ("Audit Log Clear (1102) and System log (104) are always logged; 4719 needs "
             "Audit Audit Policy Change.")

    def run(self, batch, ctx, hits):
        lf, _ = LOCAL.get(batch)
        out = np.empty(batch.n, np.int64)
        ent = np.empty(batch.n, np.uint64)
        m = _audit_tampering(batch.event_id, batch.value, batch.computer, batch.str_hash, lf,
                             int(self.p["include_policy_additions"]), out, ent)
        if m:
            hits.add(self.id, out[:m], ent[:m])

    def details(self, batch, i, aux):
        e = int(batch.event_id[i])
        g = batch.get
        if e == 1102:
            return {"what": "The Security event log was cleared", "channel": "security"}
        if e == 104:
            ch = g("value", i) or g("channel", i) or "system"
            return {"what": f"The {ch} event log was cleared", "channel": ch}
        v = g("value", i)
        changes = [t for c, t in _AUDIT_CHANGE_TEXT.items() if c in v] or [v or "changed"]
        sub = g("object", i)
        return {"what": f"Audit policy changed ({', '.join(changes)}; subcategory {sub})",
                "audit_changes": changes, "subcategory_guid": sub}

    def entity_display(self, batch, i):
        return batch.get("computer", i)
