"""Deploy the firmware to a detector (ESP32 on USB, or the virtual detector's console pty).

    python -m tools.deploy PORT [--arch auto|xtensawin|x64] [--no-reset]     (make deploy PORT=...)
    python -m tools.deploy PORT --provision --device ID --key-file KEY [--config FILE.json]

Libraries are compiled with mpy-cross for the target's architecture (auto: asked from the device,
sys.implementation._mpy), main.py and boot.py stay source. Files are copied with mpremote using
`resume` (no soft reset first: on the unix port a soft reset ends the process), then the board is
reset (hard reset on a board and on the board twin; a soft reset, i.e. a restart by the
supervisor, on the unix port). A device with the `esp32` module (the board, or the board twin of
`make virtual-device BOARD=esp32`) gets the ESP32 file set (app/hal_esp32) compiled for its arch.
Provisioning writes identity.json (device id + key) and config.json over the same USB console:
local access is the one way besides the authenticated command to change settings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tools import fwbuild

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


def provision(port: str, device: int, key: str, config: dict | None) -> None:
    from efd import config as efd_config

    if config:
        efd_config.make(config)
    with tempfile.TemporaryDirectory() as d:
        ident = Path(d) / "identity.json"
        ident.write_text(json.dumps({"device": device, "key": key}))
        args = ["fs", "cp", str(ident), ":identity.json"]
        if config is not None:
            cfg = Path(d) / "config.json"
            cfg.write_text(json.dumps(config))
            args += ["+", "fs", "cp", str(cfg), ":config.json"]
        run_mp(port, *args)


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
    ap.add_argument("--device", type=lambda s: int(s, 0))
    ap.add_argument("--key-file")
    ap.add_argument("--key")
    ap.add_argument("--config", help="JSON file of settings (efd/config.py names)")
    a = ap.parse_args(argv)
    try:
        if a.provision:
            if a.device is None or not (a.key or a.key_file):
                ap.error("--provision needs --device and --key or --key-file")
            key = a.key or Path(a.key_file).read_text().strip()
            if len(bytes.fromhex(key)) != 32:
                raise ValueError("the key must be 64 hex digits")
            if not 0 < a.device < 0xFFFFFFFF:
                raise ValueError("device id must be 1..0xFFFFFFFE")
            cfg = json.loads(Path(a.config).read_text()) if a.config else None
            provision(a.port, a.device, key, cfg)
            print(f"provisioned device {a.device:#x} on {a.port}")
            return 0
        sizes = deploy(a.port, a.arch, not a.no_reset)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mpy = sum(v for k, v in sizes.items() if k.endswith(".mpy"))
    print(f"deployed {len(sizes)} files ({mpy} bytes of .mpy) to {a.port}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
