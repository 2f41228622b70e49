# Over-threshold rules with delay, latching, pre-alarm and hysteresis: one bank for every channel.
#
# The residual-current, temperature, line-overload and arc rules are all this state machine with
# different numbers (see detector.py), so the behaviour the standards require is written once:
#   - ALARM once value >= alarm_th has held continuously for delay_ms (GB 14287.2 / .3:
#     the delay is what lets a brief inrush pass; Acrel: "if the current falls back below the
#     alarm value during the delay, no action" -> falling below alarm_th cancels the delay).
#   - The alarm LATCHES until reset() (GB 14287.1 §4.1: alarm state kept until manual reset).
#   - PREALARM when value >= pre_th (not latched, no delay), CLEAR when the value falls below
#     clear_th = min(pre_th, alarm_th) - hyst: hysteresis keeps noise near a level from chattering.
#   - reset() clears the latch only where the alarm condition is gone (value < alarm_th - hyst).
# Values are ints in the channel's units; `now` is a 2^30-wrapping ms counter (efd.ticks).
#
# Memory: the state of channel ch is _W ints at ch * _W in one array, not an object per channel
# (on a 64-bit port each object costs a header and 16 bytes per attribute).
from array import array

from efd import events as ev
from efd.compat import const
from efd.ticks import diff

OFF = const(0x3FFFFFFF)  # a threshold no value reaches: disables a level

# Per-channel ints, at ch * _W + one of these.
_ALARM_TH = const(0)
_PRE_TH = const(1)
_HYST = const(2)
_DELAY_MS = const(3)
_VALUE = const(4)  # last value seen
_SINCE = const(5)  # when the delay started
_FLAGS = const(6)  # the bits below
_W = const(7)

# Flag bits.
_LATCHED = const(1)  # alarm latched (until reset)
_PENDING = const(2)  # value >= alarm_th, delay running
_ACTIVE = const(4)  # pre-alarm or alarm condition present (for CLEAR)
_PRE = const(8)  # pre-alarm reported and not cleared


class Thresholds:
    """The rules of channels 0..n-1, reporting to one EventQueue. Every level starts OFF."""

    def __init__(self, n, queue):
        self.queue = queue
        self.s = array("i", bytes(4 * _W * n))
        for ch in range(n):
            self.configure(ch, OFF, OFF, 0, 0)

    def configure(self, ch, alarm_th, pre_th, hyst, delay_ms):
        s = self.s
        i = ch * _W
        s[i + _ALARM_TH] = alarm_th
        s[i + _PRE_TH] = pre_th
        s[i + _HYST] = hyst
        s[i + _DELAY_MS] = delay_ms

    def levels(self, ch):
        """(alarm level, pre-alarm level) of channel ch, OFF where disabled."""
        i = ch * _W
        return self.s[i + _ALARM_TH], self.s[i + _PRE_TH]

    def update(self, ch, value, now):
        s = self.s
        i = ch * _W
        f = s[i + _FLAGS]
        q = self.queue
        s[i + _VALUE] = value
        alarm_th = s[i + _ALARM_TH]
        if value >= alarm_th:
            if not f & _PENDING:
                f |= _PENDING
                s[i + _SINCE] = now
            f |= _ACTIVE
            if not f & _LATCHED and diff(now, s[i + _SINCE]) >= s[i + _DELAY_MS]:
                f |= _LATCHED
                q.push(ev.ALARM, ch, value, alarm_th, now)
        else:
            # Below the alarm point: a running delay is cancelled, not paused.
            f &= ~_PENDING
        pre_th = s[i + _PRE_TH]
        if value >= pre_th and not f & (_PRE | _LATCHED):
            f |= _PRE | _ACTIVE
            q.push(ev.PREALARM, ch, value, pre_th, now)
        if f & _ACTIVE:
            clear_th = (pre_th if pre_th < alarm_th else alarm_th) - s[i + _HYST]
            if value < clear_th:
                f &= ~(_ACTIVE | _PRE)
                q.push(ev.CLEAR, ch, value, clear_th, now)
        s[i + _FLAGS] = f

    def suspend(self, ch):
        """Sensor faulty: its readings mean nothing. Stop a running delay; keep the latch."""
        self.s[ch * _W + _FLAGS] &= ~_PENDING

    def reset(self, ch, now):
        """Clear the latch if the alarm condition is gone. True if the channel is now unlatched."""
        s = self.s
        i = ch * _W
        f = s[i + _FLAGS]
        if not f & _LATCHED:
            return True
        value = s[i + _VALUE]
        alarm_th = s[i + _ALARM_TH]
        if f & _PENDING or value >= alarm_th - s[i + _HYST]:
            return False  # the condition is still there
        s[i + _FLAGS] = f & ~_LATCHED
        self.queue.push(ev.RESET, ch, value, alarm_th, now)
        return True

    def latched(self, ch):
        return self.s[ch * _W + _FLAGS] & _LATCHED != 0

    def pre(self, ch):
        """True while a pre-alarm is reported and not cleared."""
        return self.s[ch * _W + _FLAGS] & _PRE != 0
