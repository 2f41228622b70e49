# The twin's `machine` module: the ESP32 port's classes as the firmware uses them, behaving like
# the port (ports/esp32/*.c at the commit in tools/twin/esp32_api.json) on a virtual clock.
#
# API fidelity: every constructor and method checks its arguments against the table derived
# from the port's C source (tools/twin/esp32_api.json, via api.py), so an unknown keyword or
# method fails here exactly as on the board (e.g. Pin.irq(hard=True) -> TypeError).
# Behaviour: ADC transfer curve per chip and eFuse calibration, read cost, CPU frequency, soft
# pin IRQs, UART byte timing on a half-duplex RS-485 bus, task watchdog, RTC across resets.
# Every parameter is in twin.P, set by launch.py, where each one's source is written down.
import micropython
import twin
import utime

try:
    import api as _api
except ImportError:  # the table is optional for a bare import (tests of single models)
    _api = None

_inputs = None  # inputs.Inputs of the run (set by launch.py)
bus = None  # bus.Bus on UART 2 (set by launch.py)

# machine.reset_cause() codes (ports/esp32/modmachine.c reset_reason_t).
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


def _check(cls, name, nargs, kw):
    if _api is not None:
        _api.check("machine", cls, name, nargs, kw)


# -- CPU, resets ---------------------------------------------------------------------------------
def freq(*args, **kw):
    _check(None, "freq", len(args), kw)
    if not args:
        return twin.cpu_hz
    hz = args[0]
    # ports/esp32/modmachine.c mp_machine_set_freq: 20, 40, 80, 160 or 240 MHz on the ESP32.
    if hz // 1000000 not in (20, 40, 80, 160, 240):
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
    twin.charge(twin.P["freq_switch_us"])
    if twin.P.get("pin_cpu"):  # the run pins the clock (tools.twin --cpu-mhz)
        return
    twin.cpu_hz = hz // 1000000 * 1000000
    set_costs()
    twin.stats["cpu_hz"] = twin.cpu_hz


def reset(*args, **kw):
    _check(None, "reset", len(args), kw)
    twin.reset(HARD_RESET)


def soft_reset(*args, **kw):
    _check(None, "soft_reset", len(args), kw)
    twin.reset(SOFT_RESET)


def reset_cause(*args, **kw):
    _check(None, "reset_cause", len(args), kw)
    return twin.cause


def unique_id():
    return b"\x24\x0a\xc4\x12\x34\x56"


def idle():
    twin.charge(10)


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


# -- GPIO ------------------------------------------------------------------------------------------
# Pin levels the rest of the board reads (the RS-485 transceiver's DE, the mux select lines),
# with a history of changes for pins whose timing matters (DE: the bus asks what it was when a
# byte arrived).
levels = {}
history = {}  # gpio -> [(t_us, level), ...] for gpios in twin.P["timed_pins"]
_irqs = {}  # gpio -> [handler, trigger, pending count]
_INPUT_ONLY = (34, 35, 36, 37, 38, 39)  # ESP32 GPIO 34-39 have no output driver (TRM 4.10)


def level_at(gpio, t_us):
    h = history.get(gpio)
    lv = 0
    if h:
        for t, v in h:
            if t > t_us:
                break
            lv = v
    return lv


_de_since = [-1]


def _set_level(gpio, v):
    v = 1 if v else 0
    if levels.get(gpio) == v:
        return
    levels[gpio] = v
    if gpio == twin.P["de_gpio"]:  # how long the RS-485 driver holds the bus
        if v:
            _de_since[0] = twin.now_us
        elif _de_since[0] >= 0:
            twin.stat("de_high_us", twin.now_us - _de_since[0])
            _de_since[0] = -1
    if gpio in twin.P["timed_pins"]:
        h = history.setdefault(gpio, [])
        h.append((twin.now_us, v))
        if len(h) > 64:
            del h[: len(h) - 32]  # the bus only looks back a few bytes


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    PULL_HOLD = 4
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3

    def __init__(self, id, *args, **kw):
        _check("Pin", None, 1 + len(args), kw)
        if not (0 <= id <= 39) or id in (20, 24, 28, 29, 30, 31):
            raise ValueError("invalid pin")  # machine_pin.c: no such GPIO on the ESP32
        self.id = id
        self.mode = -1
        self._init(*args, **kw)

    def _init(self, mode=-1, pull=-1, value=None, drive=None, hold=None):
        if mode != -1:
            if mode != Pin.IN and self.id in _INPUT_ONLY:
                raise ValueError("pin can only be input")
            self.mode = mode
        if value is not None:
            _set_level(self.id, value)
        twin.charge(twin.cost[3])

    def init(self, *args, **kw):
        _check("Pin", "init", len(args), kw)
        self._init(*args, **kw)

    def value(self, *args):
        _check("Pin", "value", len(args), {})
        twin.charge(twin.cost[3])
        if args:
            _set_level(self.id, args[0])
            return None
        return _read(self.id)

    def __call__(self, *args):
        return self.value(*args)

    def on(self):
        _set_level(self.id, 1)

    def off(self):
        _set_level(self.id, 0)

    def irq(self, *args, **kw):
        _check("Pin", "irq", len(args), kw)
        handler = args[0] if args else kw.get("handler")
        trigger = args[1] if len(args) > 1 else kw.get("trigger", Pin.IRQ_FALLING | 3)
        # ports/esp32/machine_pin.c: the handler is scheduled (mp_sched_schedule), never run in
        # the ISR; the scheduler queue holds MICROPY_SCHEDULER_DEPTH (8) callbacks and drops the
        # rest; nothing scheduled runs while viper code runs. deliver_irqs() models that.
        _irqs[self.id] = [handler, trigger, _pulses(self.id)]


def _read(gpio):
    if gpio in levels:
        return levels[gpio]
    if gpio == twin.P["button_gpio"] and _inputs is not None:
        return 0 if _inputs.button_down(twin.now_us) else 1
    return 1 if gpio == twin.P["button_gpio"] else 0


def _pulses(gpio):
    if gpio == twin.P["arc_gpio"] and _inputs is not None:
        return _inputs.arc_pulses(twin.now_us)
    return 0


def deliver_irqs():
    """Run scheduled pin IRQ handlers (called at bytecode-level calls: ticks_ms, sleep_ms), at
    most the scheduler's depth per delivery; edges beyond it are lost, as on the port."""
    for gpio in _irqs:
        e = _irqs[gpio]
        now = _pulses(gpio)
        n = now - e[2]
        e[2] = now
        if n > twin.P["scheduler_depth"]:
            twin.stat("irq_dropped", n - twin.P["scheduler_depth"])
            n = twin.P["scheduler_depth"]
        for _ in range(n):
            if e[0] is not None:
                e[0](None)


# -- ADC -------------------------------------------------------------------------------------------
# ESP-IDF line-fitting calibration for the ESP32 (esp_adc/esp32/adc_cali_line_fitting.c, eFuse
# Vref scheme): mV = raw * coeff_a / 65536 + coeff_b with coeff_a = Vref * scale[atten] / 4096.
# The same curve with the chip's *true* reference is the transfer model (raw code for a voltage);
# read_uv() applies it with the reference burned in eFuse (= true + P["efuse_vref_error_mv"]).
# At 11 dB and Vref 1100 mV: 0.806 mV per code from 142 mV: the ~140 mV floor and ~3.44 V top
# of the raw range (a measured WROOM-32: 135-3135 mV, kisel/esp32_adc_test).
_SCALE = (57431, 76236, 105481, 196602)
_OFFSET_MV = (75, 78, 107, 142)
# GPIO -> ADC input of the reference board (docs/hardware.md; twin.P["analog_pins"] overrides).


_burst = [-1, -1, 0]  # first and last residual read of the current burst, samples in it


@micropython.native
def _burst_track(t):
    # A burst is a run of residual-CT reads with no gap over 1.5 ms (3 sample periods): its
    # length is the window the firmware really sampled (100 ms at 50 Hz if all on time).
    b = _burst
    if b[1] >= 0 and t - b[1] > 1500:
        _burst_end()
    if b[0] < 0:
        b[0] = t
    b[1] = t
    b[2] += 1


def _burst_end():
    b = _burst
    if b[2] >= 100:  # a sampling window (not the HAL's 16-read cost measurement at boot)
        n = b[2]
        # (n - 1) periods between n reads: scale to n periods, the window's real length.
        length = (b[1] - b[0]) * n // (n - 1)
        twin.stat("bursts")
        twin.stat("burst_samples", n)
        twin.stat("burst_us_sum", length)
        if length > twin.stats.get("burst_us_max", 0):
            twin.stats["burst_us_max"] = length
    b[0] = b[1] = -1
    b[2] = 0


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_12BIT = 12

    def __init__(self, pin, *args, **kw):
        _check("ADC", None, 1 + len(args), kw)
        gpio = pin if isinstance(pin, int) else pin.id
        if not (32 <= gpio <= 39 or gpio in (0, 2, 4, 12, 13, 14, 15, 25, 26, 27)):
            raise ValueError("invalid pin")  # machine_adc.c madc_search_helper
        self.gpio = gpio
        self._atten = 0  # ADC_ATTEN_DB_0 until set (machine_adc.c default)
        self.src = twin.P["analog_pins"].get(str(gpio))
        self.ct = self.src[1] if self.src is not None and self.src[0] == "ct" else -1
        if "atten" in kw and kw["atten"] is not None:
            self._atten = kw["atten"]
        self._curve()

    def init(self, *args, **kw):
        _check("ADC", "init", len(args), kw)
        if "atten" in kw and kw["atten"] is not None:
            self._atten = kw["atten"]
            self._curve()

    def atten(self, a):
        self._atten = a
        self._curve()

    def width(self, *args):
        return 12

    def block(self):
        return None

    def _ntc_uv(self):
        # The pins that are no CT input: the NTC mux's common, or nothing wired (0 V).
        if self.src is None or _inputs is None:
            return 0
        # The NTC mux: 74HC4051 select lines S0/S1 pick the input (S2 tied low).
        sel = levels.get(twin.P["mux_gpio"][0], 0) | levels.get(twin.P["mux_gpio"][1], 0) << 1
        return _inputs.ntc_uv(sel, twin.now_us)

    @micropython.native  # the twin's hottest path: native code on the host, ~2x
    def _raw(self):
        # The sample-and-hold takes the pin voltage as the call starts; the call then costs the
        # driver's conversion plus the interpreter's work (P["adc_fixed_us"], P["adc_read_us"]).
        # Hot path (hundreds of thousands of calls a run): integer maths, no dict look-ups.
        if self.ct >= 0 and _inputs is not None:
            uv = _inputs.ct_uv(self.ct, twin.now_us)
            if self.ct == 0:
                _burst_track(twin.now_us)
                if _test[0]:
                    uv += _test[0] * _test[1] // 1000
        else:
            uv = self._ntc_uv()
        twin.now_us += twin.cost[0]
        # raw = (mV - offset) / (Vref * scale / 2^28), rounded, in integers (see _curve).
        d = self._d
        raw = ((uv - self._off_uv) * 268435456 + (d >> 1)) // d
        return 0 if raw < 0 else (4095 if raw > 4095 else raw)

    def _curve(self):
        # The chip's curve (true reference) and read_uv's (eFuse reference) at this attenuation.
        a = self._atten
        self._d = twin.P["vref_mv"] * _SCALE[a] * 1000
        self._off_uv = _OFFSET_MV[a] * 1000
        self._coeff = (twin.P["vref_mv"] + twin.P["efuse_vref_error_mv"]) * _SCALE[a] // 4096

    def read_u16(self):
        raw = self._raw()
        return raw << 4 | raw >> 8  # machine_adc.c: 12-bit raw to 16 bits

    def read(self):
        return self._raw()

    @micropython.native
    def read_uv(self):
        raw = self._raw()
        twin.now_us += twin.cost[1]
        mv = (raw * self._coeff + 32768) // 65536 + self._off_uv // 1000
        return mv * 1000  # adc.c madcblock_read_uv_helper: the IDF's mV times 1000


def set_costs():
    """twin.cost at the current CPU clock (the hot paths do no arithmetic on parameters)."""
    c = twin.cost
    c[0] = twin.P["adc_fixed_us"] + twin.cpu_us(twin.P["adc_read_us"])
    c[1] = twin.cpu_us(twin.P["adc_cali_us"])
    c[2] = twin.cpu_us(twin.P["ticks_call_us"])
    c[3] = twin.cpu_us(twin.P["pin_call_us"])
    c[4] = twin.cpu_us(twin.P["uart_call_us"])


# -- PWM: the self-test current source -------------------------------------------------------
# The test winding's drive (docs/hardware.md, app/board.py): an op-amp transconductance stage fed
# the pin's PWM through a 2-pole RC low-pass (fc ~2 kHz) and a coupling capacitor. Modelled as
# what reaches the CT: (duty - 50 %) x the full-scale peak, held between duty updates (the
# filter's 1.4 degree lag at 50 Hz and its ripple at 40 kHz are left out). A constant level on
# the pin (the design before the twin drove the winding from a GPIO through a resistor) is DC,
# which a current transformer does not pass: nothing.
_test = [0, 0]  # [duty - 32768 on the test pin, uV at the residual pin per duty step x 1000]


def set_test_scale(uv_per_ma):
    _test[1] = int(twin.P["test_fs_ma"] * 1.41421356 * uv_per_ma * 1000 / 32767)


class PWM:
    def __init__(self, dest, *args, **kw):
        _check("PWM", None, 1 + len(args), kw)
        self.gpio = dest if isinstance(dest, int) else dest.id
        if self.gpio in _INPUT_ONLY:
            raise ValueError("pin can only be input")
        self._freq = kw.get("freq", args[0] if args else 5000)
        self._duty = 0
        if "duty_u16" in kw:
            self._set(kw["duty_u16"])

    def _set(self, d):
        if not 0 <= d <= 65535:
            raise ValueError("duty_u16 must be from 0 to 65535")
        self._duty = d
        if self.gpio == twin.P["test_gpio"]:
            _test[0] = d - 32768

    def init(self, *args, **kw):
        _check("PWM", "init", len(args), kw)
        if "duty_u16" in kw:
            self._set(kw["duty_u16"])

    def duty_u16(self, *args):
        _check("PWM", "duty_u16", len(args), {})
        twin.charge(twin.cost[3])
        if args:
            self._set(args[0])
            return None
        return self._duty

    def freq(self, *args):
        if args:
            self._freq = args[0]
            return None
        return self._freq

    def deinit(self):
        self._set(32768 if self.gpio == twin.P["test_gpio"] else 0)


# -- UART ------------------------------------------------------------------------------------------
class UART:
    INV_TX = 1
    INV_RX = 2
    INV_RTS = 4
    INV_CTS = 8
    RTS = 1
    CTS = 2
    IRQ_RXIDLE = 4096
    IRQ_BREAK = 2
    IRQ_RX = 1

    def __init__(self, id, *args, **kw):
        _check("UART", None, 1 + len(args), kw)
        self.id = id
        self.baud = kw.get("baudrate", args[0] if args else 115200)
        self.rxbuf = kw.get("rxbuf", 256)
        self.tx_end = 0
        self.bus = bus if id == twin.P["bus_uart"] else None
        if self.bus is not None:
            self.bus.attach(self)

    def init(self, *args, **kw):
        _check("UART", "init", len(args), kw)

    def _byte_us(self):
        return 10000000 // self.baud  # 8N1: ten bit times per byte

    def write(self, buf):
        n = len(buf)
        # ports/esp32/machine_uart.c write: uart_write_bytes copies into the driver's TX ring
        # buffer and returns; the bytes leave at the baud rate.
        twin.charge(twin.cost[4])
        start = twin.now_us if twin.now_us > self.tx_end else self.tx_end
        self.tx_end = start + n * self._byte_us()
        if self.bus is not None:
            self.bus.transmit(start, bytes(buf), self._byte_us())
        return n

    def txdone(self):
        twin.charge(twin.cost[4])
        return twin.now_us >= self.tx_end

    def flush(self):
        # machine_uart.c: uart_wait_tx_done(..., 1000 ms): blocks until the last stop bit.
        twin.charge(twin.cost[4])
        if self.tx_end > twin.now_us:
            twin.charge(self.tx_end - twin.now_us)

    def any(self):
        twin.charge(twin.cost[4])
        return self.bus.pending(twin.now_us) if self.bus is not None else 0

    def readinto(self, buf, nbytes=-1):
        twin.charge(twin.cost[4])
        if self.bus is None:
            return None
        n = self.bus.take(twin.now_us, buf, len(buf) if nbytes < 0 else nbytes)
        return n if n else None  # timeout=0 and nothing there: None, as on the port

    def read(self, nbytes=-1):
        b = bytearray(256 if nbytes < 0 else nbytes)
        n = self.readinto(b)
        return bytes(b[:n]) if n else None


# -- watchdog --------------------------------------------------------------------------------------
class WDT:
    _last = None

    def __init__(self, *args, **kw):
        _check("WDT", None, len(args), kw)
        timeout = kw.get("timeout", args[1] if len(args) > 1 else 5000)
        if timeout <= 0:
            raise ValueError("WDT timeout too short")  # machine_wdt.c
        # machine_wdt.c: the ESP-IDF task watchdog, (re)configured with the new timeout; once
        # running it cannot be stopped (only a reset disables it).
        self.timeout_us = timeout * 1000
        self.fed = twin.now_us
        if WDT._last is None:
            twin.hook(_wdt_check)
        WDT._last = self

    def feed(self):
        # The watchdog margin the run kept: the timeout less the longest gap between feeds.
        gap = twin.now_us - self.fed
        if gap > twin.stats.get("wdt_max_gap_us", 0):
            twin.stats["wdt_max_gap_us"] = gap
            twin.stats["wdt_timeout_us"] = self.timeout_us
        self.fed = twin.now_us
        twin.stat("wdt_feeds")
        if 0 <= twin.P["hang_at_us"] <= twin.now_us:
            # Fault injection (launch.py "hang_at_us"): from here the loop never feeds again,
            # as if stuck in a driver; once per run.
            twin.P["hang_at_us"] = -1
            twin.stat("hangs")
            while True:
                twin.charge(1000)
        # The firmware feeds once per loop: charge the loop's Python work here (launch.py).
        twin.charge(twin.cpu_us(twin.P["loop_work_us"]))


def _wdt_check(now):
    w = WDT._last
    if w is not None and now - w.fed > w.timeout_us:
        twin.stat("wdt_resets")
        WDT._last = None
        twin.reset(WDT_RESET)


def wdt_forget():
    WDT._last = None


# -- RTC -------------------------------------------------------------------------------------------
class RTC:
    def __init__(self, *args, **kw):
        _check("RTC", None, len(args), kw)

    def datetime(self, *args):
        _check("RTC", "datetime", len(args), {})
        if args:
            y, mo, d, _wd, h, mi, s, _ = args[0]
            # machine_rtc.c: settimeofday() from the tuple (weekday ignored), epoch 2000.
            secs = utime.mktime((y, mo, d, h, mi, s, 0, 0)) - 946684800
            twin.rtc_set(secs)
            return None
        t = utime.gmtime(twin.rtc_seconds() + 946684800)
        return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)

    def init(self, t):
        self.datetime(t)

    def memory(self, *args):
        if args:
            twin.rtc_memory = bytes(args[0])
            return None
        return getattr(twin, "rtc_memory", b"")
