"""Generate firmware/lib/efd/ntc_table.py: ADC code -> temperature (0.1 degC), integers only.

The firmware holds no floats, so the thermistor model (beta or Steinhart-Hart) and the divider
maths are evaluated here, on the host, once. The result is a table of temperatures at ADC codes
spaced STEP apart (a power of two, so the firmware finds the segment with a shift and a mask and
interpolates linearly with one multiply).

Defaults describe the reference wiring: 10 kOhm NTC (beta 3950, R25 = 10 kOhm) on the low side of
a divider, 10 kOhm fixed resistor to the ADC reference on the high side, 12-bit ratiometric ADC
(code = 4095 * V / Vref, so the reference voltage cancels out).

The step is the largest power of two whose worst-case error, measured at *every* integer ADC code
whose model temperature lies in the accuracy range (default -20..150 degC), stays within
--max-error (default 0.5 degC). The error is measured on the exact integer algorithm the firmware
runs (`interp` below mirrors efd.ntc.to_decic; tests check both against the model).

    python -m tools.gen_ntc_table                  # regenerate the committed table
    python -m tools.gen_ntc_table --check          # exit 1 if the committed table is stale
    python -m tools.gen_ntc_table --beta 3435 --out /tmp/t.py
"""

from __future__ import annotations

import argparse
import itertools
import math
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from efd import ntc

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "firmware" / "lib" / "efd" / "ntc_table.py"

ADC_MAX = 4095  # 12-bit: codes 0..4095
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
    ntc_high: bool = False  # NTC between the reference and the ADC pin (fixed R to ground)
    t_min: float = -40.0  # valid range: codes outside it are clamped
    t_max: float = 200.0
    acc_min: float = -20.0  # accuracy range: the error budget applies here
    acc_max: float = 150.0
    max_error: float = 0.5
    step: int | None = None  # None: pick the largest power of two meeting max_error
    rail: int = 16  # codes this close to 0 or 4095 are a rail (open/short), not a temperature


def ntc_resistance(code: float, p: Params) -> float:
    """Thermistor resistance (ohm) for an ADC code, 0 < code < ADC_MAX."""
    if p.ntc_high:  # V/Vref = Rf / (R + Rf)
        return p.r_fixed * (ADC_MAX - code) / code
    return p.r_fixed * code / (ADC_MAX - code)  # V/Vref = R / (R + Rf)


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

    Codes at or beyond the rails have no finite temperature: returns +-inf.
    """
    if code <= 0 or code >= ADC_MAX:
        hot_at_zero = not p.ntc_high  # low side: R -> 0 (hot) pulls the pin to 0
        at_zero = code <= 0
        return math.inf if at_zero == hot_at_zero else -math.inf
    return temp_of_resistance(ntc_resistance(code, p), p)


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
    if not (1 <= p.rail < ADC_MAX // 2):
        raise GenError(f"--rail must be 1..{ADC_MAX // 2 - 1} codes, got {p.rail}")


def model_table(p: Params) -> list[float]:
    """Model temperature at every code 0..ADC_MAX (inf at the rails)."""
    temps = [model(c, p) for c in range(ADC_MAX + 1)]
    inner = temps[1:ADC_MAX]
    if any(math.isnan(t) for t in inner):
        raise GenError("the model gives no temperature for some codes (check --sh)")
    # Monotonic in code, or the table cannot be inverted meaningfully.
    rising = inner[-1] > inner[0]
    pairs = itertools.pairwise(inner)
    if not all((b > a) if rising else (b < a) for a, b in pairs):
        raise GenError("model temperature is not monotonic in ADC code (check --sh / --beta)")
    return temps


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
    if lo < p.rail or hi > ADC_MAX - p.rail:
        raise GenError(
            f"valid range {p.t_min}..{p.t_max} degC spans codes {lo}..{hi}, which reaches the "
            f"rail margin ({p.rail} codes from 0/{ADC_MAX}, where open/short are detected): "
            "choose a --r-fixed closer to the thermistor's resistance, a narrower valid range "
            "or a smaller --rail"
        )
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
    parts.append(f"--r-fixed {fmt(p.r_fixed)}")
    if p.ntc_high:
        parts.append("--ntc-high")
    parts.append(f"--t-min {fmt(p.t_min)} --t-max {fmt(p.t_max)}")
    parts.append(f"--acc-min {fmt(p.acc_min)} --acc-max {fmt(p.acc_max)}")
    parts.append(f"--max-error {fmt(p.max_error)} --rail {p.rail}")
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
    if p.ntc_high:
        wiring = f"NTC on the high side (to Vref), {fmt(p.r_fixed)} ohm fixed to ground"
        lo_fault, hi_fault = FAULT_OPEN, FAULT_SHORT  # open NTC: pin pulled to 0
    else:
        wiring = f"NTC on the low side (to ground), {fmt(p.r_fixed)} ohm fixed to Vref"
        lo_fault, hi_fault = FAULT_SHORT, FAULT_OPEN  # open NTC: pin pulled to Vref
    names = {FAULT_OPEN: "FAULT_OPEN", FAULT_SHORT: "FAULT_SHORT"}
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
# ADC:        12-bit ratiometric, code = 4095 * V / Vref
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
RAIL_LO = const({p.rail})  # code < RAIL_LO: pin at the bottom rail
RAIL_HI = const({ADC_MAX - p.rail})  # code > RAIL_HI: pin at the top rail
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
    ap.add_argument("--r-fixed", type=float, default=10000.0, help="fixed divider resistor, ohm")
    ap.add_argument(
        "--ntc-high",
        action="store_true",
        help="NTC between Vref and the pin, fixed resistor to ground (default: NTC to ground)",
    )
    ap.add_argument("--t-min", type=float, default=-40.0, help="valid range low end, degC")
    ap.add_argument("--t-max", type=float, default=200.0, help="valid range high end, degC")
    ap.add_argument("--acc-min", type=float, default=-20.0, help="accuracy range low end, degC")
    ap.add_argument("--acc-max", type=float, default=150.0, help="accuracy range high end, degC")
    ap.add_argument(
        "--max-error", type=float, default=0.5, help="error budget over the accuracy range, degC"
    )
    ap.add_argument("--step", type=int, help="force a table step (power of two); default: auto")
    ap.add_argument(
        "--rail", type=int, default=16, help="codes from 0/4095 that count as open/short"
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output file ('-' for stdout)")
    ap.add_argument(
        "--check",
        action="store_true",
        help="do not write: exit 1 if --out differs from what these parameters generate",
    )
    a = ap.parse_args(argv)
    p = Params(
        beta=a.beta,
        r0=a.r0,
        t0=a.t0,
        sh=tuple(a.sh) if a.sh else None,
        r_fixed=a.r_fixed,
        ntc_high=a.ntc_high,
        t_min=a.t_min,
        t_max=a.t_max,
        acc_min=a.acc_min,
        acc_max=a.acc_max,
        max_error=a.max_error,
        step=a.step,
        rail=a.rail,
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
