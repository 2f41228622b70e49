"""Human-readable output of a run: the event table and the one-line summary, and the JSONL file."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TextIO

from host_sim.simulate import Result, SimEvent


def write_jsonl(events: list[SimEvent], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for e in events:
            f.write(json.dumps(e.as_json()) + "\n")


def _fmt(d: dict, key: str) -> str:
    v = d[key]
    if "fault" in d:
        return d["fault"] if key == "value" else "-"
    unit = d.get("units", "")
    num = f"{v:g}" if isinstance(v, float) else str(v)
    return f"{num} {unit}".strip()


def _clock(t: float) -> str:
    h, rem = divmod(t, 3600)
    m, sec = divmod(rem, 60)
    return f"{int(h)}:{int(m):02d}:{sec:04.1f}"


def table(events: list[SimEvent], out: TextIO, max_rows: int = 100) -> None:
    if not events:
        print("  (no events)", file=out)
        return
    rows = [e.as_json() for e in events[:max_rows]]
    long = events[-1].t >= 3600  # hours of simulation: a clock reads better than seconds
    cells = [
        (_clock(d["t"]) if long else f"{d['t']:.1f}", d["kind"], d["channel"],
         _fmt(d, "value"), _fmt(d, "threshold"))
        for d in rows
    ]  # fmt: skip
    head = ("t (h:mm:ss)" if long else "t (s)", "kind", "channel", "value", "threshold")
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    line = "  ".join(
        h.rjust(widths[0]) if i == 0 else h.ljust(widths[i]) for i, h in enumerate(head)
    )
    print("  " + line.rstrip(), file=out)
    for c in cells:
        row = "  ".join(
            v.rjust(widths[0]) if i == 0 else v.ljust(widths[i]) for i, v in enumerate(c)
        )
        print("  " + row.rstrip(), file=out)
    if len(events) > max_rows:
        print(f"  ... {len(events) - max_rows} more events (all of them are in --events)", file=out)


def summary(res: Result) -> str:
    """One line: what ran, how fast, what happened, what is latched at the end."""
    scn = res.scenario
    sim_s = res.n_windows * res.window_s
    counts = Counter(e.kind for e in res.events)
    parts = []
    for kind in ("alarm", "prealarm", "ror", "fault", "reset"):
        if counts[kind]:
            chans = sorted({e.channel for e in res.events if e.kind == kind})
            parts.append(
                f"{counts[kind]} {kind}{'s' if counts[kind] > 1 else ''} ({', '.join(chans)})"
            )
    what = "; ".join(parts) if parts else "no alarm, no fault"
    end = []
    if res.latched:
        end.append("alarm latched: " + ", ".join(res.latched))
    if res.faulty:
        end.append("fault: " + ", ".join(f"{c} {k}" for c, k in res.faulty.items()))
    tail = f" | at end: {'; '.join(end)}" if end else " | at end: normal"
    speed = f"{res.speed:,.0f}x real time" if res.wall_s else ""
    return (
        f"{scn.name}: {sim_s:g} s simulated in {res.wall_s:.2f} s ({speed}), "
        f"{len(res.events)} events: {what}{tail}"
    )
