"""Host-accelerated variant of the RMS accumulate kernel (efd.rms.accumulate), for the simulator.

The firmware has two implementations of one kernel contract: plain Python (rms.accumulate) and
viper (rms.accumulate_viper, on the device). This is a third, with numpy, for CPython only:

    accumulate(buf, n, out): out[0] = sum(x - 2048), out[1] = sum((x - 2048)^2),
    out[2] = count of x <= rms.CLIP_LO or x >= rms.CLIP_HI, over buf[0:n]; returns out[1].

Why: on CPython the plain loop is ~20 us per 200-sample window and a detector with four CT
inputs spends ~70 % of its time in it, which caps a simulation near 1000x real time. This one
is ~6 us. Everything after the kernel (RMS, thresholds, faults, delays, latches) is still the
firmware's own code. tests/test_sim_kernel.py proves it equal to rms.accumulate on arbitrary
windows (hypothesis), so the simulator's decisions are the firmware's decisions.
"""

from __future__ import annotations

import numpy as np

from efd import rms


def accumulate(buf, n: int, out) -> int:
    a = np.frombuffer(buf, dtype=np.uint16, count=n)
    d = a.astype(np.int64)
    d -= rms.MID
    s1 = int(d.sum())
    s2 = int(np.dot(d, d))
    clipped = int(np.count_nonzero(a <= rms.CLIP_LO)) + int(np.count_nonzero(a >= rms.CLIP_HI))
    out[rms.S1] = s1
    out[rms.S2] = s2
    out[rms.CLIPPED] = clipped
    return s2
