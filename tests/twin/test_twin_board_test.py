"""Issue 11 §3 on the board twin: the on-target runner with the ESP32 HAL (hal_esp32 on the
twin's machine/esp32 models): every HAL check runs and passes with its figures, the arc input's
pulses counted by the PCNT model (9 half-cycles/s in the scenario)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.twin.test_twin_vdev import ROOT, TwinDev
from tools.twin import run as tr

pytestmark = pytest.mark.micropython
BENCH = Path(__file__).with_name("board_test_bench.toml")


def test_runner_on_the_board_twin(tmp_path):
    image = tr.build_image(tmp_path / "image")
    v = TwinDev(tmp_path, "--image", str(image), "--scenario", str(BENCH))
    try:
        st = v.wait_boots(1, 60)
        p = subprocess.run(
            [sys.executable, "-m", "tools.board_test", st["console"]],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert p.returncode == 0, p.stdout + p.stderr
        assert "board-test: 9 pass, 0 FAIL, 0 n/a" in p.stdout, p.stdout
        read_us = int(re.search(r"(\d+) us per read_uv", p.stdout).group(1))  # type: ignore[union-attr]
        assert 40 <= read_us <= 100  # the twin's 85 us at 160 MHz, run at 240 MHz
        assert re.search(r"\| hal: pcnt counting +\| pass \| (8|9|10) pulses in 1 s", p.stdout)
        assert re.search(r"0 late of 4000", p.stdout)
        v.wait_boots(2)  # reset afterwards (machine.reset): the firmware boots again
    finally:
        v.close()
