# The one place where MicroPython and CPython differ for the core.
#
# Firmware modules import `micropython` and `const` from here, never from `micropython`
# directly, so the same source runs on the chip, on the unix port and under CPython/hypothesis.
# (Clock arithmetic is not a shim: see efd/ticks.py.)
#
# Decorators must still be written literally as `@micropython.native` / `@micropython.viper`:
# the MicroPython compiler recognises them by name, and on CPython the fallback object below
# turns them into plain functions.
try:
    import micropython
    from micropython import const

    MICROPYTHON = True
except ImportError:  # CPython
    import sys

    MICROPYTHON = False

    def const(x):
        return x

    class _MicroPythonShim:
        """Stands in for the `micropython` module on CPython."""

        @staticmethod
        def const(x):
            return x

        @staticmethod
        def native(f):
            return f

        @staticmethod
        def viper(f):
            return f

        @staticmethod
        def heap_lock():
            return 0

        @staticmethod
        def heap_unlock():
            return 0

        @staticmethod
        def alloc_emergency_exception_buf(size):
            return None

    micropython = _MicroPythonShim()
    # Modules that say `import micropython` (e.g. code written for the chip first) get the shim too.
    sys.modules.setdefault("micropython", micropython)

# Viper pointer casts. On MicroPython the compiler treats `ptr8/ptr16/ptr32` inside a viper
# function as casts and ignores these globals; on CPython a "pointer" is the buffer itself.
if MICROPYTHON:
    ptr8 = ptr16 = ptr32 = None
else:

    def ptr8(buf):
        return buf

    ptr16 = ptr32 = ptr8
