"""Static checks of the ESP32-only firmware code, which cannot run on this host: compile every
firmware module with `mpy-cross -march=xtensawin`, and type-check the ESP32 HAL with mypy against
the pinned `micropython-esp32-stubs` (machine, esp32, micropython) and
`micropython-stdlib-stubs` (time, ... as the port has them, e.g. time.ticks_us)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from tools import fwbuild

CHECKED = ["firmware/lib/app/hal_esp32.py", "firmware/lib/app/board.py", "firmware/lib/app/wifi.py"]
STUBS = ("machine.pyi", "esp32.pyi", "micropython.pyi", "_mpy_shed")


def main() -> int:
    with tempfile.TemporaryDirectory() as d:
        fwbuild.build("xtensawin", Path(d) / "img")
        print("mpy-cross -march=xtensawin: every firmware module compiles")
        site = Path(sysconfig.get_paths()["purelib"])
        stubs = Path(d) / "stubs"
        stubs.mkdir()
        for name in STUBS:
            (stubs / name).symlink_to(site / name)
        ini = Path(d) / "mypy.ini"
        root = fwbuild.ROOT
        ini.write_text(
            "[mypy]\npython_version = 3.11\nignore_missing_imports = True\n"
            "follow_imports = silent\ncheck_untyped_defs = True\n"
            f"mypy_path = {stubs}:{root / 'firmware' / 'lib'}:{root}\n"
            # The stub files themselves have a few errors of their own: not ours to check.
            "[mypy-machine,esp32,micropython,_mpy_shed.*]\nignore_errors = True\n"
        )
        cmd = [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ini),
            "--custom-typeshed-dir",
            str(site),
            *[str(root / p) for p in CHECKED],
        ]
        p = subprocess.run(cmd, capture_output=True, text=True, check=False)
        print(p.stdout.strip())
        return p.returncode


if __name__ == "__main__":
    sys.exit(main())
