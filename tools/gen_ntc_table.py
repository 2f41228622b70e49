"""Generate firmware/lib/efd/ntc_table.py: ADC code -> temperature (0.1 degC), integers only.

The firmware holds no floats, so the thermistor model (beta or Steinhart-Hart) and the divider
maths are evaluated here, on the host, once. The result is a table of temperatures at ADC codes
spaced STEP apart (a power of two, so the firmware finds the segment with a shift and a mask and
interpolates linearly with one multiply).

Defaults describe the reference wiring (docs/ntc.md): 10 kOhm NTC (beta 3950, R25 = 10 kOhm) in
series with 470 Ohm on the low side of a divider, 10 kOhm fixed resistor to 3.3 V on the high side.
Codes are on the 12-bit scale code = 4095 * V / 3.3 V: the ESP32 firmware converts the calibrated
ADC.read_uv() to that scale (an external ratiometric ADC gives it directly). The series resistor
lifts the hot end (150 degC = 0.21 V) off the ESP32 ADC's floor (~0.14-0.15 V at 11 dB), so a
shorted NTC (0.148 V) sits at the floor and stays apart from every real temperature.

Fault rails are voltages: a reading below --rail-lo-mv or above --rail-hi-mv is a broken lead. The
generator checks that an open and a shorted NTC land beyond them as the ADC would read them
(clamped to its floor --adc-floor-mv and saturation --adc-sat-mv), and that the valid range stays
between them.

The step is the largest power of two whose worst-case error, measured at *every* integer ADC code
whose model temperature lies in the accuracy range (default 0..150 degC), stays within
--max-error (default 0.5 degC). The error is measured on the exact integer algorithm the firmware
runs (efd.ntc.interpolate itself; tests check both against the model).

    python -m tools.gen_ntc_table                  # regenerate the committed table
    python -m tools.gen_ntc_table --check          # exit 1 if the committed table is stale
    python -m tools.gen_ntc_table --beta 3435 --out /tmp/t.py
    python -m tools.gen_ntc_table --report         # divider voltages, margins, tolerances
"""

from __future__ import annotations

import argparse
import itertools
import math
import struct
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from efd import ntc

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "firmware" / "lib" / "efd" / "ntc_table.py"

ADC_MAX = 4095  # 12-bit: codes 0..4095
FULL_SCALE_MV = 3300.0  # code = ADC_MAX * V / 3.3 V; the divider is fed from the same 3.3 V
KELVIN = 273.15
INT16_MAX = 32767
SMALL_INT = 1 << 30  # MicroPython small-int bound on ESP32: |x| < 2**30 never allocates
FAULT_OPEN = 1  # efd.events.FAULT_OPEN (the generated file must not import events: keep it flat)
FAULT_SHORT = 2  # efd.events.FAULT_SHORT
STEPS = (256, 128, 64, 32, 16, 8, 4, 2, 1)  # candidates, largest first


class GenError(Exception):
    """A user mistake (bad parameter, impossible range): reported without a traceback."""


@dataclass(frozen=True)
class Params:
    beta: float = 3950.0
    r0: float = 10000.0
    t0: float = 25.0
    sh: tuple[float, float, float] | None = None  # Steinhart-Hart A, B, C (replaces beta model)
    r_fixed: float = 10000.0
    r_series: float = 470.0  # in series with the NTC, on its side of the divider
    ntc_high: bool = False  # NTC between 3.3 V and the ADC pin (fixed R to ground)
    t_min: float = -10.0  # valid range: codes outside it are clamped
    t_max: float = 180.0
    acc_min: float = 0.0  # accuracy range: the error budget applies here
    acc_max: float = 150.0
    max_error: float = 0.5
    step: int | None = None  # None: pick the largest power of two meeting max_error
    # Fault rails (mV on the 3.3 V scale): a reading below rail_lo_mv or above rail_hi_mv is a
    # broken lead, not a temperature.
    rail_lo_mv: float = 175.0
    rail_hi_mv: float = 2900.0
    # What the (calibrated) ADC reads at its ends, worst case for fault detection: a pin at or
    # below the floor may read up to adc_floor_mv, a pin at or above saturation as little as
    # adc_sat_mv. ESP32, 11 dB: raw 0 is ~142 mV (Espressif's calibrated range starts at
    # 150 mV); a saturated read is 3.0..3.3 V depending on the chip's reference.
    adc_floor_mv: float = 150.0
    adc_sat_mv: float = 3000.0


def mv_to_code(mv: float) -> float:
    return ADC_MAX * mv / FULL_SCALE_MV


def code_to_mv(code: float) -> float:
    return FULL_SCALE_MV * code / ADC_MAX


def rail_lo(p: Params) -> int:
    """code < rail_lo: the bottom rail (a fault)."""
    return round(mv_to_code(p.rail_lo_mv))


def rail_hi(p: Params) -> int:
    """code > rail_hi: the top rail (a fault)."""
    return round(mv_to_code(p.rail_hi_mv))


def pin_mv(r_ntc: float, p: Params, supply_mv: float = FULL_SCALE_MV) -> float:
    """Divider output for a thermistor resistance (math.inf: open lead, 0: shorted lead)."""
    leg = r_ntc + p.r_series  # the NTC's side of the divider
    if math.isinf(leg):
        return 0.0 if p.ntc_high else supply_mv
    if p.ntc_high:
        return supply_mv * p.r_fixed / (leg + p.r_fixed)
    return supply_mv * leg / (leg + p.r_fixed)


def read_mv(mv: float, p: Params) -> float:
    """What the (calibrated) ADC reports for a pin voltage: clamped to its floor and saturation."""
    return min(max(mv, p.adc_floor_mv), p.adc_sat_mv)


def ntc_of_temp(t: float, p: Params) -> float:
    """Model thermistor resistance (ohm) at t degC (the inverse of temp_of_resistance)."""
    tk = t + KELVIN
    if p.sh is None:
        return p.r0 * math.exp(p.beta * (1.0 / tk - 1.0 / (p.t0 + KELVIN)))
    lo, hi = math.log(1e-3), math.log(1e12)  # SH is monotonic (model_table checks): bisect ln R
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if temp_of_resistance(math.exp(mid), p) > t:  # too hot: more resistance
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def ntc_resistance(code: float, p: Params) -> float:
    """Thermistor resistance (ohm) for an ADC code, 0 < code < ADC_MAX (<= 0: beyond a short)."""
    if p.ntc_high:  # V/Vref = Rf / (R + Rs + Rf)
        return p.r_fixed * (ADC_MAX - code) / code - p.r_series
    return p.r_fixed * code / (ADC_MAX - code) - p.r_series  # V/Vref = (R + Rs) / (R + Rs + Rf)


def temp_of_resistance(r: float, p: Params) -> float:
    """Model temperature in degC for a thermistor resistance."""
    ln_r = math.log(r)
    if p.sh is not None:
        a, b, c = p.sh
        inv_t = a + b * ln_r + c * ln_r**3
    else:
        inv_t = 1.0 / (p.t0 + KELVIN) + (ln_r - math.log(p.r0)) / p.beta
    if inv_t <= 0.0:
        return math.inf  # only at absurd resistances; callers treat it as out of range
    return 1.0 / inv_t - KELVIN


def model(code: float, p: Params = Params()) -> float:
    """Float model: ADC code -> temperature in degC (the reference the table is measured against).

    Codes no resistance explains have no finite temperature: +inf on the hot side (at or beyond
    a shorted NTC: with a series resistor that is a band of codes, not just a rail), -inf at
    the cold rail (an open NTC).
    """
    hot_at_zero = not p.ntc_high  # low side: R -> 0 (hot) pulls the pin down
    if code <= 0 or code >= ADC_MAX:
        at_zero = code <= 0
        return math.inf if at_zero == hot_at_zero else -math.inf
    r = ntc_resistance(code, p)
    if r <= 0.0:
        return math.inf
    return temp_of_resistance(r, p)


@dataclass
class Table:
    params: Params
    step: int
    base: int  # code of TABLE[0]
    values: list[int]  # 0.1 degC
    code_min: int  # valid range (inclusive), i.e. t_min..t_max
    code_max: int
    acc_error: float  # max |table - model| over the accuracy range, degC
    valid_error: float  # same over the whole valid range (informational)

    @property
    def shift(self) -> int:
        return self.step.bit_length() - 1

    def to_decic(self, code: int) -> int:
        return ntc.interpolate(
            self.values, self.base, self.shift, self.code_min, self.code_max, code
        )


def validate(p: Params) -> None:
    for name in ("r0", "r_fixed"):
        v = getattr(p, name)
        if not (math.isfinite(v) and v > 0):
            raise GenError(f"--{name.replace('_', '-')} must be a positive number of ohms, got {v}")
    if not (math.isfinite(p.r_series) and p.r_series >= 0):
        raise GenError(f"--r-series must be a non-negative number of ohms, got {p.r_series}")
    if p.sh is None and not (math.isfinite(p.beta) and p.beta > 0):
        raise GenError(f"--beta must be positive, got {p.beta}")
    if p.sh is not None and not all(math.isfinite(x) for x in p.sh):
        raise GenError("--sh coefficients must be finite numbers")
    if not math.isfinite(p.t0) or p.t0 <= -KELVIN:
        raise GenError(f"--t0 must be above absolute zero, got {p.t0}")
    if not (p.t_min < p.t_max):
        raise GenError(f"--t-min ({p.t_min}) must be below --t-max ({p.t_max})")
    if not (p.acc_min < p.acc_max):
        raise GenError(f"--acc-min ({p.acc_min}) must be below --acc-max ({p.acc_max})")
    if p.acc_min < p.t_min or p.acc_max > p.t_max:
        raise GenError(
            f"accuracy range {p.acc_min}..{p.acc_max} degC must lie inside the valid range "
            f"{p.t_min}..{p.t_max} degC"
        )
    if p.t_min <= -KELVIN or p.t_max * 10 > INT16_MAX or p.t_min * 10 < -INT16_MAX:
        raise GenError("valid range must fit int16 in 0.1 degC (-3276.7..3276.7) and be above 0 K")
    if not (p.max_error > 0):
        raise GenError(f"--max-error must be positive, got {p.max_error}")
    if p.step is not None and p.step not in STEPS:
        raise GenError(f"--step must be a power of two from 1 to 256, got {p.step}")
    mvs = (p.adc_floor_mv, p.rail_lo_mv, p.rail_hi_mv, p.adc_sat_mv)
    if not all(math.isfinite(v) for v in mvs):
        raise GenError("--rail-lo-mv, --rail-hi-mv, --adc-floor-mv, --adc-sat-mv must be numbers")
    if not (0 <= p.adc_floor_mv < p.adc_sat_mv <= FULL_SCALE_MV):
        raise GenError(
            f"need 0 <= --adc-floor-mv ({fmt(p.adc_floor_mv)}) < --adc-sat-mv "
            f"({fmt(p.adc_sat_mv)}) <= {fmt(FULL_SCALE_MV)}"
        )
    if not (1 <= rail_lo(p) < rail_hi(p) < ADC_MAX):
        raise GenError(
            f"need 0 < --rail-lo-mv ({fmt(p.rail_lo_mv)}) < --rail-hi-mv ({fmt(p.rail_hi_mv)}) "
            f"< {fmt(FULL_SCALE_MV)}, at least a code apart"
        )


def model_table(p: Params) -> list[float]:
    """Model temperature at every code 0..ADC_MAX (+inf at and beyond a short, -inf open)."""
    temps = [model(c, p) for c in range(ADC_MAX + 1)]
    inner = [t for t in temps[1:ADC_MAX] if math.isfinite(t)]
    if any(math.isnan(t) for t in temps) or len(inner) < 2:
        raise GenError("the model gives no temperature for some codes (check --sh)")
    # Monotonic in code, or the table cannot be inverted meaningfully.
    rising = inner[-1] > inner[0]
    pairs = itertools.pairwise(inner)
    if not all((b > a) if rising else (b < a) for a, b in pairs):
        raise GenError("model temperature is not monotonic in ADC code (check --sh / --beta)")
    return temps


def lead_faults(p: Params) -> tuple[int, int]:
    """(bottom-rail fault, top-rail fault) for the wiring."""
    if p.ntc_high:
        return FAULT_OPEN, FAULT_SHORT  # open NTC: the fixed resistor pulls the pin to 0
    return FAULT_SHORT, FAULT_OPEN  # open NTC: the fixed resistor pulls the pin to 3.3 V


def lead_readings(p: Params) -> dict[int, float]:
    """{FAULT_OPEN: mV, FAULT_SHORT: mV}: what the ADC reads for a broken lead."""
    return {
        FAULT_OPEN: read_mv(pin_mv(math.inf, p), p),
        FAULT_SHORT: read_mv(pin_mv(0.0, p), p),
    }


def check_leads(p: Params) -> None:
    """An open and a shorted NTC must read beyond their rails, or they would pass as
    temperatures (a short read as a hot joint, an open as a cold one)."""
    lo_fault, hi_fault = lead_faults(p)
    reads = lead_readings(p)
    names = {FAULT_OPEN: "an open", FAULT_SHORT: "a shorted"}
    lo_mv, hi_mv = reads[lo_fault], reads[hi_fault]
    if not round(mv_to_code(lo_mv)) < rail_lo(p):
        raise GenError(
            f"{names[lo_fault]} NTC reads {lo_mv:.0f} mV, not below --rail-lo-mv "
            f"{fmt(p.rail_lo_mv)}: it would not be detected (check --r-series / --r-fixed)"
        )
    if not round(mv_to_code(hi_mv)) > rail_hi(p):
        raise GenError(
            f"{names[hi_fault]} NTC reads {hi_mv:.0f} mV, not above --rail-hi-mv "
            f"{fmt(p.rail_hi_mv)}: it would not be detected (check --r-series / --r-fixed)"
        )


def valid_codes(temps: list[float], lo_t: float, hi_t: float, what: str) -> tuple[int, int]:
    codes = [c for c in range(1, ADC_MAX) if lo_t <= temps[c] <= hi_t]
    if not codes:
        raise GenError(f"no ADC code has a {what} temperature in {lo_t}..{hi_t} degC")
    return codes[0], codes[-1]


def node_value(temps: list[float], code: int, step: int) -> int:
    """Table entry at `code` in 0.1 degC. An end node may lie past the rails (it only closes the
    cold end's segment): it is extrapolated linearly from its two inner neighbours."""
    if code >= ADC_MAX:
        t = 2 * temps[code - step] - temps[code - 2 * step]
    elif code <= 0:
        t = 2 * temps[code + step] - temps[code + 2 * step]
    else:
        t = temps[code]
    v = round(t * 10)
    return max(-INT16_MAX, min(INT16_MAX, v))


def build(p: Params, step: int, temps: list[float], lo: int, hi: int, acc: tuple[int, int]):
    # The grid is anchored at the hot end of the valid range (BASE need not be a multiple of
    # STEP: the firmware subtracts it before shifting). The curve bends hardest there, and the
    # value a too-hot reading clamps to is then the model's own, not a chord's.
    span = -(-(hi - lo) // step) * step  # (hi - lo) rounded up to whole segments
    if temps[lo] > temps[hi]:  # NTC low side: hot at low codes
        base, top = lo, lo + span
    else:
        base, top = hi - span, hi
    values = [node_value(temps, c, step) for c in range(base, top + 1, step)]
    t = Table(p, step, base, values, lo, hi, 0.0, 0.0)
    # 32-bit safety bound for the firmware: |d * f + STEP/2| < 2**30 for every segment.
    dmax = max((abs(b - a) for a, b in itertools.pairwise(values)), default=0)
    if dmax * step + step > SMALL_INT:
        raise GenError("table slope too steep for 30-bit integer arithmetic")
    t.acc_error = max(abs(t.to_decic(c) / 10 - temps[c]) for c in range(acc[0], acc[1] + 1))
    t.valid_error = max(abs(t.to_decic(c) / 10 - temps[c]) for c in range(lo, hi + 1))
    return t


def generate(p: Params = Params()) -> Table:
    validate(p)
    temps = model_table(p)
    lo, hi = valid_codes(temps, p.t_min, p.t_max, "valid")
    acc = valid_codes(temps, p.acc_min, p.acc_max, "accuracy-range")
    if lo < rail_lo(p) or hi > rail_hi(p):
        raise GenError(
            f"valid range {fmt(p.t_min)}..{fmt(p.t_max)} degC spans codes {lo}..{hi} "
            f"({code_to_mv(lo):.0f}..{code_to_mv(hi):.0f} mV), which reaches a fault rail "
            f"(below {fmt(p.rail_lo_mv)} or above {fmt(p.rail_hi_mv)} mV = codes < {rail_lo(p)} "
            f"or > {rail_hi(p)}): choose other --r-fixed / --r-series, a narrower valid range "
            "or other rails"
        )
    check_leads(p)
    best = None
    for step in [p.step] if p.step else STEPS:
        t = build(p, step, temps, lo, hi, acc)
        if t.acc_error <= p.max_error:
            return t
        best = t
    assert best is not None
    raise GenError(
        f"step {best.step} gives {best.acc_error:.3f} degC over {p.acc_min}..{p.acc_max} degC, "
        f"above --max-error {p.max_error}"
        + ("" if p.step else " (even step 1: raise --max-error or narrow the range)")
    )


def fmt(x: float) -> str:
    """Shortest text that round-trips a parameter (so the header reproduces the table)."""
    return repr(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


def command(p: Params) -> str:
    """The full command that regenerates this table (every parameter spelled out)."""
    parts = ["python -m tools.gen_ntc_table"]
    if p.sh is not None:
        parts.append("--sh " + " ".join(repr(x) for x in p.sh))
    else:
        parts.append(f"--beta {fmt(p.beta)} --r0 {fmt(p.r0)} --t0 {fmt(p.t0)}")
    parts.append(f"--r-fixed {fmt(p.r_fixed)} --r-series {fmt(p.r_series)}")
    if p.ntc_high:
        parts.append("--ntc-high")
    parts.append(f"--t-min {fmt(p.t_min)} --t-max {fmt(p.t_max)}")
    parts.append(f"--acc-min {fmt(p.acc_min)} --acc-max {fmt(p.acc_max)}")
    parts.append(f"--max-error {fmt(p.max_error)}")
    parts.append(f"--rail-lo-mv {fmt(p.rail_lo_mv)} --rail-hi-mv {fmt(p.rail_hi_mv)}")
    parts.append(f"--adc-floor-mv {fmt(p.adc_floor_mv)} --adc-sat-mv {fmt(p.adc_sat_mv)}")
    if p.step is not None:
        parts.append(f"--step {p.step}")
    return " ".join(parts)


def render(t: Table) -> str:
    p = t.params
    if p.sh is not None:
        a, b, c = p.sh
        model_txt = f"Steinhart-Hart A={a!r} B={b!r} C={c!r}"
    else:
        model_txt = f"beta {fmt(p.beta)}, R0 {fmt(p.r0)} ohm at {fmt(p.t0)} degC"
    series = f" + {fmt(p.r_series)} ohm in series" if p.r_series else ""
    if p.ntc_high:
        wiring = f"NTC{series} on the high side (to 3.3 V), {fmt(p.r_fixed)} ohm fixed to ground"
    else:
        wiring = f"NTC{series} on the low side (to ground), {fmt(p.r_fixed)} ohm fixed to 3.3 V"
    lo_fault, hi_fault = lead_faults(p)
    names = {FAULT_OPEN: "FAULT_OPEN", FAULT_SHORT: "FAULT_SHORT"}
    reads = lead_readings(p)
    leads = (
        f"worst-case readings: open {reads[FAULT_OPEN]:.0f} mV "
        f"(code {mv_to_code(reads[FAULT_OPEN]):.0f}), short {reads[FAULT_SHORT]:.0f} mV "
        f"(code {mv_to_code(reads[FAULT_SHORT]):.0f});\n"
        f"#             ADC floor {fmt(p.adc_floor_mv)} mV, saturation {fmt(p.adc_sat_mv)} mV"
    )
    # The table as int16 little-endian bytes (the ESP32 and x86 byte order): a bytes constant
    # costs the device 2 bytes per entry, a tuple of ints 8-16 (it stays referenced by the
    # module's code), and array("h", bytes) copies it without a list on the way.
    raw = struct.pack(f"<{len(t.values)}h", *t.values)
    rows = []
    for k in range(0, len(raw), 16):
        rows.append('        b"' + "".join(f"\\x{b:02x}" for b in raw[k : k + 16]) + '"')
    cmd = command(p)
    return f"""\
# GENERATED FILE - do not edit. Regenerate with:
#   {cmd}
# Check it is current with the same command plus --check.
#
# Thermistor: {model_txt}
# Divider:    {wiring}
# ADC:        12-bit, code = 4095 * V / 3.3 V (ESP32: ADC.read_uv() scaled to it)
# Leads:      {leads}
# Valid range {fmt(p.t_min)}..{fmt(p.t_max)} degC = codes {t.code_min}..{t.code_max} \
(clamped outside).
# Step {t.step} codes, {len(t.values)} entries ({2 * len(t.values)} bytes as int16).
# Max |table - model| at integer codes: {t.acc_error:.3f} degC over \
{fmt(p.acc_min)}..{fmt(p.acc_max)} degC (budget {fmt(p.max_error)}),
#   {t.valid_error:.3f} degC over the whole valid range.
from array import array

from efd.compat import const

STEP = const({t.step})  # codes per table segment (power of two)
SHIFT = const({t.shift})  # log2(STEP)
BASE = const({t.base})  # ADC code of TABLE[0]
CODE_MIN = const({t.code_min})  # valid range, inclusive: to_decic clamps codes to it
CODE_MAX = const({t.code_max})
RAIL_LO = const({rail_lo(p)})  # code < RAIL_LO ({fmt(p.rail_lo_mv)} mV): pin at the bottom rail
RAIL_HI = const({rail_hi(p)})  # code > RAIL_HI ({fmt(p.rail_hi_mv)} mV): pin at the top rail
FAULT_LO = const({lo_fault})  # {names[lo_fault]}: what the bottom rail means for this wiring
FAULT_HI = const({hi_fault})  # {names[hi_fault]}: what the top rail means for this wiring

# Temperature in 0.1 degC at codes BASE, BASE + STEP, ...: int16 little-endian.
TABLE = array(
    "h",
    (
{chr(10).join(rows)}
    ),
)
"""


def estimate(mv: float, p: Params) -> float:
    """Temperature the firmware's model infers from a reading (float, no table)."""
    return temp_of_resistance(ntc_resistance(mv_to_code(mv), p), p)


def tolerance_error(
    t: float, p: Params, r_tol: tuple[float, float] = (0.0, 0.0), supply_tol: float = 0.0
) -> float:
    """Worst |error| (degC) at t when the series and fixed resistors are off by up to
    r_tol = (series, fixed) (fractions) and the divider's supply by supply_tol, while the
    table assumes nominal values. Corners of the box, which hold the extremes (monotonic)."""
    r = ntc_of_temp(t, p)
    worst = 0.0
    for ks, kf, kv in itertools.product((-1, 1), repeat=3):
        q = replace(p, r_series=p.r_series * (1 + ks * r_tol[0]))
        q = replace(q, r_fixed=p.r_fixed * (1 + kf * r_tol[1]))
        mv = pin_mv(r, q, FULL_SCALE_MV * (1 + kv * supply_tol))
        worst = max(worst, abs(estimate(mv, p) - t))
    return worst


def slope_mv(t: float, p: Params) -> float:
    """|d pin / d T| in mV per degC at t."""
    return abs(pin_mv(ntc_of_temp(t + 0.05, p), p) - pin_mv(ntc_of_temp(t - 0.05, p), p)) / 0.1


def report(t: Table) -> str:
    """The divider's design figures (docs/ntc.md quotes them)."""
    p = t.params
    lsb = FULL_SCALE_MV / ADC_MAX
    temps = sorted({p.acc_min, 25.0, 45.0, 70.0, 100.0, 120.0, p.acc_max, p.t_min, p.t_max})
    temps = [x for x in temps if p.t_min <= x <= p.t_max]
    rows = [
        f"wiring: {command(p)}",
        f"code = {ADC_MAX} * V / {fmt(FULL_SCALE_MV)} mV (1 code = {lsb:.3f} mV)",
        "",
        "  degC   pin mV   code  mV/degC  degC/code  table err",
    ]
    for x in temps:
        mv = pin_mv(ntc_of_temp(x, p), p)
        code = mv_to_code(mv)
        s = slope_mv(x, p)
        c = round(code)
        err = abs(t.to_decic(c) / 10 - model(c, p))
        rows.append(f"{x:6g} {mv:8.1f} {code:6.0f} {s:8.2f} {lsb / s:10.2f} {err:10.2f}")
    lo_fault, hi_fault = lead_faults(p)
    names = {FAULT_OPEN: "open", FAULT_SHORT: "short"}
    v_hot = pin_mv(ntc_of_temp(p.acc_max, p), p)
    v_cold = pin_mv(ntc_of_temp(p.acc_min, p), p)
    lo_end, hi_end = sorted((v_hot, v_cold))
    for fault, side in ((lo_fault, "bottom"), (hi_fault, "top")):
        r = 0.0 if fault == FAULT_SHORT else math.inf
        pin = pin_mv(r, p)
        rd = read_mv(pin, p)
        rail = p.rail_lo_mv if side == "bottom" else p.rail_hi_mv
        worst = "<=" if side == "bottom" else ">="
        rows.append(
            f"{names[fault]:5} lead: pin {pin:6.1f} mV, reads {worst} {rd:6.1f} mV (code "
            f"{mv_to_code(rd):4.0f}): {abs(rail - rd):5.1f} mV beyond the {side} rail "
            f"{fmt(rail)} mV (code {rail_lo(p) if side == 'bottom' else rail_hi(p)})"
        )
    rows.append(
        f"accuracy range {fmt(p.acc_min)}..{fmt(p.acc_max)} degC = {lo_end:.1f}..{hi_end:.1f} mV: "
        f"{lo_end - p.rail_lo_mv:.1f} mV above the bottom rail, "
        f"{p.rail_hi_mv - hi_end:.1f} mV below the top rail"
    )
    rows += [
        "",
        "worst-case error (degC) from parts off nominal (the table assumes nominal):",
        "  degC  Rs 1%  Rf 1%  both 1%  both 0.1%  supply 1%  ADC 1 mV",
    ]
    for x in temps:
        if not p.acc_min <= x <= p.acc_max:
            continue
        cols = (
            tolerance_error(x, p, (0.01, 0.0)),
            tolerance_error(x, p, (0.0, 0.01)),
            tolerance_error(x, p, (0.01, 0.01)),
            tolerance_error(x, p, (0.001, 0.001)),
            tolerance_error(x, p, supply_tol=0.01),
            1.0 / slope_mv(x, p),
        )
        rows.append(
            f"{x:6g} "
            + " ".join(f"{c:{w}.2f}" for c, w in zip(cols, (6, 6, 8, 10, 10, 9), strict=True))
        )
    return "\n".join(rows)


def parse_args(argv: list[str] | None) -> tuple[Params, argparse.Namespace]:
    ap = argparse.ArgumentParser(
        prog="python -m tools.gen_ntc_table",
        description="Generate the integer NTC lookup table firmware/lib/efd/ntc_table.py.",
        epilog="Example: python -m tools.gen_ntc_table --beta 3435 --r-fixed 4700",
    )
    m = ap.add_mutually_exclusive_group()
    m.add_argument("--beta", type=float, default=3950.0, help="beta constant, K (default 3950)")
    m.add_argument(
        "--sh",
        type=float,
        nargs=3,
        metavar=("A", "B", "C"),
        help="Steinhart-Hart coefficients (1/T = A + B ln R + C ln^3 R); replaces the beta model",
    )
    ap.add_argument("--r0", type=float, default=10000.0, help="NTC resistance at T0, ohm")
    ap.add_argument("--t0", type=float, default=25.0, help="reference temperature T0, degC")
    d = Params()

    def num(flag: str, default: float, what: str) -> None:
        ap.add_argument(flag, type=float, default=default, help=f"{what} (default {fmt(default)})")

    num("--r-fixed", d.r_fixed, "fixed divider resistor, ohm")
    num("--r-series", d.r_series, "resistor in series with the NTC, ohm (0: none)")
    ap.add_argument(
        "--ntc-high",
        action="store_true",
        help="NTC between 3.3 V and the pin, fixed resistor to ground (default: NTC to ground)",
    )
    num("--t-min", d.t_min, "valid range low end, degC")
    num("--t-max", d.t_max, "valid range high end, degC")
    num("--acc-min", d.acc_min, "accuracy range low end, degC")
    num("--acc-max", d.acc_max, "accuracy range high end, degC")
    num("--max-error", d.max_error, "error budget over the accuracy range, degC")
    ap.add_argument("--step", type=int, help="force a table step (power of two); default: auto")
    num("--rail-lo-mv", d.rail_lo_mv, "readings below this are the bottom fault rail, mV")
    num("--rail-hi-mv", d.rail_hi_mv, "readings above this are the top fault rail, mV")
    num("--adc-floor-mv", d.adc_floor_mv, "the ADC reads a lower pin voltage as this, mV")
    num("--adc-sat-mv", d.adc_sat_mv, "lowest reading of a saturated ADC, mV")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output file ('-' for stdout)")
    ap.add_argument(
        "--check",
        action="store_true",
        help="do not write: exit 1 if --out differs from what these parameters generate",
    )
    ap.add_argument(
        "--report",
        action="store_true",
        help="do not write: print the divider's voltages, fault margins and tolerance errors",
    )
    a = ap.parse_args(argv)
    p = Params(
        beta=a.beta,
        r0=a.r0,
        t0=a.t0,
        sh=tuple(a.sh) if a.sh else None,
        r_fixed=a.r_fixed,
        r_series=a.r_series,
        ntc_high=a.ntc_high,
        t_min=a.t_min,
        t_max=a.t_max,
        acc_min=a.acc_min,
        acc_max=a.acc_max,
        max_error=a.max_error,
        step=a.step,
        rail_lo_mv=a.rail_lo_mv,
        rail_hi_mv=a.rail_hi_mv,
        adc_floor_mv=a.adc_floor_mv,
        adc_sat_mv=a.adc_sat_mv,
    )
    return p, a


def main(argv: list[str] | None = None) -> int:
    p, a = parse_args(argv)
    try:
        t = generate(p)
    except GenError as e:
        print(f"gen_ntc_table: error: {e}", file=sys.stderr)
        return 2
    text = render(t)
    summary = (
        f"step {t.step}, {len(t.values)} entries ({2 * len(t.values)} bytes), "
        f"max error {t.acc_error:.3f} degC over {fmt(p.acc_min)}..{fmt(p.acc_max)} degC "
        f"({t.valid_error:.3f} over {fmt(p.t_min)}..{fmt(p.t_max)}), "
        f"valid codes {t.code_min}..{t.code_max}"
    )
    if a.report:
        print(report(t))
        print(summary)
        return 0
    out = str(a.out)
    if a.check:
        try:
            current = Path(out).read_text()
        except OSError as e:
            print(f"gen_ntc_table: error: cannot read {out}: {e.strerror}", file=sys.stderr)
            return 2
        if current != text:
            print(f"gen_ntc_table: {out} is stale; regenerate with:\n  {command(p)}")
            return 1
        print(f"{out} is current: {summary}")
        return 0
    if out == "-":
        sys.stdout.write(text)
        print(summary, file=sys.stderr)
        return 0
    try:
        Path(out).write_text(text)
    except OSError as e:
        print(f"gen_ntc_table: error: cannot write {out}: {e.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
