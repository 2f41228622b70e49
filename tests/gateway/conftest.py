"""Fixtures for the gateway tests: a real Mosquitto broker (scripts/broker.sh installs and
starts it), gateway and fleet subprocesses that always stop, and a 1010-device registry."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from protocol import frame as fr
from protocol import host

ROOT = Path(__file__).resolve().parents[2]
BROKER_SH = ROOT / "scripts" / "broker.sh"
SECRET = b"gateway-test-fleet-secret"
# Detector users the broker gets (user name = device id; scripts/broker.sh, $BROKER_DETECTORS).
BROKER_DETECTORS = (100001, 100002, 100003)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return int(p)


class Broker:
    def __init__(self, d: Path):
        self.dir = d
        self.port = 0

    def start(self) -> None:
        cmd = [str(BROKER_SH), "start", str(self.dir)] + ([str(self.port)] if self.port else [])
        env = dict(os.environ, BROKER_DETECTORS=" ".join(map(str, BROKER_DETECTORS)))
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        if r.returncode != 0:
            raise RuntimeError("broker did not start: " + r.stderr)
        self.port = int(r.stdout.strip().splitlines()[-1])

    def stop(self) -> None:
        subprocess.run([str(BROKER_SH), "stop", str(self.dir)], timeout=30, check=False)

    def restart(self, down_s: float = 1.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def password_file(self, user: str) -> Path:
        """The password broker.sh generated for `user` (gateway, operator, fleet, a device id)."""
        return self.dir / "users" / user

    def password(self, user: str) -> str:
        return self.password_file(user).read_text().strip()

    def auth(self, user: str) -> list[str]:
        """CLI options that log in as `user`."""
        return ["--mqtt-user", user, "--mqtt-password-file", str(self.password_file(user))]


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    if subprocess.run([str(BROKER_SH), "install"], timeout=600).returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("mosquitto could not be installed")
        pytest.skip("mosquitto not installed and cannot be installed here (not root)")
    b = Broker(tmp_path_factory.mktemp("broker"))
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def fleet_files(tmp_path_factory):
    """secret file + the 2020 plan's 1010-device registry (keys derived from the secret)."""
    d = tmp_path_factory.mktemp("fleet")
    (d / "secret").write_bytes(SECRET)
    r = run_cli("tools.fleet", "registry", "--out", str(d / "fleet.csv"), "--secret-file",
                str(d / "secret"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    return d


def run_cli(module: str, *args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, **kw)  # fmt: skip


class Proc:
    """A gateway or fleet subprocess, killed at teardown if still running."""

    def __init__(self, module: str, args: list[str], log: Path):
        self.log = log
        self.f = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT,
                                  stdout=self.f, stderr=subprocess.STDOUT)  # fmt: skip

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.f.close()

    def wait(self, timeout: float) -> int:
        rc = self.p.wait(timeout)
        self.f.close()
        return rc

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def procs():
    started: list[Proc] = []

    def start(module: str, args: list[str], log: Path) -> Proc:
        p = Proc(module, args, log)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill(signal.SIGTERM)


def start_gateway(procs, tmp: Path, fleet: Path, name: str, db: Path, *extra: str) -> Proc:
    ready = tmp / f"{name}.ready"
    ready.unlink(missing_ok=True)
    p = procs("tools.gateway", ["run", "--registry", str(fleet / "fleet.csv"), "--secret-file",
                                str(fleet / "secret"), "--db", str(db), "--name", name,
                                "--ready-file", str(ready), "--flush-interval", "0.02",
                                "--no-republish-telemetry", *extra],
              tmp / f"{name}.log")  # fmt: skip
    t_end = time.monotonic() + 30
    while not ready.exists():
        if p.p.poll() is not None or time.monotonic() > t_end:
            raise AssertionError("gateway did not start:\n" + p.text())
        time.sleep(0.05)
    return p


def db_events(db: Path) -> list[tuple[int, int]]:
    c = sqlite3.connect(db, timeout=30)
    try:
        return [tuple(r) for r in c.execute("SELECT device, counter FROM events")]  # type: ignore[misc]
    finally:
        c.close()


def db_counters(db: Path) -> dict[str, dict[str, int]]:
    c = sqlite3.connect(db, timeout=30)
    out: dict[str, dict[str, int]] = {}
    try:
        for g, n, v in c.execute("SELECT gateway, name, value FROM counters"):
            out.setdefault(g, {})[n] = v
    finally:
        c.close()
    return out


def fleet_report(path: Path) -> dict:
    return json.loads(path.read_text())


def rs485_bus(
    master: int,
    dets: dict,
    stop: threading.Event,
    drop=None,
    noise_after: int | None = None,
    poll_s: float = 0.02,
) -> None:
    """The detectors' side of an RS-485 bus on a pty: every addressed frame goes to its
    detector (a frame for nobody is ignored, as a drop on the bus would); drop(frame) True
    swallows it (line noise); noise_after: garbage follows that device's replies."""
    buf = b""
    while not stop.is_set():
        r, _, _ = select.select([master], [], [], poll_s)
        if not r:
            continue
        try:
            buf += os.read(master, 4096)
        except OSError:
            return
        *segs, buf = buf.split(b"\x00")
        for seg in segs:
            f = fr.decode(seg) if seg else None
            if f is None or not f.ok or f.device not in dets:
                continue
            if drop is not None and drop(f):
                continue
            for out in dets[f.device].downlink(seg + b"\x00", time.monotonic(), host.now()):
                os.write(master, out)
                if f.device == noise_after:
                    os.write(master, b"\x55\xaa garbage \x00")


class DetectorLink:
    """The gateway's way back to one fleet VirtualDetector, in memory: each frame the gateway
    sends is handed to the detector, and the detector's answers wait in `up`."""

    name = "test"

    def __init__(self, det) -> None:
        self.det = det
        self.up: list[bytes] = []

    def send(self, device: int, wire: bytes, addr) -> None:
        self.up.extend(self.det.downlink(wire, time.monotonic(), host.now()))
