# Event kinds, channel numbers and a fixed-capacity event queue.
#
# Detection emits events into a queue of preallocated int arrays, so a window that raises an
# alarm allocates nothing either (MicroPython: no heap use in the per-window path). The app
# drains the queue after each window.
#
# The numbers below are wire values too: protocol/SPEC.md uses the same codes. The detector
# only ever sends numbers; the names people read (kinds, faults, `as_dict`) are efd/names.py's,
# which the firmware never loads.
from array import array

from efd.compat import const

# Event kinds.
PREALARM = const(1)  # value reached the pre-alarm level (not latched)
ALARM = const(2)  # alarm: latched until reset (GB 14287.1 "alarm shall latch")
CLEAR = const(3)  # the condition has gone (value back below the clear level); a latch stays
FAULT = const(4)  # sensor fault (value = fault code below)
FAULT_CLEAR = const(5)  # the sensor has recovered
RESET = const(6)  # a latch was cleared by a reset
SELFTEST = const(7)  # self-test result (value 1 = pass, 0 = fail)
ROR = const(8)  # temperature rate-of-rise pre-alarm (value, threshold in 0.1 degC/min)

# Channels. Units: residual mA; temperatures 0.1 degC; phases 0.01 A; arc half-cycles/s.
RESIDUAL = const(0)
TEMP0 = const(1)  # TEMP0..TEMP3 = 1..4
PHASE0 = const(5)  # PHASE0..PHASE2 = 5..7
ARC = const(8)
N_CHANNELS = const(9)

# Sensor fault codes (value of a FAULT event).
FAULT_OPEN = const(1)  # lead open: CT mean pulled low / NTC reading at the top rail
FAULT_SHORT = const(2)  # lead shorted: CT mean at the top rail / NTC reading at the bottom rail
FAULT_OVERRANGE = const(3)  # ADC clipping: the signal exceeds the input range
FAULT_BIAS = const(4)  # CT window mean outside the bias band but not at a rail
# The HAL missed sample instants (late reads: the read cost does not fit the period, or the
# loop was preempted): the window is no longer whole mains cycles. Reported on the residual
# channel; values are still evaluated (a stretched window still measures the current).
FAULT_TIMING = const(5)


class EventQueue:
    """FIFO of (kind, channel, value, threshold, t) held in preallocated arrays.

    When full, the oldest event is overwritten and `dropped` counts it: the app drains the queue
    every window, so this only happens if the app is stalled, and the counter makes it visible.
    """

    def __init__(self, capacity=32):
        self.capacity = capacity
        self.kind = array("b", [0] * capacity)
        self.channel = array("b", [0] * capacity)
        self.value = array("i", [0] * capacity)
        self.threshold = array("i", [0] * capacity)
        self.t = array("i", [0] * capacity)
        self.head = 0  # next to pop
        self.count = 0
        self.dropped = 0

    def push(self, kind, channel, value, threshold, t):
        if self.count == self.capacity:
            self.head = (self.head + 1) % self.capacity
            self.count -= 1
            self.dropped += 1
        i = (self.head + self.count) % self.capacity
        self.kind[i] = kind
        self.channel[i] = channel
        self.value[i] = value
        self.threshold[i] = threshold
        self.t[i] = t
        self.count += 1

    def pop(self):
        """Oldest event as a tuple (kind, channel, value, threshold, t), or None. Allocates."""
        if not self.count:
            return None
        i = self.head
        self.head = (i + 1) % self.capacity
        self.count -= 1
        return (self.kind[i], self.channel[i], self.value[i], self.threshold[i], self.t[i])

    def drain(self):
        out = []
        e = self.pop()
        while e is not None:
            out.append(e)
            e = self.pop()
        return out
