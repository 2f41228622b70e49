"""ADC and current-transformer model: true-RMS signal parameters in, 12-bit ADC codes out.

Used by the simulator and by the tests to feed the firmware's detection core. The model is the
reference front end of docs/hardware.md: the CT signal rides on a bias near mid-scale, one ADC
count equals `units_per_count` of the measured quantity (1 mA residual, 0.1 A phase by default),
the converter rounds, adds Gaussian noise and clips to 0..4095.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from efd import rms

ADC_MAX = rms.ADC_MAX
SAMPLES_PER_CYCLE = rms.SAMPLES_PER_CYCLE
WINDOW = rms.N


def sample_rate(mains_hz: int) -> int:
    return SAMPLES_PER_CYCLE * mains_hz


def waveform(
    t: np.ndarray,
    rms_value: float | np.ndarray,
    mains_hz: float = 50.0,
    harmonics: Mapping[int, float] | None = None,
    phases: Mapping[int, float] | None = None,
    phase0: float = 0.0,
) -> np.ndarray:
    """Instantaneous value at times t (s) of a periodic signal whose TRUE RMS is rms_value.

    harmonics: {order: amplitude relative to the fundamental}. The fundamental amplitude is
    scaled so that the RMS of the whole sum equals rms_value (THD is part of the RMS).
    """
    harmonics = dict(harmonics or {})
    rel = [(1, 1.0, phase0)] + [
        (int(k), float(a), (phases or {}).get(k, 0.0)) for k, a in harmonics.items() if int(k) > 1
    ]
    norm = math.sqrt(sum(a * a for _, a, _ in rel) / 2.0)  # RMS of the unscaled sum
    w = 2.0 * math.pi * mains_hz
    y = np.zeros_like(t, dtype=float)
    for k, a, ph in rel:
        y += a * np.sin(k * w * t + ph)
    return y * (np.asarray(rms_value, dtype=float) / norm)


def to_codes(
    signal: np.ndarray,
    units_per_count: float,
    bias: float = 2048.0,
    noise_counts: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Quantise a signal (in the channel's units) to 12-bit codes: bias, noise, round, clip."""
    x = bias + signal / units_per_count
    if noise_counts:
        rng = rng or np.random.default_rng(0)
        x = x + rng.normal(0.0, noise_counts, size=x.shape)
    return np.clip(np.rint(x), 0, ADC_MAX).astype(np.uint16)


def gain_q12(units_per_count: float) -> int:
    return round(units_per_count * 4096)


# -- NTC thermistor (reference wiring: 10 k, beta 3950, low side, 10 k fixed; docs/ntc.md) -----
KELVIN = 273.15


def ntc_code(
    temp_c: float | np.ndarray,
    beta: float = 3950.0,
    r0: float = 10_000.0,
    t0_c: float = 25.0,
    r_fixed: float = 10_000.0,
) -> np.ndarray:
    """Continuous ADC code a low-side NTC at temp_c produces (before rounding/noise)."""
    t = np.asarray(temp_c, dtype=float) + KELVIN
    r = r0 * np.exp(beta * (1.0 / t - 1.0 / (t0_c + KELVIN)))
    return ADC_MAX * r / (r + r_fixed)


def ntc_codes(temp_c, noise_counts: float = 0.0, rng: np.random.Generator | None = None):
    """Quantised 12-bit codes for temperatures (degC)."""
    x = ntc_code(temp_c)
    if noise_counts:
        rng = rng or np.random.default_rng(0)
        x = x + rng.normal(0.0, noise_counts, size=np.shape(x))
    return np.clip(np.rint(x), 0, ADC_MAX).astype(np.uint16)
