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
    assert "Success: no issues found in 2 source files" in p.stdout
