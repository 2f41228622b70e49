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
and restarts the firmware (reset cause "watchdog"). Sensors come from a host_sim scenario
(rendered to a feed file) or from the firmware's built-in generator; `python -m
tools.virtual_device ctl --state STATE res 400` changes a level on the fly.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOT = Path(__file__).resolve().parent / "vdev_boot.py"
CAUSE_POWER_ON, CAUSE_HARD, CAUSE_WATCHDOG, CAUSE_SOFT = 1, 2, 3, 5


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

        cmd = [micropython(), "-X", f"heapsize={self.args.heap}", "-i", str(BOOT)]
        self.child, self.child_m = spawn(cmd, self.flash, env)
        self.wdt_armed = False
        self.killed_by_wdt = False
        self.reboot_requested = False
        self.boots += 1
        self.write_state()
        self.log(f"firmware started (pid {self.child.pid}, reset cause {self.cause})")

    def child_exited(self, rc: int) -> None:
        with contextlib.suppress(OSError):
            # Pass on what the firmware printed last (a traceback, "[sim] reboot").
            while select.select([self.child_m], [], [], 0)[0]:
                d = os.read(self.child_m, 4096)
                if not d:
                    break
                self._to_console(d)
        with contextlib.suppress(OSError):
            os.close(self.child_m)
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
            self.rx += os.read(self.link_m, 4096)
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


def prepare_flash(flash: Path, blank: bool) -> None:
    """A new flash folder gets the firmware image for this host (as if freshly deployed)."""
    flash.mkdir(parents=True, exist_ok=True)
    if blank or (flash / "main.py").exists():
        return
    from tools import fwbuild

    image = ROOT / "build" / "vdev-image"
    fwbuild.build("x64", image)
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


def ctl(state: str, words: list[str]) -> int:
    try:
        st = json.loads(Path(state).read_text())
    except (OSError, ValueError) as e:
        print(f"error: cannot read state file {state}: {e}", file=sys.stderr)
        return 2
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(" ".join(words).encode(), tuple(st["ctl"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["ctl"]:
        ap = argparse.ArgumentParser(
            prog="python -m tools.virtual_device ctl",
            description="change a simulated sensor of a running virtual detector",
            epilog="commands: res MA | temp CH DEGC | phase CH A | arc HALF_CYCLES_PER_S | "
            "feed PATH | button short|long | hang (stops feeding the watchdog)",
        )
        ap.add_argument("--state", required=True, help="the state file given to the device")
        ap.add_argument("words", nargs="+")
        a = ap.parse_args(argv[1:])
        return ctl(a.state, a.words)
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
    ap.add_argument("--key", help="provision this 32-byte key (64 hex digits)")
    ap.add_argument("--state", help="write ports and pid as JSON here (for scripts and tests)")
    ap.add_argument("--loss", type=float, default=0.0, help="drop this fraction of link frames")
    ap.add_argument("--seed", type=int, default=0, help="random seed for --loss")
    ap.add_argument("--wdt-s", type=float, default=8.0, help="watchdog timeout (board: 8 s)")
    ap.add_argument("--heap", default="256k", help="MicroPython heap size")
    ap.add_argument("--rtc", action="store_true", help="start with the clock set (host time)")
    ap.add_argument("--echo", action="store_true", help="also print the console output here")
    ap.add_argument("--once", action="store_true", help="exit when the firmware exits")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if (args.device is None) != (args.key is None):
        ap.error("--device and --key go together")
    if args.key is not None:
        try:
            if len(bytes.fromhex(args.key)) != 32:
                raise ValueError
        except ValueError:
            ap.error("--key must be 64 hex digits (32 bytes)")
    flash = Path(args.flash)
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
    return sup.run()


if __name__ == "__main__":
    sys.exit(main())
