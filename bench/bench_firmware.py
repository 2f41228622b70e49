"""Firmware footprint: total .mpy size of the ESP32 image, and the peak heap of the running
firmware (the whole app, the simulated hour of tests/firmware/workload.py, without and with a
command of every kind) under the MicroPython unix port.

The heap is measured on the x86-64 unix port, where every object pointer is 8 bytes; the ESP32
(4-byte pointers) needs less, so the figure is an upper bound for the board (not a measurement
on it)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.firmware import workload
from tools import fwbuild


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
        workload.prepare(flash, img)
        # Peak heap = the smallest heap the hour completes in (tests/firmware/workload.py).
        kb = workload.smallest_heap_kb(flash)
        rows.append(
            {
                "name": "peak heap: smallest heap the hour runs in (x64 unix port)",
                "value": kb * 1024,
                "unit": "B",
                "target": "<= 32 KB (the 64k test: <= 64 KB)",
                "ok": kb <= 32,
            }
        )
        res = workload.run(flash, f"{kb}k")
        assert res is not None
        rows.append({"name": "live heap after the hour (x64)", "value": res["end"], "unit": "B"})
        for commands in ("routine", "all"):
            kb_cmd = workload.smallest_heap_kb(flash, commands)
            rows.append(
                {
                    "name": f"smallest heap, the hour with {commands} commands (x64)",
                    "value": kb_cmd * 1024,
                    "unit": "B",
                    "target": "<= 64 KB",
                    "ok": kb_cmd <= 64,
                }
            )
    return rows
