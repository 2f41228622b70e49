"""The ESP32 image on the board twin: it boots, it meets the conformance clauses at both ends of
the chip's ADC reference, and the HAL as it was before the twin shows the faults the twin was
built to catch (so these tests would fail if the twin stopped modelling them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from host_sim.scenario import load
from tests.conformance.test_clauses import FILES
from tools.twin import run as tr

pytestmark = pytest.mark.micropython
FIXTURES = Path(__file__).resolve().parent / "fixtures"
AT_SET = FILES["gb14287_2_at_set_alarms"]


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    return tr.build_image(tmp_path_factory.mktemp("img") / "image")


@pytest.fixture(scope="module")
def old_image(tmp_path_factory) -> Path:
    """The pre-twin HAL with only Pin.irq(hard=True) removed (so the rest can run)."""
    src = (FIXTURES / "hal_esp32_before_twin.py").read_text().replace(", hard=True", "")
    hal = tmp_path_factory.mktemp("hal") / "hal_esp32.py"
    hal.write_text(src)
    return tr.build_image(tmp_path_factory.mktemp("oldimg") / "image", hal)


def run(scn_path: Path, image: Path, tmp: Path, **kw) -> tr.TwinResult:
    opts = tr.Options(image=image, **kw)
    return tr.run(load(scn_path), opts, tmp)


def test_board_boots_and_samples_on_time(image, tmp_path):
    res = run(AT_SET, image, tmp_path)
    f = tr.figures(res)
    assert f["result"] == "end" and f["boots"] == 1, res.output
    assert f["cpu_mhz"] == 240  # the HAL raises the clock the sampling plan needs
    assert f["late"] == 0
    assert 1990 <= f["sample_rate_hz"] <= 2010  # 40 per cycle at 50 Hz
    assert f["window_ms_max"] <= 101


def test_hal_before_the_twin_never_starts(tmp_path):
    """Finding 1: Pin.irq(hard=True) is a TypeError on the ESP32 port (the board used to sit at
    the REPL: Hal() ran outside main.py's try); main.py now reboots instead of hanging."""
    img = tr.build_image(tmp_path / "img", FIXTURES / "hal_esp32_before_twin.py")
    res = run(AT_SET, img, tmp_path / "run")
    assert "in irq" in res.output and "TypeError: extra keyword arguments" in res.output
    assert res.stats["causes"].count(2) >= 3  # machine.reset() after each failed start
    assert not [e for e in res.events if e.kind == "alarm"]


def test_rs485_driver_released_and_polls_answered(image, old_image, tmp_path):
    """Finding 2: the old HAL kept DE high and heard 1 poll in 38; now every poll is heard."""
    old = tr.figures(run(AT_SET, old_image, tmp_path / "old", poll_ms=500))
    new = tr.figures(run(AT_SET, image, tmp_path / "new", poll_ms=500))
    assert old.get("replies", 0) <= 2 and old["rx_lost_de_high"] > 100
    assert new["replies"] >= 0.85 * new["polls"], new
    assert new["de_high_pct"] < 15, new
    assert new["reply_ms_p50"] <= 20, new  # SPEC.md §9 for a POLL
