"""NTC conversion: table accuracy against the float model, the divider's voltages and fault
rails (ESP32 ADC floor and saturation), the simulator's model of the same wiring, 32-bit safety,
generator, and the same answers (with no allocation) under the real MicroPython binary."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import itertools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from efd import config, ntc, ntc_table
from efd.events import FAULT_OPEN, FAULT_SHORT
from host_sim import adc, synth
from tests import mpy
from tests.bounded import Bounded, bounded_list
from tools import gen_ntc_table as gen

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = gen.Params()
ALL_CODES = range(4096)
BUDGET = 0.5  # degC over the accuracy range: the conversion's share of the requirement
REQUIREMENT = 1.0  # degC, 0..150 degC, whole reading (conversion + parts + ADC)
# ESP32 ADC at 11 dB, calibrated (read_uv): near-linear ~0.15..2.45 V, so the 0..150 degC span of
# the divider must stay inside 0.2..2.6 V; a shorted lead reads at the floor (<= 150 mV), an
# open one at saturation (3.0..3.3 V, depending on the chip).
LINEAR_V = (0.2, 2.6)
SHORT_READS_MV = (0.0, 150.0)
OPEN_READS_MV = (3000.0, 3300.0)
# Flags that turn the ESP32 defaults into a ratiometric ADC with rails at the ends (the wiring
# variants below, e.g. an NTC on the high side, need no series resistor there).
RATIOMETRIC = [
    "--r-series", "0", "--rail-lo-mv", "13", "--rail-hi-mv", "3287",
    "--adc-floor-mv", "0", "--adc-sat-mv", "3300",
]  # fmt: skip


def code_of_mv(mv: float) -> int:
    return round(4095 * mv / 3300)


def accuracy_codes(p: gen.Params) -> list[int]:
    """Every ADC code whose float-model temperature lies in the accuracy range (0..150 degC)."""
    return [c for c in range(1, 4095) if p.acc_min <= gen.model(c, p) <= p.acc_max]


def max_error(to_decic, p: gen.Params) -> float:
    return max(abs(to_decic(c) / 10 - gen.model(c, p)) for c in accuracy_codes(p))


def check_table(mod, tbl, p: gen.Params) -> None:
    """Accuracy, monotonicity and rail meaning for one (ntc module, table module, params)."""
    assert max_error(mod.to_decic, p) <= BUDGET
    temps = [mod.to_decic(c) for c in ALL_CODES]
    # Monotonic: low-side NTC reads hotter at lower codes, high-side the other way round.
    seq = temps if p.ntc_high else temps[::-1]
    assert all(a <= b for a, b in itertools.pairwise(seq))
    assert seq[0] < seq[-1]
    # The grid is anchored at the hot end, so a too-hot reading clamps to the model's value
    # there (<= t_max); the cold end is within the table's error of t_min.
    hot = tbl.CODE_MAX if p.ntc_high else tbl.CODE_MIN
    assert max(temps) == mod.to_decic(hot) == round(10 * gen.model(hot, p)) <= 10 * p.t_max
    assert min(temps) >= 10 * p.t_min - 10 * gen.generate(p).valid_error
    # Rails, by physics: an open NTC (R -> inf) and a shorted one (R -> 0, the series resistor
    # stays), as the pin sits and as the ADC reads it (clamped to its floor / saturation).
    for r, fault in ((1e12, FAULT_OPEN), (0.0, FAULT_SHORT)):
        if p.ntc_high:
            pin = 3300 * p.r_fixed / (r + p.r_series + p.r_fixed)
        else:
            pin = 3300 * (r + p.r_series) / (r + p.r_series + p.r_fixed)
        assert mod.classify(code_of_mv(pin)) == fault
        assert mod.classify(code_of_mv(min(max(pin, p.adc_floor_mv), p.adc_sat_mv))) == fault
    # Every code in the valid range is plausible; every rail code is a fault.
    assert all(mod.classify(c) == 0 for c in range(tbl.CODE_MIN, tbl.CODE_MAX + 1))
    assert all(mod.classify(c) == tbl.FAULT_LO for c in range(tbl.RAIL_LO))
    assert all(mod.classify(c) == tbl.FAULT_HI for c in range(tbl.RAIL_HI + 1, 4096))


def load_ntc(table_path: Path, monkeypatch, name: str):
    """A fresh efd.ntc bound to the table at `table_path` (the committed one is untouched)."""
    spec = importlib.util.spec_from_file_location(f"{name}_table", table_path)
    tbl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tbl)
    monkeypatch.setitem(sys.modules, "efd.ntc_table", tbl)
    spec = importlib.util.spec_from_file_location(name, ntc.__file__)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, tbl


# --- the committed table -------------------------------------------------------------------


def test_exhaustive_accuracy_over_0_to_150():
    assert (DEFAULT.acc_min, DEFAULT.acc_max) == (0.0, 150.0)
    codes = accuracy_codes(DEFAULT)
    assert len(codes) > 2900  # the range is really covered (codes 257..3166)
    worst = max_error(ntc.to_decic, DEFAULT)
    assert worst <= BUDGET <= REQUIREMENT
    # The generator's reported figure is the firmware's, not a different algorithm's.
    assert worst == pytest.approx(gen.generate(DEFAULT).acc_error)


def test_committed_table_monotonic_and_rails():
    check_table(ntc, ntc_table, DEFAULT)
    # Reference wiring (NTC low side): bottom rail = short, top rail = open.
    assert ntc.classify(0) == FAULT_SHORT
    assert ntc.classify(4095) == FAULT_OPEN


def test_off_table_codes_are_clamped_not_faults():
    t = ntc_table
    hot, cold = ntc.to_decic(t.CODE_MIN), ntc.to_decic(t.CODE_MAX)
    for c in range(t.RAIL_LO, t.CODE_MIN):
        assert ntc.classify(c) == 0 and ntc.to_decic(c) == hot
    for c in range(t.CODE_MAX + 1, t.RAIL_HI + 1):
        assert ntc.classify(c) == 0 and ntc.to_decic(c) == cold


# --- the divider, the ESP32 ADC's ends and the fault rails ----------------------------------


def pin_v(t: float, p: gen.Params = DEFAULT, **parts) -> float:
    """Pin voltage at t degC, optionally with divider parts off nominal (r_series=..., ...)."""
    return gen.pin_mv(gen.ntc_of_temp(t, p), dataclasses.replace(p, **parts)) / 1000


def test_reference_divider_values():
    """The documented wiring (docs/ntc.md, docs/hardware.md): 10 k / 3950 NTC + 470 ohm to
    ground, 10 k to 3.3 V; the host simulator models the same parts."""
    assert (DEFAULT.r0, DEFAULT.beta, DEFAULT.ntc_high) == (10000.0, 3950.0, False)
    assert (DEFAULT.r_fixed, DEFAULT.r_series) == (10000.0, 470.0)
    assert (adc.NTC_R_FIXED, adc.NTC_R_SERIES, adc.NTC_SUPPLY_V) == (10000.0, 470.0, 3.3)
    assert "--r-series 470" in (ROOT / "firmware/lib/efd/ntc_table.py").read_text()


@pytest.mark.parametrize("t", [0.0, 150.0])
def test_0_and_150_degc_sit_in_the_adc_linear_range(t):
    lo, hi = LINEAR_V
    assert lo <= pin_v(t) <= hi
    assert lo <= float(adc.ntc_volts(t)) <= hi
    # With 1 % resistors off nominal either way: 0 degC stays below 2.6 V, 150 degC within a
    # few mV of 0.2 V (>= 0.203 V).
    for kr, kf in itertools.product((0.99, 1.01), (0.99, 1.01)):
        assert lo - 0.005 <= pin_v(t, r_series=470 * kr, r_fixed=10000 * kf) <= hi


def test_documented_pin_voltages():
    """docs/ntc.md quotes these."""
    want = {0: 2.5515, 25: 1.6879, 70: 0.6017, 150: 0.2071}
    for t, v in want.items():
        assert pin_v(t) == pytest.approx(v, abs=5e-4)
    assert gen.pin_mv(0.0, DEFAULT) == pytest.approx(148.1, abs=0.1)  # shorted NTC
    assert gen.pin_mv(math.inf, DEFAULT) == 3300.0  # open NTC
    # Resolution at 150 degC: ~1.28 mV per degC, one code (0.806 mV) ~0.63 degC.
    assert gen.slope_mv(150.0, DEFAULT) == pytest.approx(1.28, abs=0.01)


def test_host_sim_models_the_same_wiring():
    temps = np.linspace(-10, 180, 381)
    v = adc.ntc_volts(temps)
    code = adc.ntc_code(temps)
    assert np.allclose(code, 4095 * v / 3.3)  # the board twin relies on this relation
    assert np.allclose(v * 1000, [gen.pin_mv(gen.ntc_of_temp(t, DEFAULT), DEFAULT) for t in temps])
    # The generator's model inverts the simulator's code to the temperature it came from.
    back = [gen.model(c, DEFAULT) for c in code]
    assert np.allclose(back, temps, atol=1e-6)


def test_rail_thresholds():
    t = ntc_table
    assert t.RAIL_LO == code_of_mv(DEFAULT.rail_lo_mv) == 217  # 175 mV
    assert t.RAIL_HI == code_of_mv(DEFAULT.rail_hi_mv) == 3599  # 2900 mV
    # Just outside / just inside each rail.
    assert ntc.classify(t.RAIL_LO - 1) == FAULT_SHORT
    assert ntc.classify(t.RAIL_LO) == 0
    assert ntc.classify(t.RAIL_HI) == 0
    assert ntc.classify(t.RAIL_HI + 1) == FAULT_OPEN
    # The valid (table) range lies inside the rails, and past 0..150 degC on both sides.
    assert t.RAIL_LO <= t.CODE_MIN < adc.ntc_code(150.0)
    assert adc.ntc_code(0.0) < t.CODE_MAX <= t.RAIL_HI


def test_lead_faults_as_the_esp32_reads_them():
    # The simulator's broken leads: a short leaves ~148 mV across the series resistor.
    assert synth.ntc_rail("short") == adc.ntc_lead_code("short") == 184
    assert synth.ntc_rail("open") == adc.ntc_lead_code("open") == 4095
    assert ntc.classify(synth.ntc_rail("short")) == FAULT_SHORT
    assert ntc.classify(synth.ntc_rail("open")) == FAULT_OPEN
    # Anything a shorted lead may read (the pin at or under the floor) is a short; anything a
    # saturated ADC may report for an open lead is an open.
    lo = range(code_of_mv(SHORT_READS_MV[0]), code_of_mv(SHORT_READS_MV[1]) + 1)
    hi = range(code_of_mv(OPEN_READS_MV[0]), code_of_mv(OPEN_READS_MV[1]) + 1)
    assert all(ntc.classify(c) == FAULT_SHORT for c in lo)
    assert all(ntc.classify(c) == FAULT_OPEN for c in hi)


def test_margins_between_faults_and_0_to_150_degc():
    """Each rail sits with margin between a broken lead and the nearest real temperature, also
    with 1 % resistors and a 3.3 V rail 2 % off: a short (<= 154 mV) 20 mV below the bottom rail,
    150 degC (>= 200 mV) 20 mV above it; 0 degC (<= 2.61 V) 250 mV below the top rail, an open
    lead (>= 3.0 V) 100 mV above it."""
    rail_lo, rail_hi = DEFAULT.rail_lo_mv / 1000, DEFAULT.rail_hi_mv / 1000
    worst_short = worst_0 = 0.0
    worst_150 = 9.9
    for kr, kf, ks in itertools.product((0.99, 1.01), (0.99, 1.01), (0.98, 1.02)):
        parts = {"r_series": 470 * kr, "r_fixed": 10000 * kf}
        q = dataclasses.replace(DEFAULT, **parts)
        worst_short = max(worst_short, gen.pin_mv(0.0, q, 3300 * ks) / 1000)
        worst_150 = min(worst_150, gen.pin_mv(gen.ntc_of_temp(150.0, q), q, 3300 * ks) / 1000)
        worst_0 = max(worst_0, gen.pin_mv(gen.ntc_of_temp(0.0, q), q, 3300 * ks) / 1000)
    assert max(worst_short, SHORT_READS_MV[1] / 1000) <= rail_lo - 0.020
    assert worst_150 >= rail_lo + 0.020
    assert pin_v(150.0) >= rail_lo + 0.030  # nominal parts
    assert worst_0 <= rail_hi - 0.250
    assert OPEN_READS_MV[0] / 1000 >= rail_hi + 0.1


def test_hotter_than_150_reads_hot_not_faulty():
    """150..180 degC (a joint past the highest set value) is plausible and reads at least
    150 degC, so every set value (45..150) alarms; only beyond ~190 degC does the pin reach the
    short rail (and the alarm has latched on the way)."""
    assert config.limits("temp_set_c") == (45, 150)
    for t in np.arange(150.0, 189.0, 0.5):
        c = round(float(adc.ntc_code(t)))
        assert ntc.classify(c) == 0
        assert ntc.to_decic(c) >= 1495
    assert ntc.classify(round(float(adc.ntc_code(195.0)))) == FAULT_SHORT


def test_set_value_range_is_inside_the_accuracy_range():
    lo, hi = config.limits("temp_set_c")
    assert DEFAULT.acc_min <= lo and hi <= DEFAULT.acc_max


def test_requirement_with_precision_resistors():
    """+-1 degC over 0..150 degC: the table's error plus 0.1 % series and fixed resistors stays
    inside it (1 % parts would not at the hot end: see docs/ntc.md)."""
    table_err = gen.generate(DEFAULT).acc_error
    for t in range(0, 151, 5):
        parts = gen.tolerance_error(float(t), DEFAULT, (0.001, 0.001))
        assert table_err + parts <= REQUIREMENT, t
    assert gen.tolerance_error(150.0, DEFAULT, (0.01, 0.01)) > REQUIREMENT
    assert gen.tolerance_error(100.0, DEFAULT, (0.01, 0.01)) + table_err <= REQUIREMENT + 0.25


def test_table_layout():
    t = ntc_table
    assert t.STEP == 1 << t.SHIFT and t.BASE == t.CODE_MIN  # low side: hot end first
    assert t.BASE + (len(t.TABLE) - 1) * t.STEP >= t.CODE_MAX
    assert t.TABLE.typecode == "h"
    # The largest step that meets the budget: the next one up must not.
    with pytest.raises(gen.GenError):
        gen.generate(gen.Params(step=2 * t.STEP))


@given(st.integers(-(10**9), 10**9))
def test_any_int_is_safe(code):
    t = ntc.to_decic(code)
    assert ntc.to_decic(ntc_table.CODE_MAX) <= t <= ntc.to_decic(ntc_table.CODE_MIN)
    k = ntc.classify(code)
    assert k in (0, FAULT_OPEN, FAULT_SHORT)
    assert (k == 0) == (ntc_table.RAIL_LO <= code <= ntc_table.RAIL_HI)


@pytest.mark.parametrize("path", ["firmware/lib/efd/ntc.py", "firmware/lib/efd/ntc_table.py"])
def test_firmware_holds_no_floats(path):
    tree = ast.parse((ROOT / path).read_text())
    floats = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)]
    assert not [v for v in floats if isinstance(v, float)]
    assert not any(isinstance(n, ast.Div) for n in ast.walk(tree))  # `/` makes a float


# --- 32-bit safety -------------------------------------------------------------------------


def test_intermediates_stay_small_ints(monkeypatch):
    """Every operand is Bounded, so every arithmetic result is checked against +-2^30."""
    expected = [ntc.to_decic(c) for c in ALL_CODES]
    monkeypatch.setattr(ntc, "TABLE", bounded_list(ntc.TABLE))
    for name in ("BASE", "SHIFT", "CODE_MIN", "CODE_MAX", "RAIL_LO", "RAIL_HI"):
        monkeypatch.setattr(ntc, name, Bounded(getattr(ntc, name)))
    got = [ntc.to_decic(Bounded(c)) for c in ALL_CODES]
    assert got == expected
    for c in ALL_CODES:
        ntc.classify(Bounded(c))


# --- the generator -------------------------------------------------------------------------


def run_gen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.gen_ntc_table", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_generator_check_passes_for_committed_table():
    r = run_gen("--check")
    assert r.returncode == 0, r.stdout + r.stderr


def test_generator_check_detects_stale_table(tmp_path):
    stale = tmp_path / "t.py"
    stale.write_text((ROOT / "firmware/lib/efd/ntc_table.py").read_text() + "\n")
    assert gen.main(["--check", "--out", str(stale)]) == 1
    assert gen.main(["--check", "--out", str(tmp_path / "missing.py")]) == 2


@pytest.mark.parametrize(
    "args",
    [
        ["--beta", "3435"],
        ["--beta", "3977"],
        ["--ntc-high", *RATIOMETRIC],
        ["--beta", "3435", "--ntc-high", "--r-fixed", "4700", *RATIOMETRIC],
        ["--r-series", "0", *RATIOMETRIC[2:], "--t-min", "-40", "--t-max", "200"],  # old wiring
        ["--r-fixed", "11000", "--r-series", "560"],
        # Steinhart-Hart coefficients of a common 10 k / 3950 part
        ["--sh", "1.009249522e-03", "2.378405444e-04", "2.019202697e-07"],
    ],
    ids=[
        "beta3435",
        "beta3977",
        "ntc-high",
        "beta3435-high-4k7",
        "no-series-ratiometric",
        "11k-560",
        "steinhart-hart",
    ],
)
def test_other_thermistors_meet_budget(args, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ntc_table.py"
    assert gen.main([*args, "--out", str(out)]) == 0
    assert "max error" in capsys.readouterr().out
    assert out.read_text() != (ROOT / "firmware/lib/efd/ntc_table.py").read_text()
    p, _ = gen.parse_args(args)
    mod, tbl = load_ntc(out, monkeypatch, "ntc_alt")
    assert list(tbl.TABLE) != list(ntc_table.TABLE)
    check_table(mod, tbl, p)
    # The header's command reproduces the file exactly.
    cmd = out.read_text().splitlines()[1].split("gen_ntc_table", 1)[1].split()
    assert gen.main([*cmd, "--check", "--out", str(out)]) == 0


@settings(max_examples=8)
@given(beta=st.integers(3000, 4100), high=st.booleans())
def test_generated_tables_meet_budget(beta, high):
    """Low side: the ESP32 defaults hold for beta 3000..4100 (a steeper NTC puts -10 degC past
    the open rail). High side: a ratiometric ADC with rails at the ends."""
    p = gen.Params(beta=float(beta))
    if high:
        p, _ = gen.parse_args(["--beta", str(beta), "--ntc-high", *RATIOMETRIC])
    t = gen.generate(p)
    assert t.acc_error <= BUDGET
    # Independent re-measurement, with the same algorithm the firmware runs.
    assert max_error(t.to_decic, p) <= BUDGET


@pytest.mark.parametrize(
    "args, message",
    [
        (["--beta", "-5"], "--beta must be positive"),
        (["--r-fixed", "0"], "--r-fixed must be a positive"),
        (["--t-min", "100", "--t-max", "50"], "must be below"),
        (["--acc-max", "250"], "inside the valid range"),
        (["--step", "12"], "power of two"),
        (["--step", "64"], "above --max-error"),
        (["--max-error", "0.01"], "even step 1"),
        (["--r-fixed", "100"], "rail"),
        (["--r-series", "-1"], "--r-series must be a non-negative"),
        (["--r-series", "2000"], "a shorted NTC reads 550 mV, not below --rail-lo-mv 175"),
        (["--adc-floor-mv", "180"], "a shorted NTC reads 180 mV"),
        (["--adc-sat-mv", "2850"], "an open NTC reads 2850 mV, not above --rail-hi-mv 2900"),
        (["--rail-lo-mv", "3000"], "--rail-hi-mv"),
        (["--adc-floor-mv", "3100"], "--adc-sat-mv"),
        (["--beta", "4500"], "reaches a fault rail"),
        (["--beta", "abc"], "invalid float value"),
        (["--beta", "3435", "--sh", "1", "2", "3"], "not allowed with"),
    ],
)
def test_generator_bad_input_is_a_message_not_a_traceback(args, message, tmp_path):
    r = run_gen(*args, "--out", str(tmp_path / "t.py"))
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "t.py").exists()


def test_generator_help():
    r = run_gen("--help")
    assert r.returncode == 0 and "--ntc-high" in r.stdout and "--check" in r.stdout
    assert "--r-series" in r.stdout and "(default 470)" in r.stdout


def test_generator_report(capsys):
    """--report prints the design figures docs/ntc.md quotes, and writes nothing."""
    before = (ROOT / "firmware/lib/efd/ntc_table.py").read_text()
    assert gen.main(["--report"]) == 0
    out = capsys.readouterr().out
    assert "short lead: pin  148.1 mV" in out and "(code 217)" in out and "(code 3599)" in out
    assert "   150    207.1    257     1.28       0.63" in out
    assert "max error 0.368 degC over 0..150 degC" in out
    assert (ROOT / "firmware/lib/efd/ntc_table.py").read_text() == before


# --- MicroPython ---------------------------------------------------------------------------

CODES_SCRIPT = """
from efd import ntc
c = -64
while c < 4160:
    print(c, ntc.to_decic(c), ntc.classify(c))
    c += 1
"""


@pytest.mark.micropython
def test_micropython_matches_cpython_for_every_code():
    got = mpy.run(CODES_SCRIPT).split("\n")
    want = [f"{c} {ntc.to_decic(c)} {ntc.classify(c)}" for c in range(-64, 4160)]
    assert got[:-1] == want and got[-1] == ""


HEAP_SCRIPT = """
import micropython
from efd import ntc
ntc.to_decic(2000); ntc.classify(2000)
acc = 0
micropython.heap_lock()
try:
    c = -16
    while c < 4112:
        acc += ntc.to_decic(c) + ntc.classify(c)
        c += 1
finally:
    micropython.heap_unlock()
print(acc)
"""


@pytest.mark.micropython
def test_micropython_no_allocation():
    out = mpy.run(HEAP_SCRIPT, heapsize="16k")
    want = sum(ntc.to_decic(c) + ntc.classify(c) for c in range(-16, 4112))
    assert int(out) == want


@pytest.mark.micropython
def test_micropython_heap_lock_catches_allocation():
    """Negative control: the harness above would notice an allocation."""
    script = HEAP_SCRIPT.replace("acc += ntc.to_decic(c)", "acc += len([c]) + ntc.to_decic(c)")
    with pytest.raises(AssertionError, match="MemoryError"):
        mpy.run(script, heapsize="16k")
