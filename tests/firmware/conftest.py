"""Fixtures: a virtual detector (real firmware, unix port, pty) per test, always cleaned up."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEVICE = 0x12345678
KEY = bytes(range(32))


class VDev:
    def __init__(self, tmp: Path, *extra: str, blank: bool = False):
        self.state_path = tmp / "state.json"
        self.flash = tmp / "flash"
        cmd = [
            sys.executable,
            "-m",
            "tools.virtual_device",
            "--flash",
            str(self.flash),
            "--state",
            str(self.state_path),
            "--device",
            hex(DEVICE),
            "--key",
            KEY.hex(),
            "--quiet",
            *extra,
        ]
        if blank:
            cmd.append("--blank")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        end = time.monotonic() + 30
        while not self.state_path.exists():
            if time.monotonic() > end or self.proc.poll() is not None:
                out = (
                    self.proc.stdout.read()
                    if self.proc.stdout and self.proc.poll() is not None
                    else b""
                )
                raise RuntimeError(f"virtual device did not start: {out!r}")
            time.sleep(0.05)

    @property
    def state(self) -> dict:
        return json.loads(self.state_path.read_text())

    def ctl(self, *words: str) -> None:
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(" ".join(words).encode(), tuple(self.state["ctl"]))

    def kill_firmware(self) -> None:
        """A power cut: SIGKILL the firmware process (the supervisor boots it again)."""
        pid = self.state["pid"]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def wait_boots(self, n: int, timeout: float = 20) -> None:
        end = time.monotonic() + timeout
        while self.state["boots"] < n:
            assert time.monotonic() < end, "firmware did not restart"
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # the supervisor kills its firmware process on SIGTERM
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def vdev_factory(tmp_path):
    made: list[VDev] = []

    def make(*extra: str, blank: bool = False) -> VDev:
        v = VDev(tmp_path, *extra, blank=blank)
        made.append(v)
        return v

    yield make
    for v in made:
        v.close()
