"""Run one scenario through the firmware's Detector: the code path shared by the CLI, the
conformance suite and the benchmark.

Per chunk: synth.Synth generates every input's ADC codes with numpy, then drive.feed hands them
to efd.detector.Detector window by window. Nothing here decides anything: every event comes out
of the firmware's own modules.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from efd import rms, ticks
from efd.detector import Detector
from efd.events import N_CHANNELS
from efd.names import CHANNEL_NAMES, FAULT_NAMES, KIND_NAMES
from efd.threshold import OFF
from host_sim import drive
from host_sim.scenario import Scenario
from host_sim.synth import CHUNK_WINDOWS, Synth

# Units of the core's integer values per channel, and the factor to engineering units.
UNITS = {"residual": ("mA", 1), "arc": ("half-cycles/s", 1)}
UNITS.update({f"temp{i}": ("degC", 10) for i in range(4)})
UNITS.update({f"phase{i}": ("A", 100) for i in range(3)})


@dataclass(frozen=True)
class SimEvent:
    t: float  # seconds from scenario start (end of the window that produced it)
    kind: str
    channel: str
    value: int  # the core's integer units (mA, 0.1 degC, 0.01 A, half-cycles, fault code)
    threshold: int

    def as_json(self) -> dict:
        """One line of the --events file: values in engineering units, with the unit."""
        unit, scale = UNITS[self.channel]
        d: dict = {"t": round(self.t, 3), "kind": self.kind, "channel": self.channel}
        if self.kind in ("fault", "fault_clear"):
            d.update(value=self.value, threshold=self.threshold, fault=FAULT_NAMES[self.value])
            return d
        if self.kind == "ror":
            unit, scale = "degC/min", 10
        d["value"] = self.value / scale if scale != 1 else self.value
        d["threshold"] = self.threshold / scale if scale != 1 else self.threshold
        d["units"] = unit
        return d


@dataclass
class Result:
    scenario: Scenario
    events: list[SimEvent]
    window_s: float
    n_windows: int
    trace: np.ndarray | None  # (n_windows, 9) det.values after each window, if recorded
    latched: list[str]  # channels whose alarm is latched at the end
    faulty: dict[str, str]  # channel -> fault reported at the end
    dropped: int  # events the core's queue overwrote (should be 0)
    gen_s: float = 0.0  # wall time generating codes
    detect_s: float = 0.0  # wall time in the detector loop
    wall_s: float = 0.0
    thresholds: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def speed(self) -> float:
        """Simulated seconds per wall second."""
        return self.n_windows * self.window_s / self.wall_s if self.wall_s else float("inf")


def run(
    scn: Scenario,
    trace: bool = False,
    progress: bool = False,
    kernel: Callable | None = None,
) -> Result:
    """Simulate the whole scenario. trace=True records det.values per window (for plots)."""
    wall0 = time.perf_counter()
    det = Detector(scn.settings, capacity=64, kernel=kernel)
    syn = Synth(scn)
    n_win = syn.n_windows
    fs = syn.fs
    t0_ms = scn.clock_start_ms
    n_phase = scn.settings["phase_channels"]
    # Window w ends at sample (w + 1) * N: its clock reading in ms (integer maths: 60 Hz
    # windows are 83.33 ms, and float sums would drift).
    ends = np.arange(1, n_win + 1, dtype=np.int64) * (rms.N * 1000)
    nows_all = (((ends + fs // 2) // fs) + t0_ms) & ticks.MASK
    # Arc count for whole second j is given after the first window ending at or after j + 1 s.
    arc_counts = syn.arc_counts()
    arc_win = {int(-(-(j + 1) * fs // rms.N)) - 1: c for j, c in enumerate(arc_counts)}
    reset_win: dict[int, int] = {}
    for t in scn.reset:
        w = max(0, int(np.ceil(t * fs / rms.N - 1e-9)) - 1)
        reset_win[min(w, n_win - 1)] = 1
    events: list[SimEvent] = []
    tr = array("i") if trace else None
    gen_s = det_s = 0.0
    bar = tqdm(
        total=round(n_win * syn.window_s),
        unit="sim s",
        delay=2.0,
        disable=not progress,
        leave=False,
        dynamic_ncols=True,
    )
    for w0 in range(0, n_win, CHUNK_WINDOWS):
        w1 = min(n_win, w0 + CHUNK_WINDOWS)
        g0 = time.perf_counter()
        res = syn.ct_codes("residual", w0, w1)
        phases = [syn.ct_codes(f"phase{i}", w0, w1) for i in range(n_phase)]
        temps = syn.temp_codes(w0, w1)
        g1 = time.perf_counter()

        def got(j: int, raw: list[tuple], w0: int = w0) -> None:
            t = (w0 + j + 1) * syn.window_s
            for kind, ch, value, threshold, _t_ms in raw:
                events.append(SimEvent(t, KIND_NAMES[kind], CHANNEL_NAMES[ch], value, threshold))

        drive.feed(
            det,
            nows_all[w0:w1].tolist(),
            res,
            phases,
            temps,
            {w - w0: c for w, c in arc_win.items() if w0 <= w < w1},
            {w - w0: 1 for w in reset_win if w0 <= w < w1},
            got,
            tr,
        )
        g2 = time.perf_counter()
        gen_s += g1 - g0
        det_s += g2 - g1
        bar.update(round(w1 * syn.window_s) - bar.n)
    bar.close()
    trace_arr = None
    if tr is not None:
        trace_arr = np.frombuffer(tr, dtype=np.int32).reshape(-1, N_CHANNELS)
    return Result(
        scenario=scn,
        events=events,
        window_s=syn.window_s,
        n_windows=n_win,
        trace=trace_arr,
        latched=[CHANNEL_NAMES[c] for c in range(N_CHANNELS) if det.rules.latched(c)],
        faulty={
            CHANNEL_NAMES[c]: FAULT_NAMES[det.faults.reported[c]]
            for c in range(N_CHANNELS)
            if det.faults.reported[c]
        },
        dropped=det.events.dropped,
        gen_s=gen_s,
        detect_s=det_s,
        wall_s=time.perf_counter() - wall0,
        thresholds=_thresholds(det),
    )


def _thresholds(det: Detector) -> dict[str, dict[str, int]]:
    """Alarm / pre-alarm levels the core actually uses (for plot lines), per enabled channel."""
    out = {}
    for ch in range(N_CHANNELS):
        alarm_th, pre_th = det.rules.levels(ch)
        if alarm_th == OFF:
            continue
        d = {"alarm": alarm_th}
        if pre_th != OFF:
            d["pre"] = pre_th
        out[CHANNEL_NAMES[ch]] = d
    return out
