"""An int that proves 32-bit safety: every arithmetic result must be a MicroPython small int.

On the ESP32 a small int is 31-bit signed: -2^30 <= x < 2^30. Anything outside becomes a
heap-allocated long (slow, allocating, and fatal under heap_lock). Running the firmware's own
code on Bounded inputs raises OverflowError at the first intermediate that leaves that range.
"""

from __future__ import annotations

LO = -(1 << 30)
HI = (1 << 30) - 1


def _chk(v: int) -> Bounded:
    if not LO <= v <= HI:
        raise OverflowError(f"intermediate {v} leaves the ESP32 small-int range")
    return Bounded(v)


class Bounded(int):
    def __add__(self, o):
        return _chk(int(self) + int(o))

    def __radd__(self, o):
        return _chk(int(o) + int(self))

    def __sub__(self, o):
        return _chk(int(self) - int(o))

    def __rsub__(self, o):
        return _chk(int(o) - int(self))

    def __mul__(self, o):
        return _chk(int(self) * int(o))

    def __rmul__(self, o):
        return _chk(int(o) * int(self))

    def __floordiv__(self, o):
        return _chk(int(self) // int(o))

    def __rfloordiv__(self, o):
        return _chk(int(o) // int(self))

    def __mod__(self, o):
        return _chk(int(self) % int(o))

    def __rmod__(self, o):
        return _chk(int(o) % int(self))

    def __lshift__(self, o):
        return _chk(int(self) << int(o))

    def __rlshift__(self, o):
        return _chk(int(o) << int(self))

    def __rshift__(self, o):
        return _chk(int(self) >> int(o))

    def __rrshift__(self, o):
        return _chk(int(o) >> int(self))

    def __and__(self, o):
        return _chk(int(self) & int(o))

    def __rand__(self, o):
        return _chk(int(o) & int(self))

    def __or__(self, o):
        return _chk(int(self) | int(o))

    def __ror__(self, o):
        return _chk(int(o) | int(self))

    def __neg__(self):
        return _chk(-int(self))

    def __abs__(self):
        return _chk(abs(int(self)))


def bounded_list(xs) -> list[Bounded]:
    return [Bounded(int(x)) for x in xs]
