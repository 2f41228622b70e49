"""NTC conversion: table accuracy against the float model, rails, 32-bit safety, generator,
and the same answers (with no allocation) under the real MicroPython binary."""

from __future__ import annotations

import ast
import importlib.util
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from efd import ntc, ntc_table
from efd.events import FAULT_OPEN, FAULT_SHORT
from tests import mpy
from tests.bounded import Bounded, bounded_list
from tools import gen_ntc_table as gen

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = gen.Params()
ALL_CODES = range(4096)
BUDGET = 0.5  # degC over the accuracy range


def accuracy_codes(p: gen.Params) -> list[int]:
    """Every ADC code whose float-model temperature lies in the accuracy range (-20..150 degC)."""
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
    # there (<= 200 degC); the cold end is within the table's error of -40 degC.
    hot = tbl.CODE_MAX if p.ntc_high else tbl.CODE_MIN
    assert max(temps) == mod.to_decic(hot) == round(10 * gen.model(hot, p)) <= 2000
    assert min(temps) >= -400 - 10 * gen.generate(p).valid_error
    # Rails, by physics: an open NTC (R -> inf) and a shorted one (R -> 0).
    r_open, r_short = 1e12, 0.0
    for r, fault in ((r_open, FAULT_OPEN), (r_short, FAULT_SHORT)):
        if p.ntc_high:
            code = round(4095 * p.r_fixed / (r + p.r_fixed))
        else:
            code = round(4095 * r / (r + p.r_fixed))
        assert mod.classify(code) == fault
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


def test_exhaustive_accuracy_over_minus20_to_150():
    codes = accuracy_codes(DEFAULT)
    assert len(codes) > 3000  # the range is really covered (codes ~80..3740)
    worst = max_error(ntc.to_decic, DEFAULT)
    assert worst <= BUDGET
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
        ["--ntc-high"],
        ["--beta", "3435", "--ntc-high", "--r-fixed", "4700"],
        # Steinhart-Hart coefficients of a common 10 k / 3950 part
        ["--sh", "1.009249522e-03", "2.378405444e-04", "2.019202697e-07"],
    ],
    ids=["beta3435", "beta3977", "ntc-high", "beta3435-high-4k7", "steinhart-hart"],
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
@given(beta=st.integers(3000, 4500), high=st.booleans())
def test_generated_tables_meet_budget(beta, high):
    p = gen.Params(beta=float(beta), ntc_high=high)
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
