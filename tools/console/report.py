"""Handling figures for the gateway's plan report (`python -m tools.gateway report`): per plan
unit, open cases, median time to acknowledge and to close, and alarm accuracy (real hazards /
verified alarm cases), from the console's case tables (docs/console.md). A database without
them (never migrated to version 10) gets the report unchanged."""

from __future__ import annotations

from typing import Any

from tools.console.cases import CaseStore, fmt_duration, fmt_pct

COLUMNS = ["open_cases", "median_ack", "median_close", "accuracy"]


def handling_columns(db: Any, cols: list[str], rows: list[tuple]) -> tuple[list[str], list[tuple]]:
    """The report's rows with COLUMNS appended (by the row's unit; TOTAL over all cases)."""
    if not db.columns("cases"):
        return cols, rows
    st = CaseStore(db)
    per = {h["key"]: h for h in st.handling("unit")}
    every = st.handling("all")
    out = []
    for r in rows:
        h: dict[str, Any] = (every[0] if every else {}) if r[0] == "TOTAL" else per.get(r[0], {})
        out.append(
            (
                *r,
                h.get("open", 0),
                fmt_duration(h.get("median_ack_s")),
                fmt_duration(h.get("median_close_s")),
                fmt_pct(h.get("accuracy")),
            )
        )
    return [*cols, *COLUMNS], out
