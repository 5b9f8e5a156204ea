"""`itdr detectors list|validate`."""

from __future__ import annotations

import sys

import orjson

from .base import load_catalogue


def cmd_list(args) -> int:
    reg = load_catalogue()
    if args.json:
        sys.stdout.write(orjson.dumps([c.metadata() for c in reg]).decode() + "\n")
        return 0
    print(f"{'id':<26} {'severity':<8} {'key':<8} {'MITRE':<22} {'MDI':<16} events")
    for c in reg:
        print(f"{c.id:<26} {c.severity:<8} {c.key:<8} {','.join(c.mitre):<22} "
              f"{','.join(c.mdi_alert_id) or '-':<16} {','.join(map(str, sorted(c.event_ids)))}")
    print(f"\n{len(reg)} detectors")
    return 0


def cmd_validate(args) -> int:
    reg = load_catalogue()
    problems = reg.validate()
    # parameters must be constructible at every sensitivity
    for c in reg:
        for s in ("high", "medium", "low"):
            try:
                c(s)
            except Exception as e:  # noqa: BLE001
                problems.append(f"{c.id}: cannot instantiate at sensitivity {s}: {e}")
    if problems:
        for p in problems:
            print(f"invalid: {p}", file=sys.stderr)
        return 1
    print(f"ok: {len(reg)} detectors valid")
    return 0


def catalogue_markdown() -> str:
    """Detector reference generated from the registry metadata (docs/detectors.md)."""
    reg = load_catalogue()
    out = ["# Detector reference", "",
           "Generated from the registry by `python -m detectors.cli` (a test keeps it current).",
           ""]
    for c in reg:
        m = c.metadata()
        out += [f"## `{c.id}` — {c.title}", "",
                f"- severity: {m['severity']}; key: {m['key']}; MITRE: {', '.join(m['mitre'])}; "
                f"MDI: {', '.join(m['mdi_alert_id']) or '-'}",
                f"- events: {', '.join(map(str, m['event_ids']))}",
                f"- audit policy: {m['audit'] or '-'}",
                f"- learning: {m['learning_days']} days (ignored at medium/low)" if
                m['learning_days'] else "- learning: none",
                ""]
        if m["params"]:
            out += ["| parameter | high | medium | low | unit | meaning |", "|---|---|---|---|---|---|"]
            out += [f"| `{p['name']}` | {p['high']} | {p['medium']} | {p['low']} | {p['unit']} | "
                    f"{p['description']} |" for p in m["params"]]
            out.append("")
        out += ["Description: " + m["description"], ""]
        if m["false_positives"]:
            out += ["Known false positives: " + " ".join(m["false_positives"]), ""]
        out += ["Next steps:"] + [f"1. {s}" for s in m["next_steps"]] + [""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(catalogue_markdown())
