# Temperature rate-of-rise pre-alarm.
#
# A cable joint that heats quickly is a hazard before it reaches the set value (the classic
# rate-of-rise principle of heat detectors, GB 4716). We keep one reading every 10 s for the
# last 60 s in a fixed ring and compare the newest with the oldest: the difference in 0.1 degC
# is the rise per minute. Sampling every 10 s (not every window) keeps the ring tiny and
# filters ADC noise; a pre-alarm comes at most 10 s after a minute's rise exceeds the setting.
from array import array

from efd.compat import const
from efd.events import ROR
from efd.ticks import diff

_SLOT_MS = const(10000)
_SLOTS = const(7)  # 7 readings 10 s apart span 60 s


class RateOfRise:
    def __init__(self, channel, queue):
        self.channel = channel
        self.queue = queue
        self.threshold = 0  # 0.1 degC per minute; 0 = off
        self.hist = array("i", [0] * _SLOTS)
        self.count = 0
        self.last = 0
        self.on = False

    def restart(self):
        """Forget the history (after a sensor fault the old readings are not comparable)."""
        self.count = 0
        self.on = False

    def update(self, decic, now):
        if self.count and diff(now, self.last) < _SLOT_MS:
            return
        h = self.hist
        for i in range(_SLOTS - 1):
            h[i] = h[i + 1]
        h[_SLOTS - 1] = decic
        self.last = now
        if self.count < _SLOTS:
            self.count += 1
        if self.count < _SLOTS or not self.threshold:
            return
        rate = h[_SLOTS - 1] - h[0]
        if rate >= self.threshold:
            if not self.on:
                self.on = True
                self.queue.push(ROR, self.channel, rate, self.threshold, now)
        elif rate < self.threshold // 2:
            self.on = False  # re-armed once the rise has clearly slowed
