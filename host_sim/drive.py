"""Drive the firmware's Detector with sample streams, window by window, and collect events.

This is the one loop through which the simulator and the tests feed the real detection code:
it copies each window's ADC codes into the Detector's own input buffers and calls process()
with the window's end time, exactly as the firmware's main loop does with the HAL.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from efd import rms, ticks
from efd.detector import Detector
from efd.names import as_dict


@dataclass
class Event:
    t: float  # seconds from run start
    kind: str
    channel: str
    value: int
    threshold: int

    def as_json(self) -> dict:
        return {
            "t": round(self.t, 3),
            "kind": self.kind,
            "channel": self.channel,
            "value": self.value,
            "threshold": self.threshold,
        }


def window_seconds(mains_hz: int) -> float:
    return rms.N / (rms.SAMPLES_PER_CYCLE * mains_hz)


def run(
    det: Detector,
    n_windows: int,
    mains_hz: int = 50,
    residual: np.ndarray | None = None,
    phases: list[np.ndarray | None] | None = None,
    temps: list[np.ndarray | None] | None = None,
    arc_per_s: np.ndarray | None = None,
    t0_ms: int = 0,
) -> Iterator[tuple[int, list[Event]]]:
    """Yield (window index, events) for each window.

    residual / phases[i]: ADC codes, rms.N per window (len >= n_windows * rms.N).
    temps[i]: one ADC code per window. arc_per_s: one pulse count per whole second.
    t0_ms: the detector clock at the start (any value: exercises 2^30 wrap-around).
    """
    n = rms.N
    win_s = window_seconds(mains_hz)
    next_arc = 1
    for w in range(n_windows):
        if residual is not None:
            det.residual[:] = _as_array(residual[w * n : (w + 1) * n])
        for i, p in enumerate(phases or []):
            if p is not None:
                det.phase[i][:] = _as_array(p[w * n : (w + 1) * n])
        for i, tc in enumerate(temps or []):
            if tc is not None:
                det.temp_code[i] = int(tc[w])
        t_end = (w + 1) * win_s
        now = (t0_ms + round(t_end * 1000)) & ticks.MASK
        det.process(now)
        if arc_per_s is not None and t_end + 1e-9 >= next_arc and next_arc <= len(arc_per_s):
            det.arc_second(int(arc_per_s[next_arc - 1]), now)
            next_arc += 1
        yield w, [_event(e, t0_ms) for e in det.events.drain()]


def collect(det: Detector, n_windows: int, **kw) -> list[Event]:
    out: list[Event] = []
    for _, evs in run(det, n_windows, **kw):
        out.extend(evs)
    return out


def _as_array(codes: np.ndarray) -> array:
    return array("H", np.ascontiguousarray(codes, dtype=np.uint16).tobytes())


def _event(e: tuple, t0_ms: int) -> Event:
    d = as_dict(e)
    return Event(
        t=ticks.diff(d["t_ms"], t0_ms) / 1000.0,
        kind=d["kind"],
        channel=d["channel"],
        value=d["value"],
        threshold=d["threshold"],
    )


def feed(
    det: Detector,
    nows: list[int],
    residual: np.ndarray,
    phases: list[np.ndarray],
    temps: np.ndarray,
    arc_at: dict[int, int],
    reset_at: dict[int, int],
    on_events: Callable[[int, list[tuple]], None],
    trace: array | None = None,
) -> None:
    """The simulator's fast path of `run`: one chunk of windows, no per-window allocation of
    numpy objects. Same order of calls as the firmware's main loop: inputs, process(now), the
    once-a-second arc count, then commands (reset), then the app drains the event queue.

    residual / phases[i]: uint16 codes, rms.N per window (phases for enabled channels only).
    temps: uint16 (windows, 4). arc_at / reset_at: {window index in chunk: count / 1}.
    on_events(window index, raw event tuples) is called for windows that produced events.
    """
    n = rms.N
    res_in = memoryview(det.residual)
    res_src = _codes(residual)
    ph = [(memoryview(det.phase[i]), _codes(p)) for i, p in enumerate(phases)]
    temp_in = memoryview(det.temp_code)
    temp_src = _codes(temps.reshape(-1))
    q = det.events
    process = det.process
    values = det.values
    for j, now in enumerate(nows):
        o = j * n
        res_in[:] = res_src[o : o + n]
        for dst, src in ph:
            dst[:] = src[o : o + n]
        temp_in[:] = temp_src[4 * j : 4 * j + 4]
        process(now)
        if j in arc_at:
            det.arc_second(arc_at[j], now)
        if j in reset_at:
            det.reset(now)
        if q.count:
            on_events(j, q.drain())
        if trace is not None:
            trace.extend(values)


def _codes(a: np.ndarray) -> memoryview:
    """Flat uint16 view of a numpy array that slices straight into an array('H')."""
    return np.ascontiguousarray(a, dtype=np.uint16).reshape(-1).data
