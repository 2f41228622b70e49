# efd: the electrical-fire detector's sans-I/O core (detection + events).
# Every module in this package runs unmodified on MicroPython and CPython.
