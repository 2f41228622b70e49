# ESP32 HAL: ADC bursts, RS-485 UART with driver enable, arc pulse counter, indicators, button,
# watchdog, RTC. Pin numbers and front-end assumptions come from app.board (docs/hardware.md).
# Every machine/esp32 call here is checked against the ESP32 port's C source by the board twin
# (tools/twin, tests/twin): the generic stubs accept calls the port rejects.
#
# Sampling: one burst per window, 200 sample instants at 40 per mains cycle (efd.rms), each
# reading the residual and three phase CTs back to back with ADC.read_uv() (eFuse-calibrated:
# a raw code at 11 dB is ~0.8 mV x code + 142 mV with a per-chip reference of 1000-1200 mV, so
# raw codes are off by up to +-9 % and 140 mV). The microvolts are put on the ideal 0-3.3 V
# 12-bit scale the detection core and the simulator use. The instants are timed against
# time.ticks_us in a viper loop; the wait to each instant is time.sleep_us(), which busy-waits
# on esp_timer to the microsecond (ports/esp32 mphalport.c). A read costs ~95 us at 160 MHz on
# current ports (micropython issue #7495), so four do not fit a 60 Hz instant (417 us) at
# 160 MHz: the HAL runs the CPU at 240 MHz, measures the read cost at boot, and an instant it
# misses by more than an eighth of a period is counted late; a window with late samples is
# reported by the detector as a sampling fault (efd FAULT_TIMING), never a silent stretch.
import time
from array import array

import esp32
import machine
from micropython import const

from app import board
from efd import ticks
from efd.compat import micropython

_SHORT = const(1)
_LONG = const(2)
_EPOCH_2000 = const(631152000)  # ESP32 time.time() counts from 2000; wire time from 2020
_CPU_HZ = const(240000000)  # see the header: 4 reads per instant need it at 60 Hz
_SERVICE_EVERY = const(20)  # instants between link services in a burst: 10 ms at 50 Hz
_PCNT_MAX = const(32000)  # the pulse counter restarts at 0 here (esp32_pcnt.c, h_lim)
# sin(2 pi i / 40) x 10000, i = 0..39: one mains cycle at the sample instants (the test sine).
# fmt: off
_SINE40 = (
    0, 1564, 3090, 4540, 5878, 7071, 8090, 8910, 9511, 9877,
    10000, 9877, 9511, 8910, 8090, 7071, 5878, 4540, 3090, 1564,
    0, -1564, -3090, -4540, -5878, -7071, -8090, -8910, -9511, -9877,
    -10000, -9877, -9511, -8910, -8090, -7071, -5878, -4540, -3090, -1564,
)
# fmt: on


@micropython.viper
def _burst(reads, bufs, n: int, period: int, late_us: int, service, link, test, duty, out) -> int:
    """Fill bufs[k][i] with channel k's ideal 12-bit code at instants i * period us, calling
    service() every _SERVICE_EVERY instants and releasing the RS-485 driver at the first
    instant after the last stop bit. While a self-test runs (test: 40 duties, one mains cycle
    of the test sine) duty(test[i % 40]) is set at each instant. Returns the number of instants
    missed by more than late_us (the loop was preempted or the reads do not fit the period).
    out[0] = the sum of channel 0's codes (its mean is the CT bias: VCC / 2)."""
    testing = int(len(test))  # noqa: RUF046  # viper: the object to a machine int
    total = 0
    tp = ptr16(test)  # type: ignore[name-defined]  # viper cast
    j = 0
    r0 = reads[0]
    r1 = reads[1]
    r2 = reads[2]
    r3 = reads[3]
    b0 = ptr16(bufs[0])  # type: ignore[name-defined]  # viper cast
    b1 = ptr16(bufs[1])  # type: ignore[name-defined]  # viper cast
    b2 = ptr16(bufs[2])  # type: ignore[name-defined]  # viper cast
    b3 = ptr16(bufs[3])  # type: ignore[name-defined]  # viper cast
    late = 0
    t0 = int(time.ticks_us())
    k = 0
    for i in range(n):
        # ticks_us wraps at 2^30 on the ESP32, hence the masks.
        target = (t0 + i * period) & 0x3FFFFFFF
        d = (target - int(time.ticks_us())) & 0x3FFFFFFF
        if d > 0x20000000:
            if ((0 - d) & 0x3FFFFFFF) > late_us:
                late += 1
        elif d > 2:
            time.sleep_us(d)
        # uV -> ideal code (V / 3.3 V * 4095): (uv / 4) * 1301 / 2^18, 32-bit safe (< 2^31).
        v = ((int(r0()) >> 2) * 1301) >> 18
        v = v if v < 4095 else 4095
        b0[i] = v
        total += v
        v = ((int(r1()) >> 2) * 1301) >> 18
        b1[i] = v if v < 4095 else 4095
        v = ((int(r2()) >> 2) * 1301) >> 18
        b2[i] = v if v < 4095 else 4095
        v = ((int(r3()) >> 2) * 1301) >> 18
        b3[i] = v if v < 4095 else 4095
        if testing:
            duty(tp[j])
            j += 1
            if j == 40:
                j = 0
        if link.sending:  # DE must drop within a byte time of the last stop bit (SPEC.md §9)
            link.busy()
        k += 1
        if k == _SERVICE_EVERY:
            k = 0
            service()
    o = ptr32(out)  # type: ignore[name-defined]  # viper cast
    o[0] = total
    return late


def _code(uv):
    """Calibrated microvolts on the ideal 12-bit scale (the burst's formula, for the NTC)."""
    c = ((uv >> 2) * 1301) >> 18
    return c if c < 4095 else 4095


def _wifi(set_time):
    """The WiFi link if wifi.json is on the flash (and valid), else None."""
    try:
        import json

        with open("wifi.json") as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return None
    from app import wifi

    try:
        return wifi.WifiLink(cfg, set_time)
    except (KeyError, ValueError, TypeError, OSError) as e:
        # A bad file (or no radio) must not stop the detector: it falls back to the RS-485
        # port; the console says why (the exception's type only: never a secret).
        print("[wifi] not started:", type(e).__name__)
        return None


class UartLink:
    """RS-485 half duplex: DE high while our bytes go out, dropped within one link service of
    the last stop bit (UART.txdone(): the port's uart_wait_tx_done with no wait). write() never
    waits: the driver's TX ring buffer takes the frame."""

    def __init__(self):
        self.uart = machine.UART(
            board.UART_ID,
            baudrate=board.BAUD,
            tx=board.PIN_TX,
            rx=board.PIN_RX,
            rxbuf=512,
            txbuf=512,
            timeout=0,
        )
        self.de = machine.Pin(board.PIN_DE, machine.Pin.OUT, value=0)
        self.sending = False
        self.in_burst = False  # inside _burst DE is released by the burst, never by waiting

    def read(self, buf):
        n = self.uart.readinto(buf)
        return n or 0

    def write(self, data):
        self.de.value(1)
        self.uart.write(b"\x00")  # SPEC.md §3/§9: lead with a delimiter after bus turnaround
        self.uart.write(data)
        self.sending = True
        if not self.in_burst:
            # Outside the sampling burst nothing else is timed: wait for the last stop bit
            # (UART.flush: uart_wait_tx_done) and free the bus at once, so the master's next
            # frame is never lost to our receiver being off.
            self.uart.flush()
            self.busy()

    def busy(self):
        if self.sending and self.uart.txdone():
            self.de.value(0)
            self.sending = False
        return self.sending


class Esp32Hal:
    polled = board.LINK_POLLED

    def __init__(self):
        P = machine.Pin
        # Outputs low first: until here they floated (GPIOs are inputs after reset; the board's
        # pull-downs hold them, docs/hardware.md).
        self.red = P(board.PIN_LED_RED, P.OUT, value=0)
        self.yellow = P(board.PIN_LED_YELLOW, P.OUT, value=0)
        self.green = P(board.PIN_LED_GREEN, P.OUT, value=0)
        self.buzzer = P(board.PIN_BUZZER, P.OUT, value=0)
        self.relay = P(board.PIN_RELAY, P.OUT, value=0)
        # The self-test current source idles at 50 % duty: no current (see board.py).
        self.test_pwm = machine.PWM(P(board.PIN_TEST), freq=board.TEST_PWM_HZ, duty_u16=32768)
        self.test_duty = self.test_pwm.duty_u16
        self.no_test = array("H")
        self.test = self.no_test
        self.wdt = machine.WDT(timeout=board.WDT_MS)
        machine.freq(_CPU_HZ)
        atten = machine.ADC.ATTN_11DB
        self.adcs = [machine.ADC(P(board.PIN_RESIDUAL), atten=atten)]
        for p in board.PIN_PHASES:
            self.adcs.append(machine.ADC(P(p), atten=atten))
        # Bound methods once: looking up adc.read_uv in the loop would allocate every time.
        self.reads = [a.read_uv for a in self.adcs]
        self.temp_adc = machine.ADC(P(board.PIN_TEMP), atten=atten)
        self.mux = [P(p, P.OUT, value=0) for p in board.PIN_MUX]
        self.bufs = None
        self.sum = array("i", [0])  # the burst's sum of residual codes
        self.late = 0  # late instants in the last window (Detector.late)
        self.late_total = 0
        # The protocol link: WiFi + UDP when the flash holds wifi.json (provisioned like the
        # key, tools/provisioning.py; app/wifi.py, loaded only then), else the RS-485 port.
        self.wifi = _wifi(self.set_time)
        if self.wifi is None:
            self.link = UartLink()
        else:
            self.link = self.wifi
            self.polled = False  # point-to-point: the detector sends unprompted (SPEC.md §9)
        self.blink = 0
        self.service = self._service  # the app replaces it with its link service
        self.btn = P(board.PIN_BUTTON, P.IN, P.PULL_UP)
        self.btn_down = -1
        # Arc pulses are counted by the PCNT peripheral: Pin.irq handlers are scheduled (soft,
        # queue of 8) and never run while the viper burst runs, so an IRQ count loses pulses.
        self.arc_pin = P(board.PIN_ARC, P.IN, P.PULL_UP)
        self.pcnt = esp32.PCNT(
            0, pin=self.arc_pin, falling=esp32.PCNT.INCREMENT, min=-1, max=_PCNT_MAX, filter=800
        )
        self.pcnt.start()
        self.arc_last = 0
        self.rtc = machine.RTC()
        self.cause = machine.reset_cause()
        self.read_us = self._read_cost()

    def _read_cost(self):
        # Measured once at boot: the read cost decides whether the plan fits (docs/detection.md).
        r = self.reads[0]
        t0 = time.ticks_us()
        for _ in range(16):
            r()
        return time.ticks_diff(time.ticks_us(), t0) // 16

    def _service(self):
        self.link.busy()  # drop DE as soon as the last stop bit is out

    def ticks_ms(self):
        return time.ticks_ms() & ticks.MASK

    # -- sensors -----------------------------------------------------------------------------
    def sample(self, det):
        if self.bufs is None:
            self.bufs = [det.residual, det.phase[0], det.phase[1], det.phase[2]]
        # Read every window: a set_config of mains_hz applies from the next window.
        period = (
            board.SAMPLE_PERIOD_US_60HZ
            if det.cfg["mains_hz"] == 60
            else board.SAMPLE_PERIOD_US_50HZ
        )
        self.period = period
        n = len(det.residual)
        link = self.link
        link.in_burst = True
        test = self.test
        late = _burst(
            self.reads,
            self.bufs,
            n,
            period,
            period >> 3,
            self.service,
            link,
            test,
            self.test_duty,
            self.sum,
        )
        link.in_burst = False
        if len(test):
            self.test_duty(32768)  # between bursts: no test current (the next burst starts at 0)
        self.late = late
        self.late_total += late
        det.late = late
        # The NTC dividers hang from the same 3.3 V as the residual CT's bias (VCC / 2, 0.1 %
        # resistors): the window's mean code is that bias, so scaling by 2047.5 / mean makes
        # the NTC readings ratiometric, free of the regulator's tolerance (1 % of VCC is up to
        # 1.7 degC at 150 degC, docs/ntc.md). A bias outside its band is a CT lead fault: then
        # the nominal supply is assumed.
        bias2 = self.sum[0] * 2 // n  # 2 x the mean code, for integer rounding
        cfg = det.cfg
        if not cfg["ct_bias_lo"] * 2 <= bias2 <= cfg["ct_bias_hi"] * 2:
            bias2 = 4095
        mux = self.mux
        adc = self.temp_adc
        for ch in range(4):
            mux[0].value(ch & 1)
            mux[1].value(ch >> 1)
            time.sleep_us(board.MUX_SETTLE_US)
            acc = 0
            for _ in range(board.TEMP_OVERSAMPLE):
                acc += _code(adc.read_uv())
            c = (acc * 4095 // bias2 + board.TEMP_OVERSAMPLE // 2) // board.TEMP_OVERSAMPLE
            det.temp_code[ch] = c if c < 4095 else 4095

    def arc_count(self):
        v = self.pcnt.value()
        n = v - self.arc_last
        if n < 0:  # the counter restarted at _PCNT_MAX
            n += _PCNT_MAX
        self.arc_last = v
        return n

    def test_current(self, ma):
        """Self-test current `ma` RMS (0: off), a sine at the mains frequency (board.py)."""
        if not ma:
            self.test = self.no_test
            self.test_duty(32768)
            return
        a = ma * 32767 // board.TEST_FS_MA
        a = a if a < 32767 else 32767
        tab = array("H", bytes(80))
        for i in range(40):
            tab[i] = 32768 + a * _SINE40[i] // 10000
        self.test = tab

    # -- outputs and button ------------------------------------------------------------------
    def outputs(self, alarm, fault, normal):
        self.red.value(alarm)
        self.buzzer.value(alarm)
        self.relay.value(alarm)
        self.yellow.value(fault)
        w = self.wifi
        if w is not None and self._wifi_tick(w) != 2 and normal:
            # WiFi link not up (docs/firmware.md, Indicators): green blinks 0.5 s on, 0.5 s off
            # (this is called once per ~105 ms window); steady green = normal and linked.
            # Alarm and fault indications never change with the link.
            self.blink = (self.blink + 1) % 10
            normal = self.blink < 5
        self.green.value(normal)

    def _wifi_tick(self, w):
        # The network is hostile and the driver may fail: nothing from it may stop the loop.
        try:
            return w.tick(time.ticks_ms())
        except Exception:
            return 0

    def button(self):
        now = time.ticks_ms()
        down = self.btn.value() == 0
        if down:
            if self.btn_down < 0:
                self.btn_down = now
            return 0
        if self.btn_down < 0:
            return 0
        held = time.ticks_diff(now, self.btn_down)
        self.btn_down = -1
        if held < board.BUTTON_DEBOUNCE_MS:
            return 0
        return _LONG if held >= board.BUTTON_LONG_MS else _SHORT

    # -- time ------------------------------------------------------------------------------------
    def time(self):
        # The RTC keeps time across soft, watchdog and software resets; only a power-on starts
        # it again from 2000-01-01, which reads as "not set" (before 2020: wire time 0).
        t = time.time() - _EPOCH_2000
        return t if t > 0 else 0

    def set_time(self, t):
        y, mo, d, h, mi, s, wd, _ = time.gmtime(t + _EPOCH_2000)
        self.rtc.datetime((y, mo, d, wd, h, mi, s, 0))

    # -- watchdog and resets ---------------------------------------------------------------------
    def wdt_feed(self):
        self.wdt.feed()

    def wdt_release(self):
        # The ESP32 task watchdog cannot be stopped once started. Re-creating it with the longest
        # timeout the port accepts gives mpremote time for a deploy after Ctrl-C.
        try:
            self.wdt = machine.WDT(timeout=0x7FFFFFFF // 1000)
        except (ValueError, OSError):
            pass

    def reset_cause(self):
        return self.cause

    def reboot(self):
        machine.reset()
