"""Flags the normalizer derives for the kernels (both the compiled and reference paths)."""

from collectors.normalize import Normalizer
from stream.schema import FLAG_DELEGATED, FLAG_TARGET_MACHINE


def _tgs(**extra):
    rec = {"_eid": 4769, "_time_ms": 1, "_computer": "DC01.corp.local", "_channel": "Security",
           "_provider": "Microsoft-Windows-Security-Auditing", "_record": 1, "_user_sid": "",
           "TargetUserName": "web$@CORP.LOCAL", "ServiceName": "sql01$", "Status": "0x0",
           "TicketEncryptionType": "0x12", "IpAddress": "::ffff:10.0.0.9"}
    rec.update(extra)
    return rec


def test_transmitted_services_sets_delegated_flag():
    n = Normalizer()
    for norm in (n.normalize, n.normalize_reference):
        plain = norm(_tgs(TransmittedServices="-"))
        s4u = norm(_tgs(TransmittedServices="HTTP/web.corp.local@CORP.LOCAL"))
        assert not plain["flags"] & FLAG_DELEGATED
        assert s4u["flags"] & FLAG_DELEGATED
        assert s4u["flags"] & FLAG_TARGET_MACHINE
        assert s4u["src_ip"] == "10.0.0.9" and s4u["account"] == "corp\\web$"
