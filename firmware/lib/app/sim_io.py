# The simulated HAL's optional I/O (app/hal_sim.py): the UDP protocol link, the control
# channel, the sensor feed file and the watchdog client. Each is used only when its EFD_*
# variable (or a constructor argument) asks for it, so hal_sim.py imports this module then and
# only then: a run without them (the host tests' simulated hours, the bench) does not spend
# heap on code it never executes (an .mpy's functions are all loaded at import). All sockets
# are UDP on 127.0.0.1 and non-blocking, so the firmware never waits on them; the supervisor
# (tools/virtual_device.py) bridges the link to a pty and acts as the watchdog.
import os
import socket
import time
from array import array

from app.dgram import DgramStream
from efd import rms, ticks
from protocol.frame import MAX_WIRE

FEED_MAGIC = b"EFDFEED1"
# Per window: residual + 3 phases (rms.N u16 each), 4 NTC codes, arc pulses, pad: all u16 LE.
FEED_RECORD = 2 * (4 * rms.N + 6)


def _udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
    s.setblocking(False)
    return s


def _addr(port):
    return socket.getaddrinfo("127.0.0.1", port)[0][-1]


class UdpLink(DgramStream):
    """The protocol link as datagrams: each write() is one datagram of stuffed frames; read()
    is a byte stream, like the board's UART (app/dgram.py, shared with the board's WiFi link)."""

    def __init__(self, dev_port, host_port):
        DgramStream.__init__(self, _udp(dev_port), 2 * MAX_WIRE)
        self.peer = _addr(host_port)
        r = os.getenv("EFD_RSSI")  # a simulated WiFi RSSI (dBm): link_status reports it
        if r:
            self.rssi = int(r)

    def write(self, data):
        try:
            self.sock.sendto(data, self.peer)
        except OSError:
            pass  # nobody listening: a link outage, the event stays pending

    def busy(self):
        return False


class Control:
    """Control channel (`python -m tools.virtual_device ctl`, tests): one command a datagram,
    checked against the firmware's limits (check()) and answered with a datagram saying what
    was done ("ok ...") or why not ("error ...")."""

    def __init__(self, port):
        import select

        self.sock = _udp(port)
        # ipoll() while nothing comes allocates nothing; a non-blocking recvfrom() would raise
        # (allocate) an EAGAIN OSError every window. recvfrom gives the sender to answer.
        self.poller = select.poll()
        self.poller.register(self.sock, select.POLLIN)

    def poll(self, hal, det):
        for _ in self.poller.ipoll(0):
            try:
                data, addr = self.sock.recvfrom(256)
            except OSError:
                return
            try:
                msg = "ok " + apply(hal, check(data.decode().split(), det.cfg))
            except Exception as e:  # a control message never stops the detector
                msg = "error " + str(e)
            print("[sim]", msg)
            try:
                self.sock.sendto(msg.encode(), addr)
            except OSError:
                pass
            return


USAGE = "res MA | temp CH DEGC | phase CH A | arc N | feed PATH | button short|long | hang"


def _num(s):
    try:
        return float(s)
    except ValueError:
        return None


def _chan(s, n, what):
    v = _num(s)
    if v is None or not 0 <= v < n or v != int(v):
        raise ValueError("%s: no channel %s (0..%d)" % (what, s, n - 1))
    return int(v)


def _level(s, what, scale, gain, unit):
    """A CT level in the HAL's units (1/scale of unit), at most the input's full scale at
    gain (None: not checked)."""
    v = _num(s)
    if v is None or not 0 <= v <= 1e6:
        raise ValueError("%s: %s is not a level in %s (a number >= 0)" % (what, s, unit))
    u = int(v * scale + 0.5)
    if gain is not None:
        top = full_scale(gain)
        if u > top:
            raise ValueError(
                "%s: %s %s is above the %s input's full scale, %g %s"
                % (what, s, unit, "residual" if what == "res" else "phase", top / scale, unit)
            )
    return u


def true_gains(text):
    """EFD_GAIN_ERR "res_pct,phase_pct" -> the unit's true Q12 gains (residual, phase): each
    `pct` percent above the nominal 1 mA and 0.1 A per count, so that unit reads pct % low
    at the nominal gains (SimHal.true_gain)."""
    a, b = text.split(",")
    return (int(4096 * (100 + float(a)) / 100 + 0.5), int(40960 * (100 + float(b)) / 100 + 0.5))


def full_scale(gain):
    """A CT input's full scale in the gain's units: the RMS of the largest sine the 12-bit ADC
    holds about mid-scale (peak counts = units * sqrt(2) / units a count, as in
    SimHal._add_sine)."""
    return (rms.ADC_MAX - rms.MID) * gain * 10000 // (14142 * 4096)


def check(w, cfg=None):
    """A control message's words -> (command, channel, value in the HAL's units), or ValueError
    saying what is wrong. Ranges are the firmware's: channels, the CT inputs' full scale at
    the detector's gains, the NTC table's range, arc half-cycles up to two per mains cycle.
    cfg: the detector's settings; None (the host's check, without a device) skips the ranges
    that depend on them."""
    n = len(w)
    c = w[0] if n else ""
    if c == "res" and n == 2:
        return c, 0, _level(w[1], c, 1, cfg and cfg["res_gain_q12"], "mA")
    if c == "phase" and n == 3:
        ch = _chan(w[1], 3, c)
        return c, ch, _level(w[2], c, 100, cfg and cfg["phase_gain_q12"], "A")
    if c == "temp" and n == 3:
        from efd import ntc

        ch = _chan(w[1], 4, c)
        v = _num(w[2])
        lo = ntc.to_decic(ntc.CODE_MAX)  # the reading falls as the code rises
        hi = ntc.to_decic(ntc.CODE_MIN)
        if v is None or not lo <= v * 10 <= hi:
            raise ValueError(
                "temp: %s is not a temperature in %g..%g degC" % (w[2], lo / 10, hi / 10)
            )
        return c, ch, int(v * 10 + (0.5 if v >= 0 else -0.5))
    if c == "arc" and n == 2:
        hi = 2 * (cfg["mains_hz"] if cfg else 60)
        v = _num(w[1])
        if v is None or not 0 <= v <= hi or v != int(v):
            raise ValueError("arc: %s is not a count of half-cycles a second (0..%d)" % (w[1], hi))
        return c, 0, int(v)
    if c == "button" and n == 2 and w[1] in ("short", "long"):
        return c, 0, 2 if w[1] == "long" else 1
    if c == "hang" and n == 1:
        return c, 0, 1
    if c == "feed" and n == 2:
        return c, 0, w[1]
    if c in ("res", "phase", "temp", "arc", "button", "hang", "feed"):
        raise ValueError("%s: wrong arguments (%s)" % (" ".join(w), USAGE))
    raise ValueError("unknown command %s (%s)" % (c or "(none)", USAGE))


def apply(hal, cmd):
    """Carry out a checked command (check()); returns what was done."""
    c, ch, v = cmd
    if c == "feed":
        f = _open(v)
        if isinstance(f, str):
            raise ValueError(f)
        _play(hal, f)
        return "feed " + v + " playing"
    if c == "button":
        hal.btn = v
        return "button pressed " + ("long (self-test)" if v == 2 else "short (reset)")
    if c == "hang":
        hal.hang = True
        return "hang: the main loop stops feeding the watchdog"
    # A level: the built-in generator's, which takes over from a feed (playing or held).
    if c == "res":
        hal.res_ma = v
        msg = "residual %d mA" % v
    elif c == "phase":
        hal.phase_ca[ch] = v
        msg = "phase%d %g A" % (ch, v / 100)
    elif c == "temp":
        hal.temp_dc[ch] = v
        msg = "temp%d %g degC" % (ch, v / 10)
    else:
        hal.arc_per_s = v
        msg = "arc %d half-cycles a second" % v
    hal.dirty = True
    if hal.feed:
        _play(hal, None)
        msg += " (feed stopped: the built-in generator's levels now)"
    return msg


def _open(path):
    """The feed file at path, ready to play, or a string saying why not."""
    try:
        f = open(path, "rb")
    except OSError:
        return "feed not found: " + path
    if f.read(8) != FEED_MAGIC:
        f.close()
        return "not a feed file: " + path
    return Feed(f)


def _play(hal, feed):
    if hal.feed:
        hal.feed.close()
    hal.feed = feed
    hal.dirty = True  # the generator writes its levels again once no feed plays


def open_feed(hal, path):
    """Play the feed file at path from now on (hal.feed), replacing any playing one."""
    f = _open(path)
    if isinstance(f, str):
        print("[sim]", f)
    else:
        _play(hal, f)


class Feed:
    """A feed file rendered on the host (tools/vdev_feed.py): one record per window, read
    straight into the detector's buffers. When the scenario ends its last window is held: read
    again every window (so a self-test's current still adds to it, and nothing is kept), its
    arc pulses counted once."""

    def __init__(self, f):
        self.f = f
        self.arc_word = array("H", [0, 0])
        self.held = 0  # once the scenario has ended: the file offset of its last window

    def close(self):
        self.f.close()

    def read(self, hal, det):
        f = self.f
        held = self.held
        if held:
            f.seek(held)
        n = f.readinto(det.residual)
        for p in det.phase:
            n += f.readinto(p)
        n += f.readinto(det.temp_code)
        n += f.readinto(self.arc_word)
        if n < FEED_RECORD:
            last = f.tell() - n - FEED_RECORD  # where the last whole window starts
            if held or last < 8:
                # No whole window in the file (or it changed under us): the generator.
                print("[sim] feed has no window: the built-in generator")
                _play(hal, None)
                return
            # The end of the scenario: hold its last window's signals from now on.
            print("[sim] feed ended: holding its last window")
            self.held = last
            self.read(hal, det)
            return
        if not held:
            hal.arc_acc += self.arc_word[0] * 10  # arc_acc counts tenths (see SimHal.arc_count)
        if hal.test_ma:
            hal._add_sine(det.residual, hal.test_ma, det.cfg["res_gain_q12"])


class Watchdog:
    """Client of the supervisor's watchdog: feeds ("F", at most every 500 ms), release ("X")
    and restart requests ("R")."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addr = _addr(port)
        self.at = 0

    def send(self, msg):
        try:
            self.sock.sendto(msg, self.addr)
        except OSError:
            pass

    def feed(self):
        now = time.ticks_ms() & ticks.MASK
        if ticks.diff(now, self.at) >= 500:
            self.at = now
            self.send(b"F")
