"""Hypothesis strategies for realistic detector inputs (waveforms, ramps), shared by tests."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from efd import rms
from host_sim import adc

N = rms.N


@st.composite
def harmonic_mix(draw, max_thd=0.4):
    """{order: relative amplitude} for up to 4 harmonics of order 2..15, THD <= max_thd."""
    orders = draw(st.lists(st.integers(2, 15), max_size=4, unique=True))
    amps = [draw(st.floats(0.01, 1)) for _ in orders]
    total = math.sqrt(sum(a * a for a in amps))
    thd = draw(st.floats(0, max_thd))
    return {k: a / total * thd for k, a in zip(orders, amps, strict=True)} if orders else {}


@st.composite
def line_conditions(draw):
    """Everything about the line and the front end that must not change the decision."""
    return {
        "mains_hz": draw(st.sampled_from([50, 60])),
        "harmonics": draw(harmonic_mix()),
        "phase0": draw(st.floats(0, 2 * math.pi)),
        "noise_pct": draw(st.floats(0, 2.0)),  # noise RMS, % of the set value
        "bias0": draw(st.floats(1850, 2250)),  # CT bias drifting linearly over the run
        "bias1": draw(st.floats(1850, 2250)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def residual_codes(rms_ma, seconds_or_windows, set_ma, cond, windows=None):
    """ADC codes for a residual current whose true RMS follows rms_ma (scalar or per-sample)."""
    mains = cond["mains_hz"]
    n_win = windows if windows is not None else math.ceil(seconds_or_windows * mains / 5)
    fs = adc.sample_rate(mains)
    t = np.arange(n_win * N) / fs
    level = rms_ma(t) if callable(rms_ma) else np.full_like(t, float(rms_ma))
    y = adc.waveform(t, level, mains, cond["harmonics"], phase0=cond["phase0"])
    rng = np.random.default_rng(cond["seed"])
    noise = cond["noise_pct"] / 100.0 * set_ma
    if noise:
        y = y + rng.normal(0.0, noise, size=y.shape)
    bias = np.linspace(cond["bias0"], cond["bias1"], y.size)
    codes = np.clip(np.rint(bias + y / 1.0), 0, rms.ADC_MAX).astype(np.uint16)  # 1 mA/count
    return codes, n_win
