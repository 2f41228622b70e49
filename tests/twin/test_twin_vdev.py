"""The board twin as a virtual device (tools/twin/vdev.py, `make virtual-device BOARD=esp32`): the
ESP32 image on the twin in real time behind a pty console and a pty RS-485 link. mpremote meets
its REPL (reset causes and the RTC across process restarts), the real gateway's polling master
polls it over the link, and `make deploy` installs the ESP32 file set on it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conformance.test_clauses import FILES
from tools import deploy
from tools.twin import run as tr

pytestmark = pytest.mark.micropython
ROOT = Path(__file__).resolve().parents[2]
DEVICE = 0x12345678
KEY = bytes(range(32))


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    return tr.build_image(tmp_path_factory.mktemp("img") / "image")


class TwinDev:
    """`python -m tools.twin.vdev` in its own session, always stopped (close())."""

    def __init__(self, tmp: Path, *extra: str):
        self.state_path = tmp / "state.json"
        self.flash = tmp / "flash"
        cmd = [sys.executable, "-m", "tools.twin.vdev", "--flash", str(self.flash)]
        cmd += ["--state", str(self.state_path), "--device", hex(DEVICE), "--key", KEY.hex()]
        self.proc = subprocess.Popen(
            [*cmd, *extra],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}

    def wait_boots(self, n: int, timeout: float = 30) -> dict:
        end = time.monotonic() + timeout
        while self.state.get("boots", 0) < n:
            if self.proc.poll() is not None:
                raise RuntimeError(f"virtual device exited: {self.output()}")
            assert time.monotonic() < end, f"no boot {n}: {self.state}"
            time.sleep(0.05)
        return self.state

    def output(self) -> str:
        self.close()
        return self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # the supervisor kills its firmware process on SIGTERM
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def twin_factory(tmp_path):
    made: list[TwinDev] = []

    def make(*extra: str) -> TwinDev:
        d = TwinDev(tmp_path, *extra)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def mp(port: str, code: str) -> str:
    return deploy.run_mp(port, "exec", code, timeout=30).strip()


def test_console_mpremote_reset_causes_and_rtc(twin_factory, image):
    d = twin_factory("--image", str(image), "--quiet")
    st = d.wait_boots(1)
    con = st["console"]
    # resume: Ctrl-C stops main.py (the firmware's KeyboardInterrupt path), the REPL follows, the
    # cwd is the LittleFS root, the modules are the twin's ESP32 port.
    out = mp(
        con, "import machine, os, sys; print(machine.reset_cause(), os.getcwd(), sys.platform)"
    )
    assert out.split() == ["1", "/flash", "linux"]
    assert "identity.json" in mp(con, "import os; print(os.listdir())")
    # The RTC set at the REPL, then a soft reset (Ctrl-D at the friendly REPL): a new process,
    # reset cause soft, the RTC carried on.
    mp(con, "import machine; machine.RTC().datetime((2031, 5, 6, 0, 7, 8, 9, 0))")
    with open(con, "wb", buffering=0) as f:
        f.write(b"\r\x04")
    st = d.wait_boots(2)
    assert st["cause"] == 5 and st["starts"] == 2
    out = mp(con, "import machine; print(machine.reset_cause(), machine.RTC().datetime())")
    cause, rest = out.split(" ", 1)
    y, mo, day, _wd, h, mi, s, _ = (int(x) for x in rest.strip("()").split(","))
    assert cause == "5" and (y, mo, day, h, mi) == (2031, 5, 6, 7, 8) and 9 <= s <= 30, out
    # `mpremote reset` (machine.reset() at the REPL): a hard reset, the RTC still kept.
    deploy.run_mp(con, "reset", timeout=30)
    st = d.wait_boots(3)
    assert st["cause"] == 2
    out = mp(con, "import machine; print(machine.reset_cause(), machine.RTC().datetime()[0])")
    assert out.split() == ["2", "2031"]
    # A kill is a power cut: the RTC starts again from 2000.
    os.kill(st["pid"], signal.SIGKILL)
    st = d.wait_boots(4)
    assert st["cause"] == 1
    out = mp(con, "import machine; print(machine.reset_cause(), machine.RTC().datetime()[0])")
    assert out.split() == ["1", "2000"]


def _percentile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * p))]


def test_real_gateway_polls_the_twin(twin_factory, image, tmp_path):
    """tools.gateway's SerialLink (the RS-485 polling master) on the link pty, ~12 s: every POLL
    after the boot answered, the leakage alarm stored once and ACKed on the bus."""
    from tools.gateway.core import Gateway
    from tools.gateway.registry import Device
    from tools.gateway.store import Store
    from tools.gateway.transports import SerialLink

    d = twin_factory(
        "--image", str(image), "--scenario", str(FILES["gb14287_2_at_set_alarms"]),
        "--apply-config", "--quiet",
    )  # fmt: skip
    st = d.wait_boots(1)
    # (kind, request written, reply's first byte, slot over, answered, request's wire time)
    slots: list[tuple[str, float, float | None, float, bool, float]] = []

    class Timed:
        """The pyserial port, noting when a request went out and its reply's first byte came."""

        def __init__(self, ser):
            self.ser = ser
            self.t_write = 0.0
            self.t_first: float | None = None

        def write(self, data: bytes) -> int:
            self.t_write = time.monotonic()
            self.t_first = None
            return self.ser.write(data)

        def read(self, n: int) -> bytes:
            # What is there, or the first byte to come (pyserial's read(n) would wait out its
            # 20 ms timeout for n bytes): the reply's first byte is timed as it arrives.
            data = self.ser.read(min(n, max(1, self.ser.in_waiting)))
            if data and self.t_first is None:
                self.t_first = time.monotonic()
            return data

        def close(self) -> None:
            self.ser.close()

    class TimedLink(SerialLink):
        kind = "ack"

        def _poll_one(self, device: int) -> list:
            self.kind = "poll"
            try:
                return super()._poll_one(device)
            finally:
                self.kind = "ack"

        def _slot(self, wire: bytes) -> list:
            got = super()._slot(wire)
            t = self.ser
            wire_s = (len(wire) + 1) * 10 / st["baud"]  # with its leading 0x00
            slots.append((self.kind, t.t_write, t.t_first, time.monotonic(), bool(got), wire_s))
            return got

    store = Store(tmp_path / "gw.db", "gw")
    gw = Gateway({DEVICE: Device(DEVICE, "twin", key=KEY)}, store, name="gw")

    async def main() -> None:
        link = TimedLink(gw, st["link"], st["baud"], poll=[DEVICE], poll_interval=0.25,
                         flush_request=gw.flush)  # fmt: skip
        link.ser = Timed(link.ser)
        link.start(asyncio.get_running_loop())
        try:
            end = time.monotonic() + 12
            while time.monotonic() < end:
                await asyncio.sleep(0.02)
                gw.tick()
                gw.flush()
        finally:
            link.close()
            gw.flush()

    try:
        asyncio.run(main())
    finally:
        gw.close()
    evs = store.db.execute("SELECT kind, channel, value FROM events ORDER BY id").fetchall()
    n_tel = store.db.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0]
    store.close()
    if os.environ.get("TWIN_DEBUG"):
        print(
            "slots:",
            [
                (s[0][0], round(s[1] - slots[0][1], 2), s[2] and round((s[2] - s[1]) * 1000))
                for s in slots
            ],
        )
        print(mp(st["console"], "import twin; print(twin.stats)"))
    d.close()
    polls = [s for s in slots if s[0] == "poll"]
    acks = [s for s in slots if s[0] == "ack"]
    first = next((i for i, s in enumerate(slots) if s[4]), None)
    assert first is not None, f"no reply to {len(slots)} requests"
    missed = [s for s in slots[first:] if not s[4]]
    assert not missed, f"{len(missed)} of {len(slots) - first} requests after boot unanswered"
    assert len(polls) >= 25 and n_tel >= 20
    kinds = [(k, ch) for k, ch, _v in evs]
    assert kinds == [("prealarm", "residual"), ("alarm", "residual")], evs
    assert len(acks) >= 2 and all(a[4] for a in acks)  # each ACK answered by the next frame
    assert gw.stats.get("ack_sent", 0) == 2
    # The first reply comes while the firmware is still starting (its first window); the
    # figures are the steady state after it.
    t = slots[first]
    figures: dict[str, float] = {"requests": len(slots) - first - 1}
    figures["first_reply_ms"] = round((t[2] - t[1]) * 1000, 1)  # type: ignore[operator]
    for kind in ("poll", "ack"):
        got = [s for s in slots[first + 1 :] if s[0] == kind and s[2] is not None]
        fb = [(s[2] - s[1]) * 1000 for s in got]  # type: ignore[operator]
        turn = [(s[2] - s[1] - s[5]) * 1000 for s in got]  # type: ignore[operator]
        done = [(s[3] - s[1]) * 1000 for s in got]
        figures[f"{kind}s"] = len(got)
        figures[f"{kind}_first_byte_ms_p50"] = round(_percentile(fb, 0.5), 1)
        figures[f"{kind}_first_byte_ms_max"] = round(max(fb), 1)
        figures[f"{kind}_after_end_ms_p50"] = round(_percentile(turn, 0.5), 1)
        figures[f"{kind}_after_end_ms_p99"] = round(_percentile(turn, 0.99), 1)
        figures[f"{kind}_after_end_ms_max"] = round(max(turn), 1)
        figures[f"{kind}_reply_done_ms_p50"] = round(_percentile(done, 0.5), 1)
    print("gateway sees:", json.dumps(figures))
    # first_byte: from the gateway's write; after_end: from the request's last stop bit on the
    # 9600-baud line (the write plus its wire time), SPEC.md section 9's measure: a reply SHOULD
    # start within 20 ms of a POLL (the firmware answers it inside the sampling burst, every
    # 10 ms) and MUST within 150 ms of any frame. The reply to an ACK waits for the window's end
    # and the ack's flash write (65-115 ms seen): reported, its budget is tests/twin's offline
    # polling master's to check (virtual time, no host latency in it).
    assert figures["poll_after_end_ms_p50"] <= 20, figures
    assert figures["poll_after_end_ms_max"] < 150, figures
    assert figures["first_reply_ms"] < 400  # within the gateway's timeout: 150 ms + 267 ms


def test_make_deploy_onto_a_blank_twin(twin_factory):
    """`make deploy PORT=<console>`: the ESP32 file set compiled for the twin's arch, copied with
    mpremote, machine.reset(); the firmware then answers on the RS-485 link."""
    from tools.monitor import HostLink

    d = twin_factory("--blank", "--quiet")
    st = d.wait_boots(1)  # an empty flash: nothing to run, the REPL
    p = subprocess.run(
        ["make", "--no-print-directory", "deploy", f"PORT={st['console']}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    st = d.wait_boots(2)
    assert st["cause"] == 2  # machine.reset(), as on the board
    link = HostLink(st["link"], DEVICE, KEY)
    end = time.monotonic() + 20
    tele = None
    while tele is None and time.monotonic() < end:
        link.poll()
        tele = next((f for f in link.pump(0.5) if f["type"] == "telemetry"), None)
    assert tele is not None, link.frames[-5:]
    with contextlib.suppress(Exception):
        link.ser.close()
    files = mp(st["console"], "import os; print(sorted(os.listdir('lib/app')))")
    assert "hal_esp32.mpy" in files and "hal_sim.mpy" not in files, files


CTRL_C_SCRIPT = """
import sys, socket, utime
sys.path[:] = [sys.argv[1]]
import twin, vdevice

port = int(sys.argv[3])
vdevice.setup({"boot": sys.argv[2], "intr": port})
vdevice.start()  # (no flash: it only writes the boot state and ties the clock)
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
to = socket.getaddrinfo("127.0.0.1", port)[0][-1]


def ctrl_c(t=None):
    out.sendto(b"%d" % (utime.ticks_us() if t is None else t), to)
    utime.sleep_ms(5)


def raised(wait_us=0):
    try:
        vdevice.io(wait_us)
    except KeyboardInterrupt:
        return True
    return False


ctrl_c()
vdevice._depth[0] = 1  # inside a flash operation (LittleFS): never raised there
r1 = raised()
vdevice._depth[0] = 0
r2 = raised()  # the next charge outside it
vdevice.io(0)
utime.sleep_ms(120)  # idle, as the REPL waiting for input: what is typed meanwhile is stale
for _ in range(3):  # (several mpremote connections: each datagram on its own)
    ctrl_c()
r3 = raised()
ctrl_c()  # typed while the twin runs
t0 = utime.ticks_us()
r4 = raised(300000)  # (a waiting charge wakes for it)
waited = utime.ticks_diff(utime.ticks_us(), t0)
print(r1, r2, r3, r4, waited < 100000)
"""


def test_ctrl_c_raised_only_where_it_is_safe(tmp_path):
    """Ctrl-C reaches the twin as a datagram: raised at the next charge outside a flash
    operation (never inside LittleFS), dropped when typed while the twin sat idle (the REPL
    reads that byte itself), and a waiting charge wakes for it."""
    from tools.virtual_device import _free_port, micropython

    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT)
    boot = tmp_path / "boot.json"
    boot.write_text("{}")
    board = ROOT / "tools" / "twin" / "board"
    p = subprocess.run(
        [micropython(), str(script), str(board), str(boot), str(_free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.stdout.split() == ["False", "True", "False", "True", "True"], p.stdout + p.stderr
