"""Fixtures: a virtual detector (real firmware, unix port, pty) per test, always cleaned up."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEVICE = 0x12345678
KEY = bytes(range(32))


class VDev:
    """tools.virtual_device on tmp/flash. state=False: no --state, the default state file
    (FLASH.state.json, where `ctl` looks too); key_file: provision with --key-file."""

    def __init__(
        self,
        tmp: Path,
        *extra: str,
        blank: bool = False,
        state: bool = True,
        key_file: Path | None = None,
    ):
        from tools.virtual_device import state_path

        self.flash = tmp / "flash"
        self.state_path = tmp / "state.json" if state else state_path(self.flash)
        cmd = [sys.executable, "-m", "tools.virtual_device", "--flash", str(self.flash)]
        if state:
            cmd += ["--state", str(self.state_path)]
        cmd += ["--device", hex(DEVICE)]
        cmd += ["--key-file", str(key_file)] if key_file else ["--key", KEY.hex()]
        cmd += ["--quiet", *extra]
        self._ctl_q: queue.Queue | None = None
        self.ctl_errors: list[str] = []
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
        """A control command, returning at once as a datagram send would: a worker thread
        sends the commands in order, as `python -m tools.virtual_device ctl` does (again while
        a restarting firmware is not listening yet, so none is lost), and waits for each
        answer; a refusal fails the test at close(). ctl_wait(): the answer itself."""
        if self._ctl_q is None:
            self._ctl_q = queue.Queue()
            threading.Thread(target=self._ctl_worker, daemon=True).start()
        self._ctl_q.put(list(words))

    def _ctl_worker(self) -> None:
        from tools.virtual_device import CtlError

        assert self._ctl_q is not None
        while (words := self._ctl_q.get()) is not None:
            try:
                self.ctl_wait(*words)
            except CtlError as e:
                self.ctl_errors.append(f"ctl {' '.join(words)}: {e}")
            finally:
                self._ctl_q.task_done()
        self._ctl_q.task_done()

    def ctl_wait(self, *words: str) -> str:
        """A control command; returns what the firmware did (CtlError if it refused)."""
        from tools.virtual_device import send_ctl

        host, port = self.state["ctl"]
        return send_ctl((host, int(port)), list(words))

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
        errors: list[str] = []
        if self._ctl_q is not None:  # the commands sent so far reach the firmware first
            self._ctl_q.put(None)
            self._ctl_q.join()
            self._ctl_q = None
            errors, self.ctl_errors = self.ctl_errors, []
        if self.proc.poll() is None:
            self.proc.terminate()  # the supervisor kills its firmware process on SIGTERM
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        assert not errors, errors  # a ctl command the firmware refused


@pytest.fixture
def vdev_factory(tmp_path):
    made: list[VDev] = []

    def make(*extra: str, **kw) -> VDev:
        v = VDev(tmp_path, *extra, **kw)
        made.append(v)
        return v

    yield make
    for v in made:
        v.close()
