"""Result rows, the printed table, the JSON file and PASS/MISS."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench._harness import ratio


@dataclass
class Row:
    scenario: str
    lib: str
    variant: str
    baseline: str
    value: float | None  # a ratio (variant/baseline) unless ``unit`` says otherwise
    unit: str = "x"
    variant_us: float | None = None
    baseline_us: float | None = None
    target: float | None = None  # pass when value <= target
    status: str = ""
    note: str = ""


def ratio_row(
    scenario: str,
    lib_name: str,
    samples: dict[str, Any],
    variant: str,
    base: str,
    target: float | None = None,
    note: str = "",
) -> Row:
    """A row for ``variant`` over ``base``: the paired median ratio and both medians."""
    return Row(
        scenario,
        lib_name,
        variant,
        base,
        ratio(samples, variant, base),
        variant_us=samples[variant].median_us,
        baseline_us=samples[base].median_us,
        target=target,
        note=note,
    )


class Report:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.rows: list[Row] = []

    def add(self, row: Row) -> Row:
        if row.value is None:
            row.status = "n/a"
        elif row.target is not None and not self.quick:
            row.status = "PASS" if row.value <= row.target else "MISS"
        self.rows.append(row)
        print(_line(row), flush=True)
        return row

    def na(self, scenario: str, lib: str, variant: str, why: str) -> None:
        self.add(Row(scenario, lib, variant, "", None, note=why))

    def table(self) -> str:
        cols = (
            "scenario",
            "lib",
            "variant",
            "vs baseline",
            "ratio / value",
            "variant µs",
            "baseline µs",
            "target",
            "status",
            "note",
        )
        head = "| " + " | ".join(cols) + " |"
        sep = "|---|---|---|---|---|---|---|---|---|---|"
        return "\n".join([head, sep, *(_md(r) for r in self.rows)])

    def write(self, path: Path, elapsed: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "machine": machine(),
            "quick": self.quick,
            "elapsed_s": round(elapsed, 1),
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rows": [asdict(r) for r in self.rows],
        }
        path.write_text(json.dumps(doc, indent=2) + "\n")
        m = doc["machine"]
        md = (
            f"Machine: `nproc` {m['nproc']}, {m['cpu']}, Python {m['python']} "
            f"({m['platform']}); {'quick' if self.quick else 'full'} run of "
            f"{doc['when']}, {doc['elapsed_s']} s.\n\n{self.table()}\n"
        )
        path.with_suffix(".md").write_text(md)


def _fmt(v: float | None, unit: str = "x") -> str:
    if v is None:
        return "n/a"
    if unit == "x":
        return f"{v:.3f}x"
    return f"{v:.4g} {unit}"


def _us(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}"


def _md(r: Row) -> str:
    target = "" if r.target is None else f"<= {_fmt(r.target, r.unit)}"
    return (
        f"| {r.scenario} | {r.lib} | {r.variant} | {r.baseline} | {_fmt(r.value, r.unit)} | "
        f"{_us(r.variant_us)} | {_us(r.baseline_us)} | {target} | {r.status} | {r.note} |"
    )


def _line(r: Row) -> str:
    target = "" if r.target is None else f" (target <= {_fmt(r.target, r.unit)})"
    us = "" if r.variant_us is None else f"  [{_us(r.variant_us)} µs vs {_us(r.baseline_us)} µs]"
    status = f" {r.status}" if r.status else ""
    note = f"  -- {r.note}" if r.note else ""
    value = _fmt(r.value, r.unit)
    return f"{r.scenario:<14} {r.lib:<7} {r.variant:<34} {value:>12}{us}{target}{status}{note}"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
