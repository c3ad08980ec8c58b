"""Every bench script records its figures here, so ``make bench`` ends with one table: each figure,
the baseline it is measured against in the same run, their ratio and the target.

    record("prompt", "in-process, batched", 820, "checks/s", baseline=("one at a time", 140), target=">= 1000")
    .venv/bin/python bench/figures.py          # the table of everything recorded since `make bench` began
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILE = ROOT / "var" / "bench" / "figures.jsonl"


def record(section: str, name: str, value: float, unit: str, baseline: tuple[str, float] | None = None,
           target: str = "") -> None:
    FILE.parent.mkdir(parents=True, exist_ok=True)
    row = {"section": section, "name": name, "value": value, "unit": unit, "target": target,
           "baseline": baseline[0] if baseline else "", "baseline_value": baseline[1] if baseline else None}
    with FILE.open("a") as f:
        f.write(json.dumps(row) + "\n")


def reset() -> None:
    FILE.unlink(missing_ok=True)


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) < 1 else f"{v:.1f}"


def table() -> str:
    if not FILE.exists():
        return "no figures recorded (run `make bench`)"
    rows = [json.loads(line) for line in FILE.read_text().splitlines() if line.strip()]
    head = f"| {'figure':<52} | {'value':>12} | {'baseline (same run)':<40} | {'ratio':>6} | target |"
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        base = r["baseline_value"]
        ratio = f"{r['value'] / base:.2f}x" if base else ""
        base_txt = f"{r['baseline']}: {_num(base)}" if base is not None else ""
        lines.append(f"| {r['section'] + ': ' + r['name']:<52} | {_num(r['value']) + ' ' + r['unit']:>12} | "
                     f"{base_txt:<40} | {ratio:>6} | {r['target']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--reset"]:
        reset()
    else:
        print(table())
