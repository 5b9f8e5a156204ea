"""Defense evasion: audit-tampering."""

from __future__ import annotations

import numpy as np
from numba import njit

from stream.schema import FLAG_MACHINE

from ..base import Detector, register


@njit(cache=True)
def _audit_tampering(event_id, channel_flags, out_idx):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        if e == 1102 or e == 104 or e == 4719:
            out_idx[m] = i
            m += 1
    return m


@register
class AuditTampering(Detector):
    id = "audit-tampering"
    title = "Audit log cleared or audit policy changed"
    description = ("{account} cleared the {channel} event log or changed the audit policy on "
                   "{computer} (event {event_id}); {count} such event(s) between {first_seen} "
                   "and {last_seen}.")
    severity = "high"
    mitre = ("T1070.001", "T1562.002")
    key = "none"
    event_ids = frozenset({1102, 104, 4719})
    next_steps = (
        "Confirm with the owner of the account whether the log clear / policy change was planned.",
        "Collect the forwarded copy of the cleared log (WEF / SIEM) for the period before the clear.",
        "Check the account's other activity on the host in the hour before the clear.",
    )
    false_positives = ("Planned log maintenance; audit policy rollouts through GPO (4719 by "
                       "SYSTEM with a GPO change).",)
    audit = "Audit Log Clear (1102) and System log (104) are always logged; 4719 needs "\
            "Audit Audit Policy Change."

    def run(self, batch, ctx, hits):
        out = np.empty(batch.n, np.int64)
        m = _audit_tampering(batch.event_id, batch.channel, out)
        if m:
            idx = out[:m]
            hits.add(self.id, idx, batch.str_hash[batch.computer[idx]])

    def details(self, batch, i, aux):
        return {"channel": batch.get("channel", i) or "security"}

    def entity_display(self, batch, i):
        return batch.get("computer", i)
