# The board side of a virtual device (tools/twin/vdev.py: `make virtual-device BOARD=esp32`): the
# twin in realtime mode behind a pty console and the RS-485 link, restarted by a supervisor like
# a board. launch.py calls setup() before the flash is made and start() just before the first
# boot; this module then
#   * anchors the virtual clock to the wall clock (twin.realtime_start) and serves the outside
#     world while the twin waits (io: extbus.py's UDP bus, boot notes to the supervisor);
#   * takes the reset cause, the world time (the scenario's time: the supervisor's age) and the
#     RTC from the boot state file the supervisor writes before each start, and keeps the RTC
#     there (as RTC minus host time) whenever it is set, so it survives a process restart;
#   * writes the provisioning files (identity.json, config.json) onto the flash at the first
#     boot of a supervisor run;
#   * raises Ctrl-C (KeyboardInterrupt) where it is safe. The console's tty sends no SIGINT:
#     a signal's KeyboardInterrupt is raised wherever the VM happens to be, and on the twin that
#     includes the Python flash model inside LittleFS's C code and inside garbage collections
#     (LittleFS files closed by their finalisers), where an exception leaves a filesystem
#     operation half done or the heap locked for good (on the board the flash driver is C).
#     The supervisor sends each Ctrl-C byte as a datagram instead, and io() raises it at the
#     next charge outside a flash operation. A Ctrl-C sent while the twin sat idle (the REPL
#     waiting for input, which reads the byte itself) is stale and dropped.
# Resets at the REPL end the process (twin.Reset is a SystemExit: exit status = reset cause).
import json
import os
import select

import flash
import machine
import twin
import usocket as socket  # the host's: board/socket.py is the ESP32 model
import utime

IDLE_US = 50000  # no charge for this long: the twin was idle (the REPL waiting for input)

_state = ""  # the boot state file
_boot = {}
cause = machine.PWRON_RESET
_depth = [0]  # flash operations in progress: allocate nothing (LittleFS may lock the heap)
_last = [0, 0]  # utime.ticks_us() of the last io(), and when the twin last woke from idle
_intr = [None]  # socket for Ctrl-C datagrams
_poll = select.poll()  # what io() waits on: Ctrl-C, the bus
_seen = [0]  # the last twin.boots reported to the supervisor
_note = [None, None]  # socket, supervisor address
_bus = [None]  # extbus.ExtBus, if the run has one


def _unix_us():
    return utime.time_ns() // 1000


def setup(vcfg):
    """Before the flash is made: the boot state, notes to the supervisor, twin.io."""
    global _state, _boot, cause
    _state = vcfg["boot"]
    with open(_state) as f:
        _boot = json.load(f)
    cause = _boot.get("cause", machine.PWRON_RESET)
    twin.end_us = -1
    if vcfg.get("intr"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(socket.getaddrinfo("127.0.0.1", vcfg["intr"])[0][-1])
        s.setblocking(False)
        _intr[0] = s
        _poll.register(s, select.POLLIN)
    if vcfg.get("notify"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        _note[0] = s
        _note[1] = socket.getaddrinfo("127.0.0.1", vcfg["notify"])[0][-1]
    _last[0] = utime.ticks_us()
    _send_note(b"ready")  # (Ctrl-C datagrams reach us from now on)
    twin.rtc_set = _rtc_set
    twin.io = io


def start():
    """Just before the first boot (the flash is mounted and the cwd): provisioning, the world
    time and the RTC, then the clock is tied to the wall clock. Returns the reset cause."""
    prov = _boot.pop("provision", None)
    if prov:
        # tools/provisioning.py: a fresh state.json only with a new key, never over the state of
        # a detector that already holds this identity (its downlink mark guards replays).
        try:
            with open("identity.json") as f:
                same = f.read() == prov.get("identity.json")
        except OSError:
            same = False
        for name in prov:
            if name == "state.json" and same:
                continue
            with open(name, "w") as f:
                f.write(prov[name])
    twin.now_us = _boot.get("world_us", 0)
    if "rtc" in _boot:
        # RTC minus host time, kept by the previous process (or the host clock: --rtc).
        twin.rtc_offset_us = _unix_us() + _boot["rtc"] - twin.now_us
    else:
        twin.power_on()  # from 2000-01-01 00:00:00, as after a power cut
    b = machine.bus
    if hasattr(b, "send_due"):
        _bus[0] = b
        _poll.register(b.sock, select.POLLIN)
    twin.realtime_start()
    _save()
    return cause


_twin_rtc_set = twin.rtc_set


def _rtc_set(seconds_since_2000):
    _twin_rtc_set(seconds_since_2000)
    _save()


def _save():
    # The RTC as (its time in us since 2000) - (host time in us since 1970): constant while the
    # clock keeps pace with the wall clock, so the next process picks it up where it is.
    _boot["rtc"] = twin.rtc_offset_us + twin.wall_us() - _unix_us()
    tmp = _state + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_boot, f)
    os.rename(tmp, _state)


def _send_note(msg):
    if _note[0] is not None:
        try:
            _note[0].sendto(msg, _note[1])
        except OSError:
            pass


def _booted():
    _seen[0] = twin.boots
    if _bus[0] is not None:
        _bus[0].reboot()
    _send_note(b"boot %d %d" % (twin.boots, twin.cause))


def _ctrl_c():
    """True if a Ctrl-C datagram waiting is fresh: typed since the twin last woke from idle
    (the supervisor's monotonic clock, which is the unix port's ticks_us clock). One datagram
    per recv() (readinto() would run several together, as a stream)."""
    fresh = False
    while True:
        try:
            sent = int(_intr[0].recv(32))
        except OSError:
            return fresh
        except ValueError:
            continue
        if utime.ticks_diff(sent, _last[1]) >= 0:
            fresh = True


def io(wait_us):
    """twin.io: called at every charge (wait_us 0) and while the clock waits for the wall clock
    (wait up to wait_us)."""
    now = utime.ticks_us()
    if utime.ticks_diff(now, _last[0]) > IDLE_US:
        _last[1] = now
    _last[0] = now
    if _depth[0]:
        if wait_us > 0:
            utime.sleep_us(wait_us)
            _last[0] = utime.ticks_us()  # (waiting is not idling)
        return
    if _seen[0] != twin.boots:
        _booted()
    b = _bus[0]
    if b is not None:
        wait_us = b.send_due(wait_us)
    # Wait (up to wait_us, in ms steps) for the outside: a Ctrl-C, bytes on the bus.
    ms = wait_us // 1000
    intr = False
    got = False
    while True:
        ready = None
        for t in _poll.ipoll(ms):
            ready = t[0]  # (the poller's own tuple: read, not kept)
            break
        if ready is None:
            break
        got = True
        ms = 0
        if ready is _intr[0]:
            intr = _ctrl_c() or intr
        else:
            b.recv()
    if not got and 0 < wait_us < 1000:
        utime.sleep_us(wait_us)
    _last[0] = utime.ticks_us()  # (waiting is not idling)
    if intr:
        raise KeyboardInterrupt


class GuardedFlash(flash.Flash):
    """flash.Flash that tells io() when a flash operation is in progress: it is called from
    inside LittleFS, possibly from a garbage collection with the heap locked, so io() must
    neither allocate nor raise there (see the header)."""

    def readblocks(self, n, buf, off=0):
        _depth[0] += 1
        try:
            return flash.Flash.readblocks(self, n, buf, off)
        finally:
            _depth[0] -= 1

    def writeblocks(self, n, buf, off=None):
        _depth[0] += 1
        try:
            return flash.Flash.writeblocks(self, n, buf, off)
        finally:
            _depth[0] -= 1

    def ioctl(self, op, arg):
        _depth[0] += 1
        try:
            return flash.Flash.ioctl(self, op, arg)
        finally:
            _depth[0] -= 1
