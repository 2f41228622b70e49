# One over-threshold rule with delay, latching, pre-alarm and hysteresis.
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
from efd.compat import const
from efd.events import ALARM, CLEAR, PREALARM, RESET
from efd.ticks import diff

OFF = const(0x3FFFFFFF)  # a threshold no value reaches: disables a level


class Threshold:
    def __init__(self, channel, queue):
        self.channel = channel
        self.queue = queue
        self.alarm_th = OFF
        self.pre_th = OFF
        self.hyst = 0
        self.delay_ms = 0
        self.value = 0  # last value seen
        self.latched = False  # alarm latched (until reset)
        self.pending = False  # value >= alarm_th, delay running
        self.since = 0  # when the delay started
        self.active = False  # pre-alarm or alarm condition present (for CLEAR)
        self.pre = False  # pre-alarm reported and not cleared

    def configure(self, alarm_th, pre_th, hyst, delay_ms):
        self.alarm_th = alarm_th
        self.pre_th = pre_th
        self.hyst = hyst
        self.delay_ms = delay_ms

    def clear_th(self):
        lo = self.pre_th if self.pre_th < self.alarm_th else self.alarm_th
        return lo - self.hyst

    def update(self, value, now):
        self.value = value
        q = self.queue
        if value >= self.alarm_th:
            if not self.pending:
                self.pending = True
                self.since = now
            self.active = True
            if not self.latched and diff(now, self.since) >= self.delay_ms:
                self.latched = True
                q.push(ALARM, self.channel, value, self.alarm_th, now)
        else:
            # Below the alarm point: a running delay is cancelled, not paused.
            self.pending = False
        if value >= self.pre_th and not self.pre and not self.latched:
            self.pre = True
            self.active = True
            q.push(PREALARM, self.channel, value, self.pre_th, now)
        if self.active and value < self.clear_th():
            self.active = False
            self.pre = False
            q.push(CLEAR, self.channel, value, self.clear_th(), now)

    def suspend(self):
        """Sensor faulty: its readings mean nothing. Stop a running delay; keep the latch."""
        self.pending = False

    def condition_gone(self):
        return self.value < self.alarm_th - self.hyst and not self.pending

    def reset(self, now):
        """Clear the latch if the alarm condition is gone. True if the channel is now unlatched."""
        if not self.latched:
            return True
        if not self.condition_gone():
            return False
        self.latched = False
        self.queue.push(RESET, self.channel, self.value, self.alarm_th, now)
        return True
