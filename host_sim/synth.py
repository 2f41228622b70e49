"""Scenario -> ADC codes, generated in large vectorised chunks.

The detector needs a window of 200 codes per CT input every 100 ms and one code per NTC; doing
that one window at a time in Python would cost more than the detection itself. So whole chunks
(CHUNK_WINDOWS windows, tens of seconds) are generated at once with numpy. Sampling is coherent
(40 samples per mains cycle, efd/rms.py), so a steady waveform repeats every 40 samples: one
cycle is computed per segment and tiled, then scaled by the (possibly ramping) true RMS.

Noise comes from one random stream per input derived from the scenario's seed, drawn in fixed
chunk order: the same file always gives the same codes, and adding a segment on one input never
changes the noise on another.
"""

from __future__ import annotations

import math

import numpy as np

from efd import rms
from host_sim import adc
from host_sim.scenario import CtSegment, Scenario, TempSegment

N = rms.N
CYCLE = rms.SAMPLES_PER_CYCLE
CHUNK_WINDOWS = 300  # 30 s at 50 Hz: amortises numpy's per-call cost; fixed for reproducibility
AMBIENT_C = 25.0  # a temperature input outside every segment (issue 4)
CT_INPUTS = ("residual", "phase0", "phase1", "phase2")


def cycle(harmonics: dict[int, float], points: int = CYCLE) -> np.ndarray:
    """One mains cycle (`points` samples, 40 by default) of the waveform, true RMS 1."""
    k = np.arange(points)
    y = np.sin(2 * np.pi * k / points)
    for order, amp in harmonics.items():
        y = y + amp * np.sin(2 * np.pi * order * k / points)
    r = math.sqrt(float(np.mean(y * y)))  # exact over whole cycles (orders < 20)
    return y / r


def level_at(seg: CtSegment, t: np.ndarray) -> np.ndarray:
    """True RMS of a CT segment at times t (inside the segment): constant, ramp or staircase."""
    if seg.end_level == seg.level:
        return np.full(t.shape, seg.level)
    frac = (t - seg.t0) / (seg.t1 - seg.t0)
    if seg.steps:
        # GB 14287.2 type test: the current is raised in discrete steps, each held.
        i = np.minimum(np.floor(frac * seg.steps), seg.steps - 1)
        frac = i / (seg.steps - 1)
    return seg.level + (seg.end_level - seg.level) * frac


def temp_at(seg: TempSegment, t: np.ndarray) -> np.ndarray:
    return seg.start_c + (seg.end_c - seg.start_c) * (t - seg.t0) / (seg.t1 - seg.t0)


def ntc_rail(kind: str) -> int:
    """ADC code of an NTC input whose lead is open (full scale) or shorted (the voltage left
    across the series resistor, ~148 mV = code 184: at the ESP32 ADC's floor, below the
    table's bottom rail). tests/test_ntc.py checks efd.ntc classifies both."""
    return adc.ntc_lead_code(kind)


def ct_rail(kind: str) -> int:
    """CT input with a broken lead: open pulls the bias to 0 V, short to the supply."""
    return 0 if kind == "open" else adc.ADC_MAX


class Synth:
    """Codes for every input of one scenario, chunk by chunk."""

    def __init__(self, scn: Scenario):
        self.scn = scn
        self.fs = adc.sample_rate(scn.mains_hz)
        # Whole windows covering the scenario (the last may run past duration_s by < 100 ms).
        self.n_windows = max(1, math.ceil(scn.duration_s * self.fs / N - 1e-9))
        self.window_s = N / self.fs
        streams = np.random.SeedSequence(scn.seed).spawn(len(CT_INPUTS) + 1)
        self.rngs = {
            name: np.random.default_rng(s) for name, s in zip(CT_INPUTS, streams[:-1], strict=True)
        }
        self.temp_rng = np.random.default_rng(streams[-1])
        self.segs: dict[str, list[CtSegment]] = {name: [] for name in CT_INPUTS}
        self.segs["residual"] = list(scn.residual)
        for seg in scn.phase:
            self.segs[f"phase{seg.channel}"].append(seg)
        self.cycles = {id(s): cycle(s.harmonics) for segs in self.segs.values() for s in segs}
        self.upc = {name: scn.phase_units_per_count() for name in CT_INPUTS}
        self.upc["residual"] = scn.residual_units_per_count()

    def window_end_s(self, w0: int, w1: int) -> np.ndarray:
        return np.arange(w0 + 1, w1 + 1) * (N / self.fs)

    def reading_s(self, w0: int, w1: int) -> np.ndarray:
        """When each window's NTC reading is taken: with its last CT sample, so a segment
        [t0, t1) covers the same windows on every input (and the last one of the run)."""
        return self.window_end_s(w0, w1) - 1.0 / self.fs

    def _span(self, t0: float, t1: float, k0: int, k1: int) -> tuple[int, int]:
        """Sample indexes [a, b) of [t0, t1) clipped to [k0, k1) (sample k is at k / fs)."""
        a = math.ceil(t0 * self.fs - 1e-6)
        b = math.ceil(t1 * self.fs - 1e-6)
        return max(a, k0), min(b, k1)

    def ct_codes(self, name: str, w0: int, w1: int) -> np.ndarray:
        """uint16 codes of CT input `name` for windows w0..w1-1 (N per window)."""
        k0, k1 = w0 * N, w1 * N
        rng = self.rngs[name]
        y = np.zeros(k1 - k0)
        for seg in self.segs[name]:
            a, b = self._span(seg.t0, seg.t1, k0, k1)
            if a >= b:
                continue
            wave = np.resize(np.roll(self.cycles[id(seg)], -(a % CYCLE)), b - a)
            if seg.end_level == seg.level:
                wave *= seg.level
            else:
                wave *= level_at(seg, np.arange(a, b) / self.fs)
            y[a - k0 : b - k0] = wave
            if seg.noise:
                y[a - k0 : b - k0] += rng.standard_normal(b - a) * seg.noise
        x = y
        x *= 1.0 / self.upc[name]
        x += self.scn.adc.bias
        if self.scn.adc.noise_counts:
            x += rng.standard_normal(k1 - k0, dtype=np.float32) * self.scn.adc.noise_counts
        for f in self.scn.fault:
            if f.sensor == name:
                a, b = self._span(f.t0, f.t1, k0, k1)
                if a < b:
                    x[a - k0 : b - k0] = ct_rail(f.kind)
        np.rint(x, out=x)
        np.clip(x, 0, adc.ADC_MAX, out=x)
        return x.astype(np.uint16)

    def temperatures(self, w0: int, w1: int) -> np.ndarray:
        """True temperature (degC) of each NTC input at each reading, shape (w1 - w0, 4)."""
        t = self.reading_s(w0, w1)
        out = np.full((w1 - w0, 4), AMBIENT_C)
        for seg in self.scn.temperature:
            m = (t >= seg.t0) & (t < seg.t1)
            out[m, seg.channel] = temp_at(seg, t[m])
        return out

    def temp_codes(self, w0: int, w1: int) -> np.ndarray:
        """uint16 NTC codes, one per input per window, C-contiguous (w1 - w0, 4)."""
        x = adc.ntc_code(self.temperatures(w0, w1))
        if self.scn.adc.noise_counts:
            x = x + self.temp_rng.standard_normal(x.shape) * self.scn.adc.noise_counts
        t = self.reading_s(w0, w1)
        for f in self.scn.fault:
            if f.sensor.startswith("temp"):
                m = (t >= f.t0) & (t < f.t1)
                x[m, int(f.sensor[4:])] = ntc_rail(f.kind)
        return np.ascontiguousarray(np.clip(np.rint(x), 0, adc.ADC_MAX).astype(np.uint16))

    def arc_counts(self) -> list[int]:
        """Arc front-end pulse count for each whole second (second j ends at j + 1 s).

        A segment counts for the seconds whose middle it covers: the front end reports whole
        seconds, so a segment from 10.0 to 20.0 s gives ten seconds at its rate.
        """
        n = math.floor(self.n_windows * self.window_s + 1e-9)
        counts = [0] * n
        for seg in self.scn.arc:
            for j in range(n):
                if seg.t0 <= j + 0.5 < seg.t1:
                    counts[j] = seg.half_cycles_per_s
        return counts

    def true_levels(self, name: str, t: np.ndarray) -> np.ndarray:
        """The scenario's true RMS of a CT input at times t (for plots and test oracles)."""
        out = np.zeros(t.shape)
        for seg in self.segs[name]:
            m = (t >= seg.t0) & (t < seg.t1)
            out[m] = level_at(seg, t[m])
        return out
