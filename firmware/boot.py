# Runs first at every boot (board and virtual detector). Kept as source, not .mpy, so it can
# be read and edited on the device. Nothing here may fail: a broken boot.py bricks the REPL.
import gc

gc.collect()
