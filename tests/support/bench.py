"""Small helpers shared by the benchmarks: rate measurement and a printed, saved report."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(os.environ.get("EDGEPBX_BENCH_OUT", "var/bench"))


def rate(fn: Callable[[], object], *, batch: int = 2000, rounds: int = 7) -> float:
    """Operations per second of ``fn``: the best of ``rounds`` batches (least disturbed)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        best = min(best, time.perf_counter() - start)
    return batch / best


def report(name: str, rows: list[dict[str, object]]) -> None:
    """Print a table and save it as JSON under var/bench/<name>.json."""
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(_fmt(r[k])) for r in rows)) for k in keys}
    print(f"\n== {name} ==")
    print("  ".join(k.ljust(widths[k]) for k in keys))
    for row in rows:
        print("  ".join(_fmt(row[k]).ljust(widths[k]) for k in keys))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=2))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return str(value)
