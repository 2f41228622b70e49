"""Deploy the firmware to a detector (ESP32 on USB, or the virtual detector's console pty).

    python -m tools.deploy PORT [--arch auto|xtensawin|x64] [--no-reset]     (make deploy PORT=...)
    python -m tools.deploy PORT --provision --device ID --key-file KEY [--config FILE.json]
                           [--wifi WIFI.json]
    python -m tools.deploy PORT --provision --device ID --new-key KEY [--registry FLEET.csv]
    python -m tools.deploy PORT --reset-only

PORT is the device's REPL: the board's USB serial port (/dev/ttyUSB0, /dev/ttyACM0, ...) or the
virtual device's `console:` pty, never its `link:` (protocol frames). The first contact waits
5 s for the REPL and, when none answers, says what the port seems to be instead.

Libraries are compiled with mpy-cross for the target's architecture (auto: asked from the device,
sys.implementation._mpy), main.py and boot.py stay source. Files are copied with mpremote using
`resume` (no soft reset first: on the unix port a soft reset ends the process), then the board is
reset (hard reset on a board and on the board twin; a soft reset, i.e. a restart by the
supervisor, on the unix port). A device with the `esp32` module (the board, or the board twin of
`make virtual-device BOARD=esp32`) gets the ESP32 file set (app/hal_esp32) compiled for its arch.
Provisioning writes identity.json (device id + key), a fresh state.json when the key is new to
the device (tools/provisioning.py says why only then) and config.json over the same USB console:
local access is the one way besides the authenticated command to change settings. --new-key
FILE generates a random key, writes it to FILE (never over an existing file) and provisions
it: the recovery for a detector whose state was lost (it refuses commands, `locked`,
protocol/SPEC.md section 7.4), a swapped board, or a key that may have leaked. --registry
FLEET.csv also puts the new key into that device's row of the gateway's registry (restart the
gateway to load it). The firmware reads its identity at boot, so provisioning ends with the
same reset as a deploy (--no-reset: not). A key file of your own: python -m tools.keys new FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools import fwbuild, keys, provisioning
from tools.gateway.registry import RegistryError

ROOT = Path(__file__).resolve().parent.parent


def mpremote() -> str:
    here = Path(sys.executable).parent / "mpremote"
    return str(here) if here.exists() else (shutil.which("mpremote") or "mpremote")


def run_mp(port: str, *args: str, timeout: float = 120, cwd: Path | None = None) -> str:
    cmd = [mpremote(), "connect", port, "resume", *args]
    try:
        p = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd
        )
    except subprocess.TimeoutExpired:
        raise SystemExit(
            f"error: mpremote timed out talking to {port} ({timeout:g} s): is it the device's "
            "console (its REPL)? python -m tools.deploy checks that first"
        ) from None
    if p.returncode != 0:
        msg = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        if "failed to access" in msg:
            raise SystemExit(_no_access(port))
        raise SystemExit(f"error: mpremote {' '.join(args[:2])} on {port} failed: {msg}")
    return p.stdout


# -- the first contact: is PORT a MicroPython REPL at all? -----------------------------------------
FIRST_CONTACT_S = 5.0
_BANNER = b"raw REPL; CTRL-B to exit"


def _serial_ports() -> str:
    try:
        from serial.tools import list_ports

        found = sorted(p.device for p in list_ports.comports())
    except Exception:  # no USB serial support here: nothing to list
        found = []
    return ", ".join(found) if found else "none found"


def _where_console() -> str:
    return (
        "The REPL is on the board's USB serial port (here: "
        f"{_serial_ports()}), or on the virtual device's `console:` pty, printed at its start "
        "and in its state file (`link:` carries protocol frames: python -m tools.monitor)."
    )


def _no_access(port: str, err: Exception | None = None) -> str:
    if err is not None:
        return f"error: cannot open {port}: {err}"
    if port.startswith("/") and not os.path.exists(port):
        return f"error: {port} does not exist (no such serial port). {_where_console()}"
    if port.startswith("/") and not os.access(port, os.R_OK | os.W_OK):
        return (
            f"error: no permission to open {port} (on Linux, add yourself to the group that "
            "owns it, usually `dialout`, and log in again)"
        )
    return (
        f"error: cannot open {port}: another program has it open (a serial monitor, "
        "minicom, another mpremote?)"
    )


def first_contact(port: str, timeout: float = FIRST_CONTACT_S) -> None:
    """Check that a MicroPython REPL answers on port, the way mpremote enters its raw REPL
    (Ctrl-C, then Ctrl-A), and leave it at the normal REPL; SystemExit saying what the port
    seems to be instead. mpremote itself waits without end on a port that never answers
    (its own timeouts are between bytes, and a pty's read blocks), so a wrong port used to
    hang a deploy until our 120 s timeout. Ports that are no path (mpremote's shortcuts:
    auto, id:..., a0) are left to mpremote."""
    if not port.startswith("/"):
        return
    if not os.path.exists(port) or not os.access(port, os.R_OK | os.W_OK):
        raise SystemExit(_no_access(port))
    import serial

    try:
        ser = serial.Serial(port, 115200, timeout=0.05)
    except (serial.SerialException, OSError) as e:
        raise SystemExit(_no_access(port, e)) from None
    got = bytearray()
    try:
        # Ctrl-C stops main.py, Ctrl-A asks for the raw REPL, which says so. A running
        # firmware may take a moment to stop (it finishes its window and prints its
        # indicators), and keys sent meanwhile are lost: so both again every 0.5 s until the
        # banner comes, as mpremote's own raw-REPL entry retries.
        end = time.monotonic() + timeout
        again = 0.0
        while time.monotonic() < end:
            if time.monotonic() >= again:
                ser.write(b"\r\x03")
                time.sleep(0.1)
                got += ser.read(256)
                ser.write(b"\r\x01")
                again = time.monotonic() + 0.5
            got += ser.read(256)
            if _BANNER in got:
                ser.write(b"\r\x02")  # Ctrl-B: back to the normal REPL, for mpremote
                return
            if b"[vdev]" in got and got.endswith(b"\n"):
                break  # the virtual device's link pty said what it is
        if b"[vdev]" not in got:
            ser.write(b"\x00")  # if it is a protocol link: end the REPL keys as a bad frame
    finally:
        ser.close()
    raise SystemExit(_not_a_repl(port, bytes(got), timeout))


def _not_a_repl(port: str, got: bytes, timeout: float) -> str:
    head = f"error: no MicroPython REPL answered on {port} within {timeout:g} s"
    text = got.decode(errors="replace")
    m = re.search(r"\[vdev\] ([^\r\n]*)", text)
    if m:
        msg = f'error: {port} is no MicroPython REPL: it says "{m.group(1)}".'
        con = re.search(r"console, (\S+)$", m.group(1))
        if con:
            msg += f" Use PORT={con.group(1)} (make deploy / make provision PORT=...)."
        return msg
    from protocol.stream import StreamDecoder

    if any(r.ok for r in StreamDecoder().feed(got)):
        return (
            f"{head}: it sends protocol frames, so it is the detector's link (RS-485, or the "
            f"virtual device's `link:` pty), not its console. {_where_console()}"
        )
    if got.strip(b"\r\n\x00"):
        return (
            f"{head}: it answered {got[:60]!r}, which is no REPL (another kind of device, the "
            f"wrong baud rate, a program on the board that owns the port?). {_where_console()}"
        )
    return (
        f"{head}: nothing came back (the detector's link port, which stays silent until "
        f"polled, or a device that is off or not MicroPython). {_where_console()}"
    )


# The platform is "esp32" wherever the `esp32` module is: the board, and the board twin (the
# ESP32 image on the unix port, tools/twin/vdev.py), which gets the ESP32 file set for its arch.
_PLATFORM = (
    "import sys\ntry:\n import esp32\n p = 'esp32'\nexcept ImportError:\n p = sys.platform\n"
)
_ASK = _PLATFORM + "print(sys.implementation._mpy, p)"


def detect_arch(port: str) -> tuple[str, str]:
    out = run_mp(port, "exec", _ASK)
    mpy, platform = out.split()[-2:]
    arch = fwbuild.ARCH_BY_CODE.get(int(mpy) >> 10)
    if not arch:
        raise SystemExit(f"error: the device reports no native arch (_mpy={mpy})")
    return arch, platform


def deploy(
    port: str, arch: str = "auto", reset: bool = True, vendor_pub: bytes | None = None
) -> dict[str, int]:
    platform = "esp32" if arch == "xtensawin" else "linux"
    if arch == "auto":
        arch, platform = detect_arch(port)
    board = "xtensawin" if platform == "esp32" else None  # the ESP32 file set (hal_esp32)
    # A private build folder: deploys to several devices (parallel tests) may run at once.
    with tempfile.TemporaryDirectory(prefix=f"deploy-{arch}-") as d:
        out = Path(d)
        sizes = fwbuild.build(arch, out, board, vendor_pub=vendor_pub)
        # `fs cp -r` creates the folders and skips files whose hash already matches.
        # Destination ":." (an existing folder, so lib/ goes inside it): mpremote strips a bare
        # ":" or ":/" to "", finds no such folder and would spill lib's contents into the root.
        run_mp(port, "fs", "cp", "-r", "lib", ":.", cwd=out)
        run_mp(
            port,
            "fs",
            "cp",
            str(out / "boot.py"),
            ":boot.py",
            "+",
            "fs",
            "cp",
            str(out / "main.py"),
            ":main.py",
        )
        # What was just written is lib/: boot it, whatever slot a signed update had chosen
        # (fw.json, docs/firmware.md "Signed over-the-air update").
        run_mp(port, "exec", "import os\ntry:\n os.remove('fw.json')\nexcept OSError:\n pass")
    if reset:
        reset_device(port, platform)
    return sizes


def reset_device(port: str, platform: str) -> None:
    """Restart the device, so it boots what was just written (firmware, identity, settings).
    Hard reset on a board (and on the board twin, where machine.reset() at the REPL ends the
    process and its supervisor boots it again); on the unix port the process ends and the
    virtual detector's supervisor boots it again, like a board. (mpremote's soft-reset would
    wait for a "soft reboot" banner the unix port never prints, so the process is ended with
    sys.exit(0) instead: the same restart.)"""
    if platform == "esp32":
        run_mp(port, "reset", timeout=30)
    else:
        run_mp(port, "exec", "--no-follow", "import sys; sys.exit(0)", timeout=30)


def current_identity(port: str) -> tuple[str | None, str]:
    """The device's identity.json now (None if it has none), and its platform (esp32 where
    the `esp32` module is, else sys.platform): one exec."""
    probe = _PLATFORM + (
        "print('PLATFORM=' + p)\n"
        "try:\n f = open('identity.json')\n print('ID=' + f.read().strip())\n"
        "except OSError:\n print('ID=')"
    )
    out = run_mp(port, "exec", probe)
    lines = [x[3:] for x in out.splitlines() if x.startswith("ID=")]
    plat = [x[9:] for x in out.splitlines() if x.startswith("PLATFORM=")]
    return ((lines[-1] or None) if lines else None), (plat[-1].strip() if plat else "")


def provision(
    port: str,
    device: int,
    key: str,
    config: dict | None,
    reset: bool = True,
    wifi: dict | None = None,
) -> list[str]:
    """Write the provisioning files, then reset the device (the firmware reads its identity
    and settings at boot: without it, the running firmware kept the old ones and the next
    command under the new key went unanswered); returns their names. wifi: the WiFi link's
    credentials and addresses (provisioning.wifi_text), written as wifi.json."""
    ident, platform = current_identity(port)
    files = provisioning.files(device, key, ident, config)
    if wifi is not None:
        files[provisioning.WIFI] = provisioning.wifi_text(wifi)
    with tempfile.TemporaryDirectory() as d:
        args: list[str] = []
        for name, text in files.items():
            (Path(d) / name).write_text(text)
            args += [*(["+"] if args else []), "fs", "cp", str(Path(d) / name), ":" + name]
        run_mp(port, *args)
    if reset:
        reset_device(port, platform)
    return list(files)


def set_registry_key(path: Path, device: int, key: str) -> None:
    """Put key into device's row of a registry CSV (tools/gateway/registry.py), atomically;
    the previous file is kept as PATH.bak."""
    import csv

    from tools.gateway.registry import parse_device_id

    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
        fields = list(rows[0].keys()) if rows else []
    if "device" not in fields:
        raise RegistryError(f"{path}: no `device` column")
    if "key" not in fields:
        fields.append("key")
    hits = [r for r in rows if parse_device_id(r["device"]) == device]
    if not hits:
        raise RegistryError(f"{path}: device {device} ({device:#x}) is not in the registry")
    for r in hits:
        r["key"] = key
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    shutil.copy2(path, path.with_name(path.name + ".bak"))
    tmp.replace(path)


def _device_id(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a device id: {text!r} (e.g. 0x12345678)") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tools.deploy",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    ap.add_argument("port", help="the device's REPL serial port (or the virtual console pty)")
    ap.add_argument("--arch", default="auto")
    ap.add_argument(
        "--vendor-pub",
        help="the vendor's public key file (tools.keys vendor-new): built in, so the detector "
        "accepts updates signed with it (without it, none)",
    )
    ap.add_argument(
        "--no-reset", action="store_true", help="do not restart the device after writing"
    )
    ap.add_argument(
        "--reset-only", action="store_true", help="only restart the device (nothing written)"
    )
    ap.add_argument("--provision", action="store_true", help="write identity/config instead")
    ap.add_argument("--device", type=_device_id, help="device id, e.g. 0x12345678")
    ap.add_argument("--key-file", help="file holding the device key (64 hex digits)")
    ap.add_argument("--key", help="the device key itself (64 hex digits)")
    ap.add_argument(
        "--new-key",
        metavar="FILE",
        help="generate a random key, write it to FILE (must not exist) and provision it",
    )
    ap.add_argument(
        "--registry", metavar="CSV", help="with --new-key: also set the key in this registry"
    )
    ap.add_argument("--config", help="JSON file of settings (efd/config.py names)")
    ap.add_argument(
        "--wifi",
        metavar="FILE.json",
        help="with --provision: the WiFi link, {ssid, psk, gateway: a.b.c.d:port, port, ntp} "
        "(keep the file out of the repository; its secrets are never printed)",
    )
    a = ap.parse_args(argv)
    try:
        if a.provision:
            given = [x for x in (a.key, a.key_file, a.new_key) if x]
            if a.device is None or len(given) != 1:
                ap.error("--provision needs --device and one of --key, --key-file, --new-key")
            if a.registry and not a.new_key:
                ap.error("--registry goes with --new-key")
            if a.new_key:
                key = provisioning.new_key()
                out = Path(a.new_key)
                if out.exists():
                    raise ValueError(f"{out} exists: a new key never overwrites an old one")
            else:
                key = a.key or Path(a.key_file).read_text().strip()
            provisioning.check(a.device, key)
            cfg = json.loads(Path(a.config).read_text()) if a.config else None
            wifi = json.loads(Path(a.wifi).read_text()) if a.wifi else None
            if wifi is not None:
                provisioning.wifi_text(wifi)  # checked before anything is written
            first_contact(a.port)  # a wrong port: said before a new key file is written
            if a.new_key:
                try:
                    keys.write_new(out, key)
                except FileExistsError:
                    raise ValueError(
                        f"{out} exists: a new key never overwrites an old one"
                    ) from None
                print(f"new key for device {a.device:#x} written to {out}")
            written = provision(a.port, a.device, key, cfg, not a.no_reset, wifi)
            print(f"provisioned device {a.device:#x} on {a.port}: {', '.join(written)}")
            if a.no_reset:
                print(
                    "  not restarted (--no-reset): it runs with its old identity until it "
                    f"restarts (python -m tools.deploy {a.port} --reset-only)"
                )
            else:
                print("  restarted: it runs with the new identity")
            if "state.json" not in written:
                print(
                    "  it already held this key: its state (replay marks) was kept; a detector "
                    "that reports `locked` needs --new-key"
                )
            if a.registry:
                set_registry_key(Path(a.registry), a.device, key)
                print(f"registry {a.registry}: key of {a.device} replaced (restart the gateway)")
            elif a.new_key:
                print(f"  put the new key into the gateway's registry (key column of {a.device})")
            return 0
        first_contact(a.port)
        if a.reset_only:
            reset_device(a.port, detect_arch(a.port)[1])
            print(f"restarted the device on {a.port}")
            return 0
        pub = keys.load_pub(a.vendor_pub) if a.vendor_pub else None
        sizes = deploy(a.port, a.arch, not a.no_reset, pub)
    except (ValueError, OSError, RegistryError) as e:  # keys.KeyFileError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    mpy = sum(v for k, v in sizes.items() if k.endswith(".mpy"))
    print(f"deployed {len(sizes)} files ({mpy} bytes of .mpy) to {a.port}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
