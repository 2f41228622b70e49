# The board twin's world: one virtual clock, the board's parameters and the reset machinery,
# shared by the twin's `machine`, `esp32` and `time` modules. This folder goes first on sys.path
# of a MicroPython unix-port process (tools/twin/board/launch.py; docs/hardware.md "Board twin").
#
# Time on the twin is virtual: it advances only by the costs the models charge (an ADC read, a
# flash erase, a busy-wait's ticks_us call, a sleep), never by the host's wall clock, so a
# scenario runs faster than real time and every run is repeatable. The firmware's own Python
# work between those calls costs nothing unless a model charges it (see LOOP_US in launch.py).
#
# A reset (watchdog, machine.reset(), power cut) and the end of the run are BaseExceptions, so
# the firmware's `except Exception` handlers cannot swallow them; the launcher catches them,
# remounts the flash and boots main.py again with a fresh module set (RAM gone; flash, RTC and
# the virtual clock kept, as on a board).
#
# Realtime mode (a virtual device, tools/twin/vdev.py): the clock stays virtual, but charge()
# never lets it run ahead of the wall clock (see "realtime" at the end).
import utime

now_us = 0  # virtual microseconds since power-on (never wraps: 63-bit small int on x64)
boot_us = 0  # now_us when the current boot began (the chip's own ticks count from here)
end_us = -1  # the run ends here (End raised); -1 = never
dead = False  # set while a reset unwinds: models must not act any more
cause = 1  # machine.reset_cause() of the current boot (1 = PWRON_RESET)
boots = 0
cpu_hz = 160000000  # the generic ESP32 build boots at 160 MHz (ports/esp32 sdkconfig.base)

# Board parameters (set by the launcher from the run's JSON config; each documented there).
P = {}

# Costs of the hot calls at the current CPU clock, in us (machine.set_costs fills it on boot and
# on every machine.freq()): [ADC read, read_uv arithmetic, ticks call, pin call, UART call].
cost = [0, 0, 0, 0, 0]

# Per-run statistics the models keep, written to the stats file by the launcher.
stats = {}


class Reset(SystemExit):
    """The board resets: args[0] is the machine.reset_cause() code it boots with. A SystemExit
    (no Exception either): the launcher catches it, and at the REPL of a virtual device
    (`micropython -i`, tools/twin/vdev.py) machine.reset() ends the process with the cause as
    its exit status, so the supervisor boots it again like a board."""


class End(BaseException):
    """The scenario is over: the launcher stops the run."""


# Raised from inside models that LittleFS calls with the heap locked (flash.py): an exception
# made there would be a MemoryError, so the instances are made once, here.
_END = End()
_RESETS = [Reset(c) for c in range(6)]


def stat(name, n=1):
    stats[name] = stats.get(name, 0) + n


def cpu_us(us_at_160):
    """A CPU-bound cost measured (or estimated) at 160 MHz, at the current CPU frequency."""
    return us_at_160 * 160000000 // cpu_hz


def charge(us):
    """Advance the virtual clock by `us` microseconds (the cost of what just ran)."""
    global now_us
    if dead:
        raise _RESETS[cause]
    now_us += us
    if now_us >= end_us >= 0:
        raise _END
    if realtime:
        _pace()
    if _hooks:
        for hook in _hooks:
            hook(now_us)


# Called with now_us after every charge: the watchdog registers here, so a hang in anything
# that takes time (a stuck ADC read, a busy loop on ticks) resets the board like the real one.
_hooks = []


def hook(fn):
    _hooks.append(fn)


def unhook_all():
    del _hooks[:]


def reset(code):
    """Reset the board now: from inside a model (watchdog) or from machine.reset()."""
    global dead
    dead = True
    raise _RESETS[code]


# -- RTC -----------------------------------------------------------------------------------------
# The ESP32's RTC timer keeps the system time across soft, watchdog and software (machine.reset)
# resets; only a power-on starts it again from 2000-01-01 00:00:00 (ESP-IDF system time is kept
# in RTC memory; ports/esp32 machine_rtc.c sets it with settimeofday()).
rtc_offset_us = 0  # RTC time in us since 2000 = now_us + rtc_offset_us


def rtc_seconds():
    return (now_us + rtc_offset_us) // 1000000


def rtc_set(seconds_since_2000):
    global rtc_offset_us
    rtc_offset_us = seconds_since_2000 * 1000000 - now_us


def power_on():
    """A power cut and restore: the RTC starts again from the epoch."""
    global rtc_offset_us
    rtc_offset_us = -now_us


# -- realtime ------------------------------------------------------------------------------------
# A virtual device (tools/twin/vdev.py) puts the twin on a real bus and a real console, so its
# virtual clock keeps pace with the wall clock: charge() sleeps whenever the clock is more than
# RT_AHEAD_US ahead of the wall time since the anchor `wall0`. The twin computes far faster than
# real time, so it mostly waits; while it waits, `io(wait_us)` (board/vdevice.py) serves the
# outside world (the RS-485 bus over UDP) instead of a plain sleep, and io(0) serves it at every
# charge without waiting. A clock more than RT_JUMP_US behind (nothing charged time for a while:
# the REPL after Ctrl-C, a stalled host) jumps to the wall time: the board's time went on.
# Offline runs never get here: `realtime` is False, one test per charge.
realtime = False
RT_AHEAD_US = 2000
RT_JUMP_US = 500000
wall0 = 0  # utime.ticks_us() when now_us was 0 (the unix port's ticks wrap at 2^62)
io = None


def realtime_start():
    """From now on the virtual clock keeps pace with the wall clock (anchored at this instant)."""
    global realtime, wall0
    stats.setdefault("rt_jumps", 0)  # made now: _pace may run where nothing can be allocated
    stats.setdefault("rt_jump_us", 0)
    wall0 = utime.ticks_add(utime.ticks_us(), -now_us)
    realtime = True


def wall_us():
    """The wall time since the anchor, on the virtual clock's scale."""
    return utime.ticks_diff(utime.ticks_us(), wall0)


def _pace():
    global now_us
    ahead = now_us - utime.ticks_diff(utime.ticks_us(), wall0)
    if ahead <= RT_AHEAD_US:
        if ahead < -RT_JUMP_US:
            stats["rt_jumps"] += 1
            stats["rt_jump_us"] += -ahead
            now_us -= ahead
        if io is not None:
            io(0)
        return
    while ahead > 0:
        if io is not None:
            io(ahead)
        else:
            utime.sleep_us(ahead)
        ahead = now_us - utime.ticks_diff(utime.ticks_us(), wall0)
