"""A detector for the signed-update tests: the real x64 image in a flash folder, booted like the
virtual device (boot.py picks the slot, then the app), the simulated clock, and an in-memory
link driven line by line from the test (no pty, no wall-clock waits). A `tools.gateway.update`
Link, so the rollout logic itself drives it.

Power cuts: EFD_CUT=k ends the process at the k-th flash write step (app/store.py's and
app/ota.py's test hooks, re-installed whenever the modules are loaded again); the unix port's
files are unbuffered, so what was written is on "flash" (the torn-tail variant of the tests
truncates the staging file to its last flushed block, as LittleFS would leave it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from protocol import frame as fr
from protocol.stream import StreamDecoder
from tests import mpy
from tools import fwbuild, provisioning

DEVICE = 0x12345678
KEY = bytes(range(32))
# The vendor test key pair: public, for tests only (like the protocol's TEST_KEY).
VENDOR_SEED = bytes(range(32, 64))

DRIVER = r"""
import builtins, gc, os, sys, time
sys.path[:] = ["", "lib"]
CUT = int(os.getenv("EFD_CUT") or 0)
_n = [0]


def _hook(name):
    _n[0] += 1
    print("STEP", _n[0], name)
    if _n[0] == CUT:
        print("CUT", name)
        sys.exit(7)


_real = builtins.__import__


def _imp(name, *a):
    m = _real(name, *a)
    for k in ("app.store", "app.ota"):
        x = sys.modules.get(k)
        if x is not None and "hook" in x.__dict__ and x.hook is not _hook:
            x.hook = _hook
    return m


builtins.__import__ = _imp
exec(open("boot.py").read())
from binascii import hexlify, unhexlify
from app.hal_sim import SimHal
from app import run
import app


class Wire:
    def __init__(self):
        self.rx = b""
        self.out = []

    def read(self, buf):
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n

    def write(self, data):
        self.out.append(bytes(data))

    def busy(self):
        return False


wire = Wire()
hal = SimHal(clock="sim", link=wire)


def _reboot():
    # As on the board (app.run waits until the link is not busy): what was sent is out.
    for o in wire.out:
        print("RX", hexlify(o).decode())
    print("REBOOT")
    sys.exit(5)


hal.reboot = _reboot
a = run.App(hal)
gc.collect()
base = gc.mem_alloc()
peak = base
slow = 0
print("BOOT", ".".join(str(x) for x in app.VERSION), sys.path[1], base)
while True:
    line = sys.stdin.readline()
    if not line:
        break
    w = line.split()
    if w[0] == "tx":
        wire.rx += unhexlify(w[1])
    elif w[0] == "run":
        for _ in range(int(w[1])):
            t0 = time.ticks_us()
            a.run(1)
            dt = time.ticks_diff(time.ticks_us(), t0)
            if dt > slow:
                slow = dt
            m = gc.mem_alloc()
            if m > peak:
                peak = m
        for o in wire.out:
            print("RX", hexlify(o).decode())
        wire.out = []
        gc.collect()
        print("OK", a.errors, a.windows, peak - base, gc.mem_alloc() - base, slow)
        slow = 0
    elif w[0] == "res":  # residual current, mA (the simulated sensor)
        hal.res_ma = int(w[1])
        hal.dirty = True
        print("OK")
    elif w[0] == "err":
        a.errors += 1
        print("OK")
"""


def build_image(out: Path, version: tuple[int, int, int] = (0, 1, 0), pub: bytes | None = None):
    """The x64 image with the vendor test key built in."""
    if pub is None:
        pub = vendor_pub()
    fwbuild.build("x64", out, vendor_pub=pub, version=version)
    return out


def vendor_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(VENDOR_SEED)


def vendor_pub() -> bytes:
    from tools import keys

    return keys.public_bytes(vendor_key())


def make_flash(flash: Path, image: Path) -> Path:
    """A flash folder as make deploy + make provision leave it."""
    flash.mkdir(parents=True, exist_ok=True)
    shutil.copytree(image / "lib", flash / "lib", dirs_exist_ok=True)
    for name in ("boot.py", "main.py"):
        shutil.copy2(image / name, flash / name)
    for name, text in provisioning.files(DEVICE, KEY.hex()).items():
        (flash / name).write_text(text)
    return flash


class Device:
    """The detector process; `exchange` is a tools.gateway.update Link."""

    def __init__(self, flash: Path, windows: int = 2, heapsize: str = "256k"):
        self.flash = flash
        self.windows = windows
        self.heapsize = heapsize
        self.proc: subprocess.Popen | None = None
        self.cut_at = 0  # power cut at this write step, counted over every boot (1 = first)
        self.all_steps: list[str] = []  # flash write steps of every boot
        self.boots: list[tuple[str, str]] = []  # (version, slot) of every boot
        self.steps: list[str] = []  # flash write steps seen (this process)
        self.exits: list[int] = []
        self.peak = 0  # largest heap growth over the boot's baseline, bytes
        self.live = 0  # largest live heap growth (after a collection) over the baseline
        self.slow_us: list[int] = []  # the longest window of each run() (processing, us)
        self.live_hist: list[int] = []  # the live heap growth after each run()
        self.errors = 0
        self.windows_run = 0
        self.frames: list[fr.Frame] = []  # everything the detector sent

    # -- process ------------------------------------------------------------------------------
    def start(self) -> None:
        done = len(self.all_steps)
        cut = self.cut_at - done if self.cut_at > done else 0
        env = dict(os.environ, MICROPYPATH="lib", EFD_CUT=str(cut))
        self.steps = []
        self.proc = subprocess.Popen(
            [mpy.binary(), "-X", f"heapsize={self.heapsize}", "-c", DRIVER],
            cwd=self.flash,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self._line()
        if line is None or not line.startswith("BOOT"):
            return
        _, ver, slot, _base = line.split()
        self.boots.append((ver, slot))

    def _line(self) -> str | None:
        """The next protocol line; None when the process ended (exit code kept)."""
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.exits.append(self.proc.wait())
                self.proc = None
                return None
            if line.startswith("STEP"):
                self.steps.append(line.split()[2])
                self.all_steps.append(line.split()[2])
                continue
            if line.startswith(("BOOT", "RX", "OK")):
                return line.strip()

    def alive(self) -> bool:
        return self.proc is not None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def ensure(self) -> None:
        """Boot again if the process ended (a reboot, a power cut)."""
        if self.proc is None:
            self.start()

    def run(self, windows: int) -> list[fr.Frame]:
        """Run windows; the frames the detector sent meanwhile."""
        self.ensure()
        if self.proc is None:
            return []
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(f"run {windows}\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._line()
            return []
        out: list[fr.Frame] = []
        dec = StreamDecoder(uplink=True)
        while True:
            line = self._line()
            if line is None:
                return out
            if line.startswith("RX"):
                for f in dec.feed(bytes.fromhex(line.split()[1])):
                    if f.ok:
                        out.append(f)
                        self.frames.append(f)
            elif line.startswith("OK"):
                _, errors, windows_run, peak, live, slow = line.split()
                self.slow_us.append(int(slow))
                self.errors = int(errors)
                self.windows_run = int(windows_run)
                self.peak = max(self.peak, int(peak))
                self.live = max(self.live, int(live))
                self.live_hist.append(int(live))
                return out

    def send(self, wire: bytes) -> None:
        self.ensure()
        if self.proc is None:
            return
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(f"tx {wire.hex()}\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._line()

    def _say(self, text: str) -> None:
        self.ensure()
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.write(text + "\n")
            self.proc.stdin.flush()
            self._line()

    def add_error(self) -> None:
        """Count an error in the app (as a link exception would)."""
        self._say("err")

    def residual(self, ma: int) -> None:
        self._say(f"res {ma}")

    # -- tools.gateway.update.Link ------------------------------------------------------------
    def exchange(self, device: int, wire: bytes, wait: float) -> list[fr.Frame]:
        self.send(wire)
        return self.run(self.windows)

    def idle(self, seconds: float) -> None:
        self.run(max(1, int(seconds * 10)))
