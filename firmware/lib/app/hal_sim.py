# Simulated HAL for the MicroPython unix port: the virtual detector and the host tests.
#
# Sensors come from a feed file rendered on the host from a simulator scenario
# (tools/virtual_device.py, host_sim) or from a built-in generator (a clean sine at set
# levels). The clock is real (paced to the window) or simulated (advances one window per
# sample(), for running hours of firmware in seconds). The protocol link, the watchdog and
# the control channel are UDP datagrams on 127.0.0.1, so the firmware never blocks on them;
# the supervisor bridges the link to a pty and acts as the watchdog. That I/O and the feed
# reader are app/sim_io.py, imported only when the environment (or an argument) asks for one.
#
# Environment (set by tools/virtual_device.py; all optional):
#   EFD_LINK=dev_port:host_port  EFD_CTL=port  EFD_WDT=port  EFD_FEED=path
#   EFD_CLOCK=real|sim  EFD_RESET_CAUSE=n  EFD_RTC=unset|host
#   EFD_RSSI=dBm (with EFD_LINK: the link is WiFi at that RSSI for link_status; sim_io.py)
import os
import sys
import time
from array import array

from efd import ntc, rms, ticks
from efd.compat import const

_SINE_SCALE = const(10000)
_WINDOW_MS = const(100)
_EPOCH_UNIX = const(1577836800)


def _nothing(*args):
    return 0


class SimHal:
    polled = False  # point-to-point: the detector may send unprompted (SPEC.md §9)
    # Without a link the HAL is its own: nothing comes in, what goes out is dropped.
    read = write = busy = _nothing
    btn = 0  # a press from the control channel: 1 short, 2 long; read once by button()
    hang = False  # `hang` control message: stop feeding the watchdog (see wdt_feed)

    def __init__(self, clock=None, feed=None, link=None):
        env = os.getenv
        self.sim_clock = (clock or env("EFD_CLOCK") or "real") == "sim"
        self.t = 0
        self.next_at = time.ticks_ms() & ticks.MASK
        # The link, control channel, watchdog client and feed reader are app/sim_io.py's,
        # imported only when one of them is asked for (see there).
        lk = env("EFD_LINK")
        if link is not None:
            self.link = link
        elif lk:
            from app import sim_io

            a, b = lk.split(":")
            self.link = sim_io.UdpLink(int(a), int(b))
        else:
            self.link = self
        ctl = env("EFD_CTL")
        wdt = env("EFD_WDT")
        self.ctl = None
        self.wdt = None
        if ctl or wdt:
            from app import sim_io

            if ctl:
                self.ctl = sim_io.Control(int(ctl))
            if wdt:
                self.wdt = sim_io.Watchdog(int(wdt))
        self.rtc = None  # (wire time, ticks_ms then) once set; None = clock not set
        if env("EFD_RTC") == "host":
            self.set_time(time.time() - _EPOCH_UNIX)
        # Built-in generator levels: natural leakage 50 mA, 10 A per phase, 25 degC.
        self.res_ma = 50
        self.phase_ca = [1000, 1000, 1000]
        self.temp_dc = [250, 250, 250, 250]
        self.arc_per_s = 0
        self.test_ma = 0
        self.dirty = True
        self.sine = array("h", bytes(2 * rms.SAMPLES_PER_CYCLE))  # no list of ints on the way
        import math

        for i in range(rms.SAMPLES_PER_CYCLE):
            self.sine[i] = int(_SINE_SCALE * math.sin(2 * math.pi * i / rms.SAMPLES_PER_CYCLE))
        self.feed = None  # sim_io.Feed while a feed file plays
        self.arc_acc = 0
        self.leds = -1
        path = feed or env("EFD_FEED")
        if path:
            from app import sim_io

            sim_io.open_feed(self, path)

    # -- time ------------------------------------------------------------------------------------
    def ticks_ms(self):
        if self.sim_clock:
            return self.t
        # The unix port's ticks wrap at 2^62; the core expects the ESP32's 2^30 period.
        return time.ticks_ms() & ticks.MASK

    def time(self):
        r = self.rtc
        if r is None:
            return 0
        return r[0] + ticks.diff(self.ticks_ms(), r[1]) // 1000

    def set_time(self, t):
        self.rtc = (int(t), self.ticks_ms())

    # -- sensors ---------------------------------------------------------------------------------
    def sample(self, det):
        if self.ctl is not None:
            self.ctl.poll(self, det)
        if self.feed is not None:
            self.feed.read(self, det)
        elif self.dirty:
            # The built-in generator: clean sines at the set levels, NTC codes for the set
            # temperatures; computed again only when a level changes.
            gain = det.cfg["res_gain_q12"]
            self._add_sine(det.residual, self.res_ma, gain, rms.MID)
            if self.test_ma:
                self._add_sine(det.residual, self.test_ma, gain)
            pg = det.cfg["phase_gain_q12"]
            for i in range(3):
                self._add_sine(det.phase[i], self.phase_ca[i], pg, rms.MID)  # 0.01 A, as the core
            for i in range(4):
                # The ADC code whose efd.ntc reading is closest to the set 0.1 degC: a binary
                # search, since the low-side NTC reading falls as the code rises.
                lo = 1
                hi = rms.ADC_MAX - 1
                while lo < hi:
                    mid = (lo + hi) // 2
                    if ntc.to_decic(mid) > self.temp_dc[i]:
                        lo = mid + 1
                    else:
                        hi = mid
                det.temp_code[i] = lo
            self.dirty = False
        if self.sim_clock:
            self.t = ticks.add(self.t, _WINDOW_MS)
            self.arc_acc += self.arc_per_s  # per-second rate, counted out in arc_count()
            return
        # Real clock: one window per 100 ms, like the board's burst. Late windows are not
        # caught up (the board cannot either); the deadline just restarts.
        now = time.ticks_ms() & ticks.MASK
        wait = ticks.diff(self.next_at, now)
        if wait > 0:
            time.sleep_ms(wait)
            self.next_at = ticks.add(self.next_at, _WINDOW_MS)
        else:
            self.next_at = ticks.add(now, _WINDOW_MS)
        self.arc_acc += self.arc_per_s

    def _add_sine(self, buf, rms_units, gain_q12, base=-1):
        """Add a sine of rms_units (in the gain's units) to buf, or with base >= 0 write
        base + the sine over it."""
        # Peak in ADC counts = rms * sqrt(2) / (units per count); 14142/10000 = sqrt(2).
        peak = rms_units * 14142 * 4096 // (gain_q12 * 10000)
        s = self.sine
        k = len(s)
        for i in range(len(buf)):
            v = (buf[i] if base < 0 else base) + peak * s[i % k] // _SINE_SCALE
            buf[i] = 0 if v < 0 else (rms.ADC_MAX if v > rms.ADC_MAX else v)

    def arc_count(self):
        # arc_acc gains arc_per_s per 100 ms window: ten windows make one second's count.
        n = self.arc_acc // 10
        self.arc_acc = 0
        return n

    def test_current(self, ma):
        self.test_ma = ma
        self.dirty = True

    # -- outputs -------------------------------------------------------------------------------
    def outputs(self, alarm, fault, normal):
        bits = (1 if alarm else 0) | (2 if fault else 0) | (4 if normal else 0)
        if bits != self.leds:
            self.leds = bits
            # The console shows the indicator changes, like looking at the front panel.
            print(
                "[leds] red=%d yellow=%d green=%d buzzer=%d relay=%d"
                % (bits & 1, bits >> 1 & 1, bits >> 2 & 1, bits & 1, bits & 1)
            )

    def button(self):
        b = self.btn
        if b:
            self.btn = 0
        return b

    # -- watchdog and resets -------------------------------------------------------------------
    def wdt_feed(self):
        while self.hang:  # `hang` control message: prove the watchdog catches a stuck loop
            time.sleep_ms(100)
        if self.wdt is not None:
            self.wdt.feed()

    def wdt_release(self):
        if self.wdt is not None:
            self.wdt.send(b"X")

    def reset_cause(self):
        return int(os.getenv("EFD_RESET_CAUSE") or "1")

    def reboot(self):
        # The unix process must end for the supervisor to boot it again, but a SystemExit out
        # of main.py would only drop `micropython -i` into its REPL: so ask the supervisor
        # (its watchdog channel) to restart us, as a soft reset.
        print("[sim]", "reboot")
        if self.wdt is not None:
            self.wdt.send(b"R")
            while True:
                time.sleep_ms(100)
        sys.exit(0)
