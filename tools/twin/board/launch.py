# Boots the firmware on the board twin: `micropython launch.py RUN.json` (tools/twin runs it).
#
# Like the board: the flash holds boot.py, main.py and lib/ (the ESP32 image, compiled for this
# host's CPU), the launcher runs boot.py then main.py with /lib on the path, and every reset
# (watchdog, machine.reset(), power cut) boots them again with a fresh set of modules while the
# flash, the RTC and the virtual clock carry on. The run ends at the scenario's end.
#
# Model parameters and their sources. Costs marked "estimate" have no measurement behind them
# on this project's hardware: they are plausible figures, exposed as options so a user with a
# board can put theirs in (docs/hardware.md "Board twin" lists them).
import json
import os
import sys

DEFAULTS = {
    # ADC one-shot read from MicroPython, at 160 MHz: ~95 us per read+ticks_us in a viper loop on
    # v1.16+ (micropython issue #7495, ESP32 at its default 160 MHz); ~10 us of it is the
    # driver's conversion (adc_oneshot_read), which does not scale with the CPU clock.
    "adc_read_us": 85,
    "adc_fixed_us": 10,
    "adc_cali_us": 3,  # read_uv's line-fit arithmetic (estimate)
    # The chip's true ADC reference (ESP32 datasheet: 1000-1200 mV, burned in eFuse at the
    # factory) and the eFuse value's error (0: read_uv is exact to its 1 mV step).
    "vref_mv": 1100,
    # The 3.3 V rail that feeds the CT biases and NTC dividers: an LDO's output is typically
    # within +-1 to 2 % (e.g. AMS1117-3.3 datasheet: 3.235-3.365 V).
    "vcc_mv": 3300,
    "efuse_vref_error_mv": 0,
    # The unit's CT front ends off nominal, in ppm of units per count (residual, phase 0..2):
    # burden resistor and CT ratio tolerances, what `make calibrate` corrects (+90000: the
    # unit reads 9 % low at the nominal gains). Not a property of the ESP32 port: the board's.
    "ct_gain_err_ppm": [0, 0, 0, 0],
    "ticks_call_us": 2,  # a ticks_us()/ticks_ms() call from viper at 160 MHz (estimate)
    "pin_call_us": 3,  # Pin.value()/PCNT.value() call at 160 MHz (estimate)
    "uart_call_us": 8,  # UART any/readinto/write/txdone call at 160 MHz (estimate)
    "freq_switch_us": 100,  # machine.freq() (estimate)
    # The firmware's Python work per loop iteration (detector, drain, link, indicators) at
    # 160 MHz, charged at each watchdog feed: x64 unix port measures ~25 us for
    # Detector.process (make bench); the ESP32 at 160 MHz runs bytecode ~50x slower (estimate).
    "loop_work_us": 3000,
    "boot_ms": 800,  # ROM + IDF + MicroPython start to main.py (estimate)
    "scheduler_depth": 8,  # MICROPY_SCHEDULER_DEPTH (py/mpconfig.h default used by ports/esp32)
    # The reference board's wiring (docs/hardware.md; tests/twin checks it against app/board.py).
    "analog_pins": {
        "36": ["ct", 0],
        "39": ["ct", 1],
        "34": ["ct", 2],
        "35": ["ct", 3],
        "32": ["ntc", 0],
    },
    "mux_gpio": [25, 26],
    "arc_gpio": 27,
    "button_gpio": 14,
    "test_gpio": 13,
    "test_fs_ma": 2000,  # the self-test source's full scale, RMS (app/board.py TEST_FS_MA)
    "de_gpio": 4,
    "timed_pins": [4],
    "bus_uart": 2,
    "pin_cpu": False,  # True: machine.freq(hz) is accepted but the clock stays (a what-if run)
    # Fault injection: the main loop hangs at its first watchdog feed after this time (-1: never).
    "hang_at_us": -1,
    # Flash timings: False = the datasheet's typical figures, True = its maxima (flash.py).
    "flash_worst": False,
}

BOARD = sys.argv[0].rsplit("/", 1)[0] if "/" in sys.argv[0] else "."
sys.path[:] = [BOARD]
cfg = json.load(open(sys.argv[1]))

import twin  # noqa: E402

twin.P.update(DEFAULTS)
twin.P.update(cfg.get("params", {}))
twin.end_us = cfg.get("end_us", -1)
if cfg.get("cpu_hz"):
    twin.cpu_hz = cfg["cpu_hz"]

import api  # noqa: E402

api.load(cfg["api"])  # the ESP32 port's API table (tools/twin/esp32_api.json)

import esp32  # noqa: E402
import inputs  # noqa: E402
import machine  # noqa: E402

machine.set_costs()

# A virtual device (tools/twin/vdev.py): realtime clock, outside RS-485 bus, reset cause and RTC
# across process restarts, Ctrl-C kept out of LittleFS (vdevice.py). None for an offline run.
vd = None
if cfg.get("vdev"):
    import vdevice as vd

    vd.setup(cfg["vdev"])

OWN = ("twin", "machine", "esp32", "time", "inputs", "api", "flash", "bus", "launch", "transceiver")
OWN += ("extbus", "vdevice")  # the virtual device's
root = cfg["root"]

# The flash: LittleFS on the flash model (flash.py) or, for a quick run, a host folder.
fl = None


def _load_files(src, dst):
    # Like `make deploy` onto an erased board: copy the image's files onto the flash.
    for name, kind, *_ in os.ilistdir(src):
        if kind == 0x4000:
            try:
                os.mkdir(dst + "/" + name)
            except OSError:
                pass
            _load_files(src + "/" + name, dst + "/" + name)
        else:
            with open(src + "/" + name, "rb") as a, open(dst + "/" + name, "wb") as b:
                b.write(a.read())


if cfg.get("flash_image"):
    import flash
    import vfs

    fl = (flash.Flash if vd is None else vd.GuardedFlash)(
        cfg["flash_image"], worst=twin.P["flash_worst"]
    )
    flash.mount(fl, root)
    try:
        os.stat(root + "/main.py")
    except OSError:
        if cfg.get("load_files"):  # (a virtual device may start blank)
            _load_files(cfg["load_files"], root)
    fl.reset_counters()  # count what the firmware does, not the deploy
    twin.now_us = 0  # nor its time: the scenario starts at power-on, after the deploy
    twin.rtc_offset_us = 0
os.chdir(root)
sys.path[:] = [BOARD, "", "lib"]

if cfg.get("analog"):
    machine._inputs = inputs.Inputs(cfg["analog"])
    esp32.machine._inputs = machine._inputs
    machine.set_test_scale(machine._inputs.header["residual_uv_per_ma"])
    machine._inputs.vcc_mv = twin.P["vcc_mv"]
    machine._inputs.gain_err_ppm = twin.P["ct_gain_err_ppm"]
    # Extra button presses of the run (e.g. a long press: the self-test), in us.
    machine._inputs.presses.extend(cfg.get("presses", []))
if cfg.get("bus"):
    b = cfg["bus"]
    b.setdefault("de_gpio", twin.P["de_gpio"])
    if b.get("udp"):  # a virtual device: the bus's far end is outside (extbus.py)
        import extbus

        machine.bus = extbus.ExtBus(b)
    else:
        import bus

        machine.bus = bus.Bus(b)

ev_out = open(cfg["events_out"], "w") if cfg.get("events_out") else None
log_out = cfg.get("log_out")


def _observe_events():
    # The twin watches the detector's event queue like a logic analyser on the board: every
    # event with the virtual time it was raised (the firmware is not changed).
    from efd import events

    push = events.EventQueue.push

    def watched(q, kind, ch, value, thr, t):
        if ev_out is not None:
            ev_out.write("%d %d %d %d %d\n" % (twin.now_us, kind, ch, value, thr))
        push(q, kind, ch, value, thr, t)

    events.EventQueue.push = watched
    # And the detector's readings after each window (the last ones end up in the stats), as a
    # meter on the board would show them.
    from efd import detector

    process = detector.Detector.process

    def metered(det, now):
        process(det, now)
        readings[0] = det.values  # the detector's own array: read once, at the end

    detector.Detector.process = metered


readings = [None]


def _purge():
    for name in list(sys.modules):
        if name.split(".")[0] not in OWN:
            del sys.modules[name]


def _run(name, g):
    try:
        os.stat(name)
    except OSError:
        return
    with open(name) as f:
        src = f.read()
    exec(compile(src, name, "exec"), g)


cause = machine.PWRON_RESET if vd is None else vd.start()
causes = []
result = "end"
g = {}
while True:
    twin.dead = False
    twin.cause = cause
    causes.append(cause)
    twin.boots += 1
    twin.unhook_all()
    machine.wdt_forget()
    machine.levels.clear()
    machine._irqs.clear()
    esp32.reset()
    _purge()
    # A fresh sys.path at every boot, as the port's soft_reset loop makes it (py/runtime.c
    # mp_init() lines 147-150: a new list with "" (and ".frozen"); ports/esp32/main.c line 144
    # appends "/lib"): boot.py's slot switch (lib -> lib_b) must not outlive a reset.
    sys.path[:] = [BOARD, "", "lib"]
    try:
        if fl is not None and twin.boots > 1:
            # A reset drops LittleFS's RAM state: mount again from what is on the chip.
            os.chdir("/")
            vfs.umount(root)
            fl.power_on()
            flash.mount(fl, root)
            os.chdir(root)
        twin.charge(twin.P["boot_ms"] * 1000)
        twin.boot_us = twin.now_us
        _observe_events()
        g = {"__name__": "__main__"}
        _run("boot.py", g)
        _run("main.py", g)
        # main.py returned: the board sits at the REPL. A running task watchdog still bites.
        result = "repl"
    except twin.Reset as r:
        cause = r.args[0]
        if cause == machine.PWRON_RESET:
            twin.power_on()
        continue
    except twin.End:
        result = "end"
        break
    except Exception as e:  # an exception out of main.py: on the board, the REPL
        sys.print_exception(e)
        twin.stats["repl_exception"] = repr(e)
        result = "repl"
    if vd is not None:
        break  # a virtual device: `micropython -i` hands the REPL to the console (mpremote)
    # At the REPL: only a running watchdog brings the board back.
    w = machine.WDT._last
    if w is None:
        break
    try:
        twin.charge(w.fed + w.timeout_us + 1 - twin.now_us)
    except twin.Reset as r:
        cause = r.args[0]
        continue
    except twin.End:
        break

hal = g.get("hal")
if hal is not None:
    for k in ("late", "late_total", "period", "read_us"):
        v = getattr(hal, k, None)
        if isinstance(v, int):
            twin.stats["hal_" + k] = v
twin.stats["result"] = result
# det.values after the last window (mA, 0.1 degC, 0.01 A), in efd.events channel order.
twin.stats["readings"] = list(readings[0]) if readings[0] is not None else []
twin.stats["causes"] = causes
twin.stats["now_us"] = twin.now_us
twin.stats["cpu_hz_end"] = twin.cpu_hz
if fl is not None:
    twin.stats["flash"] = {
        "erases": fl.erases,
        "prog_bytes": fl.prog_bytes,
        "read_bytes": fl.read_bytes,
        "us": fl.us,
    }
if ev_out is not None:
    ev_out.close()
with open(cfg["stats_out"], "w") as f:
    json.dump(twin.stats, f)
