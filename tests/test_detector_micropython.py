"""The detector under the real MicroPython binary: same events as CPython, and no allocation.

One scenario exercises every rule (leak ramp to alarm, reset refused then accepted, NTC fault,
over-temperature, arc, clock wrap-around). Its ADC codes are generated on the host, fed to the
same modules on both interpreters, and the event logs and final state must be identical.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from efd import rms, ticks
from efd.detector import Detector
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
    import contextlib
    import io
    import sys

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


def test_heap_lock_check_can_fail():
    """Guard: the same harness reports an allocation when the loop allocates."""
    script = "import micropython\nmicropython.heap_lock()\nx = [1, 2, 3]\n"
    with pytest.raises(AssertionError, match="MemoryError"):
        mpy.run(script)


def test_cpython_detector_matches_this_file_settings():
    Detector(SETTINGS)  # the settings used above are valid
