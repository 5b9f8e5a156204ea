#!/usr/bin/env python3
"""Offline ``helm lint`` / ``helm template`` shim over helm-python-sdk (Helm's Go SDK).

There is no helm binary on the build machines; this gives the two commands CI needs::

    python deploy/helm/helm.py lint deploy/helm/openitdr --strict [-f ci/x-values.yaml]
    python deploy/helm/helm.py template deploy/helm/openitdr -f values.yaml [--set a.b=c]
                                       [--name openitdr] [--namespace itdr] [--kube-version 1.30.0]

``template`` prints a multi-document YAML stream (``# Source: <template>`` headers, like helm).
Exit code 1 on lint errors (and warnings with ``--strict``) or render failures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = ["load_values", "lint", "render", "main"]


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _set(values: dict, expr: str) -> None:
    key, _, raw = expr.partition("=")
    node = values
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""


def load_values(files: list[str] | None = None, sets: list[str] | None = None) -> dict[str, Any]:
    """User values: ``-f`` files merged left to right, then ``--set`` expressions."""
    values: dict[str, Any] = {}
    for f in files or []:
        values = _deep_merge(values, yaml.safe_load(Path(f).read_text(encoding="utf-8")) or {})
    for s in sets or []:
        _set(values, s)
    return values


def lint(chart: str, values: dict | None = None, *, strict: bool = True,
         kube_version: str = "1.30.0") -> list[str]:
    """Problems found by ``helm lint`` (errors, plus warnings when strict)."""
    import helm_python

    res = helm_python.lint(chart, values or {}, strict=strict, kube_version=kube_version)
    problems = [str(e) for e in res.get("errors") or []]
    for m in res.get("messages") or []:
        # severities: 1 info, 2 warning, 3 error
        if m.get("severity", 0) >= (2 if strict else 3):
            problems.append(f"{m.get('path')}: {m.get('error')}")
    return problems


def render(chart: str, values: dict | None = None, *, name: str = "openitdr",
           namespace: str = "openitdr") -> dict[str, str]:
    """``{template path: rendered YAML}`` for an install of ``chart`` with ``values``."""
    import helm_python

    return helm_python.Chart.load(chart).render(values or {}, name=name, namespace=namespace,
                                                is_install=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="helm.py", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd in ("lint", "template"):
        p = sub.add_parser(cmd)
        p.add_argument("chart")
        p.add_argument("-f", "--values", action="append", default=[])
        p.add_argument("--set", action="append", default=[])
        p.add_argument("--kube-version", default="1.30.0")
        if cmd == "lint":
            p.add_argument("--strict", action="store_true")
        else:
            p.add_argument("--name", default="openitdr")
            p.add_argument("--namespace", default="openitdr")
    args = ap.parse_args(argv)
    values = load_values(args.values, args.set)
    try:
        if args.cmd == "lint":
            problems = lint(args.chart, values, strict=args.strict,
                            kube_version=args.kube_version)
            for p in problems:
                print(f"[ERROR] {p}", file=sys.stderr)
            print(f"1 chart(s) linted, {'1 chart(s) failed' if problems else '0 chart(s) failed'}")
            return 1 if problems else 0
        out = render(args.chart, values, name=args.name, namespace=args.namespace)
    except Exception as e:  # helm_python raises HelmError subclasses
        print(f"Error: {e}", file=sys.stderr)
        return 1
    for path in sorted(out):
        body = out[path].strip()
        if not body or path.endswith("NOTES.txt"):
            continue
        if not body.startswith("---"):
            body = "---\n" + body
        print(body.replace("---", f"---\n# Source: {path}", 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
