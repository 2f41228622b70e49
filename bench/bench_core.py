"""Detection kernel under the real MicroPython binary, side by side in one run.

Rows: ns/sample of the viper and plain RMS kernels and of a naive EmonLib-style float RMS
written in MicroPython (the same samples, the same process), the ratio, the cost of a whole
Detector window, and heap bytes allocated per window in steady state (target 0).
"""

from __future__ import annotations

import json

from tests import mpy

SCRIPT = """
import gc, json, math, time
from array import array
from efd import rms
from efd.detector import Detector
from efd.compat import micropython

N = rms.N
buf = array('H', [2048 + int(800 * math.sin(2 * math.pi * i / 40)) for i in range(N)])
out = array('i', [0, 0, 0])
REPS = 300

def emonlib_rms(buf, n, ratio):
    # OpenEnergyMonitor EmonLib calcIrms: low-pass offset, float squares, sqrt.
    offset = 2048.0
    total = 0.0
    for i in range(n):
        sample = buf[i]
        offset = offset + (sample - offset) / 1024
        filtered = sample - offset
        total += filtered * filtered
    return ratio * math.sqrt(total / n)

def per_sample_ns(fn):
    gc.collect()
    t0 = time.ticks_us()
    for _ in range(REPS):
        fn()
    return time.ticks_diff(time.ticks_us(), t0) * 1000 / (REPS * N)

def viper():
    rms.accumulate_viper(buf, N, out)
    rms.rms8(N, out[0], out[1])

def plain():
    rms.accumulate(buf, N, out)
    rms.rms8(N, out[0], out[1])

def naive():
    emonlib_rms(buf, N, 1.0)

res = {}
# Interleave the three a few times and keep each one's best: the machine is shared.
for name in ("viper", "plain", "naive") * 3:
    fn = {"viper": viper, "plain": plain, "naive": naive}[name]
    v = per_sample_ns(fn)
    res[name] = min(res.get(name, v), v)

det = Detector()
det.residual = buf
for p in det.phase:
    p[:] = buf
det.process(0)
t = 0
gc.collect()
t0 = time.ticks_us()
for k in range(REPS):
    t = (k + 1) * 100
    det.process(t)
res["window_us"] = time.ticks_diff(time.ticks_us(), t0) / REPS
gc.collect()
f0 = gc.mem_free()
for k in range(REPS):
    det.process((k + 1000) * 100)
f1 = gc.mem_free()
res["window_heap_bytes"] = (f0 - f1) / REPS
f0 = gc.mem_free()
for k in range(REPS // 10):
    emonlib_rms(buf, N, 1.0)
f1 = gc.mem_free()
res["naive_heap_bytes"] = (f0 - f1) / (REPS // 10)
print(json.dumps(res))
"""


def run() -> list[dict]:
    r = json.loads(mpy.run(SCRIPT, heapsize="4m", timeout=600))
    ratio = r["naive"] / r["viper"]
    return [
        {"name": "viper RMS kernel (MicroPython)", "value": r["viper"], "unit": "ns/sample"},
        {"name": "plain RMS kernel (MicroPython)", "value": r["plain"], "unit": "ns/sample"},
        {"name": "EmonLib-style float RMS (MicroPython)", "value": r["naive"], "unit": "ns/sample"},
        {
            "name": "speed-up viper vs EmonLib float",
            "value": ratio,
            "unit": "x",
            "target": ">= 8x",
            "ok": ratio >= 8,
        },
        {
            "name": "Detector.process, all channels (MicroPython)",
            "value": r["window_us"],
            "unit": "us/window",
            "target": "<< 100000 (window length at 50 Hz)",
            "ok": r["window_us"] < 100_000,
        },
        {
            "name": "heap allocated per window",
            "value": r["window_heap_bytes"],
            "unit": "bytes",
            "target": "0",
            "ok": r["window_heap_bytes"] == 0,
        },
        {
            "name": "heap allocated per EmonLib window",
            "value": r["naive_heap_bytes"],
            "unit": "bytes",
        },
    ]
