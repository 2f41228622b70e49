# The detector application: wires the detection core (efd), the wire protocol (protocol) and a
# HAL (hal_esp32 on the board, hal_sim on the unix port). See docs/firmware.md.
import gc

VERSION = (0, 1, 0)

# Collect after every 2 KB allocated, not only when the heap is full. Loading the modules
# allocates short-lived objects (grown dicts, loader temporaries) between long-lived code; with
# collections only on exhaustion the live objects end up spread over the whole heap and the
# boot's 400-byte window buffers find no hole (docs/firmware.md, Memory budget: ~10 KB less
# heap needed on x64; 2 KB packs 1 KB tighter than 4 KB, 8 KB 3 KB looser). This package is
# the first firmware code main.py runs, so it applies from the first import; the main loop's
# own gc.collect() every 64 windows stays.
try:
    gc.threshold(2048)
except AttributeError:  # CPython (host tests import app.evlog): no such knob, none needed
    pass
