"""Conformance suite: one scenario file per clause, the expectation asserted from the event log.

Each tests/conformance/*.toml runs through the CLI exactly as QA runs it
(`python -m host_sim run FILE --events OUT.jsonl`, in-process), and the check registered under
the file's name reads the JSONL it wrote. Oracles come from the scenario itself (when the true
current crossed a level, when the temperature reached set), never from the detector.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from host_sim import cli
from host_sim.scenario import Scenario, load
from host_sim.synth import Synth

HERE = Path(__file__).resolve().parent
FILES = {p.stem: p for p in sorted(HERE.glob("*.toml"))}
Check = Callable[[list[dict], Scenario], None]
CHECKS: dict[str, Check] = {}
FAULT_REPORT_S = 10.0  # issue 4 / docs: faults reported within 10 s (GB 50166 allows 100 s)
# A temperature reading has 0.1 degC resolution (a true 69.95 degC already reads 70.0) and the
# NTC table is within 0.1 degC of its model near 70 degC (docs/ntc.md): an alarm while the point
# is within this of the set value is on time, not early.
TEMP_READING_C = 0.2


def clause(name: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[name] = fn
        return fn

    return register


def run_cli(path: Path, tmp: Path, *extra: str) -> list[dict]:
    out = tmp / (path.stem + ".jsonl")
    assert cli.main(["run", str(path), "--events", str(out), "--quiet", *extra]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def pick(events: list[dict], channel: str, kind: str) -> list[dict]:
    return [e for e in events if e["channel"] == channel and e["kind"] == kind]


def true_residual(scn: Scenario, t: float) -> float:
    return float(Synth(scn).true_levels("residual", np.array([t]))[0])


def first_time(scn: Scenario, channel: str, pred: Callable[[float], bool]) -> float:
    """First time (1 ms grid) at which the scenario's true value of a channel satisfies pred."""
    syn = Synth(scn)
    t = np.arange(0, scn.duration_s, 0.001)
    if channel == "residual":
        v = syn.true_levels("residual", t)
    else:  # temperature: the segment ramp itself, at 1 ms resolution
        i = int(channel[4:])
        v = np.full(t.shape, 25.0)
        for s in scn.temperature:
            m = (t >= s.t0) & (t < s.t1) & (s.channel == i)
            v[m] = s.start_c + (s.end_c - s.start_c) * (t[m] - s.t0) / (s.t1 - s.t0)
    hit = np.flatnonzero([pred(x) for x in v])
    assert hit.size, f"{channel} never satisfies the condition in the scenario"
    return float(t[hit[0]])


# -- GB 14287.2 residual current --------------------------------------------------------------
@clause("gb14287_2_below_80pct_no_alarm")
def _below_80(ev: list[dict], scn: Scenario) -> None:
    assert true_residual(scn, 30) <= 0.8 * scn.settings["leak_set_ma"]
    assert not pick(ev, "residual", "alarm"), ev


@clause("gb14287_2_at_set_alarms")
def _at_set(ev: list[dict], scn: Scenario) -> None:
    onset = first_time(scn, "residual", lambda v: v >= scn.settings["leak_set_ma"])
    alarms = pick(ev, "residual", "alarm")
    assert len(alarms) == 1, ev
    assert alarms[0]["t"] - onset <= 30


@clause("gb14287_2_105pct_60s_alarm_within_30s")
def _105(ev: list[dict], scn: Scenario) -> None:
    onset = first_time(scn, "residual", lambda v: v >= 1.05 * scn.settings["leak_set_ma"])
    alarms = pick(ev, "residual", "alarm")
    assert alarms, ev
    latency = alarms[0]["t"] - onset
    assert scn.settings["leak_delay_s"] <= latency <= 30, latency


def _alarm_value_in_band(ev: list[dict], scn: Scenario) -> None:
    """The true current when the alarm came (the step it came on) is within 80-100 % of set."""
    set_ma = scn.settings["leak_set_ma"]
    alarms = pick(ev, "residual", "alarm")
    assert len(alarms) == 1, ev
    # The step applied when the delay that ended in the alarm began.
    value = true_residual(scn, alarms[0]["t"] - scn.settings["leak_delay_s"])
    assert 0.8 * set_ma < value <= set_ma, (value, set_ma)
    # And steps really were at most 0.2 x set (the clause's condition on the test itself).
    seg = scn.residual[0]
    assert (seg.end_level - seg.level) / (seg.steps - 1) <= 0.2 * set_ma


CHECKS["gb14287_2_ramp_0p2_steps_alarm_value_80_100pct"] = _alarm_value_in_band
CHECKS["gb14287_2_ramp_fine_steps_alarm_value_80_100pct"] = _alarm_value_in_band


# -- GB 14287.3 temperature -----------------------------------------------------------------
@clause("gb14287_3_alarm_within_40s_at_set")
def _temp_40s(ev: list[dict], scn: Scenario) -> None:
    set_c = scn.settings["temp_set_c"]
    reach = first_time(scn, "temp2", lambda v: v >= set_c)
    early = first_time(scn, "temp2", lambda v: v >= set_c - TEMP_READING_C)
    alarms = pick(ev, "temp2", "alarm")
    assert len(alarms) == 1, ev
    assert early <= alarms[0]["t"] <= reach + 40, (alarms[0]["t"], early, reach)
    assert not [e for e in ev if e["kind"] == "alarm" and e["channel"] != "temp2"], ev


# -- GB 14287.4 arc ---------------------------------------------------------------------------
@clause("gb14287_4_14_half_cycles_alarm")
def _arc_14(ev: list[dict], scn: Scenario) -> None:
    onset = min(s.t0 for s in scn.arc if s.half_cycles_per_s >= 14)
    alarms = pick(ev, "arc", "alarm")
    assert len(alarms) == 1, ev
    assert 0 < alarms[0]["t"] - onset <= 30


@clause("gb14287_4_9_half_cycles_no_alarm")
def _arc_9(ev: list[dict], scn: Scenario) -> None:
    assert max(s.half_cycles_per_s for s in scn.arc) <= 9
    assert not pick(ev, "arc", "alarm"), ev


# -- GB 14287.1 faults and latching ----------------------------------------------------------
def _faults_reported(ev: list[dict], scn: Scenario) -> None:
    for f in scn.fault:
        faults = [e for e in pick(ev, f.sensor, "fault") if f.t0 <= e["t"] <= f.t1]
        assert len(faults) == 1, (f, ev)
        assert faults[0]["fault"] == f.kind
        assert faults[0]["t"] - f.t0 <= FAULT_REPORT_S
        cleared = [e for e in pick(ev, f.sensor, "fault_clear") if e["t"] >= f.t1]
        assert cleared and cleared[0]["t"] - f.t1 <= FAULT_REPORT_S, (f, ev)
    # A broken lead is never an alarm (nor hides one: nothing else is going on here).
    assert not [e for e in ev if e["kind"] == "alarm"], ev


CHECKS["gb14287_1_sensor_open_fault"] = _faults_reported
CHECKS["gb14287_1_sensor_short_fault"] = _faults_reported


@clause("gb14287_1_alarm_latches_until_reset")
def _latch(ev: list[dict], scn: Scenario) -> None:
    alarms = pick(ev, "residual", "alarm")
    resets = pick(ev, "residual", "reset")
    first_reset, second_reset = scn.reset
    assert len(alarms) == 2, ev  # not three: the 20-25 s leakage found the alarm latched
    assert alarms[0]["t"] < first_reset
    assert len(resets) == 1, ev  # the reset during the leakage did nothing
    assert abs(resets[0]["t"] - second_reset) <= 0.1
    assert pick(ev, "residual", "clear")[0]["t"] < resets[0]["t"]  # cleared, yet still latched
    assert alarms[1]["t"] > max(s.t0 for s in scn.residual)


@clause("delay_cancelled_when_current_falls_back")
def _cancel(ev: list[dict], scn: Scenario) -> None:
    delay = scn.settings["leak_delay_s"]
    first, second = scn.residual
    assert first.t1 - first.t0 < delay
    alarms = pick(ev, "residual", "alarm")
    assert len(alarms) == 1, ev
    assert second.t0 + delay <= alarms[0]["t"] <= second.t0 + delay + 0.5


# -- waveform robustness ---------------------------------------------------------------------
@clause("harmonics_noise_105pct_alarms")
def _harm_alarm(ev: list[dict], scn: Scenario) -> None:
    assert scn.residual[0].harmonics
    onset = scn.residual[0].t0
    alarms = pick(ev, "residual", "alarm")
    assert len(alarms) == 1 and alarms[0]["t"] - onset <= 30, ev


@clause("harmonics_noise_78pct_no_alarm")
def _harm_quiet(ev: list[dict], scn: Scenario) -> None:
    assert scn.residual[0].harmonics
    assert not pick(ev, "residual", "alarm"), ev


# -- the suite itself -------------------------------------------------------------------------
def test_every_scenario_file_has_a_check_and_every_check_a_file() -> None:
    assert set(FILES) == set(CHECKS)


@pytest.mark.parametrize("name", sorted(FILES))
def test_clause(name: str, tmp_path: Path) -> None:
    CHECKS[name](run_cli(FILES[name], tmp_path), load(FILES[name]))


@pytest.mark.parametrize(
    "name", ["gb14287_2_ramp_fine_steps_alarm_value_80_100pct", "gb14287_1_sensor_open_fault"]
)
def test_numpy_kernel_decides_exactly_like_the_firmware_kernel(name: str, tmp_path: Path) -> None:
    """The simulator's default (numpy) kernel and efd.rms.accumulate give the same event log."""
    fast = run_cli(FILES[name], tmp_path)
    plain = run_cli(FILES[name], tmp_path, "--kernel", "plain")
    assert fast == plain and fast
