"""`make bench`: run every bench/bench_*.py, print one table, write bench/results.json.

Each bench module exposes `run() -> list[dict]`; a row has at least `name`, `value`, `unit`
and may have `target` (text) and `ok` (bool, whether the target is met). Ratios are measured
side by side in one run: these machines are shared and noisy, so absolute times are context,
the ratios are the figures.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discover() -> list[str]:
    return sorted(p.stem for p in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("only", nargs="*", help="bench module names to run (default: all)")
    ap.add_argument("--out", default=str(HERE / "results.json"), help="JSON output path")
    args = ap.parse_args(argv)
    names = args.only or discover()
    rows: list[dict] = []
    for name in names:
        mod_name = name if name.startswith("bench_") else "bench_" + name
        print(f"[bench] {mod_name} ...", file=sys.stderr, flush=True)
        mod = importlib.import_module("bench." + mod_name)
        t0 = time.perf_counter()
        for row in mod.run():
            row.setdefault("group", mod_name[len("bench_") :])
            rows.append(row)
        print(f"[bench] {mod_name} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    print_table(rows)
    out = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def print_table(rows: list[dict]) -> None:
    cols = ["group", "name", "value", "unit", "target", "ok"]
    cells = [
        [
            fmt(r.get(c, "")) if c != "ok" else {True: "yes", False: "NO"}.get(r.get("ok"), "")
            for c in cols
        ]
        for r in rows
    ]
    widths = [
        max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
        for i, c in enumerate(cols)
    ]
    print()
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    sys.exit(main())
