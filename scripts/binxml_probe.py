"""The feasibility probe (session 9) of the C reader of EVTX binary XML that the collector has
since session 10 (collectors/_native.c, docs/collectors.md "The binary-XML reader"); not part
of the product, kept to survey new inputs. Reads the chunks of `itdr bench collect`'s
assembled input, walks each record's template instance (the outer template: System plus a
BinXml substitution carrying the event's own template instance), and prints:

* how the records are shaped (template instances, EventData vs UserData),
* the value types of the System fields and of the EventData ``Data[@Name]`` fields,
* for each EventData value type, a few raw values next to what the ``evtx`` crate renders
  (the text a C reader must reproduce).

    .venv/bin/python scripts/binxml_probe.py [--events 30000]
"""

from __future__ import annotations

import argparse
import collections
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evtx  # noqa: E402
import orjson  # noqa: E402

from collectors.bench import build_input, default_files  # noqa: E402


class Unsupported(Exception):
    pass


def _name(chunk: bytes, p: int) -> tuple[str, int]:
    """Element/attribute name referenced at p (inline when it follows the reference)."""
    off = struct.unpack_from("<I", chunk, p)[0]
    n = struct.unpack_from("<H", chunk, off + 6)[0]
    name = chunk[off + 8:off + 8 + 2 * n].decode("utf-16-le")
    return name, (p + 4 + 10 + 2 * n if off == p + 4 else p + 4)


def walk_template(chunk: bytes, off: int) -> dict:
    """Template definition at ``off`` -> {substitution id: (path, attribute, type, Data Name)}."""
    p = off + 24                          # next definition, GUID, data size
    end = p + struct.unpack_from("<I", chunk, off + 20)[0]
    subs: dict = {}
    stack: list[str] = []
    names: dict[int, str] = {}
    attr = None
    while p < end:
        t = chunk[p]
        tok = t & 0xBF
        if tok == 0x0F:                   # fragment header
            p += 4
        elif tok == 0x01:                 # open start element (dependency id, size, name)
            name, p = _name(chunk, p + 7)
            p += 4 if t & 0x40 else 0     # attribute list size
            stack.append(name)
            names.pop(len(stack), None)
            attr = None
        elif tok in (0x02, 0x03, 0x04):   # close start / close empty / end element
            if tok != 0x02:
                stack.pop()
            attr = None
            p += 1
        elif tok == 0x06:                 # attribute
            attr, p = _name(chunk, p + 1)
        elif tok == 0x05:                 # literal value
            if chunk[p + 1] != 1:
                raise Unsupported(f"literal of type {chunk[p + 1]}")
            n = struct.unpack_from("<H", chunk, p + 2)[0]
            if attr == "Name":
                names[len(stack)] = chunk[p + 4:p + 4 + 2 * n].decode("utf-16-le")
            p += 4 + 2 * n
        elif tok in (0x0D, 0x0E):         # normal / optional substitution
            sid, vt = struct.unpack_from("<HB", chunk, p + 1)
            subs[sid] = ("/".join(stack), attr, vt,
                         names.get(len(stack)) if attr is None else None)
            p += 4
        elif tok == 0x00:
            break
        else:
            raise Unsupported(f"token {t:#x}")
    return subs


def instance(chunk: bytes, q: int) -> tuple[int, int]:
    """Template instance at q (after the fragment header): (definition offset, position of
    its substitution array), skipping an inline definition."""
    doff = struct.unpack_from("<I", chunk, q + 6)[0]
    q += 10
    if doff == q:
        q += 24 + struct.unpack_from("<I", chunk, q + 20)[0]
    return doff, q


def values(chunk: bytes, q: int) -> list[tuple[int, int, int]]:
    n = struct.unpack_from("<I", chunk, q)[0]
    desc = [struct.unpack_from("<HB", chunk, q + 4 + 4 * i) for i in range(n)]
    q += 4 + 4 * n
    out = []
    for size, vt in desc:
        out.append((vt, q, size))
        q += size
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=30_000)
    a = ap.parse_args()
    if not default_files():
        print("no input: ../shared/samples is absent", file=sys.stderr)
        return 2
    stats, types = collections.Counter(), collections.Counter()
    examples: dict[int, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path, _, _ = build_input(default_files(), a.events, tmp)
        crate = {r["event_record_id"]: orjson.loads(r["data"])["Event"]
                 for r in evtx.PyEvtxParser(path, number_of_threads=1).records_json()}
        data = Path(path).read_bytes()
    for ci in range((len(data) - 4096) // 65536):
        chunk = data[4096 + ci * 65536:4096 + (ci + 1) * 65536]
        cache: dict[int, dict | Exception] = {}

        def template(off: int):
            if off not in cache:
                try:
                    cache[off] = walk_template(chunk, off)
                except Unsupported as e:
                    cache[off] = e
            return cache[off]

        free, p = struct.unpack_from("<I", chunk, 48)[0], 512
        while p < free:
            sig, size, rid = struct.unpack_from("<IIQ", chunk, p)
            if sig != 0x2A2A:
                stats["bad record signature"] += 1
                break
            rec, p = p + 24, p + size
            stats["records"] += 1
            if chunk[rec] != 0x0F or chunk[rec + 4] != 0x0C:
                stats["not a template instance"] += 1
                continue
            doff, q = instance(chunk, rec + 4)
            outer = template(doff)
            if isinstance(outer, Exception):
                stats[f"unsupported outer template: {outer}"] += 1
                continue
            vals = values(chunk, q)
            ev = crate[rid]
            for sid, (pth, attr, _, _) in outer.items():
                if sid >= len(vals):
                    continue
                vt, vq, vs = vals[sid]
                if vt != 0x21:
                    types[("System", pth.split("/")[-1] + (f"@{attr}" if attr else ""), vt)] += 1
                    continue
                stats[f"nested BinXml under {pth}"] += 1
                ndoff, nq = instance(chunk, vq + 4)
                inner = template(ndoff)
                if isinstance(inner, Exception):
                    stats[f"unsupported inner template: {inner}"] += 1
                    continue
                sect = ev.get("EventData") or ev.get("UserData") or {}
                for nsid, (npth, _, _, dname) in inner.items():
                    nvals = values(chunk, nq)
                    if nsid >= len(nvals):
                        continue
                    vt2, vq2, vs2 = nvals[nsid]
                    types[("EventData", "Data[@Name]" if dname else npth.split("/")[-1],
                           vt2)] += 1
                    if dname and isinstance(sect, dict) and dname in sect:
                        ex = examples.setdefault(vt2, [])
                        if len(ex) < 3:
                            ex.append((chunk[vq2:vq2 + vs2][:24].hex(), sect[dname]))
    for k, v in stats.most_common():
        print(f"{v:8d}  {k}")
    for (where, field, vt), v in sorted(types.items()):
        print(f"{v:8d}  {where:9s} {field:32s} value type {vt:#04x}")
    for vt, ex in sorted(examples.items()):
        print(f"type {vt:#04x}: " + "; ".join(f"{raw} -> {val!r}" for raw, val in ex))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
