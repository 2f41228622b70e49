"""Test vectors for the on-target runner, computed on the host by the same efd modules the
detector runs (CPython here, MicroPython on the board): RMS windows (waveforms with offset,
harmonics, clipping, a dead CT), NTC codes across the whole ADC range, and threshold sequences
(delay, pre-alarm, hysteresis, latch and reset). The runner computes each on the device and
compares exactly: integer arithmetic, so any difference is a bug (a small-int overflow on the
ESP32's 31-bit ints, a viper wrap on its 32-bit words, a code-generation difference)."""

from __future__ import annotations

import json
import math
import random
from array import array
from pathlib import Path

from efd import events as ev
from efd import ntc, rms
from efd.threshold import OFF, Thresholds


def _wave(rng: random.Random, amp: float, offset: int, harm: float, noise: float) -> list[int]:
    out = []
    for i in range(rms.N):
        a = 2 * math.pi * i / rms.SAMPLES_PER_CYCLE
        v = rms.MID + offset + amp * (math.sin(a) + harm * math.sin(3 * a + 0.4))
        v += rng.gauss(0, noise)
        out.append(max(0, min(rms.ADC_MAX, round(v))))
    return out


def rms_vectors(rng: random.Random) -> list[dict]:
    cases = [
        (0, 0, 0.0, 0.0, 4096),  # a dead-quiet CT at mid-scale
        (424, 0, 0.0, 0.0, 4096),  # 300 mA at 1 mA/count
        (424, -37, 0.3, 2.0, 4468),  # offset bias, 3rd harmonic, noise, a calibrated gain
        (141, 12, 0.1, 1.0, 40960),  # 10 A phase at 0.1 A/count
        (2047, 0, 0.0, 0.0, 4096),  # full scale
        (3000, 0, 0.0, 0.0, 60000),  # clipped: the largest sums, the highest gain
        (5, 900, 0.0, 0.5, 4096),  # far off bias (a fault), tiny signal
    ]
    out = []
    for amp, off, harm, noise, gain in cases:
        buf = _wave(rng, amp, off, harm, noise)
        st = array("i", [0, 0, 0])
        rms.accumulate(array("H", buf), rms.N, st)
        r8 = rms.rms8(rms.N, st[rms.S1], st[rms.S2])
        out.append(
            {
                "buf": buf,
                "gain": gain,
                "expect": [
                    r8,
                    rms.to_units(r8, gain),
                    st[rms.CLIPPED],
                    rms.mean_code(rms.N, st[0]),
                ],
            }
        )
    return out


def ntc_vectors() -> dict:
    codes = [*range(0, rms.ADC_MAX + 1, 37), 1, 2, 3, 4092, 4093, 4094, 4095]
    return {"codes": codes, "expect": [[ntc.to_decic(c), ntc.classify(c)] for c in codes]}


class _Q:
    def __init__(self) -> None:
        self.got: list[list[int]] = []

    def push(self, kind: int, ch: int, value: int, thr: int, t: int) -> None:
        self.got.append([kind, ch, value, thr, t])


def threshold_vectors(rng: random.Random) -> list[dict]:
    """Sequences of (value, now) through one channel's rule, with the events expected."""
    out = []
    for alarm, pre, hyst, delay in ((300, 210, 15, 1000), (700, OFF, 5, 0), (1000, 850, 50, 5000)):
        # A ramp to 120 % of the set value, a jittery hold around the alarm point (delay
        # restarts, hysteresis), a fall to half and to nothing, then a reset.
        levels = [alarm * 6 * i // 150 for i in range(30)]
        levels += [alarm + rng.randint(-alarm // 20, alarm // 5) for _ in range(60)]
        levels += [alarm // 2] * 10 + [0] * 10
        seq: list[list] = []
        t = 0
        for level in levels:
            t += 100
            seq.append([level, t])
        seq.append(["reset", t + 100])
        q = _Q()
        th = Thresholds(1, q)
        th.configure(0, alarm, pre, hyst, delay)
        for v, now in seq:
            if v == "reset":
                th.reset(0, now)
            else:
                th.update(0, v, now)
        out.append({"levels": [alarm, pre, hyst, delay], "seq": seq, "expect": q.got})
    return out


def generate(seed: int = 11) -> dict:
    rng = random.Random(seed)
    return {
        "format": "efd-board-vectors/1",
        "kinds": {"alarm": ev.ALARM},
        "rms": rms_vectors(rng),
        "ntc": ntc_vectors(),
        "threshold": threshold_vectors(rng),
    }


def write(path: Path, seed: int = 11) -> dict:
    v = generate(seed)
    path.write_text(json.dumps(v, separators=(",", ":")))
    return v
