# On-target test runner (issue 11 §3): runs ON the detector (MicroPython), sent by
# `python -m tools.board_test PORT` (`make test-board PORT=...`) with `mpremote run` after the
# host copied the vectors (bt_vectors.json, tools/board_test/vectors.py) to the flash root.
#
# 1. The core's own checks: efd.rms (the viper accumulator the detector runs), efd.ntc and
#    efd.threshold on the host's vectors, compared exactly (integer arithmetic).
# 2. HAL self-checks with the figures measured: ADC read cost, sample rate and late samples,
#    PCNT counting, flash write/erase time, free heap, the watchdog. On the simulated HAL (the
#    unix port: no `esp32` module) a check that has no hardware to measure says "n/a" and why,
#    never a pass.
# It prints one row per check and a last line "board-test: N pass, M FAIL, K n/a"; the host
# exits non-zero on any FAIL. Runs with the firmware stopped (mpremote's Ctrl-C) and leaves
# the watchdog stretched (hal.wdt_release), as main.py's own Ctrl-C path does; the host resets
# the board afterwards. Not part of the firmware image: nothing here stays on the flash.
import gc
import json
import os
import time
from array import array

gc.collect()
FREE0 = gc.mem_free()
ALLOC0 = gc.mem_alloc()

ROWS = []


def row(name, status, figure=""):
    ROWS.append(status)
    print("| %-26s | %-4s | %s" % (name, status, figure))


def fail_or(ok):
    return "pass" if ok else "FAIL"


# -- 1. core checks ------------------------------------------------------------------------------
def core(v):
    from efd import ntc, rms
    from efd.threshold import Thresholds

    st = array("i", [0, 0, 0])
    bad = []
    t0 = time.ticks_us()
    for i, vec in enumerate(v["rms"]):
        buf = array("H", vec["buf"])
        rms.accumulate_viper(buf, rms.N, st)
        r8 = rms.rms8(rms.N, st[0], st[1])
        got = [r8, rms.to_units(r8, vec["gain"]), st[2], rms.mean_code(rms.N, st[0])]
        if got != vec["expect"]:
            bad.append("#%d %s != %s" % (i, got, vec["expect"]))
    us = time.ticks_diff(time.ticks_us(), t0) // len(v["rms"])
    row(
        "core: rms (viper)",
        fail_or(not bad),
        "; ".join(bad) or "%d windows, %d us each" % (len(v["rms"]), us),
    )

    n = v["ntc"]
    bad = []
    for c, e in zip(n["codes"], n["expect"]):
        got = [ntc.to_decic(c), ntc.classify(c)]
        if got != e:
            bad.append("code %d: %s != %s" % (c, got, e))
    row("core: ntc", fail_or(not bad), "; ".join(bad[:3]) or "%d codes" % len(n["codes"]))

    class Q:
        def __init__(self):
            self.got = []

        def push(self, kind, ch, value, thr, t):
            self.got.append([kind, ch, value, thr, t])

    bad = []
    events = 0
    for i, vec in enumerate(v["threshold"]):
        q = Q()
        th = Thresholds(1, q)
        a, p, h, d = vec["levels"]
        th.configure(0, a, p, h, d)
        for value, now in vec["seq"]:
            if value == "reset":
                th.reset(0, now)
            else:
                th.update(0, value, now)
        events += len(q.got)
        if q.got != vec["expect"]:
            bad.append("#%d %s != %s" % (i, q.got[:2], vec["expect"][:2]))
    row(
        "core: threshold",
        fail_or(not bad),
        "; ".join(bad) or "%d sequences, %d events" % (len(v["threshold"]), events),
    )


# -- 2. HAL checks ---------------------------------------------------------------------------------
def na(name, why):
    row(name, "n/a", why)


def hal_sim():
    why = "simulated HAL (unix port): "
    na("hal: adc read cost", why + "no ADC")
    na("hal: sample rate / late", why + "windows paced by the host clock, no sample instants")
    na("hal: pcnt counting", why + "no pulse counter")
    flash_check(True)
    heap_check()
    na("hal: watchdog", why + "the supervisor's UDP watchdog (tests/firmware test it)")


def flash_check(host_fs):
    # A 4 KB file written in 1 KB appends (like the event log's), then removed.
    name = "_bt.tmp"
    blk = bytes(1024)
    t0 = time.ticks_ms()
    with open(name, "wb") as f:
        for _ in range(4):
            f.write(blk)
    t1 = time.ticks_ms()
    os.remove(name)
    t2 = time.ticks_ms()
    w = time.ticks_diff(t1, t0)
    e = time.ticks_diff(t2, t1)
    # (LittleFS erases blocks as it allocates them: the erases are in the write time.)
    fig = "write 4 KB %d ms (with erases), remove %d ms" % (w, e)
    if host_fs:
        na("hal: flash write/erase", "host filesystem (" + fig + ")")
    else:
        # Under the watchdog and the event log's budget: an erase may take 400 ms (docs).
        row("hal: flash write/erase", fail_or(w + e < 1500), fig)


def heap_check():
    row(
        "heap: free after boot",
        fail_or(FREE0 >= 16384),
        "%d bytes free, %d used (app stopped at the REPL; needs >= 16384)" % (FREE0, ALLOC0),
    )


def hal_board():
    import machine

    from app import board
    from app.hal_esp32 import Esp32Hal
    from efd.detector import Detector

    hal = Esp32Hal()  # the watchdog is board.WDT_MS again from here: fed below
    hal.wdt_feed()
    period = board.SAMPLE_PERIOD_US_50HZ
    # Four reads per sample instant (residual + 3 phases) must fit the 60 Hz period.
    fits = 4 * hal.read_us < board.SAMPLE_PERIOD_US_60HZ
    row(
        "hal: adc read cost",
        fail_or(fits),
        "%d us per read_uv (4 per instant: %d us of %d us at 60 Hz)"
        % (hal.read_us, 4 * hal.read_us, board.SAMPLE_PERIOD_US_60HZ),
    )
    det = Detector(None)
    n = 20
    t0 = time.ticks_us()
    for _ in range(n):
        hal.sample(det)
        hal.wdt_feed()
    dt = time.ticks_diff(time.ticks_us(), t0)
    samples = n * len(det.residual)
    rate = samples * 1000000 // dt
    nominal = 1000000 // period
    late = hal.late_total
    row(
        "hal: sample rate / late",
        fail_or(late == 0),
        "%d Hz nominal in bursts, %d Hz over %d windows (incl. NTC reads), %d late of %d"
        % (nominal, rate, n, late, samples),
    )
    hal.arc_count()  # from now
    v0 = hal.pcnt.value()
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < 1000:
        time.sleep_ms(50)
        hal.wdt_feed()
    got = hal.arc_count()
    if got > 0:
        row(
            "hal: pcnt counting",
            "pass",
            "%d pulses in 1 s (counter %d -> %d)" % (got, v0, hal.pcnt.value()),
        )
    elif got == 0:
        na(
            "hal: pcnt counting",
            "counter runs, no pulses on the arc input in 1 s (connect the arc test source)",
        )
    else:
        row("hal: pcnt counting", "FAIL", "negative count %d" % got)
    flash_check(False)
    heap_check()
    hal.wdt_feed()
    cause = machine.reset_cause()
    row(
        "hal: watchdog",
        "pass",
        "fed through the run (timeout %d ms); last reset cause %d" % (board.WDT_MS, cause),
    )
    hal.outputs(False, False, True)
    hal.wdt_release()


def main():
    print("board-test: free heap %d bytes at start" % FREE0)
    try:
        with open("bt_vectors.json") as f:
            v = json.load(f)
    except OSError:
        v = None
    if v is None or v.get("format") != "efd-board-vectors/1":
        row("core: vectors", "FAIL", "bt_vectors.json missing or not efd-board-vectors/1")
    else:
        gc.collect()
        core(v)
        v = None
        gc.collect()
    try:
        import esp32  # noqa: F401  (the board, or the board twin's model of it)

        on_board = True
    except ImportError:
        on_board = False
    if on_board:
        hal_board()
    else:
        hal_sim()
    npass = ROWS.count("pass")
    nfail = ROWS.count("FAIL")
    print("board-test: %d pass, %d FAIL, %d n/a" % (npass, nfail, ROWS.count("n/a")))


main()
