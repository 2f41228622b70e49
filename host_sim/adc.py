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


# -- NTC thermistor (reference wiring, docs/ntc.md) ------------------------------------------
# 3.3 V -- R_FIXED --+-- pin (ADC)
#                    |
#                 R_SERIES
#                    |
#                   NTC (10 k, beta 3950)
#                    |
#                   GND
# The firmware reads the pin with ADC.read_uv() (calibrated) and scales it to the 12-bit code
# 4095 * V / 3.3 V, so a code here is that ideal code. tools/gen_ntc_table.py has the same
# defaults (tests/test_ntc.py checks they agree).
KELVIN = 273.15
NTC_SUPPLY_V = 3.3  # divider supply = the code scale's full scale
NTC_R_FIXED = 10_000.0
NTC_R_SERIES = 470.0
# Lowest pin voltage a calibrated ESP32 read reports at 11 dB attenuation: raw code 0 comes out
# as ~142 mV (the esp_adc_cal offset), so a pin below it reads as the floor.
ADC_FLOOR_V = 0.142


def ntc_volts(
    temp_c: float | np.ndarray,
    beta: float = 3950.0,
    r0: float = 10_000.0,
    t0_c: float = 25.0,
    r_fixed: float = NTC_R_FIXED,
    r_series: float = NTC_R_SERIES,
) -> np.ndarray:
    """Divider output (V at the ADC pin) for a low-side NTC at temp_c."""
    t = np.asarray(temp_c, dtype=float) + KELVIN
    r = r0 * np.exp(beta * (1.0 / t - 1.0 / (t0_c + KELVIN))) + r_series
    return NTC_SUPPLY_V * r / (r + r_fixed)


def ntc_code(
    temp_c: float | np.ndarray,
    beta: float = 3950.0,
    r0: float = 10_000.0,
    t0_c: float = 25.0,
    r_fixed: float = NTC_R_FIXED,
    r_series: float = NTC_R_SERIES,
) -> np.ndarray:
    """Continuous ADC code a low-side NTC at temp_c produces (before rounding/noise):
    4095 * ntc_volts(...) / 3.3 V."""
    v = ntc_volts(temp_c, beta, r0, t0_c, r_fixed, r_series)
    return ADC_MAX * v / NTC_SUPPLY_V


def ntc_lead_volts(
    kind: str, r_fixed: float = NTC_R_FIXED, r_series: float = NTC_R_SERIES
) -> float:
    """Pin voltage with a broken NTC lead: open (R_FIXED pulls the pin to the supply) or short
    (only R_SERIES is left on the low side)."""
    if kind == "open":
        return NTC_SUPPLY_V
    if kind == "short":
        return NTC_SUPPLY_V * r_series / (r_series + r_fixed)
    raise ValueError(f"lead fault kind must be 'open' or 'short', got {kind!r}")


def read_code(volts: float) -> int:
    """The code a calibrated ESP32 read gives for a pin voltage: never below the ADC floor,
    at most full scale (a saturated read; real chips report 3.0..3.3 V, all past the open
    rail)."""
    v = min(max(volts, ADC_FLOOR_V), NTC_SUPPLY_V)
    return round(ADC_MAX * v / NTC_SUPPLY_V)


def ntc_lead_code(kind: str) -> int:
    """Code of an NTC input with an open (ADC_MAX) or shorted (the ~148 mV left across
    R_SERIES: ~184) lead."""
    return read_code(ntc_lead_volts(kind))


def ntc_codes(temp_c, noise_counts: float = 0.0, rng: np.random.Generator | None = None):
    """Quantised 12-bit codes for temperatures (degC)."""
    x = ntc_code(temp_c)
    if noise_counts:
        rng = rng or np.random.default_rng(0)
        x = x + rng.normal(0.0, noise_counts, size=np.shape(x))
    return np.clip(np.rint(x), 0, ADC_MAX).astype(np.uint16)
