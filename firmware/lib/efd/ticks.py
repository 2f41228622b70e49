# Millisecond clock arithmetic for the core, identical on every interpreter.
#
# The core never reads a clock: callers pass `now` in. `now` is a millisecond counter that wraps
# at 2^30, like `time.ticks_ms()` on the ESP32 port. We do not use `time.ticks_diff` because
# its period differs between ports (2^30 on ESP32, 2^62 on the unix port), which would make the
# same input give different outputs on the chip, on the unix port and on CPython.
#
# Every intermediate stays a small int (|x| < 2^30): that is why the period is subtracted as two
# halves instead of as the constant 2^30, which is itself a heap-allocated long on a 32-bit port.
from efd.compat import const

_PERIOD_HALF = const(0x20000000)  # 2^29
MASK = const(0x3FFFFFFF)  # 2^30 - 1


def diff(a, b):
    """Signed a - b in ms for two wrapping timestamps less than 2^29 ms (6.2 days) apart."""
    d = a - b
    if d >= _PERIOD_HALF:
        d = d - _PERIOD_HALF - _PERIOD_HALF
    elif d < -_PERIOD_HALF:
        d = d + _PERIOD_HALF + _PERIOD_HALF
    return d


def add(t, delta):
    """t + delta wrapped into [0, 2^30), for 0 <= t < 2^30 and |delta| < 2^29."""
    r = t - _PERIOD_HALF + delta  # in (-2^30, 2^30): still a small int
    if r >= _PERIOD_HALF:
        return r - _PERIOD_HALF
    if r < -_PERIOD_HALF:
        return r + _PERIOD_HALF + _PERIOD_HALF + _PERIOD_HALF
    return r + _PERIOD_HALF
