"""Virtual detector: the real firmware under the MicroPython unix port, on a pty.

    python -m tools.virtual_device [--flash DIR] [--scenario FILE.toml]   (make virtual-device)

It prints two serial ports and keeps them for its whole life, across firmware reboots:

  console  the MicroPython REPL, like the board's USB serial: use it with mpremote, e.g.
           `mpremote connect <console> resume exec "..."` (soft reset = reboot, see below)
  link     the detector's protocol link (frames of protocol/SPEC.md), like the RS-485 port:
           use it with `python -m tools.monitor <link>` or any pyserial program

The supervisor runs `micropython -i tools/vdev_boot.py` in the flash folder (boot.py, main.py,
lib/ ... as on the board's filesystem), restarts it whenever it exits (soft reset, the reboot
command, a crash, a kill = power cut), keeps the flash folder, and acts as the hardware
watchdog: the firmware's simulated HAL feeds it over UDP and a stall of --wdt-s seconds kills
and restarts the firmware (reset cause "watchdog"). Reboot it from the console like a board:
`mpremote connect <console> resume reset` (or `python -m tools.deploy <console> --reset-only`).

Sensors come from a host_sim scenario (rendered to a feed file; when it ends, its last window
is held) or from the firmware's built-in generator, whose levels `python -m
tools.virtual_device ctl res 400` changes on the fly (`ctl --help`). Ports and pids go to the
state file (--state; default: next to the flash folder, FLASH.state.json), where ctl finds them.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pty
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import termios
import time
import tty
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOT = Path(__file__).resolve().parent / "vdev_boot.py"
DEFAULT_FLASH = ROOT / "build" / "vdev-flash"
CAUSE_POWER_ON, CAUSE_HARD, CAUSE_WATCHDOG, CAUSE_SOFT = 1, 2, 3, 5


def _gain_error(text: str) -> str:
    """--gain-error RES_PCT,PHASE_PCT: two percentages within +-30."""
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: two percentages, e.g. 9,-9") from None
    if not (-30 <= a <= 30 and -30 <= b <= 30):
        raise argparse.ArgumentTypeError(f"{text!r}: each error within -30..30 %")
    return f"{a:g},{b:g}"


def _rssi(text: str) -> int:
    """--rssi DBM: a WiFi RSSI, -127..-1 dBm."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: an RSSI in dBm, e.g. -61") from None
    if not -127 <= v <= -1:
        raise argparse.ArgumentTypeError(f"{text!r}: an RSSI is -127..-1 dBm")
    return v


def state_path(flash: str | Path) -> Path:
    """The state file of the virtual device on this flash folder when --state is not given:
    where both the supervisor and `ctl` look by default."""
    f = Path(flash).resolve()
    return f.parent / (f.name + ".state.json")


def micropython() -> str:
    here = Path(sys.executable).parent / "micropython"
    return str(here) if here.exists() else (shutil.which("micropython") or "micropython")


def _free_udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _user_pty() -> tuple[int, int, str]:
    """A pty whose slave path the user opens; we hold the slave too so a closing client
    never makes the master side fail (EIO)."""
    m, s = pty.openpty()
    tty.setraw(s)
    return m, s, os.ttyname(s)


def drain_close(fd: int, sink: Callable[[bytes], None]) -> None:
    """Pass on what an exited firmware process printed last (a traceback, "[sim] reboot") from
    its pty, then close it. Shared by this supervisor and the board twin's (tools/twin/vdev)."""
    with contextlib.suppress(OSError):
        while select.select([fd], [], [], 0)[0]:
            d = os.read(fd, 4096)
            if not d:
                break
            sink(d)
    with contextlib.suppress(OSError):
        os.close(fd)


def spawn(
    cmd: list[str], cwd: Path, env: dict[str, str], isig: bool = True
) -> tuple[subprocess.Popen, int]:
    """Start `cmd` on a new pty that is its controlling terminal, as MicroPython's REPL expects;
    returns the process and the pty's master side. isig=False: a Ctrl-C byte is only a byte
    (no SIGINT; the caller delivers the interrupt its own way)."""
    m, s = pty.openpty()
    # NOFLSH: the SIGINT from mpremote's Ctrl-C must not flush the bytes that follow it
    # in the same write (its Ctrl-A for the raw REPL), or mpremote waits forever.
    # No OPOST: the REPL already ends lines with \r\n, and a tty turning that into
    # \r\r\n breaks mpremote's match on "raw REPL; CTRL-B to exit\r\n".
    attrs = termios.tcgetattr(s)
    attrs[3] |= termios.NOFLSH
    attrs[1] &= ~termios.OPOST
    if not isig:
        attrs[3] &= ~termios.ISIG
    termios.tcsetattr(s, termios.TCSANOW, attrs)

    def ctty() -> None:
        # The pty becomes the child's controlling terminal, so a Ctrl-C byte from mpremote
        # is a SIGINT (KeyboardInterrupt) as on a real terminal.
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    child = subprocess.Popen(cmd, stdin=s, stdout=s, stderr=s, cwd=cwd, env=env, preexec_fn=ctty)
    os.close(s)
    return child, m


class Supervisor:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.flash = Path(args.flash).resolve()
        self.rng = random.Random(args.seed)
        self.con_m, self.con_s, self.console = _user_pty()
        self.link_m, self.link_s, self.link = _user_pty()
        self.link_sock = _free_udp()  # our end of the firmware's UDP link
        self.wdt_sock = _free_udp()
        self.dev_port = _free_port()
        self.ctl_port = _free_port()
        self.child: subprocess.Popen | None = None
        self.child_m = -1
        self.cause = CAUSE_POWER_ON
        self.wdt_armed = False
        self.wdt_last = 0.0
        self.killed_by_wdt = False
        self.reboot_requested = False
        self.hinted = -9.0  # when the link pty last answered REPL keys (repl_on_link)
        self.rx = b""  # link bytes from the host, not yet a whole frame
        self.boots = 0
        self.stop = False

    # -- child process ---------------------------------------------------------------------------
    def start_child(self) -> None:
        env = dict(os.environ)
        env.pop("MICROPYPATH", None)
        env.update(
            EFD_LINK=f"{self.dev_port}:{self.link_sock.getsockname()[1]}",
            EFD_CTL=str(self.ctl_port),
            EFD_WDT=str(self.wdt_sock.getsockname()[1]),
            EFD_RESET_CAUSE=str(self.cause),
            EFD_CLOCK="real",
        )
        if self.args.feed:
            env["EFD_FEED"] = str(self.args.feed)
        if self.args.rtc:
            env["EFD_RTC"] = "host"
        if getattr(self.args, "gain_error", None):
            env["EFD_GAIN_ERR"] = self.args.gain_error
        if getattr(self.args, "rssi", None) is not None:
            env["EFD_RSSI"] = str(self.args.rssi)

        cmd = [micropython(), "-X", f"heapsize={self.args.heap}", "-i", str(BOOT)]
        self.child, self.child_m = spawn(cmd, self.flash, env)
        self.wdt_armed = False
        self.killed_by_wdt = False
        self.reboot_requested = False
        self.boots += 1
        self.write_state()
        self.log(f"firmware started (pid {self.child.pid}, reset cause {self.cause})")

    def child_exited(self, rc: int) -> None:
        drain_close(self.child_m, self._to_console)
        self.child_m = -1
        if self.reboot_requested:
            self.cause = CAUSE_SOFT
        elif self.killed_by_wdt:
            self.cause = CAUSE_WATCHDOG
        elif rc == 0:
            self.cause = CAUSE_SOFT
        elif rc < 0:
            self.cause = CAUSE_POWER_ON  # killed from outside: a power cut
        else:
            self.cause = CAUSE_HARD
        self.log(f"firmware exited ({rc}): restarting")

    def write_state(self) -> None:
        if not self.args.state:
            return
        st = {
            "console": self.console,
            "link": self.link,
            "udp_link": ["127.0.0.1", self.dev_port],
            "ctl": ["127.0.0.1", self.ctl_port],
            "pid": self.child.pid if self.child else None,
            "supervisor_pid": os.getpid(),
            "boots": self.boots,
            "flash": str(self.flash),
        }
        tmp = Path(self.args.state + ".tmp")
        tmp.write_text(json.dumps(st) + "\n")
        tmp.replace(self.args.state)

    def log(self, msg: str) -> None:
        if not self.args.quiet:
            print(f"[vdev] {msg}", file=sys.stderr, flush=True)

    # -- bridges -------------------------------------------------------------------------------
    def _to_console(self, d: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self.con_m, d)
        if self.args.echo:
            sys.stdout.buffer.write(d)
            sys.stdout.flush()

    def _lose(self) -> bool:
        return self.args.loss > 0 and self.rng.random() < self.args.loss

    def pump(self, timeout: float) -> None:
        fds: list = [self.con_m, self.link_m, self.link_sock, self.wdt_sock]
        if self.child_m >= 0:
            fds.append(self.child_m)
        r, _, _ = select.select(fds, [], [], timeout)
        if self.child_m in r:
            try:
                d = os.read(self.child_m, 4096)
            except OSError:
                d = b""
            if d:
                self._to_console(d)
        if self.con_m in r:
            d = os.read(self.con_m, 4096)
            if self.child_m >= 0:
                with contextlib.suppress(OSError):
                    os.write(self.child_m, d)
        if self.link_m in r:
            d = os.read(self.link_m, 4096)
            if not self.rx and d and set(d) <= _REPL_KEYS:
                self.repl_on_link()  # mpremote (make deploy) on the wrong port
                d = b""
            self.rx += d
            # One datagram per frame (COBS segment + its 0x00), like a UDP host would send.
            while b"\x00" in self.rx:
                seg, self.rx = self.rx.split(b"\x00", 1)
                if seg and not self._lose():
                    self.link_sock.sendto(seg + b"\x00", ("127.0.0.1", self.dev_port))
        if self.link_sock in r:
            with contextlib.suppress(OSError):
                d = self.link_sock.recv(4096)
                if not self._lose():
                    os.write(self.link_m, d)
        if self.wdt_sock in r:
            with contextlib.suppress(OSError):
                d = self.wdt_sock.recv(64)
                if d == b"F":
                    self.wdt_armed = True
                    self.wdt_last = time.monotonic()
                elif d == b"X":
                    self.wdt_armed = False
                elif d == b"R" and self.child and self.child.poll() is None:
                    self.reboot_requested = True  # the firmware's reboot: a soft reset
                    self.child.kill()

    def repl_on_link(self) -> None:
        """Someone sent REPL control keys (Ctrl-C, Ctrl-A: mpremote entering its raw REPL)
        to the link pty: say on that port which one the REPL is on (tools/deploy.py's first
        contact shows it at once; mpremote itself would wait on). At most once a second."""
        now = time.monotonic()
        if now - self.hinted < 1.0:
            return
        self.hinted = now
        self.log("REPL keys on the link pty: answered with the console's name")
        with contextlib.suppress(OSError):
            os.write(self.link_m, link_hint(self.console).encode())

    def run(self) -> int:
        print(f"console: {self.console}", flush=True)
        print(f"link:    {self.link}", flush=True)
        print(f"flash:   {self.flash}", flush=True)
        if self.args.state:
            print(f"state:   {self.args.state}", flush=True)
        self.start_child()
        while not self.stop:
            self.pump(0.05)
            c = self.child
            assert c is not None
            if (
                self.wdt_armed
                and c.poll() is None
                and time.monotonic() - self.wdt_last > self.args.wdt_s
            ):
                self.log("watchdog: no feed, resetting the firmware")
                self.killed_by_wdt = True
                c.kill()
            rc = c.poll()
            if rc is not None:
                self.child_exited(rc)
                if self.args.once:
                    break
                time.sleep(0.2)  # a board takes a moment to boot too
                self.start_child()
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        if self.child and self.child.poll() is None:
            self.child.kill()
            self.child.wait()


# Bytes mpremote sends to enter the raw REPL (\r, Ctrl-A/B/C/D): never a whole protocol frame,
# which ends in 0x00.
_REPL_KEYS = frozenset(b"\r\x01\x02\x03\x04")
LINK_HINT = "this is the virtual detector's LINK port (protocol frames), not its REPL"


def link_hint(console: str) -> str:
    return f"\r\n[vdev] {LINK_HINT}: the REPL is on its console, {console}\r\n"


def prepare_flash(flash: Path, blank: bool) -> None:
    """A new flash folder gets the firmware image for this host (as if freshly deployed)."""
    flash.mkdir(parents=True, exist_ok=True)
    if blank or (flash / "main.py").exists():
        return
    import tempfile

    from tools import fwbuild

    # A private build folder: several virtual devices (parallel tests) may start at once.
    with tempfile.TemporaryDirectory(prefix="vdev-image-") as image:
        fwbuild.build("x64", Path(image))
        shutil.copytree(image, flash, dirs_exist_ok=True)


def provision(flash: Path, device: int | None, key: str | None, config: dict | None) -> None:
    """Local provisioning (physical access): identity, a fresh state with a new key (see
    tools/provisioning.py) and initial settings on the flash."""
    if device is not None and key is not None:
        from tools import provisioning

        ident = flash / provisioning.IDENTITY
        current = ident.read_text() if ident.exists() else None
        for name, text in provisioning.files(device, key, current).items():
            (flash / name).write_text(text)
    if config:
        from efd import config as efd_config

        efd_config.make(config)  # refuse what the firmware would refuse
        (flash / "config.json").write_text(json.dumps(config))


class CtlError(Exception):
    """ctl could not do what was asked; .rc: 2 a bad command, 1 no device answering."""

    def __init__(self, msg: str, rc: int = 1):
        super().__init__(msg)
        self.rc = rc


# Commands that may be sent twice (a level): sent again if no answer came within a second,
# in case the firmware process that took the first one was restarted before it read it.
_IDEMPOTENT = ("res", "temp", "phase", "arc")


def send_ctl(addr: tuple[str, int], words: list[str], timeout: float = 10.0) -> str:
    """Send one control command to the firmware at addr (its EFD_CTL port) and return its
    answer (what it did). While the firmware (re)starts nobody listens on the port: the
    command is sent again until it is answered or timeout passes (CtlError)."""
    msg = " ".join(words).encode()
    end = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(addr)  # connected: a port nobody listens on is reported (refused)
        resend = 0.0
        while time.monotonic() < end:
            if time.monotonic() >= resend:
                try:
                    s.send(msg)
                    resend = time.monotonic() + (1.0 if words[0] in _IDEMPOTENT else timeout)
                except ConnectionRefusedError:  # (an earlier send's refusal, reported now)
                    resend = time.monotonic() + 0.2
            s.settimeout(max(0.01, min(0.2, end - time.monotonic())))
            try:
                reply = s.recv(1024).decode(errors="replace")
            except TimeoutError:
                continue
            except ConnectionRefusedError:  # nobody on the port (yet): the firmware restarts
                resend = time.monotonic() + 0.2
                time.sleep(0.2)
                continue
            ok, _, text = reply.partition(" ")
            if ok == "ok":
                return text
            raise CtlError(text, 2)
    raise CtlError(f"no answer from the virtual detector's firmware within {timeout:g} s", 1)


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ctl_help() -> str:
    """ctl's commands, with the firmware's ranges at the default settings."""
    from app import sim_io
    from efd import ntc
    from efd.config import DEFAULTS

    res = sim_io.full_scale(DEFAULTS["res_gain_q12"])
    ph = sim_io.full_scale(DEFAULTS["phase_gain_q12"]) / 100
    t0, t1 = ntc.to_decic(ntc.CODE_MAX) / 10, ntc.to_decic(ntc.CODE_MIN) / 10
    return f"""commands (the firmware checks them against its own limits, app/sim_io.py check()):
  res MA             residual current, 0 .. the input's full scale ({res} mA at the default gain)
  phase CH A         phase current, channel 0..2, 0 .. full scale ({ph:g} A at the default gain)
  temp CH DEGC       temperature, NTC channel 0..3, {t0:g} .. {t1:g} degC
  arc N              arc half-cycles a second, 0 .. two a mains cycle (100 at 50 Hz)
  feed PATH          play a rendered .feed file or a host_sim scenario (.toml, rendered first)
  button short|long  a short press (reset) or a long one (self-test)
  hang               the main loop stops feeding the watchdog (a reset after --wdt-s)
A level (res, phase, temp, arc) takes over from a scenario feed, playing or held: the other
levels are then the built-in generator's (50 mA, 10 A, 25 degC, no arcs) until changed.

examples:
  python -m tools.virtual_device ctl res 400
  python -m tools.virtual_device ctl --state /tmp/vd/state.json temp 0 85"""


def ctl(state: str, words: list[str], timeout: float = 10.0) -> int:
    """`ctl`: check the command as the firmware will (app/sim_io.check), send it, print what
    the firmware did. rc 2: a bad command (refused here or by the firmware), 1: no device."""
    from app import sim_io

    try:
        sim_io.check(words)  # what can be checked without the device's settings
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        st = json.loads(Path(state).read_text())
        addr = (str(st["ctl"][0]), int(st["ctl"][1]))
    except FileNotFoundError:
        print(
            f"error: no virtual device: {state} does not exist (start one with `make "
            "virtual-device`, or give the --state file it was started with)",
            file=sys.stderr,
        )
        return 1
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        print(f"error: cannot read state file {state}: {e}", file=sys.stderr)
        return 2
    if not _alive(st.get("supervisor_pid")):
        print(
            f"error: the virtual device of {state} (pid {st.get('supervisor_pid')}) is not "
            "running: start it again",
            file=sys.stderr,
        )
        return 1
    if words[0] == "feed":
        try:
            words = ["feed", str(_feed_file(Path(words[1]), st))]
        except CtlError as e:
            print(f"error: {e}", file=sys.stderr)
            return e.rc
    try:
        did = send_ctl(addr, words, timeout)
    except CtlError as e:
        hint = ""
        if e.rc == 1:
            hint = (
                " (is main.py stopped at the REPL, after mpremote? hung by `ctl hang`? it "
                "restarts with `mpremote connect CONSOLE resume reset`)"
            )
        print(f"error: {e}{hint}", file=sys.stderr)
        return e.rc
    print(f"virtual device: {did}")
    return 0


def _feed_file(path: Path, st: dict) -> Path:
    """The feed file for `ctl feed PATH`, as an absolute path (the firmware runs in its flash
    folder): a rendered .feed as it is, a host_sim scenario (.toml) rendered next to the
    flash folder first."""
    if not path.exists():
        raise CtlError(f"feed: {path} does not exist", 2)
    if path.suffix != ".toml":
        return path.resolve()
    from host_sim.scenario import ScenarioError
    from tools import vdev_feed

    out = Path(st.get("flash") or DEFAULT_FLASH).resolve().parent / (path.stem + ".feed")
    try:
        info = vdev_feed.render(path, out)
    except ScenarioError as e:
        raise CtlError(f"feed: {e}", 2) from None
    print(f"scenario: {path} ({info['seconds']:.0f} s) -> {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["ctl"]:
        ap = argparse.ArgumentParser(
            prog="python -m tools.virtual_device ctl",
            description="change a simulated sensor of a running virtual detector; prints what "
            "the firmware did (rc 0), or why not (rc 2: a bad command; rc 1: no device)",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog=ctl_help(),
        )
        ap.add_argument(
            "--state",
            help="the virtual device's state file (default: FLASH.state.json next to its "
            f"flash folder, {state_path(DEFAULT_FLASH)} for plain `make virtual-device`)",
        )
        ap.add_argument(
            "--flash", default=str(DEFAULT_FLASH), help="the device's flash folder (its state file)"
        )
        ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for it")
        ap.add_argument("words", nargs="+", metavar="COMMAND", help="see below")
        a = ap.parse_args(argv[1:])
        return ctl(a.state or str(state_path(a.flash)), a.words, a.timeout)
    ap = argparse.ArgumentParser(
        prog="python -m tools.virtual_device",
        description=__doc__.split("\n\n")[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    ap.add_argument("--flash", default=str(ROOT / "build" / "vdev-flash"), help="flash folder")
    ap.add_argument("--blank", action="store_true", help="do not install firmware in a new flash")
    ap.add_argument("--scenario", help="host_sim scenario (.toml) or a rendered .feed file")
    ap.add_argument("--apply-config", action="store_true", help="write the scenario's [config]")
    ap.add_argument("--device", type=lambda s: int(s, 0), help="provision this device id")
    ap.add_argument(
        "--key", help="provision this 32-byte key (64 hex digits; visible in ps: --key-file)"
    )
    ap.add_argument("--key-file", help="provision the key in this file (python -m tools.keys new)")
    ap.add_argument(
        "--state",
        help="write ports and pids as JSON here, for ctl and scripts (default: "
        "FLASH.state.json next to the flash folder)",
    )
    ap.add_argument("--loss", type=float, default=0.0, help="drop this fraction of link frames")
    ap.add_argument("--seed", type=int, default=0, help="random seed for --loss")
    ap.add_argument("--wdt-s", type=float, default=8.0, help="watchdog timeout (board: 8 s)")
    ap.add_argument("--heap", default="256k", help="MicroPython heap size")
    ap.add_argument("--rtc", action="store_true", help="start with the clock set (host time)")
    ap.add_argument(
        "--rssi",
        type=_rssi,
        metavar="DBM",
        help="present the link as WiFi with this RSSI (e.g. -61), as link_status reports it "
        "(default: not a WiFi link, link_status value 0)",
    )
    ap.add_argument(
        "--gain-error",
        type=_gain_error,
        metavar="RES_PCT,PHASE_PCT",
        help="this unit's CT front end off nominal by these percentages, e.g. 9,-9 (a unit to "
        "calibrate: make calibrate; built-in generator only)",
    )
    ap.add_argument("--echo", action="store_true", help="also print the console output here")
    ap.add_argument("--once", action="store_true", help="exit when the firmware exits")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.key is not None and args.key_file is not None:
        ap.error("--key or --key-file, not both")
    if args.key_file is not None:
        try:
            args.key = Path(args.key_file).read_text().strip()
        except OSError as e:
            ap.error(f"--key-file: {e.strerror or e}: {args.key_file}")
    if (args.device is None) != (args.key is None):
        ap.error("--device and --key (or --key-file) go together")
    if args.key is not None:
        try:
            if len(bytes.fromhex(args.key)) != 32:
                raise ValueError
        except ValueError:
            what = f"--key-file {args.key_file}" if args.key_file else "--key"
            ap.error(f"{what}: the key must be 64 hex digits (32 bytes)")
    flash = Path(args.flash)
    if args.state is None:
        args.state = str(state_path(flash))
    prepare_flash(flash, args.blank)
    args.feed = None
    scenario_config = None
    if args.scenario:
        sp = Path(args.scenario)
        if not sp.exists():
            ap.error(f"scenario not found: {sp}")
        if sp.suffix == ".toml":
            from host_sim.scenario import ScenarioError
            from tools import vdev_feed

            feed = flash.resolve().parent / (sp.stem + ".feed")
            try:
                info = vdev_feed.render(sp, feed)
            except ScenarioError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            scenario_config = info["config"]
            print(f"scenario: {sp} ({info['seconds']:.0f} s) -> {feed}", flush=True)
            args.feed = feed.resolve()
        else:
            args.feed = sp.resolve()
    try:
        provision(flash, args.device, args.key, scenario_config if args.apply_config else None)
    except ValueError as e:
        print(f"error: scenario config: {e}", file=sys.stderr)
        return 2
    sup = Supervisor(args)

    def _stop(signum: int, _frame: object) -> None:
        sup.log(f"signal {signum}: stopping")
        sup.stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        return sup.run()
    finally:
        # Gone with the device, so ctl says "no virtual device" rather than waiting for one.
        with contextlib.suppress(OSError, ValueError):
            st = Path(args.state)
            if json.loads(st.read_text()).get("supervisor_pid") == os.getpid():
                st.unlink()


if __name__ == "__main__":
    sys.exit(main())
