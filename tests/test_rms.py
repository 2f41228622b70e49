"""Windowed true RMS: accuracy against a float reference, 32-bit safety, both interpreters."""

from __future__ import annotations

import json
import math
from array import array

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from efd import rms
from host_sim import adc
from tests import mpy
from tests.bounded import Bounded, bounded_list

N = rms.N


def fixed_rms(codes, gain_q12=4096, kernel=rms.accumulate):
    out = array("i", [0, 0, 0])
    kernel(array("H", codes), N, out)
    return rms.to_units(rms.rms8(N, out[0], out[1]), gain_q12), list(out)


def float_rms(codes, units_per_count=1.0):
    x = np.asarray(codes, dtype=float)
    return float(np.sqrt(np.mean((x - x.mean()) ** 2))) * units_per_count


harmonic_orders = st.lists(st.integers(2, 15), max_size=4, unique=True)


@st.composite
def waveforms(draw, lo_ma=20, hi_ma=1000):
    """One window of a realistic residual current: fundamental + harmonics to the 15th with THD
    up to 40 %, noise up to 2 % of the value, a drifting bias, any phase, 50 or 60 Hz."""
    mains = draw(st.sampled_from([50, 60]))
    target = draw(st.floats(lo_ma, hi_ma))
    orders = draw(harmonic_orders)
    amps = [draw(st.floats(0, 1)) for _ in orders]
    total = math.sqrt(sum(a * a for a in amps))
    thd = draw(st.floats(0, 0.4))
    harmonics = {k: (a / total) * thd for k, a in zip(orders, amps, strict=True)} if total else {}
    phases = {k: draw(st.floats(0, 2 * math.pi)) for k in orders}
    t = np.arange(N) / adc.sample_rate(mains)
    y = adc.waveform(t, target, mains, harmonics, phases, draw(st.floats(0, 2 * math.pi)))
    noise = draw(st.floats(0, 0.02)) * target
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = y + rng.normal(0, noise if noise else 0.0, size=N) if noise else y
    bias = draw(st.floats(1800, 2300))
    return adc.to_codes(y, 1.0, bias=bias).tolist()


# -- exact answers first (`make mutate` stops at the first failure) -------------------------------


@pytest.fixture
def finishes_quickly():
    """isqrt() and rms8() are short loops: one that never ends is a watchdog reset on the
    chip. Fail in 2 s instead of hanging the run."""
    import signal

    def stuck(*_):
        raise TimeoutError("did not finish")

    old = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(2)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _small_windows():
    """Every window of n = 1, 2, 4, 8 samples with offsets from MID in -2..2, and a few
    large ones: for these n, n^2 divides 64, so 64 x variance is a whole number."""
    import itertools

    out = []
    for n in (1, 2, 4):
        out += [list(d) for d in itertools.product(range(-2, 3), repeat=n)]
    out += [list(d) for d in itertools.product((-1, 0, 2), repeat=8)]
    out += [[2047] * 8, [-2048] * 8, [-2048, 2047] * 4, [-2048] + [2047] * 7, [5, -3] * 4]
    return out


def test_variance_and_rms_are_exact_where_the_answer_is_whole(finishes_quickly):
    for d in _small_windows():
        n, s1, s2 = len(d), sum(d), sum(x * x for x in d)
        v = 64 * (n * s2 - s1 * s1) // (n * n)  # exact: n * n divides 64 here
        assert rms.variance64(n, s1, s2) == v, d
        # Rounded to nearest, halves up: floor(sqrt(v) + 1/2) = (isqrt(4v) + 1) // 2.
        assert rms.rms8(n, s1, s2) == (math.isqrt(4 * v) + 1) // 2, d


def test_variance_of_a_full_window_is_within_one_of_exact(finishes_quickly):
    rng = np.random.default_rng(64)
    for _ in range(300):
        d = rng.integers(-2048, 2048, N) if rng.random() < 0.5 else rng.integers(-3, 4, N)
        s1, s2 = int(d.sum()), int((d * d).sum())
        exact = 64 * (N * s2 - s1 * s1)  # / N^2
        v = rms.variance64(N, s1, s2)
        assert (v - 1) * N * N <= exact < (v + 1) * N * N, d  # floor(64 var) or one more


def test_isqrt_exhaustive_to_2_16_and_at_powers(finishes_quickly):
    for x in range(1 << 16):
        assert rms.isqrt(x) == math.isqrt(x), x
    for k in range(31):
        for x in ((1 << k) - 1, 1 << k, (1 << k) + 1):
            if x < 1 << 30:
                assert rms.isqrt(x) == math.isqrt(x), x


def test_to_units_rounds_half_up(finishes_quickly):
    # rms8 * gain / 2^15, to nearest: 4096 is 1 unit per count (8 rms8 steps).
    assert [rms.to_units(r8, 4096) for r8 in (0, 3, 4, 11, 12, 16380)] == [0, 0, 1, 1, 2, 2048]
    assert rms.to_units(1, 16384) == 1 and rms.to_units(1, 16383) == 0
    assert rms.to_units(16380, 60000) == (16380 * 60000 + (1 << 14)) >> 15


def test_mean_code_rounds_down():
    assert rms.mean_code(N, 0) == rms.MID
    assert rms.mean_code(N, -1) == rms.MID - 1
    assert rms.mean_code(N, N - 1) == rms.MID
    assert rms.mean_code(N, -N) == rms.MID - 1 and rms.mean_code(N, -N - 1) == rms.MID - 2


def test_a_window_is_five_whole_mains_cycles():
    """Coherent sampling: N samples at the HAL's rate hold whole cycles at 50 and 60 Hz, so a
    sine of any phase averages to its bias and its RMS is amplitude / sqrt(2)."""
    for mains in (50, 60):
        fs = adc.sample_rate(mains)
        assert N * mains % fs == 0 and N * mains // fs == 5
        for phase in (0.0, 0.3, 1.1):
            y = 1000 * np.sin(2 * np.pi * mains * np.arange(N) / fs + phase)
            assert abs(y.mean()) < 1e-6
            assert abs(np.sqrt(np.mean(y * y)) - 1000 / math.sqrt(2)) < 1e-6


def test_gain_range_is_the_kernel_s_safe_range():
    """config accepts exactly the gains the kernel keeps below 2^30 (rms.GAIN_MAX)."""
    from efd import config

    for key in ("res_gain_q12", "phase_gain_q12"):
        config.make({key: rms.GAIN_MAX})
        with pytest.raises(config.ConfigError):
            config.make({key: rms.GAIN_MAX + 1})
    assert 16380 * rms.GAIN_MAX + (1 << 14) < 1 << 30


def test_cpython_stands_in_for_the_micropython_module():
    """Under CPython, efd.compat's shim answers every micropython call the firmware and the
    board twin make, as the device would (decorators keep the function)."""
    from efd import compat

    mp = compat.micropython
    assert not compat.MICROPYTHON
    assert mp.const(7) == compat.const(7) == 7

    def f(x):
        return x + 1

    assert mp.native(f) is f and mp.viper(f) is f
    mp.heap_lock()
    mp.heap_unlock()
    mp.alloc_emergency_exception_buf(100)
    buf = bytearray(4)
    assert compat.ptr8(buf) is buf and compat.ptr16(buf) is buf and compat.ptr32(buf) is buf


@given(waveforms())
def test_rms_within_1pct_plus_1ma_of_float_reference(codes):
    """Issue #2: fixed point within 1 % of reading + 1 mA of float RMS of the same samples."""
    got, _ = fixed_rms(codes)
    ref = float_rms(codes)
    assert abs(got - ref) <= 0.01 * ref + 1.0, (got, ref)


@given(st.lists(st.integers(0, 4095), min_size=N, max_size=N), st.integers(1, rms.GAIN_MAX))
def test_rms_matches_float_for_any_adc_window_and_gain(codes, gain):
    got, _ = fixed_rms(codes, gain)
    ref = float_rms(codes, gain / 4096)
    # rms8 is rounded to 1/8 count; scaling rounds to one unit.
    assert abs(got - ref) <= (gain / 4096) * (1 / 16 + 1 / 64) + 0.5 + 1e-9 * ref + 1e-6, (got, ref)


def test_isqrt_is_floor_sqrt_for_boundaries():
    for x in [0, 1, 2, 3, 4, 15, 16, 17, 2**28 - 1, 2**28, 2**30 - 1]:
        r = rms.isqrt(x)
        assert r * r <= x < (r + 1) * (r + 1), x


@given(st.integers(0, 2**30 - 1))
def test_isqrt_is_floor_sqrt(x):
    r = rms.isqrt(x)
    assert r == math.isqrt(x)


EXTREMES = [
    [0] * N,
    [4095] * N,
    [0, 4095] * (N // 2),  # maximum variance
    [0] * (N // 2) + [4095] * (N // 2),
    [4095] + [0] * (N - 1),  # most lopsided mean
    [0] + [4095] * (N - 1),
    [2048] * N,
]


def per_window_path(codes, gain):
    """Everything the detector does with one CT window, on Bounded ints."""
    buf = bounded_list(codes)
    out = [Bounded(0)] * 3
    rms.accumulate(buf, Bounded(N), out)
    r8 = rms.rms8(Bounded(N), out[0], out[1])
    return rms.to_units(r8, Bounded(gain)), rms.mean_code(Bounded(N), out[0])


@pytest.mark.parametrize("codes", EXTREMES)
@pytest.mark.parametrize("gain", [1, 4096, rms.GAIN_MAX])
def test_every_intermediate_fits_31_bits_at_the_extremes(codes, gain):
    per_window_path(codes, gain)  # raises OverflowError otherwise


@given(st.lists(st.sampled_from([0, 1, 2047, 2048, 4094, 4095]), min_size=N, max_size=N))
@example([0, 4095] * (N // 2))
def test_every_intermediate_fits_31_bits_for_any_window(codes):
    per_window_path(codes, rms.GAIN_MAX)


def test_bounded_int_catches_overflow():
    """The proof tool itself must be able to fail."""
    with pytest.raises(OverflowError):
        Bounded(1 << 29) * 2
    with pytest.raises(OverflowError):
        rms.accumulate(bounded_list([4095] * 300), 300, [Bounded(0)] * 3)


def _vectors(n=60, seed=7):
    rng = np.random.default_rng(seed)
    vecs = [list(v) for v in EXTREMES]
    for i in range(n):
        t = np.arange(N) / 2000.0
        y = adc.waveform(t, float(rng.uniform(0, 1400)), 50, {3: 0.3, 5: 0.1, 15: 0.05}, phase0=i)
        vecs.append(
            adc.to_codes(
                y, 1.0, bias=float(rng.uniform(1900, 2200)), noise_counts=1.0, rng=rng
            ).tolist()
        )
    vecs.append(rng.integers(0, 4096, N).tolist())
    # Clip edges: the viper kernel writes CLIP_LO / CLIP_HI as literals.
    for code in (2, 3, 4, 4091, 4092, 4093):
        vecs.append([code] * 3 + [2048] * (N - 3))
    return vecs


MPY_DRIVER = """
import sys, json
from array import array
from efd import rms
vecs = json.loads(sys.stdin.read())
res = []
for v in vecs:
    buf = array('H', v)
    o1 = array('i', [0, 0, 0])
    o2 = array('i', [0, 0, 0])
    rms.accumulate(buf, len(v), o1)
    rms.accumulate_viper(buf, len(v), o2)
    r8 = rms.rms8(len(v), o1[0], o1[1])
    units = [rms.to_units(r8, 4096), rms.to_units(r8, 60000)]
    res.append([list(o1), list(o2), r8] + units + [rms.mean_code(len(v), o1[0])])
print(json.dumps(res))
"""


@pytest.mark.micropython
def test_micropython_plain_and_viper_kernels_equal_cpython():
    vecs = _vectors()
    got = json.loads(mpy.run(MPY_DRIVER, stdin=json.dumps(vecs)))
    for v, (plain, viper, r8, u1, u2, mean) in zip(vecs, got, strict=True):
        out = array("i", [0, 0, 0])
        rms.accumulate(array("H", v), N, out)
        want_r8 = rms.rms8(N, out[0], out[1])
        assert plain == list(out)
        assert viper == plain, "viper kernel differs from the plain kernel on MicroPython"
        assert r8 == want_r8
        assert u1 == rms.to_units(want_r8, 4096)
        assert u2 == rms.to_units(want_r8, 60000)
        assert mean == rms.mean_code(N, out[0])
