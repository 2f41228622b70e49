"""The ESP32 HAL cannot run here: it must at least compile for the chip and type-check against
the pinned ESP32 stubs (tools/check_esp32.py), and the stubs must really be in use."""

from __future__ import annotations

import subprocess
import sys

from tools import fwbuild


def test_esp32_hal_compiles_and_type_checks():
    p = subprocess.run(
        [sys.executable, "-m", "tools.check_esp32"],
        cwd=fwbuild.ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Success: no issues found in 3 source files" in p.stdout


def test_mip_package_lists_exactly_the_esp32_image():
    # firmware/package.json is written by hand; a module added to the firmware but not to it
    # would be missing after `mpremote mip install` and fail only at import on the board.
    import json

    pkg = json.loads((fwbuild.FIRMWARE / "package.json").read_text())
    listed = sorted(dst for dst, _src in pkg["urls"])
    image = sorted(rel for _src, rel in fwbuild.sources("xtensawin"))
    assert listed == image
