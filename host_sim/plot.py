"""--plot: one PNG that shows what the detector saw and what it decided.

One panel per signal group (residual current, temperatures, line currents, arc), only for the
groups the scenario drives or that raised events. On each panel: the value the detector measured
(solid) over the scenario's true value (thin dashed), the set value and the pre-alarm / decision
levels the core actually uses, latched-alarm spans shaded red, sensor-fault spans shaded amber,
and every event marked where it happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI or in `make sim`

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from efd.names import CHANNEL_NAMES, FAULT_NAMES
from host_sim import report
from host_sim.simulate import UNITS, Result, SimEvent
from host_sim.synth import Synth

MAX_POINTS = 4000  # per line: longer traces are reduced to a min/max envelope
CHANNEL_COLOURS = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b"]
MARKERS = {
    "alarm": ("^", "#d62728", "alarm"),
    "prealarm": ("D", "#ff7f0e", "pre-alarm"),
    "ror": ("P", "#e377c2", "rate of rise"),
    "clear": ("o", "#2ca02c", "clear"),
    "fault": ("X", "#b8860b", "fault"),
    "fault_clear": ("o", "#b8860b", "fault clear"),
    "reset": ("v", "#000000", "reset"),
}


@dataclass
class Group:
    title: str
    unit: str
    channels: list[str]


GROUPS = [
    Group("Residual current", "mA", ["residual"]),
    Group("Temperature", "°C", [f"temp{i}" for i in range(4)]),
    Group("Line current", "A", [f"phase{i}" for i in range(3)]),
    Group("Arc half-cycles per second", "half-cycles/s", ["arc"]),
]


def render(res: Result, path: Path) -> None:
    scn = res.scenario
    syn = Synth(scn)
    t = (np.arange(res.n_windows) + 1) * res.window_s
    scale_t, t_unit = _time_unit(t[-1] if len(t) else 1.0)
    groups = [g for g in GROUPS if _shown(g, res)]
    fig, axes = plt.subplots(
        len(groups),
        1,
        sharex=True,
        figsize=(12, 1.0 + 2.4 * len(groups)),
        squeeze=False,
        constrained_layout=True,
    )
    for ax, g in zip(axes[:, 0], groups, strict=True):
        _panel(ax, g, res, syn, t, scale_t)
    axes[-1, 0].set_xlabel(f"time ({t_unit})")
    axes[-1, 0].set_xlim(0, t[-1] / scale_t if len(t) else 1)
    title = scn.name + (f" — {scn.description}" if scn.description else "")
    fig.suptitle(title, fontsize=12, fontweight="bold", x=0.01, ha="left")
    sub = report.summary(res).split(": ", 1)[-1]
    fig.text(0.01, 0.0, sub, fontsize=8, color="#444", ha="left", va="bottom", wrap=True)
    fig.get_layout_engine().set(h_pad=0.1, rect=(0, 0.03, 1, 0.97))  # type: ignore[union-attr, call-arg]
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _shown(g: Group, res: Result) -> bool:
    scn = res.scenario
    driven = {
        "residual": True,  # the detector's main input: always shown
        "temp0": bool(scn.temperature),
        "phase0": bool(scn.phase),
        "arc": bool(scn.arc),
    }[g.channels[0]]
    faults = any(f.sensor in g.channels for f in scn.fault)
    events = any(e.channel in g.channels for e in res.events)
    return driven or faults or events


def _channels(g: Group, res: Result) -> list[str]:
    """Channels of a group worth a line: driven, faulted or with events (or the first one)."""
    scn = res.scenario
    used = {e.channel for e in res.events} | {f.sensor for f in scn.fault}
    used |= {f"temp{s.channel}" for s in scn.temperature} | {f"phase{s.channel}" for s in scn.phase}
    used.add("residual")
    if scn.arc:
        used.add("arc")
    chans = [c for c in g.channels if c in used]
    return chans or g.channels[:1]


def _panel(ax: Axes, g: Group, res: Result, syn: Synth, t: np.ndarray, scale_t: float) -> None:
    chans = _channels(g, res)
    _, div = UNITS[chans[0]]
    tt = t / scale_t
    drew_truth = False
    for i, ch in enumerate(chans):
        colour = CHANNEL_COLOURS[i % len(CHANNEL_COLOURS)]
        label = ch if len(chans) > 1 or g.channels[0] != "residual" else "measured"
        if res.trace is not None:
            idx = CHANNEL_NAMES.index(ch)
            y = res.trace[:, idx] / div
            for a, b in _fault_spans(res, ch):
                # The core stops updating a faulty input's value: draw no line there.
                y[(t > a) & (t < b)] = np.nan
            if ch == "arc":
                ax.step(*_reduce(tt, y), where="pre", color=colour, lw=1.4, label=label)
            else:
                ax.plot(*_reduce(tt, y), color=colour, lw=1.4, label=label)
        truth = _truth(ch, syn, t)
        drew_truth = drew_truth or truth is not None
        if truth is not None:
            ax.plot(*_reduce(tt, truth), color=colour, lw=0.8, ls=(0, (4, 3)), alpha=0.6)
    _levels(ax, chans, res)
    _spans(ax, chans, res, scale_t)
    _marks(ax, chans, res, scale_t)
    ax.set_title(g.title, loc="left", fontsize=10)
    ax.set_ylabel(g.unit)
    ax.grid(True, alpha=0.25)
    lo, hi = ax.get_ylim()
    ax.set_ylim(min(0.0, lo), hi + 0.06 * (hi - min(0.0, lo)))  # room for the level labels
    handles, labels = ax.get_legend_handles_labels()
    if drew_truth:
        handles.append(Line2D([], [], color="#666", lw=0.8, ls=(0, (4, 3))))
        labels.append("scenario (true)")
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7)


def _truth(ch: str, syn: Synth, t: np.ndarray) -> np.ndarray | None:
    if ch == "residual" or ch.startswith("phase"):
        return syn.true_levels(ch, t - syn.window_s / 2)  # the window's middle
    if ch.startswith("temp"):
        return syn.temperatures(0, len(t))[:, int(ch[4:])]
    return None


def _levels(ax: Axes, chans: list[str], res: Result) -> None:
    """Set value, the core's decision level and the pre-alarm level, labelled at the right."""
    s = res.scenario.settings
    th = res.thresholds.get(chans[0])
    if th is None:
        return
    _, div = UNITS[chans[0]]
    name = chans[0]
    lines: list[tuple[float, str, str, object]] = []
    if name == "residual":
        lines.append((s["leak_set_ma"], f"set {s['leak_set_ma']} mA", "#d62728", "-"))
        pct = round(100 * th["alarm"] / s["leak_set_ma"])
        lines.append((th["alarm"], f"decision {th['alarm']} mA ({pct} %)", "#d62728", ":"))
    else:
        lines.append((th["alarm"] / div, f"set {th['alarm'] / div:g}", "#d62728", "-"))
    if "pre" in th:
        lines.append((th["pre"] / div, f"pre-alarm {th['pre'] / div:g}", "#ff7f0e", "--"))
    for y, label, colour, ls in lines:
        ax.axhline(y, color=colour, lw=1.0, ls=ls, alpha=0.8)
        ax.annotate(
            label,
            (1.0, y),
            xycoords=("axes fraction", "data"),
            xytext=(-4, 2),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize=7,
            color=colour,
        )


def _spans(ax: Axes, chans: list[str], res: Result, scale_t: float) -> None:
    """Shade latched alarms (alarm -> reset) and reported faults (fault -> fault_clear)."""
    end = res.n_windows * res.window_s
    for ch in chans:
        evs = [e for e in res.events if e.channel == ch]
        for start_kind, stop_kind, colour, alpha in (
            ("alarm", "reset", "#d62728", 0.12),
            ("fault", "fault_clear", "#ffbf00", 0.25),
        ):
            t0 = None
            for e in evs:
                if e.kind == start_kind and t0 is None:
                    t0 = e.t
                elif e.kind == stop_kind and t0 is not None:
                    ax.axvspan(t0 / scale_t, e.t / scale_t, color=colour, alpha=alpha, lw=0)
                    t0 = None
            if t0 is not None:
                ax.axvspan(t0 / scale_t, end / scale_t, color=colour, alpha=alpha, lw=0)
    for t in res.scenario.reset:
        ax.axvline(t / scale_t, color="#000", lw=0.8, ls="-.", alpha=0.5)


def _fault_spans(res: Result, ch: str) -> list[tuple[float, float]]:
    spans, t0 = [], None
    for e in res.events:
        if e.channel == ch and e.kind == "fault" and t0 is None:
            t0 = e.t
        elif e.channel == ch and e.kind == "fault_clear" and t0 is not None:
            spans.append((t0, e.t))
            t0 = None
    if t0 is not None:
        spans.append((t0, float("inf")))
    return spans


def _marks(ax: Axes, chans: list[str], res: Result, scale_t: float) -> None:
    seen: set[str] = set()
    ymax = ax.get_ylim()[1]
    for e in res.events:
        if e.channel not in chans or e.kind not in MARKERS:
            continue
        marker, colour, label = MARKERS[e.kind]
        y = _event_y(e, res, ymax)
        ax.plot(
            e.t / scale_t,
            y,
            marker=marker,
            color=colour,
            ms=8,
            mec="white",
            mew=0.8,
            ls="none",
            zorder=5,
            label=None if e.kind in seen else label,
        )
        seen.add(e.kind)
        if e.kind in ("alarm", "fault"):
            text = "ALARM" if e.kind == "alarm" else f"{FAULT_NAMES[e.value]} fault"
            ax.annotate(
                f"{text} {e.channel}" if len(chans) > 1 else text,
                (e.t / scale_t, y),
                xytext=(5, 5),
                textcoords="offset points",
                fontsize=7,
                color=colour,
                fontweight="bold",
            )


def _event_y(e: SimEvent, res: Result, ymax: float) -> float:
    """Every event sits on its channel's measured curve at the window that raised it (a fault
    or rate-of-rise event's value is a code or a rate, not a point on this axis)."""
    _, div = UNITS[e.channel]
    if res.trace is not None:
        w = min(res.n_windows - 1, max(0, round(e.t / res.window_s) - 1))
        return float(res.trace[w, CHANNEL_NAMES.index(e.channel)]) / div
    if e.kind in ("fault", "fault_clear", "ror"):
        return ymax * 0.9
    return e.value / div


def _reduce(t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most MAX_POINTS per line: min and max of each bucket, so spikes stay visible."""
    if len(t) <= MAX_POINTS:
        return t, y
    k = len(t) // (MAX_POINTS // 2)
    m = (len(t) // k) * k
    tb = t[:m].reshape(-1, k)
    yb = y[:m].reshape(-1, k)
    tt = np.repeat(tb[:, k // 2], 2)
    yy = np.column_stack([yb.min(axis=1), yb.max(axis=1)]).reshape(-1)
    return tt, yy


def _time_unit(end_s: float) -> tuple[float, str]:
    if end_s > 3 * 3600:
        return 3600.0, "h"
    if end_s > 600:
        return 60.0, "min"
    return 1.0, "s"
