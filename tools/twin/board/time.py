# The twin's `time` module: the ESP32 port's time API on the virtual clock.
#
# ports/esp32: ticks wrap at MICROPY_PY_TIME_TICKS_PERIOD = 2^30 (py/mpconfig.h: small-int mask
# + 1); the epoch is 2000-01-01 (MICROPY_EPOCH_IS_2000, py/mpconfig.h); sleep_us() busy-waits on
# esp_timer to the microsecond (mphalport.c mp_hal_delay_us, 5 us call overhead at 240 MHz).
# The host port's builtin module is `utime` (the u-prefix always names the builtin).
import twin
import utime

_MASK = 0x3FFFFFFF
_EPOCH_2000 = 946684800  # 2000-01-01 in the unix port's 1970 epoch


def _ticks_us():
    return twin.now_us - twin.boot_us


def ticks_us():
    # A call from viper/bytecode: a few us of interpreter work (launch.py "ticks_call_us").
    twin.charge(twin.cost[2])
    return (twin.now_us - twin.boot_us) & _MASK


def ticks_ms():
    twin.charge(twin.cost[2])
    return ((twin.now_us - twin.boot_us) // 1000) & _MASK


def ticks_cpu():
    return ticks_us()


def ticks_diff(a, b):
    d = (a - b) & _MASK
    return d - 0x40000000 if d & 0x20000000 else d


def ticks_add(a, n):
    return (a + n) & _MASK


def sleep_us(us):
    if us > 5:
        twin.charge(us)
    else:
        twin.charge(5)


def sleep_ms(ms):
    twin.charge(ms * 1000 if ms > 0 else 5)


def sleep(s):
    twin.charge(int(s * 1000000))


def time():
    return twin.rtc_seconds()


def time_ns():
    return twin.rtc_seconds() * 1000000000


def gmtime(secs=None):
    if secs is None:
        secs = time()
    # An 8-tuple (year, month, mday, hour, minute, second, weekday, yearday): extmod/modtime.c
    # time_localtime (lines 55-76). The unix port's utime.gmtime adds a 9th item (isdst).
    return utime.gmtime(secs + _EPOCH_2000)[:8]


localtime = gmtime


def mktime(t):
    return utime.mktime(t) - _EPOCH_2000
