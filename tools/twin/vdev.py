"""Virtual detector on the board twin: the ESP32 firmware's own code path, in real time, on a pty.

    python -m tools.twin.vdev [--flash DIR] [--scenario FILE.toml] [--device ID --key HEX]
    make virtual-device BOARD=esp32 ARGS="..."

The ESP32 image (main.py -> app/hal_esp32.py -> app.run, compiled for this host) runs on the board
twin's models of the ESP32 port (tools/twin/board: machine, esp32, time, LittleFS on a NOR flash
model), with the twin's clock held to the wall clock. It prints two serial ports and keeps them
for its whole life, across firmware reboots:

  console  the board's USB serial: boot output, then MicroPython's REPL once main.py stops
           (Ctrl-C). Use mpremote with `resume`, e.g. `mpremote connect <console> resume exec
           "import machine; print(machine.reset_cause())"`, and `make deploy PORT=<console>`
           (it installs the ESP32 file set and resets with machine.reset(), as on a board).
  link     the board's RS-485 port (UART 2, 9600 8N1) with its timing: the transceiver's DE
           decides what goes out and what is heard. Poll it with the real gateway:
           `python -m tools.gateway run --registry R.csv --serial <link>@9600 --poll <device>`.

The supervisor runs `micropython -i tools/twin/board/launch.py RUN.json` and restarts it whenever
it exits: a soft reset (Ctrl-D at the REPL, sys.exit()), machine.reset() or machine.soft_reset()
at the REPL, a kill (a power cut). Always use mpremote with `resume`: its own soft reset waits for
a banner the unix port never prints. Resets while main.py runs (the watchdog,
the reboot command, machine.reset()) reboot the twin in its process. The flash image
(DIR/flash.img) persists; the RTC persists across resets but not across a power cut, as on the
board. Sensors: a host_sim scenario rendered to pin voltages (tools/twin/render.py), its last
100 ms held after its end; without one, a steady 50 mA residual, 10 A on each phase, 25 degC.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

from host_sim.scenario import Scenario, ScenarioError, load, loads
from tools import virtual_device as vd

ROOT = Path(__file__).resolve().parents[2]
BOARD = Path(__file__).resolve().parent / "board"
CAUSE_POWER_ON, CAUSE_HARD, CAUSE_WATCHDOG, CAUSE_SOFT = 1, 2, 3, 5
CAUSE_NAMES = {1: "power-on", 2: "hard", 3: "watchdog", 5: "soft"}
EPOCH_2000_US = 946_684_800 * 1_000_000  # 2000-01-01 (the ESP32 port's epoch) in unix time
BAUD = 9600  # app/board.py BAUD

# Without --scenario: a healthy installation, levels constant (the twin holds the last slice).
STEADY = """
[scenario]
name = "steady"
description = "virtual device default: 50 mA residual, 10 A on each phase, 25 degC"
duration_s = 1

[[residual]]
t0 = 0
t1 = 1
rms_ma = 50
noise_ma = 1
""" + "".join(
    f"\n[[phase]]\nchannel = {ch}\nt0 = 0\nt1 = 1\nrms_a = 10\nnoise_a = 0.05\n" for ch in range(3)
)


class Supervisor(vd.Supervisor):
    """tools.virtual_device's supervisor (ptys, console bridge, restart loop) around the board
    twin: the link is a byte stream bridged to the twin's RS-485 bus over UDP, the reset cause
    comes from the exit status, boots are reported by the twin."""

    def __init__(self, args: argparse.Namespace, work: Path, provision: dict[str, str]):
        super().__init__(args)
        self.work = work
        self.run_json = work / "run.json"
        self.boot_json = work / "boot.json"
        self.note_sock = vd._free_udp()  # the twin's notes: ready, boot N CAUSE
        self.intr_port = vd._free_port()  # the twin's: Ctrl-C from the console
        self.ready = False  # the twin listens for Ctrl-C
        self.intr_at: int | None = None  # a Ctrl-C that came before it did (monotonic us)
        self.t0 = time.monotonic()  # the world's (the scenario's) time starts here
        self.provision = provision or None
        self.starts = 0
        self.boot_cause = 0
        self.boot_json.unlink(missing_ok=True)  # a new supervisor: a power-on

    def write_run(self, cfg: dict[str, Any]) -> None:
        cfg["bus"] = {"baud": BAUD, "udp": [self.dev_port, self.link_sock.getsockname()[1]]}
        cfg["vdev"] = {
            "boot": str(self.boot_json),
            "notify": self.note_sock.getsockname()[1],
            "intr": self.intr_port,
        }
        self.run_json.write_text(json.dumps(cfg, indent=1))

    # -- child process -------------------------------------------------------------------------
    def start_child(self) -> None:
        try:
            boot = json.loads(self.boot_json.read_text())
        except (OSError, ValueError):
            boot = {}
        boot["cause"] = self.cause
        boot["world_us"] = int((time.monotonic() - self.t0) * 1e6)
        if self.cause == CAUSE_POWER_ON:
            boot.pop("rtc", None)  # the RTC starts again from 2000-01-01
            if self.args.rtc:
                boot["rtc"] = -EPOCH_2000_US  # RTC = host time
        if self.provision:
            boot["provision"] = self.provision
            self.provision = None
        tmp = self.boot_json.with_suffix(".tmp")
        tmp.write_text(json.dumps(boot))
        tmp.replace(self.boot_json)
        env = dict(os.environ)
        env.pop("MICROPYPATH", None)
        cmd = [vd.micropython(), "-X", f"heapsize={self.args.heap}", "-i"]
        cmd += [str(BOARD / "launch.py"), str(self.run_json)]
        # No SIGINT from the tty: Ctrl-C goes to the twin as a datagram (board/vdevice.py).
        self.child, self.child_m = vd.spawn(cmd, self.work, env, isig=False)
        self.ready = False
        self.starts += 1
        self.write_state()
        self.log(f"firmware started (pid {self.child.pid}, reset cause {self.cause})")

    def child_exited(self, rc: int) -> None:
        vd.drain_close(self.child_m, self._to_console)
        self.child_m = -1
        # twin.Reset is a SystemExit whose status is the reset cause; Ctrl-D at the REPL (or
        # sys.exit()) is the unix port's soft reset; a signal is a power cut.
        if rc == 0:
            self.cause = CAUSE_SOFT
        elif rc < 0:
            self.cause = CAUSE_POWER_ON
        elif rc in (CAUSE_WATCHDOG, CAUSE_SOFT):
            self.cause = rc
        else:
            self.cause = CAUSE_HARD
        self.log(f"firmware exited ({rc}): restarting ({CAUSE_NAMES[self.cause]} reset)")

    def write_state(self) -> None:
        if not self.args.state:
            return
        st = {
            "console": self.console,
            "link": self.link,
            "baud": BAUD,
            "pid": self.child.pid if self.child else None,
            "supervisor_pid": os.getpid(),
            "boots": self.boots,  # firmware boots (in-process reboots included)
            "cause": self.boot_cause,  # reset cause of the current boot
            "starts": self.starts,  # processes started
            "flash": str(self.flash / "flash.img"),
            "work": str(self.work),
            "wifi_down": str(self.work / "wifi_down"),  # exists = the access point is gone
        }
        tmp = Path(self.args.state + ".tmp")
        tmp.write_text(json.dumps(st) + "\n")
        tmp.replace(self.args.state)

    # -- bridges -------------------------------------------------------------------------------
    def pump(self, timeout: float) -> None:
        fds: list = [self.con_m, self.link_m, self.link_sock, self.note_sock]
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
            if b"\x03" in d:
                self.interrupt()
            if self.child_m >= 0:
                with contextlib.suppress(OSError):
                    os.write(self.child_m, d)
        if self.link_m in r:
            # A byte stream, as it comes: the twin times each byte at the baud rate.
            d = os.read(self.link_m, 4096)
            with contextlib.suppress(OSError):
                self.link_sock.sendto(d, ("127.0.0.1", self.dev_port))
        if self.link_sock in r:
            with contextlib.suppress(OSError):
                os.write(self.link_m, self.link_sock.recv(4096))
        if self.note_sock in r:
            with contextlib.suppress(OSError, ValueError):
                words = self.note_sock.recv(64).split()
                if words[:1] == [b"ready"]:
                    self.ready = True
                    if self.intr_at is not None:
                        self.interrupt(self.intr_at)
                elif words[:1] == [b"boot"]:
                    self.boots += 1
                    self.boot_cause = int(words[2])
                    self.write_state()
                    name = CAUSE_NAMES.get(self.boot_cause, self.boot_cause)
                    self.log(f"firmware boot {self.boots} ({name})")

    def interrupt(self, at: int | None = None) -> None:
        """Ctrl-C on the console: tell the twin (with the time it was typed), or keep it until
        the twin is listening (a process just started)."""
        at = time.monotonic_ns() // 1000 if at is None else at
        if not self.ready:
            self.intr_at = at
            return
        self.intr_at = None
        with contextlib.suppress(OSError):
            self.link_sock.sendto(b"%d" % at, ("127.0.0.1", self.intr_port))


class Busy(Exception):
    """A user mistake about the flash folder (printed without a traceback)."""


_LOCKS: list = []  # held for the supervisor's life


def prepare(args: argparse.Namespace, scn: Scenario) -> tuple[Path, dict[str, Any]]:
    """The flash folder and the run's files; returns the work folder and the run config."""
    from tools.twin import api, render
    from tools.twin import run as twin_run

    flash = Path(args.flash)
    work = flash / "twin"
    work.mkdir(parents=True, exist_ok=True)
    lock = open(work / "lock", "w")  # noqa: SIM115 (kept open: the lock lives with the process)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise Busy(f"{flash} is in use by another virtual device") from None
    _LOCKS.append(lock)
    img = flash / "flash.img"
    if args.erase:
        img.unlink(missing_ok=True)
    cfg: dict[str, Any] = {
        "analog": str((work / "inputs.bin").resolve()),
        "stats_out": str((work / "stats.json").resolve()),
        "cpu_hz": 160_000_000,
        "params": {"vref_mv": args.vref_mv, "ct_gain_err_ppm": _ppm(args.gain_error)},
        "api": str((work / "api.json").resolve()),
        "flash_image": str(img.resolve()),
        "root": "/flash",
    }
    if not img.exists() and not args.blank:
        # An erased chip: the launcher copies the ESP32 image onto it (like `make deploy`).
        if args.image is not None:
            if not (args.image / "main.py").exists():
                raise Busy(f"--image {args.image}: not a firmware image (no main.py)")
            image = args.image
        else:
            print("flash:   new; building the ESP32 image for this host ...", flush=True)
            image = twin_run.build_image(work / "image")
        cfg["load_files"] = str(image.resolve())
    if args.wifi is not None:
        # The access point the twin's network model offers: the provisioned credentials
        # (--wifi), and an outage while the file WORK/wifi_down exists (state "wifi_down").
        w = json.loads(args.wifi.read_text())
        cfg["params"]["wifi"] = {
            "ssid": w.get("ssid"),
            "psk": w.get("psk"),
            "down_file": str((work / "wifi_down").resolve()),
            "rssi": getattr(args, "rssi", -61),
        }
        (work / "wifi_down").unlink(missing_ok=True)
    render.render(scn, work / "inputs.bin")
    (work / "api.json").write_text(json.dumps(api.for_twin(), separators=(",", ":")))
    return work, cfg


def _ppm(gain_error: str | None) -> list[int]:
    """--gain-error RES_PCT,PHASE_PCT as the twin's ct_gain_err_ppm (residual, 3 phases)."""
    if not gain_error:
        return [0, 0, 0, 0]
    res, ph = (round(float(x) * 10000) for x in gain_error.split(","))
    return [res, ph, ph, ph]


def provisioning(args: argparse.Namespace, scn: Scenario) -> dict[str, str]:
    """Files written onto the flash at the first boot (local provisioning, physical access)."""
    out: dict[str, str] = {}
    if args.device is not None:
        from tools import provisioning

        # The state file is written on the board side only if the identity there differs
        # (board/vdevice.py start(): same key, same state, tools/provisioning.py says why).
        out.update(provisioning.files(args.device, args.key))
    if args.wifi is not None:
        from tools import provisioning as prv

        try:
            out[prv.WIFI] = prv.wifi_text(json.loads(args.wifi.read_text()))
        except (OSError, ValueError) as e:
            raise ValueError(f"--wifi {args.wifi}: {e}") from None
    if args.apply_config and scn.config:
        from efd import config as efd_config

        efd_config.make(dict(scn.config))  # refuse what the firmware would refuse
        out["config.json"] = json.dumps(scn.config)
    return out


def build_parser() -> argparse.ArgumentParser:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(
        prog="python -m tools.twin.vdev",
        description=doc.split("\n\n")[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(doc.split("\n\n")[2:]),
    )
    ap.add_argument(
        "--flash",
        default=str(ROOT / "build" / "twin-vdev"),
        help="folder of the flash image (flash.img) and the run's files (default: %(default)s)",
    )
    ap.add_argument("--erase", action="store_true", help="start from an erased flash chip")
    ap.add_argument(
        "--blank", action="store_true", help="leave a new flash without firmware (for a deploy)"
    )
    ap.add_argument(
        "--image",
        type=Path,
        help="install this built image (tools.twin.run.build_image) on a new flash "
        "instead of building one",
    )
    ap.add_argument("--scenario", type=Path, help="host_sim scenario (.toml) for the sensors")
    ap.add_argument("--apply-config", action="store_true", help="write the scenario's [config]")
    ap.add_argument("--device", type=_device_id, help="provision this device id (e.g. 0x12345678)")
    ap.add_argument("--key", help="provision this 32-byte key (64 hex digits)")
    ap.add_argument("--state", help="write ports, pids and boots as JSON here (for scripts)")
    ap.add_argument("--vref-mv", type=int, default=1100, help="the chip's ADC reference (1100)")
    ap.add_argument("--heap", default="256k", help="MicroPython heap (the twin's models share it)")
    ap.add_argument("--rtc", action="store_true", help="power on with the RTC set (host time)")
    ap.add_argument(
        "--wifi",
        type=Path,
        metavar="FILE.json",
        help="provision the WiFi link (tools/provisioning.py wifi.json: ssid, psk, gateway "
        "a.b.c.d:port, port, ntp) and offer that access point; touch WORK/wifi_down for an outage",
    )
    ap.add_argument(
        "--rssi",
        type=vd._rssi,
        default=-61,
        metavar="DBM",
        help="with --wifi: the access point's RSSI as the station sees it (WLAN.status('rssi'), "
        "reported by the link_status command; default %(default)s)",
    )
    ap.add_argument(
        "--gain-error",
        type=vd._gain_error,
        metavar="RES_PCT,PHASE_PCT",
        help="this unit's CT front ends off nominal by these percentages, e.g. 9,-9 (a unit "
        "to calibrate: make calibrate)",
    )
    ap.add_argument("--echo", action="store_true", help="also print the console output here")
    ap.add_argument("--once", action="store_true", help="exit when the firmware process exits")
    ap.add_argument("--quiet", action="store_true", help="no [vdev] log lines on stderr")
    return ap


def _device_id(text: str) -> int:
    try:
        v = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number like 0x12345678") from None
    if not 0 < v < 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"{text!r}: device id must be 1..0xFFFFFFFE")
    return v


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if (args.device is None) != (args.key is None):
        ap.error("--device and --key go together")
    if args.key is not None:
        try:
            if len(bytes.fromhex(args.key)) != 32:
                raise ValueError
        except ValueError:
            ap.error("--key must be 64 hex digits (32 bytes)")
    if not 900 <= args.vref_mv <= 1300:
        ap.error("--vref-mv: the ESP32's reference is 1000-1200 mV (900-1300 accepted)")
    try:
        if args.scenario is None:
            scn = loads(STEADY, "<steady>")
        elif args.scenario.suffix != ".toml":
            ap.error(f"--scenario: a host_sim scenario (.toml) is needed, not {args.scenario}")
        else:
            scn = load(args.scenario)
        prov = provisioning(args, scn)
    except ScenarioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        where = "" if str(e).startswith("--wifi") else "scenario config: "
        print(f"error: {where}{e}", file=sys.stderr)
        return 2
    try:
        work, cfg = prepare(args, scn)
    except Busy as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {args.flash}: {e.strerror or e}", file=sys.stderr)
        return 2
    if args.scenario:
        print(f"scenario: {args.scenario} ({scn.duration_s:g} s, then held)", flush=True)
    args.seed = 0  # (vd.Supervisor's frame loss: not used on a byte stream)
    args.loss = 0.0
    args.wdt_s = 8.0  # (vd.Supervisor's UDP watchdog: the twin has its own)
    sup = Supervisor(args, work, prov)
    sup.write_run(cfg)

    def _stop(signum: int, _frame: object) -> None:
        sup.log(f"signal {signum}: stopping")
        sup.stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return sup.run()


if __name__ == "__main__":
    sys.exit(main())
