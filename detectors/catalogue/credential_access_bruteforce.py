"""Credential access: brute-force (many wrong passwords for one account)."""

from __future__ import annotations

import numpy as np
from numba import njit

from stream.alert import iso_ms
from stream.schema import FLAG_ANONYMOUS, FLAG_MACHINE

from ..base import MAX_DETAIL_ITEMS, Detector, Param, add_unique, merge_distinct, register
from ..kernels.common import find_row, ring_max_in_window, ring_push, row_of

# wrong-password status codes per event id
_WRONG_PW_NTLM = np.uint32(0xC000006A)
_KRB_PREAUTH_FAILED = np.uint32(0x18)


@njit(cache=True)
def _failures_before(ring, pos, slot, t, window):
    """Failures in ``[t - window, t]`` (and the earliest), for a success at ``t``."""
    c = 0
    first = t
    for j in range(min(pos[slot], ring.shape[1])):
        x = ring[slot, j]
        if x >= t - window and x <= t:
            c += 1
            if x < first:
                first = x
    return c, first


@njit(cache=True)
def _brute_force(event_id, status, sub_status, flags, logon_type, time_ms, src_key, key, keys,
                 ring, pos, last, last_src, window, threshold, out_idx, out_cnt, out_first,
                 out_kind):
    m = 0
    for i in range(len(event_id)):
        e = event_id[i]
        if e != 4771 and e != 4776 and e != 4625 and e != 4624 and e != 4768:
            continue
        if flags[i] & FLAG_MACHINE:  # machine accounts (name ends with $)
            continue
        st = status[i]
        wrong = False
        success = False
        if e == 4771:
            wrong = st == _KRB_PREAUTH_FAILED
        elif e == 4776:
            wrong = st == _WRONG_PW_NTLM
            success = st == 0
        elif e == 4625:
            wrong = sub_status[i] == _WRONG_PW_NTLM or st == _WRONG_PW_NTLM
        elif e == 4768:
            success = st == 0
        else:  # 4624
            success = logon_type[i] != 5 and not (flags[i] & FLAG_ANONYMOUS)
        t = time_ms[i]
        if success:
            # a success after a burst of failures from the same source: update the alert
            s = find_row(keys, key[i])
            if s < 0 or last_src[s] == 0 or last_src[s] != src_key[i]:
                continue
            c, f = _failures_before(ring, pos, s, t, window)
            if c >= threshold:
                out_idx[m] = i
                out_cnt[m] = c
                out_first[m] = f
                out_kind[m] = 1
                m += 1
            continue
        if not wrong:
            continue
        s = row_of(keys, key[i])
        ring_push(ring, pos, s, t)
        if t > last[s]:
            last[s] = t
        if src_key[i] != 0:
            last_src[s] = src_key[i]
        c, f, l = ring_max_in_window(ring, pos, s, t, window)
        if c >= threshold:
            out_idx[m] = i
            out_cnt[m] = c
            out_first[m] = f
            out_kind[m] = 0
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
    event_ids = frozenset({4771, 4776, 4625, 4624, 4768})
    params = (
        Param("threshold", 10, 7, 5, "wrong-password failures in the window (max 32)",
              "events"),
        Param("window_s", 600, 600, 600, "sliding window", "s"),
    )
    next_steps = (
        "Check whether the failures were followed by a successful logon of the account "
        "(evidence detail `followed_by_success`): if so, treat the account as compromised.",
        "Identify the process on the source host that generated the attempts.",
        "Reset the account password if a success followed; enforce MFA / lockout policy.",
    )
    false_positives = ("A stale password in a service, mapped drive or phone (typically one "
                       "source, steady rate).",)
    audit = "Audit Kerberos Authentication Service (4771/4768), Audit Credential Validation "\
            "(4776), Audit Logon (4625 failure, 4624 success)."
    STATE = {"ring": ("i8", (32,)), "pos": ("i8", ()), "src": ("u8", ())}
    window_ms = 600_000

    retention_param = ("window_s", 1000)

    def run(self, batch, ctx, hits):
        st = self.state
        n = batch.n
        out_idx = np.empty(n, np.int64)
        out_cnt = np.empty(n, np.int64)
        out_first = np.empty(n, np.int64)
        out_kind = np.empty(n, np.int64)
        ip = batch.hashes("src_ip")
        src_key = np.where(ip != 0, ip, batch.hashes("src_host"))
        m = _brute_force(batch.event_id, batch.status, batch.sub_status, batch.flags,
                         batch.logon_type, batch.time_ms, src_key, ctx.key, st.index, st["ring"],
                         st["pos"], st["last"], st["src"], int(self.p["window_s"] * 1000),
                         min(int(self.p["threshold"]), 32), out_idx, out_cnt, out_first,
                         out_kind)
        self._success = {i for i, k in zip(out_idx[:m].tolist(), out_kind[:m].tolist()) if k}
        if m:
            hits.add(self.id, out_idx[:m], ctx.key[out_idx[:m]], out_cnt[:m], out_first[:m])

    def details(self, batch, i, aux):
        # only success hits add facts: an alert that gains `followed_by_success` is a likely
        # compromise (MDI raises it as such); failure hits never reset it
        if i in getattr(self, "_success", ()):
            return {"followed_by_success": True,
                    "success_events": [f"{int(batch.event_id[i])} at "
                                       f"{iso_ms(int(batch.time_ms[i]))}"]}
        return {}

    def merge_details(self, into, batch, i, aux):
        # details() merged without building it: failure hits have none; a success hit sets
        # the flag and adds its event (the text is rendered only while the list has room)
        if i not in getattr(self, "_success", ()):
            return
        into["followed_by_success"] = True
        cur = into.setdefault("success_events", [])
        if isinstance(cur, list) and len(cur) < MAX_DETAIL_ITEMS:
            add_unique(cur, f"{int(batch.event_id[i])} at {iso_ms(int(batch.time_ms[i]))}")

    def merge_rows(self, into, batch, rows, auxs):
        # only success rows merge anything, and nothing once the flag is set and the list
        # of success events is full (a storm's alerts get there early)
        success = getattr(self, "_success", ())
        done = self._merged_all(into)
        for i, a in zip(rows, auxs):
            if not done and i in success:
                self.merge_details(into, batch, i, a)
                done = self._merged_all(into)
            if a:
                merge_distinct(into, a)

    @staticmethod
    def _merged_all(into) -> bool:
        cur = into.get("success_events")
        return (isinstance(cur, list) and len(cur) >= MAX_DETAIL_ITEMS
                and into.get("followed_by_success") is True)
