"""Deploy the firmware to a detector (ESP32 on USB, or the virtual detector's console pty).

    python -m tools.deploy PORT [--arch auto|xtensawin|x64] [--no-reset]     (make deploy PORT=...)
    python -m tools.deploy PORT --provision --device ID --key-file KEY [--config FILE.json]
    python -m tools.deploy PORT --provision --device ID --new-key KEY [--registry FLEET.csv]

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
gateway to load it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tools import fwbuild, provisioning
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
        raise SystemExit(f"error: mpremote timed out talking to {port}") from None
    if p.returncode != 0:
        msg = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"error: mpremote {' '.join(args[:2])} on {port} failed: {msg}")
    return p.stdout


# The platform is "esp32" wherever the `esp32` module is: the board, and the board twin (the
# ESP32 image on the unix port, tools/twin/vdev.py), which gets the ESP32 file set for its arch.
_ASK = (
    "import sys\ntry:\n import esp32\n p = 'esp32'\nexcept ImportError:\n p = sys.platform\n"
    "print(sys.implementation._mpy, p)"
)


def detect_arch(port: str) -> tuple[str, str]:
    out = run_mp(port, "exec", _ASK)
    mpy, platform = out.split()[-2:]
    arch = fwbuild.ARCH_BY_CODE.get(int(mpy) >> 10)
    if not arch:
        raise SystemExit(f"error: the device reports no native arch (_mpy={mpy})")
    return arch, platform


def deploy(port: str, arch: str = "auto", reset: bool = True) -> dict[str, int]:
    platform = "esp32" if arch == "xtensawin" else "linux"
    if arch == "auto":
        arch, platform = detect_arch(port)
    board = "xtensawin" if platform == "esp32" else None  # the ESP32 file set (hal_esp32)
    out = ROOT / "build" / (f"deploy-{arch}" + ("-esp32" if board and board != arch else ""))
    sizes = fwbuild.build(arch, out, board)
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
    if reset:
        # Hard reset on a board (and on the board twin, where machine.reset() at the REPL ends
        # the process and its supervisor boots it again); on the unix port a soft reset ends
        # the process and the virtual detector's supervisor boots it again, like a board.
        # (mpremote's soft-reset would wait for a "soft reboot" banner the unix port never
        # prints, so the process is ended with sys.exit(0) instead: the same restart.)
        if platform == "esp32":
            run_mp(port, "reset", timeout=30)
        else:
            run_mp(port, "exec", "--no-follow", "import sys; sys.exit(0)", timeout=30)
    return sizes


def current_identity(port: str) -> str | None:
    """The device's identity.json now, or None if it has none."""
    probe = (
        "try:\n f = open('identity.json')\n print('ID=' + f.read().strip())\n"
        "except OSError:\n print('ID=')"
    )
    out = run_mp(port, "exec", probe)
    lines = [x[3:] for x in out.splitlines() if x.startswith("ID=")]
    return (lines[-1] or None) if lines else None


def provision(port: str, device: int, key: str, config: dict | None) -> list[str]:
    """Write the provisioning files; returns their names."""
    files = provisioning.files(device, key, current_identity(port), config)
    with tempfile.TemporaryDirectory() as d:
        args: list[str] = []
        for name, text in files.items():
            (Path(d) / name).write_text(text)
            args += [*(["+"] if args else []), "fs", "cp", str(Path(d) / name), ":" + name]
        run_mp(port, *args)
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
    ap.add_argument("--no-reset", action="store_true")
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
            if a.new_key:
                out.write_text(key + "\n")
                out.chmod(0o600)
                print(f"new key for device {a.device:#x} written to {out}")
            written = provision(a.port, a.device, key, cfg)
            print(f"provisioned device {a.device:#x} on {a.port}: {', '.join(written)}")
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
        sizes = deploy(a.port, a.arch, not a.no_reset)
    except (ValueError, OSError, RegistryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mpy = sum(v for k, v in sizes.items() if k.endswith(".mpy"))
    print(f"deployed {len(sizes)} files ({mpy} bytes of .mpy) to {a.port}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
