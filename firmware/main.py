# Starts the detector application (firmware/lib/app). Kept as source so a field engineer can
# read it with `mpremote cat :main.py`. Ctrl-C stops the loop and leaves the REPL to mpremote.
#
# The HAL is chosen by the `esp32` module, which only the ESP32 port (and the board twin,
# tools/twin) has: sys.platform cannot be faked, a module can.
import sys

from app import run

try:
    import esp32
except ImportError:
    esp32 = None

if esp32 is not None:
    from app.hal_esp32 import Esp32Hal as Hal
else:
    from app.hal_sim import SimHal as Hal

hal = None
try:
    hal = Hal()  # inside the try: a HAL that fails to start reboots the board, never hangs it
    run.main(hal)
except KeyboardInterrupt:
    print("detector stopped (Ctrl-C): REPL")
except Exception as e:  # last resort: log and reboot, never sit dead
    sys.print_exception(e)
    if hal is not None:
        hal.reboot()
    import time

    time.sleep(1)  # a HAL that fails at every boot: one attempt a second, not a tight loop
    try:
        import machine

        machine.reset()
    except AttributeError:  # the unix port has no machine.reset: the supervisor restarts us
        sys.exit(1)
