"""Build the device filesystem image: libraries as .mpy for one target arch, main.py/boot.py
as source.

The image is what `make deploy` copies and what the virtual detector boots from:

    <out>/boot.py, <out>/main.py          source (readable on the device)
    <out>/lib/efd/*.mpy                    detection core
    <out>/lib/app/*.mpy                    application + the HAL for the target
    <out>/lib/protocol/*.mpy               wire protocol codec

Arch: `xtensawin` for the ESP32 (native/viper code must match the chip), `x64` for the unix
port on this host. Bytecode-only .mpy files carry no arch and load anywhere; the viper RMS
kernel and the ESP32 HAL's burst loop do not.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
SOURCE_FILES = ("boot.py", "main.py")
# Packages that go to /lib on the device, with files that stay on the host.
PACKAGES = {
    "efd": (FIRMWARE / "lib" / "efd", ()),
    "app": (FIRMWARE / "lib" / "app", ()),
    "protocol": (ROOT / "protocol", ("gen_vectors.py",)),
}
# The HAL the target does not use is left out of its image.
# protocol/host.py (names, host-side decoders) is never loaded by the detector: the board twin runs
# the ESP32 image without it, so any import of it on the detector's path would show there.
SKIP_BY_ARCH = {
    "xtensawin": ("app/hal_sim.py", "app/sim_io.py", "protocol/host.py"),
    "x64": ("app/hal_esp32.py", "app/wifi.py"),
}
# sys.implementation._mpy >> 10 -> mpy-cross -march name (py/persistentcode.h MP_NATIVE_ARCH_*)
ARCH_BY_CODE = {
    0: None,
    1: "x86",
    2: "x64",
    3: "armv6",
    4: "armv6m",
    5: "armv7m",
    6: "armv7em",
    7: "armv7emsp",
    8: "armv7emdp",
    9: "xtensa",
    10: "xtensawin",
    11: "rv32imc",
}


def mpy_cross() -> str:
    here = Path(sys.executable).parent / "mpy-cross"
    return str(here) if here.exists() else (shutil.which("mpy-cross") or "mpy-cross")


def sources(arch: str, board: str | None = None) -> list[tuple[Path, str]]:
    """(source file, device path relative to /lib) for every library module. `board` picks the
    file set ("xtensawin": the ESP32 image; "x64": the unix port's) when it differs from the
    arch: the board twin runs the ESP32 image compiled for this host."""
    out = []
    skip = SKIP_BY_ARCH.get(board or arch, ())
    for pkg, (src, excluded) in PACKAGES.items():
        for p in sorted(src.glob("*.py")):
            rel = f"{pkg}/{p.name}"
            if p.name in excluded or rel in skip:
                continue
            out.append((p, rel))
    return out


def build(
    arch: str,
    out: Path,
    board: str | None = None,
    vendor_pub: bytes | None = None,
    version: tuple[int, int, int] | None = None,
) -> dict[str, int]:
    """Compile into `out` (emptied first). Returns {device path: size in bytes}.
    vendor_pub: the vendor's Ed25519 public key (32 bytes), built in as app/vendor_key.py so
    the detector accepts updates signed with it (without one it refuses every update: no_key).
    version: the firmware version the image reports (app.VERSION), default the source's."""
    if out.exists():
        shutil.rmtree(out)
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="fwbuild-") as tmp:
        todo = sources(arch, board)
        if version is not None:
            init = Path(tmp) / "__init__.py"
            text = (FIRMWARE / "lib" / "app" / "__init__.py").read_text()
            text, n = re.subn(
                r"^VERSION = \(.*\)$", f"VERSION = {tuple(version)!r}", text, count=1, flags=re.M
            )
            assert n == 1, "app/__init__.py has no VERSION line"
            init.write_text(text)
            todo = [(init, r) if r == "app/__init__.py" else (p, r) for p, r in todo]
        if vendor_pub is not None:
            if len(vendor_pub) != 32:
                raise SystemExit("the vendor public key must be 32 bytes (64 hex digits)")
            vk = Path(tmp) / "vendor_key.py"
            vk.write_text(
                "# The vendor's Ed25519 public key: updates must be signed with its private half.\n"
                f"KEY = {vendor_pub!r}\n"
            )
            todo.append((vk, "app/vendor_key.py"))
        for src, rel in todo:
            dst = out / "lib" / rel.replace(".py", ".mpy")
            dst.parent.mkdir(parents=True, exist_ok=True)
            cmd = [mpy_cross(), f"-march={arch}", "-O3", "-s", rel, "-o", str(dst), str(src)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"mpy-cross failed on {src}:\n{proc.stderr.strip()}")
            sizes["lib/" + rel.replace(".py", ".mpy")] = dst.stat().st_size
    for name in SOURCE_FILES:
        shutil.copy2(FIRMWARE / name, out / name)
        sizes[name] = (out / name).stat().st_size
    return sizes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tools.fwbuild", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--arch", default="xtensawin", choices=[a for a in ARCH_BY_CODE.values() if a])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "fw")
    args = ap.parse_args(argv)
    sizes = build(args.arch, args.out)
    mpy = sum(v for k, v in sizes.items() if k.endswith(".mpy"))
    print(f"{args.out}: {len(sizes)} files, .mpy total {mpy} bytes ({args.arch})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
