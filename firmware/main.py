# Starts the detector application (firmware/lib/app). Kept as source so a field engineer can
# read it with `mpremote cat :main.py`. Ctrl-C stops the loop and leaves the REPL to mpremote.
import sys

from app import run

if sys.platform == "esp32":
    from app.hal_esp32 import Esp32Hal as Hal
else:
    from app.hal_sim import SimHal as Hal

hal = Hal()
try:
    run.main(hal)
except KeyboardInterrupt:
    print("detector stopped (Ctrl-C): REPL")
except Exception as e:  # last resort: log and reboot, never sit dead
    sys.print_exception(e)
    hal.reboot()
