# Temperature rate-of-rise pre-alarm.
#
# A cable joint that heats quickly is a hazard before it reaches the set value (the classic
# rate-of-rise principle of heat detectors, GB 4716). We keep one reading every 10 s for the
# last 60 s in a fixed ring and compare the newest with the oldest: the difference in 0.1 degC
# is the rise per minute. Sampling every 10 s (not every window) keeps the ring tiny and
# filters ADC noise; a pre-alarm comes at most 10 s after a minute's rise exceeds the setting.
from array import array

from efd import events as ev
from efd.compat import const
from efd.ticks import diff

_SLOT_MS = const(10000)
_SLOTS = const(7)  # 7 readings 10 s apart span 60 s
# Per temperature channel i, _W ints at i * _W: the readings (oldest first), then these.
_LAST = const(7)  # when the newest reading was taken
_COUNT = const(8)  # readings held (0.._SLOTS)
_ON = const(9)  # 1 while a pre-alarm is reported (re-armed once the rise slows)
_W = const(10)


class RateOfRise:
    """The rate-of-rise rule of the 4 temperature channels (TEMP0 + i), one array for all."""

    def __init__(self, queue):
        self.queue = queue
        self.threshold = 0  # 0.1 degC per minute, the same for every channel; 0 = off
        self.s = array("i", bytes(4 * 4 * _W))

    def restart(self, i):
        """Forget the history (after a sensor fault the old readings are not comparable)."""
        b = i * _W
        self.s[b + _COUNT] = 0
        self.s[b + _ON] = 0

    def update(self, i, decic, now):
        s = self.s
        b = i * _W
        count = s[b + _COUNT]
        if count and diff(now, s[b + _LAST]) < _SLOT_MS:
            return
        for k in range(b, b + _SLOTS - 1):
            s[k] = s[k + 1]
        s[b + _SLOTS - 1] = decic
        s[b + _LAST] = now
        if count < _SLOTS:
            count += 1
            s[b + _COUNT] = count
        if count < _SLOTS or not self.threshold:
            return
        rate = decic - s[b]
        if rate >= self.threshold:
            if not s[b + _ON]:
                s[b + _ON] = 1
                self.queue.push(ev.ROR, ev.TEMP0 + i, rate, self.threshold, now)
        elif rate < self.threshold // 2:
            s[b + _ON] = 0  # re-armed once the rise has clearly slowed
