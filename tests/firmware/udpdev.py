"""A detector on real loopback UDP, for the rollout CLI and the bench: the firmware as the
virtual device runs it (tools/vdev_boot.py: boot.py picks the slot, then main.py), its link a
UDP socket (EFD_LINK) talking straight to a host port, and a small supervisor of our own that
boots it again when it asks (a reboot over its watchdog channel, EFD_WDT) or exits. `clock`
"sim" runs windows as fast as the CPU allows (tests), "real" 100 ms each (the bench)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
from pathlib import Path

from tests import mpy

BOOT = Path(__file__).resolve().parents[2] / "tools" / "vdev_boot.py"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UdpDevice:
    def __init__(self, flash: Path, host_port: int, clock: str = "sim", heapsize: str = "256k"):
        self.flash = flash
        self.host_port = host_port
        self.dev_port = free_port()
        self.clock = clock
        self.heapsize = heapsize
        self.wdt = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.wdt.bind(("127.0.0.1", 0))
        self.wdt.settimeout(0.1)
        self.proc: subprocess.Popen | None = None
        self.boots = 0
        self.stopping = False
        self.lock = threading.Lock()
        self._start()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    @property
    def addr(self) -> tuple[str, int]:
        return ("127.0.0.1", self.dev_port)

    def _start(self) -> None:
        env = dict(os.environ)
        env.pop("MICROPYPATH", None)
        env.update(
            EFD_LINK=f"{self.dev_port}:{self.host_port}",
            EFD_WDT=str(self.wdt.getsockname()[1]),
            EFD_CLOCK=self.clock,
        )
        self.proc = subprocess.Popen(
            [mpy.binary(), "-X", f"heapsize={self.heapsize}", str(BOOT)],
            cwd=self.flash,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.boots += 1

    def _restart(self) -> None:
        with self.lock:
            if self.stopping:
                return
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._start()

    def _watch(self) -> None:
        while not self.stopping:
            try:
                d = self.wdt.recv(64)
            except TimeoutError:
                d = b""
            except OSError:
                return
            if d == b"R" or (
                self.proc is not None and self.proc.poll() is not None
            ):  # a reboot request (hal_sim.reboot)
                self._restart()

    def close(self) -> None:
        self.stopping = True
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.thread.join(2)
        with contextlib.suppress(OSError):
            self.wdt.close()
