# Simulated HAL for the MicroPython unix port: the virtual detector and the host tests.
#
# Sensors come from a feed file rendered on the host from a simulator scenario
# (tools/virtual_device.py, host_sim) or from a built-in generator (a clean sine at set
# levels). The clock is real (paced to the window) or simulated (advances one window per
# sample(), for running hours of firmware in seconds). The protocol link, the watchdog and
# the control channel are UDP datagrams on 127.0.0.1, so the firmware never blocks on them;
# the supervisor bridges the link to a pty and acts as the watchdog.
#
# Environment (set by tools/virtual_device.py; all optional):
#   EFD_LINK=dev_port:host_port  EFD_CTL=port  EFD_WDT=port  EFD_FEED=path
#   EFD_CLOCK=real|sim  EFD_RESET_CAUSE=n  EFD_RTC=unset|host
import os
import socket
import sys
import time
from array import array

from efd import ntc, rms, ticks
from efd.compat import const

_SINE_SCALE = const(10000)
FEED_MAGIC = b"EFDFEED1"
# Per window: residual + 3 phases (rms.N u16 each), 4 NTC codes, arc pulses, pad: all u16 LE.
FEED_RECORD = 2 * (4 * rms.N + 6)
_EPOCH_UNIX = 1577836800


def _udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    s.setblocking(False)
    return s


def _addr(port):
    return socket.getaddrinfo("127.0.0.1", port)[0][-1]


def temp_code(deci_c):
    """ADC code whose efd.ntc reading is closest to deci_c (0.1 degC): binary search, since the
    low-side NTC reading falls as the code rises."""
    lo = 1
    hi = rms.ADC_MAX - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if ntc.to_decic(mid) > deci_c:
            lo = mid + 1
        else:
            hi = mid
    return lo


class UdpLink:
    """The protocol link as datagrams: each write() is one datagram of stuffed frames."""

    def __init__(self, dev_port, host_port):
        self.sock = _udp(dev_port)
        self.peer = _addr(host_port)

    def read(self, buf):
        try:
            return self.sock.readinto(buf)
        except OSError:
            return 0

    def write(self, data):
        try:
            self.sock.sendto(data, self.peer)
        except OSError:
            pass  # nobody listening: a link outage, the event stays pending

    def busy(self):
        return False


class NullLink:
    def read(self, buf):
        return 0

    def write(self, data):
        pass

    def busy(self):
        return False


class SimHal:
    polled = False  # point-to-point: the detector may send unprompted (SPEC.md §9)

    def __init__(self, clock=None, feed=None, link=None):
        env = os.getenv
        self.sim_clock = (clock or env("EFD_CLOCK") or "real") == "sim"
        self.t = 0
        self.window_ms = 100
        self.next_at = time.ticks_ms() & ticks.MASK
        lk = env("EFD_LINK")
        if link is not None:
            self.link = link
        elif lk:
            a, b = lk.split(":")
            self.link = UdpLink(int(a), int(b))
        else:
            self.link = NullLink()
        ctl = env("EFD_CTL")
        self.ctl = _udp(int(ctl)) if ctl else None
        self.ctl_buf = bytearray(256)
        wdt = env("EFD_WDT")
        self.wdt = None
        if wdt:
            self.wdt = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.wdt_addr = _addr(int(wdt))
            self.wdt_at = 0
        self.cause = int(env("EFD_RESET_CAUSE") or "1")
        self.rtc_base = -1  # wire time at rtc_ticks; -1 = clock not set
        self.rtc_ticks = 0
        if env("EFD_RTC") == "host":
            self.set_time(time.time() - _EPOCH_UNIX)
        # Built-in generator levels: natural leakage 50 mA, 10 A per phase, 25 degC.
        self.res_ma = 50
        self.phase_ca = [1000, 1000, 1000]
        self.temp_dc = [250, 250, 250, 250]
        self.arc_per_s = 0
        self.test_ma = 0
        self.dirty = True
        self.sine = array("h", [0] * rms.SAMPLES_PER_CYCLE)
        import math

        for i in range(rms.SAMPLES_PER_CYCLE):
            self.sine[i] = int(_SINE_SCALE * math.sin(2 * math.pi * i / rms.SAMPLES_PER_CYCLE))
        self.feed = None
        self.arc_acc = 0
        self.arc_word = array("H", [0, 0])
        self.btn = 0
        self.leds = -1
        self.hang = False
        path = feed or env("EFD_FEED")
        if path:
            self.open_feed(path)

    # -- time ------------------------------------------------------------------------------------
    def ticks_ms(self):
        if self.sim_clock:
            return self.t
        # The unix port's ticks wrap at 2^62; the core expects the ESP32's 2^30 period.
        return time.ticks_ms() & ticks.MASK

    def time(self):
        if self.rtc_base < 0:
            return 0
        return self.rtc_base + ticks.diff(self.ticks_ms(), self.rtc_ticks) // 1000

    def set_time(self, t):
        self.rtc_base = int(t)
        self.rtc_ticks = self.ticks_ms()

    # -- sensors ---------------------------------------------------------------------------------
    def open_feed(self, path):
        if self.feed:
            self.feed.close()
            self.feed = None
        try:
            f = open(path, "rb")
        except OSError:
            print("[sim] feed not found:", path)
            return
        if f.read(8) != FEED_MAGIC:
            print("[sim] not a feed file:", path)
            f.close()
            return
        self.feed = f

    def sample(self, det):
        self._control()
        if self.feed is not None:
            self._from_feed(det)
        elif self.dirty:
            self._generate(det)
        if self.sim_clock:
            self.t = ticks.add(self.t, self.window_ms)
            self.arc_acc += self.arc_per_s  # per-second rate, counted out in arc_count()
            return
        # Real clock: one window per 100 ms, like the board's burst. Late windows are not
        # caught up (the board cannot either); the deadline just restarts.
        now = time.ticks_ms() & ticks.MASK
        wait = ticks.diff(self.next_at, now)
        if wait > 0:
            time.sleep_ms(wait)
            self.next_at = ticks.add(self.next_at, self.window_ms)
        else:
            self.next_at = ticks.add(now, self.window_ms)
        self.arc_acc += self.arc_per_s

    def _from_feed(self, det):
        f = self.feed
        n = f.readinto(det.residual)
        for p in det.phase:
            n += f.readinto(p)
        n += f.readinto(det.temp_code)
        n += f.readinto(self.arc_word)
        if n < FEED_RECORD:
            # End of the scenario: hold the last window's signals from now on.
            f.close()
            self.feed = None
            return
        self.arc_acc += self.arc_word[0] * 10  # arc_acc counts tenths (see arc_count)
        if self.test_ma:
            self._add_sine(det.residual, self.test_ma, det.cfg["res_gain_q12"])

    def _generate(self, det):
        gain = det.cfg["res_gain_q12"]
        self._fill(det.residual, self.res_ma, gain)
        if self.test_ma:
            self._add_sine(det.residual, self.test_ma, gain)
        pg = det.cfg["phase_gain_q12"]
        for i in range(3):
            self._fill(det.phase[i], self.phase_ca[i], pg)  # 0.01 A, like the core's values
        for i in range(4):
            det.temp_code[i] = temp_code(self.temp_dc[i])
        self.dirty = False

    def _fill(self, buf, rms_units, gain_q12):
        for i in range(len(buf)):
            buf[i] = rms.MID
        self._add_sine(buf, rms_units, gain_q12)

    def _add_sine(self, buf, rms_units, gain_q12):
        # Peak in ADC counts = rms * sqrt(2) / (units per count); 14142/10000 = sqrt(2).
        peak = rms_units * 14142 * 4096 // (gain_q12 * 10000)
        s = self.sine
        k = len(s)
        for i in range(len(buf)):
            v = buf[i] + peak * s[i % k] // _SINE_SCALE
            buf[i] = 0 if v < 0 else (rms.ADC_MAX if v > rms.ADC_MAX else v)

    def arc_count(self):
        # arc_acc gains arc_per_s per 100 ms window: ten windows make one second's count.
        n = self.arc_acc // 10
        self.arc_acc = 0
        return n

    def test_current(self, ma):
        self.test_ma = ma
        self.dirty = True

    # -- control channel (tests, tools/virtual_device.py `set ...`) ------------------------------
    def _control(self):
        if self.ctl is None:
            return
        try:
            n = self.ctl.readinto(self.ctl_buf)
        except OSError:
            return
        if not n:
            return
        words = bytes(self.ctl_buf[:n]).decode().split()
        try:
            self._apply(words)
        except (ValueError, IndexError):
            print("[sim] bad control message:", words)

    def _apply(self, w):
        cmd = w[0]
        if cmd == "res":
            self.res_ma = int(w[1])
        elif cmd == "temp":
            self.temp_dc[int(w[1])] = int(float(w[2]) * 10)
        elif cmd == "phase":
            self.phase_ca[int(w[1])] = int(float(w[2]) * 100)
        elif cmd == "arc":
            self.arc_per_s = int(w[1])
        elif cmd == "feed":
            self.open_feed(w[1])
        elif cmd == "button":
            self.btn = 2 if w[1] == "long" else 1
        elif cmd == "hang":
            self.hang = True
        self.dirty = True
        print("[sim]", " ".join(w))

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
        self.btn = 0
        return b

    # -- watchdog and resets -------------------------------------------------------------------
    def wdt_feed(self):
        while self.hang:  # `hang` control message: prove the watchdog catches a stuck loop
            time.sleep_ms(100)
        if self.wdt is None:
            return
        now = time.ticks_ms() & ticks.MASK
        if ticks.diff(now, self.wdt_at) >= 500:
            self.wdt_at = now
            try:
                self.wdt.sendto(b"F", self.wdt_addr)
            except OSError:
                pass

    def wdt_release(self):
        if self.wdt is not None:
            try:
                self.wdt.sendto(b"X", self.wdt_addr)
            except OSError:
                pass

    def reset_cause(self):
        return self.cause

    def reboot(self):
        # The unix process must end for the supervisor to boot it again, but a SystemExit out
        # of main.py would only drop `micropython -i` into its REPL: so ask the supervisor
        # (its watchdog channel) to restart us, as a soft reset.
        print("[sim] reboot")
        if self.wdt is not None:
            try:
                self.wdt.sendto(b"R", self.wdt_addr)
            except OSError:
                pass
            while True:
                time.sleep_ms(100)
        sys.exit(0)
