"""The detector under the real MicroPython binary: same events as CPython, and no allocation.

Two differential checks feed the same windows to the same modules on both interpreters and
compare every event, every window's readings and the status word:

* one hand-made scenario that exercises every rule (leak ramp to alarm, reset refused then
  accepted, NTC fault, over-temperature, arc, clock wrap-around), whose events are also checked
  against what the scenario means;
* many Hypothesis-generated scenarios (random settings, CT windows at the clip edges, the bias
  band and the rails, NTC codes at the rails, late samples, arc counts, resets, uneven window
  times across the clock wrap). On the device the RMS kernel is the viper one
  (rms.accumulate_viper, with its limits written as literals); on CPython the plain one.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys

import numpy as np
import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from efd import rms, ticks
from host_sim import adc
from tests import mpy

pytestmark = pytest.mark.micropython

N = rms.N
T0 = ticks.MASK - 3_000  # the clock wraps 3 s into the run
SETTINGS = {"leak_set_ma": 100, "leak_delay_s": 1, "temp_set_c": 60, "temp_delay_s": 2}


def scenario(n_win=400, seed=5):
    rng = np.random.default_rng(seed)
    t = np.arange(n_win * N) / 2000.0
    leak = np.interp(t, [0, 10, 25, 30, 40], [0, 130, 130, 10, 10])
    res = adc.to_codes(adc.waveform(t, leak, 50, {3: 0.3, 7: 0.1}), 1.0, 2040, 1.0, rng)
    ph = adc.to_codes(adc.waveform(t, 25.0, 50, {5: 0.1}), 0.1, 2050, 1.0, rng)
    tw = np.arange(1, n_win + 1) * 0.1
    temp0 = adc.ntc_codes(np.interp(tw, [0, 20, 30, 35], [25, 70, 70, 25]), 1.0, rng)
    temp1 = adc.ntc_codes(np.full(n_win, 30.0), 1.0, rng)
    temp1[100:200] = 4095  # open lead for 10 s
    arc = [0] * 40
    arc[15] = 14
    arc[20] = 9
    windows = []
    for w in range(n_win):
        windows.append(
            {
                "res": res[w * N : (w + 1) * N].tolist(),
                "ph": ph[w * N : (w + 1) * N].tolist(),
                "temps": [int(temp0[w]), int(temp1[w]), 2000, 2000],
                "now": (T0 + (w + 1) * 100) & ticks.MASK,
                "arc": arc[(w + 1) // 10 - 1] if (w + 1) % 10 == 0 else -1,
                "reset": w in (200, 380),
            }
        )
    return windows


DRIVER = """
import sys, json
from array import array
from efd.detector import Detector
inp = json.loads(sys.stdin.read())
det = Detector(inp["settings"])
log = []
for w in inp["windows"]:
    det.residual[:] = array('H', w["res"])
    for i in range(3):
        det.phase[i][:] = array('H', w["ph"])
    for i in range(4):
        det.temp_code[i] = w["temps"][i]
    det.process(w["now"])
    if w["arc"] >= 0:
        det.arc_second(w["arc"], w["now"])
    if w["reset"]:
        log.append(["reset", det.reset(w["now"])])
    for e in det.events.drain():
        log.append(list(e))
print(json.dumps({"log": log, "values": list(det.values), "status": det.status()}))
"""


def run_cpython(inp):
    """The same driver, executed by CPython."""
    out = io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(json.dumps(inp))
    try:
        with contextlib.redirect_stdout(out):
            exec(DRIVER, {"__name__": "driver"})
    finally:
        sys.stdin = old_stdin
    return json.loads(out.getvalue())


def test_micropython_and_cpython_give_identical_events():
    inp = {"settings": SETTINGS, "windows": scenario()}
    want = run_cpython(inp)
    got = json.loads(mpy.run(DRIVER, stdin=json.dumps(inp), heapsize="32m"))
    assert got == want
    kinds = {(e[0], e[1]) for e in want["log"] if e[0] != "reset"}
    # The scenario must really exercise the rules it claims to (else the comparison is weak).
    assert {(2, 0), (4, 2), (5, 2), (2, 1), (2, 8), (6, 0)} <= kinds, kinds
    assert ["reset", False] in want["log"] and ["reset", True] in want["log"]


HEAP_LOCK = """
import json, sys, micropython, gc
from array import array
from efd.detector import Detector
inp = json.loads(sys.stdin.read())
det = Detector(inp["settings"])
bufs = [array('H', w["res"]) for w in inp["windows"]]
temps = [w["temps"] for w in inp["windows"]]
nows = [w["now"] for w in inp["windows"]]
arcs = [w["arc"] for w in inp["windows"]]
n = len(bufs)

def windows(det, n):
    # A function, not module level: a first store to a module global grows the globals dict.
    q = det.events
    i = 0
    while i < n:
        det.residual = bufs[i]
        t = temps[i]
        det.temp_code[0] = t[0]
        det.temp_code[1] = t[1]
        det.process(nows[i])
        if arcs[i] >= 0:
            det.arc_second(arcs[i], nows[i])
        while q.count:  # drain without building tuples, as the app's log writer does
            q.head = (q.head + 1) % q.capacity
            q.count -= 1
        i += 1


windows(det, 1)  # warm-up: first-call effects are not steady state
free0 = free1 = 0  # create the globals before measuring
gc.collect()
free0 = gc.mem_free()
micropython.heap_lock()
windows(det, n)
micropython.heap_unlock()
free1 = gc.mem_free()
print(json.dumps({"windows": n, "allocated": free0 - free1, "status": det.status()}))
"""


def test_process_allocates_nothing_under_heap_lock():
    """Every window of the scenario, alarms and faults included, runs with the heap locked."""
    windows = scenario(n_win=300)
    inp = {"settings": SETTINGS, "windows": windows}
    got = json.loads(mpy.run(HEAP_LOCK, stdin=json.dumps(inp), heapsize="32m"))
    assert got["windows"] == 300
    assert got["allocated"] == 0
    assert got["status"] != 0  # alarms did happen inside the locked region


KERNEL_SPEED = """
import time
from array import array
from efd import rms
from efd.detector import Detector

def make(kernel):
    det = Detector(None, kernel=kernel) if kernel else Detector()
    for buf in [det.residual] + det.phase:
        for i in range(rms.N):
            buf[i] = 2048 + (i % 9) * 90
    return det

dets = [make(None), make(rms.accumulate), make(rms.accumulate_viper)]
best = [1 << 30] * 3
for _ in range(25):  # interleaved short rounds, best of 25: the host's pauses hit a few only
    for k in range(3):
        t = time.ticks_us()
        for w in range(4):
            dets[k].process(100 * w)
        best[k] = min(best[k], time.ticks_diff(time.ticks_us(), t))
print(best)
"""


def test_the_device_runs_the_viper_kernel():
    """On MicroPython the detector picks rms.accumulate_viper: the plain loop is several
    times slower, too slow for the ESP32's sampling budget (docs/firmware.md)."""
    default, plain, viper = json.loads(mpy.run(KERNEL_SPEED))
    assert plain > 2 * viper, (plain, viper)  # the measurement can tell them apart
    assert default < 1.5 * viper, (default, plain, viper)


def test_heap_lock_check_can_fail():
    """Guard: the same harness reports an allocation when the loop allocates."""
    script = "import micropython\nmicropython.heap_lock()\nx = [1, 2, 3]\n"
    with pytest.raises(AssertionError, match="MemoryError"):
        mpy.run(script)


def test_the_fixed_scenario_means_what_it_says():
    """On CPython alone, the events of the hand-made scenario are the ones it was built for."""
    log = run_cpython({"settings": SETTINGS, "windows": scenario()})["log"]
    seen = [tuple(e) if e[0] == "reset" else (e[0], e[1], ticks.diff(e[4], T0) / 1000) for e in log]
    at = {(k, ch): t for k, ch, t in reversed([e for e in seen if e[0] != "reset"])}
    PRE, ALARM, CLEAR, FAULT, FAULT_CLEAR, RESET = 1, 2, 3, 4, 5, 6
    res, temp0, temp1, arc = 0, 1, 2, 8
    assert [e[:2] for e in seen] == [
        (PRE, res),
        (ALARM, res),
        (FAULT, temp1),
        (PRE, temp0),
        (ALARM, arc),
        (CLEAR, arc),
        (ALARM, temp0),
        ("reset", False),  # window 200: still leaking 130 mA; the quiet arc resets alone
        (RESET, arc),
        (FAULT_CLEAR, temp1),
        (CLEAR, res),
        (CLEAR, temp0),
        ("reset", True),  # window 380: 10 mA and 25 degC
        (RESET, res),
        (RESET, temp0),
    ]
    # Leak ramp 13 mA/s: 70 mA (pre-alarm) at 5.4 s, 90 mA (alarm point) at 6.9 s + 1 s delay.
    assert 5.3 <= at[(PRE, res)] <= 5.5 and 7.9 <= at[(ALARM, res)] <= 8.1
    # temp1 open during 10.1..20 s: reported and cleared 2 s (fault_delay_s) after each edge.
    assert (at[(FAULT, temp1)], at[(FAULT_CLEAR, temp1)]) == (12.1, 22.1)
    # Arc: 14 half-cycles in the 16th second, 0 in the 17th (clear), 9 in the 21st (nothing).
    assert (at[(ALARM, arc)], at[(CLEAR, arc)], at[(RESET, arc)]) == (16.0, 17.0, 20.1)
    # temp0 reaches 60 degC at ~15.6 s (+ ~0.7 s smoothing) and alarms 2 s later.
    assert 17.8 <= at[(ALARM, temp0)] <= 18.6
    assert at[(RESET, res)] == at[(RESET, temp0)] == 38.1


# -- many generated scenarios ------------------------------------------------------------------

CLIP_EDGES = [0, 1, 2, 3, 4, 5, 4090, 4091, 4092, 4093, 4094, 4095]
BAND_EDGES = [255, 256, 1647, 1648, 2047, 2048, 2448, 2449, 3839, 3840]
NTC_EDGES = [0, 186, 216, 217, 218, 223, 224, 225, 3498, 3499, 3500, 3599, 3600, 4095]
SIN40 = [round(1000 * np.sin(2 * np.pi * i / 40)) for i in range(40)]

# One CT input for a segment: [kind (0 flat, 1 sine, 2 square), amplitude, bias, code,
# how many samples are overwritten by code, noise]. Flat windows sit at `code`.
ct_inputs = st.tuples(
    st.integers(0, 2),
    st.one_of(st.integers(0, 2100), st.sampled_from([0, 1, 8, 90, 270, 1000])),
    st.one_of(st.integers(0, 4095), st.sampled_from(BAND_EDGES)),
    st.one_of(st.sampled_from(CLIP_EDGES), st.sampled_from(BAND_EDGES)),
    st.integers(0, 4),
    st.integers(0, 20),
).map(list)

segments = st.fixed_dictionaries(
    {
        "n": st.integers(1, 30),
        "res": ct_inputs,
        "ph": st.lists(ct_inputs, min_size=3, max_size=3),
        "temps": st.lists(
            st.one_of(st.integers(200, 3700), st.sampled_from(NTC_EDGES)), min_size=4, max_size=4
        ),
        "late": st.integers(0, 7),
        "arc": st.one_of(st.just(-1), st.integers(0, 40), st.sampled_from([9, 10, 13, 14])),
        "reset": st.booleans(),
        "dt": st.sampled_from([100, 100, 100, 1, 99, 101, 999, 10_000]),
        "seed": st.integers(1, 2**30),
    }
)

detector_settings = st.fixed_dictionaries(
    {},
    optional={
        "leak_set_ma": st.integers(20, 1000),
        "leak_delay_s": st.integers(0, 3),
        "leak_prealarm_pct": st.sampled_from([0, 50, 70, 85]),
        "leak_hyst_pct": st.integers(1, 10),
        "temp_set_c": st.integers(45, 150),
        "temp_delay_s": st.integers(0, 3),
        "temp_prealarm_pct": st.sampled_from([0, 80, 95]),
        "temp_ror_c_per_min": st.integers(0, 60),
        "temp_channels": st.integers(0, 4),
        "line_set_a": st.integers(1, 60),
        "line_delay_s": st.integers(0, 3),
        "phase_channels": st.integers(0, 3),
        "arc_enabled": st.integers(0, 1),
        "fault_delay_s": st.integers(1, 3),
        "res_gain_q12": st.one_of(st.integers(1, 60000), st.just(4096)),
        "phase_gain_q12": st.one_of(st.integers(1, 60000), st.just(4096)),
        "ct_bias_lo": st.integers(256, 2047),
        "ct_bias_hi": st.integers(2049, 3839),
    },
)

scenarios = st.fixed_dictionaries(
    {
        "settings": detector_settings,
        "t0": st.one_of(st.just(0), st.just(ticks.MASK - 500), st.integers(0, ticks.MASK)),
        "segments": st.lists(segments, min_size=1, max_size=8),
    }
)

MANY = """
import sys, json
from array import array
from efd import rms
from efd.detector import Detector
inp = json.loads(sys.stdin.read())
SIN = inp["sin"]
N = rms.N


def build(spec, x):
    kind, amp, bias, code, k, nz = spec
    buf = array("H", bytes(2 * N))
    for i in range(N):
        if kind == 0:
            v = code
        elif kind == 1:
            v = bias + amp * SIN[i % 40] // 1000
        else:
            v = bias + amp if i & 1 else bias - amp
        if nz:
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            v += (x >> 16) % (2 * nz + 1) - nz
        if v < 0:
            v = 0
        if v > 4095:
            v = 4095
        buf[i] = v
    for j in range(k):
        buf[(j * 37 + 11) % N] = code
    return buf


def run(sc, kernel):
    det = Detector(sc["settings"], kernel=kernel) if kernel else Detector(sc["settings"])
    log = []
    trace = []
    t = sc["t0"]
    for seg in sc["segments"]:
        res = build(seg["res"], seg["seed"])
        ph = [build(seg["ph"][i], seg["seed"] + 1 + i) for i in range(3)]
        for w in range(seg["n"]):
            det.residual[:] = res
            for i in range(3):
                det.phase[i][:] = ph[i]
            for i in range(4):
                det.temp_code[i] = seg["temps"][i]
            det.late = seg["late"]
            t = (t + seg["dt"]) & 0x3FFFFFFF
            det.process(t)
            if w == 0 and seg["arc"] >= 0:
                det.arc_second(seg["arc"], t)
            if seg["reset"] and w == seg["n"] - 1:
                log.append(["reset", det.reset(t)])
            for e in det.events.drain():
                log.append(list(e))
            trace.append(list(det.values) + [det.status()])
    return {"log": log, "trace": trace}


kernel = rms.accumulate_viper if inp.get("viper") else None
print(json.dumps([run(sc, kernel) for sc in inp["scenarios"]]))
"""


def run_cpython_many(inp):
    out = io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(json.dumps(inp))
    try:
        with contextlib.redirect_stdout(out):
            exec(MANY, {"__name__": "driver"})
    finally:
        sys.stdin = old_stdin
    return json.loads(out.getvalue())


@seed(20240607)
@settings(max_examples=10, deadline=None)
@given(st.lists(scenarios, min_size=6, max_size=6))
def test_generated_scenarios_identical_on_both_interpreters(batch):
    inp = {"sin": SIN40, "scenarios": batch}
    want = run_cpython_many(inp)
    # The viper kernel's source, run by CPython, is the plain kernel: literals and constants.
    assert run_cpython_many(dict(inp, viper=True)) == want
    got = json.loads(mpy.run(MANY, stdin=json.dumps(inp), heapsize="32m"))
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, (k, batch[k])
