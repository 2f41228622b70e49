"""The firmware's memory workload: the whole app for a simulated hour.

One workload for the tests (tests/firmware/test_persistence.py) and the bench
(bench/bench_firmware.py: the smallest heap it fits). The detector runs the x64 image from a
flash folder as deployed (lib/, identity.json) under the simulated clock, with leakage coming
and going (alarms, events into the flash log, resets) and an in-memory link that takes every
frame the detector sends. The host also sends authenticated commands: commands="routine"
(resets, a self-test, a time sync) or "all" (also get/set config and a waveform snapshot; every
kind but reboot). Each loads the detector's command code for the occasion (app.run._rare): the
firmware's largest moments.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from protocol import messages as M
from protocol.auth import Key
from protocol.frame import Encoder
from tests import mpy
from tools import provisioning

DEVICE = 7
KEY = bytes(32)

# (minute, command fields): sent at the start of that minute. The routine ones (what a
# monitoring platform sends every day) and the rare ones (settings, waveform snapshot), which
# load more code for their moment (docs/firmware.md, Memory budget).
ROUTINE = [
    (8, {"cmd": "reset", "channel": "all"}),
    (15, {"cmd": "selftest"}),
    (22, {"cmd": "time_sync", "set_time": 200_000_000}),
    (50, {"cmd": "reset", "channel": "residual"}),
]
RARE = [
    (29, {"cmd": "get_config"}),
    (36, {"cmd": "set_config", "params": [["leak_set_ma", 350], ["leak_delay_s", 2]]}),
    (43, {"cmd": "snapshot", "snap_id": 0}),
]
COMMANDS = {"none": [], "routine": ROUTINE, "all": sorted(ROUTINE + RARE, key=lambda c: c[0])}

SCRIPT = """
import gc
from app.hal_sim import SimHal
from app import run
from binascii import unhexlify

CMDS = {cmds}


class Wire:
    # The host end of the link, in memory: commands in, every frame out counted.
    def __init__(self):
        self.rx = b""
        self.sent = 0

    def read(self, buf):
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n

    def write(self, data):
        self.sent += 1

    def busy(self):
        return False


wire = Wire()
hal = SimHal(clock="sim", link=wire)
app = run.App(hal)
peak = 0
for minute in range(60):
    if minute in CMDS:
        wire.rx = unhexlify(CMDS[minute])
    # Leakage comes and goes every few minutes: alarms, events into the log, resets.
    hal.res_ma = 400 if minute % 7 == 3 else 50
    hal.dirty = True
    for _ in range(10):
        app.run(60)
        a = gc.mem_alloc()
        if a > peak:
            peak = a
    if minute % 7 == 5:
        app.det.reset(hal.ticks_ms())
gc.collect()
ctr = app.link.peer.marks[0]  # the last command counter the detector accepted
print(app.windows, app.log.head, app.errors, wire.sent, ctr, peak, gc.mem_alloc())
"""


def command_frames(commands: str) -> dict[int, str]:
    """minute -> hex of the authenticated COMMAND frame sent then (counters 1, 2, ...)."""
    counter = iter(range(1, 1000))
    enc = Encoder(DEVICE, Key(KEY), lambda: next(counter))
    out = {}
    for minute, fields in COMMANDS[commands]:
        out[minute] = enc.message(M.COMMAND, 0, fields, auth=True).hex()
    return out


def script(commands: str) -> str:
    return SCRIPT.replace("{cmds}", repr(command_frames(commands)))


def prepare(flash: Path, image: Path) -> None:
    """A flash folder as `make deploy` and `make provision` leave it: lib/ from the image, the
    identity and a fresh state file."""
    shutil.copytree(image / "lib", flash / "lib", dirs_exist_ok=True)
    for name, text in provisioning.files(DEVICE, KEY.hex()).items():
        (flash / name).write_text(text)


def run(flash: Path, heapsize: str, commands: str = "none") -> dict | None:
    """Run the hour in a fresh copy of the flash state; None if it did not complete its
    whole job (a crash, or an error counted: the loop survives a MemoryError in the link)."""
    for name in ("config.json", "events.bin"):
        (flash / name).unlink(missing_ok=True)
    (flash / provisioning.STATE).write_text(provisioning.files(DEVICE, KEY.hex())["state.json"])
    proc = subprocess.run(
        [mpy.binary(), "-X", f"heapsize={heapsize}", "-c", script(commands)],
        cwd=flash,
        env=dict(os.environ, MICROPYPATH="lib"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        return None
    windows, events, errors, sent, host_ctr, peak, end = (int(x) for x in proc.stdout.split()[-7:])
    done = windows == 36000 and errors == 0 and host_ctr == len(COMMANDS[commands])
    if not done:
        return None
    return {"events": events, "frames_sent": sent, "peak": peak, "end": end}


def smallest_heap_kb(flash: Path, commands: str = "none", lo: int = 32, hi: int = 256) -> int:
    """The smallest heap (KB) the hour completes in. Bisection: garbage is collected on
    demand, so gc.mem_alloc() between collections would count garbage, not need."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if run(flash, f"{mid}k", commands) is not None:
            hi = mid
        else:
            lo = mid
    return hi
