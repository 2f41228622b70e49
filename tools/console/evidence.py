"""The evidence an operator triages from: the stored SNAPSHOT waveform and the telemetry around
the alarm, in physical units, as one dict (the same shape for real cases, read from the
gateway's tables, and for training cases, made by running a scenario), drawn as SVG charts."""

from __future__ import annotations

import json
from typing import Any

from tools.console import charts
from tools.console.dbx import Database

BEFORE_S = 900.0  # telemetry shown from 15 min before the alarm
AFTER_S = 900.0
MAX_POINTS = 600
SNAP_UNITS = {"residual": "mA", "arc": "half-cycles/s"}
SNAP_UNITS.update({f"temp{i}": "°C" for i in range(4)})
SNAP_UNITS.update({f"phase{i}": "A" for i in range(3)})


def _thin(rows: list[Any], n: int = MAX_POINTS) -> list[Any]:
    if len(rows) <= n:
        return rows
    step = len(rows) / n
    return [rows[int(k * step)] for k in range(n)]


def from_store(db: Database, device: int, at: float) -> dict[str, Any]:
    """Evidence for a case opened at `at`: the latest snapshot of the device received from
    10 min before the alarm on (else its latest), telemetry from BEFORE_S before to AFTER_S
    after (times relative to the alarm, in s)."""
    rows = db.execute(
        "SELECT rx, dev_time, seq, residual_ma, temp0_dc, temp1_dc, temp2_dc, temp3_dc, "
        "line0_ca, line1_ca, line2_ca FROM telemetry WHERE device = ? AND rx >= ? AND rx <= ? "
        "ORDER BY rx",
        (device, at - BEFORE_S, at + AFTER_S),
    ).fetchall()
    rows = _thin(rows)
    tel = {
        "t": [r[0] - at for r in rows],
        "residual_ma": [r[3] for r in rows],
        "temp_c": [[None if r[4 + i] is None else r[4 + i] / 10 for r in rows] for i in range(4)],
        "line_a": [[None if r[8 + i] is None else r[8 + i] / 100 for r in rows] for i in range(3)],
    }
    snap = (
        db.execute(
            "SELECT snap_id, rx FROM snapshots WHERE device = ? AND rx >= ? ORDER BY rx DESC "
            "LIMIT 1",
            (device, at - 600),
        ).fetchone()
        or db.execute(
            "SELECT snap_id, rx FROM snapshots WHERE device = ? ORDER BY rx DESC LIMIT 1", (device,)
        ).fetchone()
    )
    wave = None
    if snap is not None:
        chunks = db.execute(
            "SELECT channel, chunk, chunks, scale_exp, rate_hz, trigger, samples, rx "
            "FROM snapshots WHERE device = ? AND snap_id = ? ORDER BY chunk",
            (device, snap[0]),
        ).fetchall()
        samples: list[float] = []
        for _ch, _k, _n, exp, _rate, _trig, text, _rx in chunks:
            try:
                samples.extend(float(s) * 10.0**exp for s in json.loads(text))
            except (ValueError, TypeError):
                continue
        ch0 = chunks[0]
        wave = {
            "channel": ch0[0],
            "units": SNAP_UNITS.get(ch0[0], ""),
            "rate_hz": ch0[4] or 1,
            "trigger": ch0[5],
            "samples": samples,
            "complete": len(chunks) == ch0[2],
            "rx": ch0[7],
        }
    return {"telemetry": tel, "waveform": wave}


def render(
    ev: dict[str, Any],
    set_ma: float | None = None,
    set_c: float | None = None,
    ref: str = "alarm",
) -> list[str]:
    """SVG charts: waveform, residual current, temperatures, line currents (those with data);
    telemetry times are relative to `ref` (the alarm, or the latest report)."""
    out = []
    w = ev.get("waveform")
    if w and w.get("samples"):
        rate = float(w.get("rate_hz") or 1)
        trig = w.get("trigger") or 0
        xs = [1000.0 * (i - trig) / rate for i in range(len(w["samples"]))]
        out.append(
            charts.render(
                charts.Chart(
                    f"SNAPSHOT waveform: {w['channel']} ({rate:g} samples/s)"
                    + ("" if w.get("complete", True) else " - incomplete"),
                    "ms from trigger",
                    w.get("units", ""),
                    [charts.Series(w["channel"], xs, w["samples"])],
                    vlines=[(0.0, "trigger")],
                )
            )
        )
    else:
        out.append(charts.render(charts.Chart("SNAPSHOT waveform: none stored", "", "")))
    t = ev.get("telemetry") or {}
    span = max((abs(x) for x in t.get("t", [])), default=0.0)
    per, xl = (60.0, f"min from the {ref}") if span > 300 else (1.0, f"s from the {ref}")
    ts = [x / per for x in t.get("t", [])]
    res = t.get("residual_ma") or []
    if any(v is not None for v in res):
        out.append(
            charts.render(
                charts.Chart(
                    "Residual current",
                    xl,
                    "mA",
                    [charts.Series("residual", ts, res)],
                    hlines=[(set_ma, f"set {set_ma:g} mA")] if set_ma else [],
                    vlines=[(0.0, ref)],
                    zero=True,
                )
            )
        )
    temps = [
        charts.Series(f"temp{i}", ts, s)
        for i, s in enumerate(t.get("temp_c") or [])
        if any(v is not None for v in s)
    ]
    if temps:
        out.append(
            charts.render(
                charts.Chart(
                    "Temperatures",
                    xl,
                    "°C",
                    temps,
                    hlines=[(set_c, f"set {set_c:g} °C")] if set_c else [],
                    min_span=10.0,
                    vlines=[(0.0, ref)],
                )
            )
        )
    lines = [
        charts.Series(f"phase{i}", ts, s)
        for i, s in enumerate(t.get("line_a") or [])
        if any(v is not None for v in s)
    ]
    if lines:
        out.append(
            charts.render(
                charts.Chart("Line currents", xl, "A", lines, vlines=[(0.0, ref)], zero=True)
            )
        )
    if not t.get("t"):
        out.append(charts.render(charts.Chart(f"Telemetry: none around the {ref}", "", "")))
    return out
