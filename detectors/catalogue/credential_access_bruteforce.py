"""Credential access: brute-force (many wrong passwords for one account)."""

from __future__ import annotations

import numpy as np
from numba import njit

from stream.schema import FLAG_MACHINE

from ..base import Detector, Param, register
from ..kernels.common import ring_max_in_window, ring_push, slot_of

# wrong-password status codes per event id
_WRONG_PW_NTLM = np.uint32(0xC000006A)
_KRB_PREAUTH_FAILED = np.uint32(0x18)


@njit(cache=True)
def _brute_force(event_id, status, sub_status, flags, time_ms, key, keys, ring, pos, last,
                 fired_at, window, threshold, out_idx, out_cnt, out_first):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        if flags[i] & 1:  # machine accounts
            continue
        wrong = False
        if e == 4771 and status[i] == 0x18:
            wrong = True
        elif e == 4776 and status[i] == 0xC000006A:
            wrong = True
        elif e == 4625 and (sub_status[i] == 0xC000006A or status[i] == 0xC000006A):
            wrong = True
        if not wrong:
            continue
        t = time_ms[i]
        s = slot_of(keys, key[i])
        ring_push(ring, pos, s, t)
        if t > last[s]:
            last[s] = t
        c, f, l = ring_max_in_window(ring, pos, s, t, window)
        if c >= threshold:
            out_idx[m] = i
            out_cnt[m] = c
            out_first[m] = f
            m += 1
    return m


@register
class BruteForce(Detector):
    id = "brute-force"
    title = "Suspected brute-force attack (wrong passwords)"
    description = ("{count} wrong-password failures for {account} from {source} between "
                   "{first_seen} and {last_seen} (reported by {computer}).")
    severity = "medium"
    mitre = ("T1110.001",)
    mdi_alert_id = ("2023",)
    key = "account"
    event_ids = frozenset({4771, 4776, 4625})
    params = (
        Param("threshold", 10, 7, 5, "wrong-password failures in the window", "events"),
        Param("window_s", 600, 600, 600, "sliding window", "s"),
    )
    next_steps = (
        "Check whether the failures were followed by a successful logon of the account.",
        "Identify the process on the source host that generated the attempts.",
        "Reset the account password if a success followed; enforce MFA / lockout policy.",
    )
    false_positives = ("A stale password in a service, mapped drive or phone (typically one "
                       "source, steady rate).",)
    audit = "Audit Kerberos Authentication Service (4771), Audit Credential Validation (4776), "\
            "Audit Logon (4625) - failure."
    STATE = {"ring": ("i8", (16,)), "pos": ("i8", ()), "fired": ("i8", ())}
    window_ms = 600_000

    def retention_ms(self):
        return int(self.p["window_s"] * 1000)

    def run(self, batch, ctx, hits):
        st = self.state
        n = batch.n
        out_idx = np.empty(n, np.int64)
        out_cnt = np.empty(n, np.int64)
        out_first = np.empty(n, np.int64)
        m = _brute_force(batch.event_id, batch.status, batch.sub_status, batch.flags,
                         batch.time_ms, ctx.key, st.keys, st["ring"], st["pos"], st["last"],
                         st["fired"], int(self.p["window_s"] * 1000), int(self.p["threshold"]),
                         out_idx, out_cnt, out_first)
        if m:
            hits.add(self.id, out_idx[:m], ctx.key[out_idx[:m]], out_cnt[:m], out_first[:m])
