"""Nuisance-prone detectors, from telemetry (docs/console.md, "Nuisance rule").

A residual-current detector whose circuit's *natural* leakage sits close to its set value
alarms on ordinary load swings: the vendors' rule (CONTEXT.md) is a set value of at least
twice the circuit's normal leakage, and GB 14287.2 lets a detector alarm from 80 % of its set
value. So:

    natural leakage L = the 90th percentile of the residual readings in the window (default
                        the last 24 h, at least MIN_READINGS reports) that are below the set
                        value (readings at or above it are the alarm, not the circuit's normal)
    nuisance-prone    when L > SHARE (50 %) of the set value
    recommended set   2 x L rounded up to 10 mA, within the detector's 20..1000 mA; above
                      500 mA (GB 50116 puts alarms at 300-500 mA) the advice is to inspect the
                      circuit's insulation rather than raise the set value further.

The set value is the detector's own (`leak_set_ma` of its latest CONFIG); without a stored
CONFIG it is the firmware default, 300 mA, and the page says so. The recommended value is
applied with an authenticated `set_config` through the gateway (tools.console.commander).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from tools.console.dbx import Database

SHARE = 0.5
PERCENTILE = 0.9
MIN_READINGS = 10
WINDOW_S = 86400.0
DEFAULT_SET_MA = 300  # efd.config default leak_set_ma
SET_MIN_MA, SET_MAX_MA = 20, 1000
ADVISED_MAX_MA = 500
MAX_READINGS = 2000


@dataclass
class Assessment:
    device: int
    set_ma: int
    set_from_config: bool
    readings: int
    leakage_ma: float | None
    prone: bool
    recommended_ma: int | None
    advice: str

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def percentile(xs: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in 0..1."""
    s = sorted(xs)
    if not s:
        raise ValueError("no data")
    pos = (len(s) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def assess(device: int, readings: list[float], set_ma: int | None) -> Assessment:
    """The rule on one detector's residual readings (mA) and its set value (None: default)."""
    from_cfg = set_ma is not None
    sv = int(set_ma) if set_ma is not None else DEFAULT_SET_MA
    normal = [r for r in readings if r is not None and r < sv]
    if len(normal) < MIN_READINGS:
        return Assessment(
            device,
            sv,
            from_cfg,
            len(normal),
            None,
            False,
            None,
            f"not enough readings ({len(normal)} < {MIN_READINGS})",
        )
    leak = percentile(normal, PERCENTILE)
    if leak <= SHARE * sv:
        return Assessment(
            device,
            sv,
            from_cfg,
            len(normal),
            leak,
            False,
            None,
            f"natural leakage {leak:.0f} mA is at most {SHARE:.0%} of the set value {sv} mA",
        )
    rec = min(SET_MAX_MA, max(SET_MIN_MA, math.ceil(2 * leak / 10.0) * 10))
    advice = (
        f"natural leakage {leak:.0f} mA is above {SHARE:.0%} of the set value {sv} mA: "
        f"raise the set value to {rec} mA (twice the natural leakage)"
    )
    if rec > ADVISED_MAX_MA:
        advice += (
            f"; that is above {ADVISED_MAX_MA} mA (GB 50116: alarms at 300-500 mA): have the "
            "circuit's insulation inspected"
        )
    return Assessment(device, sv, from_cfg, len(normal), leak, True, rec, advice)


def set_value(db: Database, device: int) -> int | None:
    """leak_set_ma of the device's latest stored CONFIG, None without one."""
    r = db.execute(
        "SELECT params FROM configs WHERE device = ? ORDER BY rx DESC, id DESC LIMIT 1", (device,)
    ).fetchone()
    if r is None:
        return None
    try:
        for name, value in json.loads(r[0]):
            if name == "leak_set_ma":
                return int(value)
    except (ValueError, TypeError):
        return None
    return None


def readings(db: Database, device: int, since: float) -> list[float]:
    rows = db.execute(
        "SELECT residual_ma FROM telemetry WHERE device = ? AND rx >= ? AND residual_ma IS NOT "
        "NULL ORDER BY rx DESC LIMIT ?",
        (device, since, MAX_READINGS),
    ).fetchall()
    return [float(r[0]) for r in rows]


def assess_device(db: Database, device: int, now: float, window_s: float = WINDOW_S) -> Assessment:
    return assess(device, readings(db, device, now - window_s), set_value(db, device))


def prone_devices(db: Database, now: float, window_s: float = WINDOW_S) -> list[Assessment]:
    """Every nuisance-prone detector. One grouped query finds the candidates (a reading above
    SHARE of the smallest possible set value would be needed anyway: MAX > SHARE x 20 mA, and
    MAX > SHARE x set), then the rule runs on each candidate's readings."""
    since = now - window_s
    rows = db.execute(
        "SELECT device, MAX(residual_ma), COUNT(*) FROM telemetry WHERE rx >= ? "
        "AND residual_ma IS NOT NULL GROUP BY device",
        (since,),
    ).fetchall()
    out = []
    for dev, mx, n in rows:
        if n < MIN_READINGS or mx is None or mx <= SHARE * SET_MIN_MA:
            continue
        sv = set_value(db, int(dev))
        if mx <= SHARE * (sv if sv is not None else DEFAULT_SET_MA):
            continue
        a = assess(int(dev), readings(db, int(dev), since), sv)
        if a.prone:
            out.append(a)
    return sorted(out, key=lambda a: a.device)
