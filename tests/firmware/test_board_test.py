"""Issue 11 §3: the on-target runner (tools/board_test, `make test-board`) against the virtual
device (unix port, simulated HAL): the core's vectors pass, the HAL checks without hardware say
n/a (never a pass), a wrong vector makes a FAIL row and a non-zero exit, and the firmware runs
again afterwards. The board twin runs the same runner with every HAL check (tests/twin)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.firmware.conftest import ROOT
from tools.board_test import vectors

pytestmark = pytest.mark.micropython


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.board_test", *argv],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_vectors_cover_the_edges():
    v = vectors.generate()
    clipped = [r["expect"][2] for r in v["rms"]]
    assert max(clipped) > 0 and 0 in clipped  # a clipped window and clean ones
    assert any(len(t["expect"]) >= 4 for t in v["threshold"])  # alarm, clears, reset
    kinds = {e[0] for t in v["threshold"] for e in t["expect"]}
    assert v["kinds"]["alarm"] in kinds
    assert {c for c in v["ntc"]["codes"]} >= {0, 4095}


def test_runner_on_the_virtual_device(vdev_factory, tmp_path):
    v = vdev_factory()
    p = run(v.state["console"])
    assert p.returncode == 0, p.stdout + p.stderr
    rows = {
        line.split("|")[1].strip(): line.split("|")[2].strip()
        for line in p.stdout.splitlines()
        if line.startswith("| ")
    }
    assert rows["core: rms (viper)"] == rows["core: ntc"] == rows["core: threshold"] == "pass"
    assert rows["heap: free after boot"] == "pass"
    for hw in ("hal: adc read cost", "hal: sample rate / late", "hal: pcnt counting",
               "hal: flash write/erase", "hal: watchdog"):  # fmt: skip
        assert rows[hw] == "n/a", (hw, p.stdout)
    assert "board-test: 4 pass, 0 FAIL, 5 n/a" in p.stdout
    v.wait_boots(2)  # reset afterwards: the firmware runs again

    # A vector the device disagrees with: a FAIL row naming it, exit status 1.
    bad = vectors.generate()
    bad["rms"][1]["expect"][1] += 1
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    p = run(v.state["console"], "--vectors", str(path), "--no-reset")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "| core: rms (viper)          | FAIL | #1 [2398, 300, 0, 2048] != [2398, 301" in p.stdout
    # A runner that cannot complete (no vectors format): FAIL, not a silent pass.
    path.write_text(json.dumps({"format": "something else"}))
    p = run(v.state["console"], "--vectors", str(path), "--no-reset")
    assert p.returncode == 1 and "core: vectors" in p.stdout
