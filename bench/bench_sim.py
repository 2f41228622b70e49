"""Simulator speed: simulated seconds per wall second for one detector at full sample rate.

Every input the firmware reads is live (residual with harmonics and line noise, three phase
CTs, four NTCs, the arc counter), at 40 samples per mains cycle, through the real detection
code (efd.detector.Detector). Target (issue 4): >= 1000x real time, a simulated day < 90 s.
Generation vs detection share is measured inside the same run. The plain-kernel row is the
same run with efd.rms.accumulate itself instead of the numpy variant (context).
"""

from __future__ import annotations

from host_sim import kernel, simulate
from host_sim.scenario import loads

SIM_S = 1800  # half an hour: long enough for a stable rate, short enough for `make bench`


def scenario_text(duration_s: int) -> str:
    phases = "".join(
        f"[[phase]]\nchannel = {i}\nt0 = 0\nt1 = {duration_s}\nrms_a = {10 + 5 * i}\n"
        f"harmonics = {{ 3 = 0.1 }}\nnoise_a = 0.2\n"
        for i in range(3)
    )
    temps = "".join(
        f"[[temperature]]\nchannel = {i}\nt0 = 0\nt1 = {duration_s}\nstart_c = {30 + i}\n"
        f"end_c = {60 + 10 * i}\n"
        for i in range(4)
    )
    return f"""
[scenario]
name = "bench"
duration_s = {duration_s}
seed = 7
[[residual]]
t0 = 0
t1 = {duration_s}
rms_ma = 50
end_rms_ma = 350
harmonics = {{ 3 = 0.3, 5 = 0.1, 15 = 0.05 }}
noise_ma = 3
[[arc]]
t0 = 10
t1 = 20
half_cycles_per_s = 14
{phases}{temps}"""


def run() -> list[dict]:
    scn = loads(scenario_text(SIM_S), "<bench>")
    simulate.run(loads(scenario_text(30), "<warm-up>"), kernel=kernel.accumulate)
    res = simulate.run(scn, kernel=kernel.accumulate)
    plain = simulate.run(loads(scenario_text(SIM_S // 6), "<bench>"))
    busy = res.gen_s + res.detect_s
    return [
        {
            "name": "sim speed, all inputs, 50 Hz",
            "value": res.speed,
            "unit": "x real time",
            "target": ">= 1000",
            "ok": res.speed >= 1000,
        },
        {
            "name": "simulated day",
            "value": 86400 / res.speed,
            "unit": "s wall",
            "target": "< 90",
            "ok": 86400 / res.speed < 90,
        },
        {"name": "share: waveform generation", "value": 100 * res.gen_s / busy, "unit": "%"},
        {"name": "share: detection (firmware)", "value": 100 * res.detect_s / busy, "unit": "%"},
        {
            "name": "detection per window",
            "value": 1e6 * res.detect_s / res.n_windows,
            "unit": "us",
        },
        {
            "name": "sim speed, plain efd.rms.accumulate kernel",
            "value": plain.speed,
            "unit": "x real time",
            "target": "context",
        },
    ]
