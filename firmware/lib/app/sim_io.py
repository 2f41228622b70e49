# The simulated HAL's optional I/O (app/hal_sim.py): the UDP protocol link, the control
# channel, the sensor feed file and the watchdog client. Each is used only when its EFD_*
# variable (or a constructor argument) asks for it, so hal_sim.py imports this module then and
# only then: a run without them (the host tests' simulated hours, the bench) does not spend
# heap on code it never executes (an .mpy's functions are all loaded at import). All sockets
# are UDP on 127.0.0.1 and non-blocking, so the firmware never waits on them; the supervisor
# (tools/virtual_device.py) bridges the link to a pty and acts as the watchdog.
import socket
import time
from array import array

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


class UdpLink:
    """The protocol link as datagrams: each write() is one datagram of stuffed frames.

    read() is a byte stream, like the board's UART: a datagram is received whole into its own
    buffer and handed out len(buf) bytes at a time (the link reads 64). Reading a datagram
    straight into the caller's buffer truncated every frame over 64 bytes on the wire (a
    set_config of 9 parameters was never answered): the kernel drops what does not fit."""

    def __init__(self, dev_port, host_port):
        self.sock = _udp(dev_port)
        self.peer = _addr(host_port)
        # A whole datagram: a frame of the protocol's maximum wire size, or several frames
        # back to back (SPEC.md §3); what a longer datagram has beyond it is lost.
        self.dgram = bytearray(2 * MAX_WIRE)
        self.pos = 0
        self.end = 0

    def read(self, buf):
        if self.pos >= self.end:
            try:
                n = self.sock.readinto(self.dgram)
            except OSError:
                return 0
            if not n:
                return 0
            self.pos = 0
            self.end = n
        p = self.pos
        k = min(len(buf), self.end - p)
        buf[:k] = memoryview(self.dgram)[p : p + k]
        self.pos = p + k
        return k

    def write(self, data):
        try:
            self.sock.sendto(data, self.peer)
        except OSError:
            pass  # nobody listening: a link outage, the event stays pending

    def busy(self):
        return False


class Control:
    """Control channel (tests, tools/virtual_device.py `set ...`): one command per datagram."""

    def __init__(self, port):
        self.sock = _udp(port)
        self.buf = bytearray(256)

    def poll(self, hal):
        try:
            n = self.sock.readinto(self.buf)
        except OSError:
            return
        if not n:
            return
        words = bytes(self.buf[:n]).decode().split()
        try:
            self.apply(hal, words)
        except (ValueError, IndexError):
            print("[sim] bad control message:", words)

    def apply(self, hal, w):
        cmd = w[0]
        if cmd == "res":
            hal.res_ma = int(w[1])
        elif cmd == "temp":
            hal.temp_dc[int(w[1])] = int(float(w[2]) * 10)
        elif cmd == "phase":
            hal.phase_ca[int(w[1])] = int(float(w[2]) * 100)
        elif cmd == "arc":
            hal.arc_per_s = int(w[1])
        elif cmd == "feed":
            open_feed(hal, w[1])
        elif cmd == "button":
            hal.btn = 2 if w[1] == "long" else 1
        elif cmd == "hang":
            hal.hang = True
        hal.dirty = True
        print("[sim]", " ".join(w))


def open_feed(hal, path):
    """Play the feed file at path from now on (hal.feed), replacing any playing one."""
    if hal.feed:
        hal.feed.close()
        hal.feed = None
    try:
        f = open(path, "rb")
    except OSError:
        print("[sim] feed not found:", path)
        return
    if f.read(8) != FEED_MAGIC:
        print("[sim] not a feed file:", path)
        f.close()
        return
    hal.feed = Feed(f)


class Feed:
    """A feed file rendered on the host (tools/vdev_feed.py): one record per window, read
    straight into the detector's buffers."""

    def __init__(self, f):
        self.f = f
        self.arc_word = array("H", [0, 0])

    def close(self):
        self.f.close()

    def read(self, hal, det):
        f = self.f
        n = f.readinto(det.residual)
        for p in det.phase:
            n += f.readinto(p)
        n += f.readinto(det.temp_code)
        n += f.readinto(self.arc_word)
        if n < FEED_RECORD:
            # End of the scenario: hold the last window's signals from now on.
            f.close()
            hal.feed = None
            return
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
