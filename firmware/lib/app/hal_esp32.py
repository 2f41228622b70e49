# ESP32 HAL: ADC bursts, RS-485 UART with driver enable, indicators, button, watchdog, RTC.
# Pin numbers and front-end assumptions come from app.board (docs/hardware.md).
#
# Sampling: one burst per window, 200 sample instants at 40 per mains cycle (efd.rms), each
# reading the residual and three phase CTs back to back. The instants are timed against
# time.ticks_us in a viper loop (no timer callbacks: on the ESP32 they are soft, scheduled
# and jitter by up to milliseconds; CONTEXT.md). One ADC1 read from viper costs ~35 us
# (micropython issue #7495), so 4 reads take ~140 us of the 500 us sample period. The channels
# are skewed by ~35 us (0.6 degree at 50 Hz): irrelevant for RMS.
import time

import machine
from micropython import const

from app import board
from efd import ticks
from efd.compat import micropython

_SHORT = const(1)
_LONG = const(2)
_EPOCH_2000 = const(631152000)  # ESP32 time.time() counts from 2000; wire time from 2020


@micropython.viper
def _burst(reads, bufs, n: int, period: int) -> int:
    """Fill bufs[k][i] = reads[k]() >> 4 (12-bit) at instants i * period us. Returns the
    number of late instants (a sign the loop was preempted, e.g. by WiFi)."""
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
    for i in range(n):
        # Busy-wait to the instant; ticks_us wraps at 2^30 on the ESP32, hence the mask.
        target = (t0 + i * period) & 0x3FFFFFFF
        d = (target - int(time.ticks_us())) & 0x3FFFFFFF
        if d > 0x20000000:
            late += 1
        else:
            while ((target - int(time.ticks_us())) & 0x3FFFFFFF) < 0x20000000:
                pass
        b0[i] = int(r0()) >> 4
        b1[i] = int(r1()) >> 4
        b2[i] = int(r2()) >> 4
        b3[i] = int(r3()) >> 4
    return late


class UartLink:
    """RS-485 half duplex: DE high while our bytes go out, released as soon as the UART reports
    the last stop bit sent. write() never waits: the driver's TX ring buffer takes the frame."""

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

    def read(self, buf):
        n = self.uart.readinto(buf)
        return n or 0

    def write(self, data):
        self.de.value(1)
        self.uart.write(b"\x00")  # SPEC.md §3/§9: lead with a delimiter after bus turnaround
        self.uart.write(data)
        self.sending = True

    def busy(self):
        if self.sending and self.uart.txdone():
            self.de.value(0)
            self.sending = False
        return self.sending


class Esp32Hal:
    polled = board.LINK_POLLED

    def __init__(self):
        P = machine.Pin
        atten = machine.ADC.ATTN_11DB
        self.adcs = [machine.ADC(P(board.PIN_RESIDUAL), atten=atten)]
        for p in board.PIN_PHASES:
            self.adcs.append(machine.ADC(P(p), atten=atten))
        # Bound methods once: looking up adc.read_u16 in the loop would allocate every time.
        self.reads = [a.read_u16 for a in self.adcs]
        self.temp_adc = machine.ADC(P(board.PIN_TEMP), atten=atten)
        self.mux = [P(p, P.OUT, value=0) for p in board.PIN_MUX]
        self.bufs = None
        self.late = 0
        self.link = UartLink()
        self.red = P(board.PIN_LED_RED, P.OUT, value=0)
        self.yellow = P(board.PIN_LED_YELLOW, P.OUT, value=0)
        self.green = P(board.PIN_LED_GREEN, P.OUT, value=0)
        self.buzzer = P(board.PIN_BUZZER, P.OUT, value=0)
        self.relay = P(board.PIN_RELAY, P.OUT, value=0)
        self.test = P(board.PIN_TEST, P.OUT, value=0)
        self.btn = P(board.PIN_BUTTON, P.IN, P.PULL_UP)
        self.btn_down = -1
        self.arc = 0
        self.arc_pin = P(board.PIN_ARC, P.IN, P.PULL_UP)
        self.arc_pin.irq(self._arc_irq, P.IRQ_FALLING, hard=True)
        self.rtc = machine.RTC()
        self.clock_set = False
        self.cause = machine.reset_cause()
        self.wdt = machine.WDT(timeout=board.WDT_MS)
        self.period = board.SAMPLE_PERIOD_US_50HZ

    def _arc_irq(self, pin):
        self.arc += 1  # small-int increment: no allocation in the hard IRQ

    def ticks_ms(self):
        return time.ticks_ms() & ticks.MASK

    # -- sensors -----------------------------------------------------------------------------
    def sample(self, det):
        if self.bufs is None:
            self.bufs = [det.residual, det.phase[0], det.phase[1], det.phase[2]]
            if det.cfg["mains_hz"] == 60:
                self.period = board.SAMPLE_PERIOD_US_60HZ
        self.late += _burst(self.reads, self.bufs, len(det.residual), self.period)
        mux = self.mux
        adc = self.temp_adc
        for ch in range(4):
            mux[0].value(ch & 1)
            mux[1].value(ch >> 1)
            time.sleep_us(board.MUX_SETTLE_US)
            acc = 0
            for _ in range(board.TEMP_OVERSAMPLE):
                acc += adc.read_u16() >> 4
            det.temp_code[ch] = acc // board.TEMP_OVERSAMPLE

    def arc_count(self):
        n = self.arc
        self.arc = 0
        return n

    def test_current(self, ma):
        # The test winding's resistor is sized for 1.5 x the default set value (docs/hardware.md);
        # the firmware only switches it. ma == 0 switches it off.
        self.test.value(1 if ma else 0)

    # -- outputs and button ------------------------------------------------------------------
    def outputs(self, alarm, fault, normal):
        self.red.value(alarm)
        self.buzzer.value(alarm)
        self.relay.value(alarm)
        self.yellow.value(fault)
        self.green.value(normal)

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
        if not self.clock_set:
            return 0
        t = time.time() - _EPOCH_2000
        return t if t > 0 else 0

    def set_time(self, t):
        y, mo, d, h, mi, s, wd, _ = time.gmtime(t + _EPOCH_2000)
        self.rtc.datetime((y, mo, d, wd, h, mi, s, 0))
        self.clock_set = True

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
