"""Detection regression on the labelled recordings (run by .ci/run when ../shared exists).

Fails if a file listed in tests/eval_expected.json as detected is no longer detected, or if
recall drops below the recorded floor. Update the list deliberately with --update.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ROOT / "tests" / "eval_expected.json"


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    labels = args[0] if args else "../shared/samples/labels.csv"
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "itdr"), "eval", labels, "--json"],
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    res = json.loads(out)
    detected = sorted(f["file"] for f in res["files"] if f["hit"])
    if "--update" in sys.argv:
        EXPECTED.write_text(json.dumps({"recall_floor": res["recall"], "detected": detected},
                                       indent=2) + "\n")
        print(f"updated {EXPECTED}: recall {res['recall']}, {len(detected)} files")
        return 0
    exp = json.loads(EXPECTED.read_text())
    lost = sorted(set(exp["detected"]) - set(detected))
    print(f"itdr eval: recall {res['recall']} ({res['hits']}/{res['total']}); "
          f"floor {exp['recall_floor']}")
    if lost:
        print("REGRESSION: files no longer detected:\n  " + "\n  ".join(lost))
        return 1
    if res["recall"] < exp["recall_floor"]:
        print("REGRESSION: recall below the recorded floor")
        return 1
    new = sorted(set(detected) - set(exp["detected"]))
    if new:
        print("newly detected (run with --update to record):\n  " + "\n  ".join(new))
    return 0


if __name__ == "__main__":
    sys.exit(main())
