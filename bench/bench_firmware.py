"""Firmware footprint: total .mpy size of the ESP32 image, and the peak heap of the running
firmware (the whole app, a simulated 10 minutes with alarms) under the MicroPython unix port.

The heap is measured on the x86-64 unix port, where every object pointer is 8 bytes; the ESP32
(4-byte pointers) needs less, so the figure is an upper bound for the board (not a measurement
on it)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from tests import mpy
from tools import fwbuild

SCRIPT = """
import gc
from app.hal_sim import SimHal
from app import run
hal = SimHal(clock="sim")
app = run.App(hal)
peak = 0
for minute in range(10):
    hal.res_ma = 400 if minute % 3 == 1 else 50
    hal.dirty = True
    for _ in range(60):
        app.run(10)
        a = gc.mem_alloc()
        if a > peak:
            peak = a
    app.det.reset(hal.ticks_ms())
gc.collect()
print(peak, gc.mem_alloc())
"""


def run() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        esp = fwbuild.build("xtensawin", Path(d) / "esp32")
        total = sum(v for k, v in esp.items() if k.endswith(".mpy"))
        rows.append(
            {
                "name": "firmware .mpy total (xtensawin)",
                "value": total,
                "unit": "B",
                "target": "<= 48 KB",
                "ok": total <= 48 * 1024,
            }
        )
        img = Path(d) / "x64"
        fwbuild.build("x64", img)
        flash = Path(d) / "flash"
        flash.mkdir()
        (flash / "identity.json").write_text(json.dumps({"device": 7, "key": "00" * 32}))
        env = dict(os.environ, MICROPYPATH=str(img / "lib"))

        def runs(kb: int) -> subprocess.CompletedProcess:
            for f in flash.glob("*"):
                if f.name != "identity.json":
                    f.unlink()
            cmd = [mpy.binary(), "-X", f"heapsize={kb}k", "-c", SCRIPT]
            return subprocess.run(
                cmd, cwd=flash, env=env, capture_output=True, text=True, timeout=300, check=False
            )

        # Peak heap = the smallest heap the firmware runs in: garbage is collected on demand,
        # so gc.mem_alloc() between collections would count garbage, not need.
        lo, hi = 32, 256
        while hi - lo > 2:
            mid = (lo + hi) // 2
            if runs(mid).returncode == 0:
                hi = mid
            else:
                lo = mid
        steady = int(runs(hi).stdout.split()[-1])
        rows.append(
            {
                "name": "peak heap: smallest heap it runs in (x64 unix port)",
                "value": hi * 1024,
                "unit": "B",
                "target": "<= 32 KB",
                "ok": hi <= 32,
            }
        )
        rows.append({"name": "live heap after gc (x64 unix port)", "value": steady, "unit": "B"})
    return rows
