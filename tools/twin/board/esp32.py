# The twin's `esp32` module: the parts of the ESP32 port's esp32 module the firmware may use.
#
# PCNT (ports/esp32/esp32_pcnt.c): a hardware pulse counter. Edges are counted by the peripheral
# whatever the CPU is doing (viper loops included), unlike Pin.irq whose handlers are scheduled.
# The unit is paused and cleared when first created (esp32_pcnt_deinit from make_new) and counts
# only after start(); the 16-bit counter resets to 0 when it reaches `max` (or `min`).
import twin

try:
    import api as _api
except ImportError:
    _api = None

import machine


def _check(cls, name, nargs, kw):
    if _api is not None:
        _api.check("esp32", cls, name, nargs, kw)


class PCNT:
    IGNORE = 0
    INCREMENT = 1
    DECREMENT = 2
    NORMAL = 0
    REVERSE = 1
    HOLD = 2
    IRQ_ZERO = 16
    IRQ_THRESHOLD0 = 4
    IRQ_THRESHOLD1 = 8
    IRQ_MIN = 2
    IRQ_MAX = 1

    _units = {}

    def __new__(cls, id, *args, **kw):
        # esp32_pcnt_make_new: one object per unit (0..7 on the ESP32), found again by id.
        _check("PCNT", None, 1 + len(args), kw)
        if not 0 <= id < 8:
            raise ValueError("invalid id")
        self = PCNT._units.get(id)
        if self is None:
            self = object.__new__(cls)
            self.unit = id
            self.gpio = -1
            self.rising = 0
            self.falling = 0
            self.max = 0
            self.running = False
            self.base = 0
            PCNT._units[id] = self
        return self

    def __init__(self, id, *args, **kw):
        self._init(**kw)

    def _init(
        self,
        channel=0,
        pin=None,
        rising=None,
        falling=None,
        mode_pin=None,
        mode_low=None,
        mode_high=None,
        min=None,
        max=None,
        filter=None,
        threshold0=None,
        threshold1=None,
        value=None,
    ):
        if pin is not None:
            self.gpio = pin if isinstance(pin, int) else pin.id
        if rising is not None:
            self.rising = rising
        if falling is not None:
            self.falling = falling
        if value is not None and value != 0:
            raise ValueError("value")
        if max is not None:
            if max < 0 or max > 32767:
                raise ValueError("maximum")
            self.max = max
        if value is not None or min is not None or max is not None:
            self._clear()

    def init(self, *args, **kw):
        _check("PCNT", "init", len(args), kw)
        self._init(**kw)

    def _edges(self):
        # The arc front end gives one falling edge per arcing half-cycle (docs/hardware.md).
        if self.falling != PCNT.INCREMENT or self.gpio != twin.P["arc_gpio"]:
            return 0
        return machine._pulses(self.gpio)

    def _clear(self):
        self.base = self._edges()

    def start(self):
        if not self.running:
            self.base = self._edges() - self.frozen if hasattr(self, "frozen") else self._edges()
        self.running = True

    def stop(self):
        self.frozen = self._count()
        self.running = False

    def _count(self):
        if not self.running:
            return getattr(self, "frozen", 0)
        n = self._edges() - self.base
        return n % self.max if self.max else n & 0x7FFF

    def value(self, *args):
        _check("PCNT", "value", len(args), {})
        twin.charge(twin.cost[3])
        v = self._count()
        if args:
            if args[0] != 0:
                raise ValueError("value")
            self._clear()
            if not self.running:
                self.frozen = 0
        return v

    def deinit(self):
        self.running = False
        self.frozen = 0

    def irq(self, *args, **kw):
        _check("PCNT", "irq", len(args), kw)


def reset():
    PCNT._units.clear()
