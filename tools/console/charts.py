"""Server-side SVG charts for the case and detector pages: the SNAPSHOT waveform and recent
telemetry. Plain SVG text (no JavaScript, nothing fetched): the page is the evidence, readable
in any browser and in a screenshot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#ff7f0e")


@dataclass
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    colour: str = ""


@dataclass
class Chart:
    title: str
    x_label: str
    y_label: str
    series: list[Series] = field(default_factory=list)
    hlines: list[tuple[float, str]] = field(default_factory=list)  # (y, label), dashed red
    vlines: list[tuple[float, str]] = field(default_factory=list)  # (x, label), dotted
    width: int = 720
    height: int = 260
    zero: bool = False  # the y axis includes 0 (magnitudes: noise is not blown up)
    min_span: float = 0.0  # the y axis spans at least this much (around the data)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=mag * 10)
    first = math.ceil(lo / step) * step
    out = []
    v = first
    while v <= hi + 1e-9 * step:
        out.append(round(v, 10))
        v += step
    return out


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def render(ch: Chart) -> str:
    W, H = ch.width, ch.height
    left, right, top, bottom = 62, 16, 28, 42
    pw, ph = W - left - right, H - top - bottom
    xs = [x for s in ch.series for x in s.xs]
    ys = [y for s in ch.series for y in s.ys if y is not None] + [y for y, _ in ch.hlines]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" '
        f'height="{H}" role="img" aria-label="{escape(ch.title)}" class="chart">',
        f'<rect x="0" y="0" width="{W}" height="{H}" fill="#fff"/>',
        f'<text x="{left}" y="18" font-size="14" font-weight="bold">{escape(ch.title)}</text>',
    ]
    if not xs or not ys:
        parts.append(
            f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" fill="#666">no data</text></svg>'
        )
        return "".join(parts)
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if ch.zero:
        y0, y1 = min(y0, 0.0), max(y1, 0.0)
    if y1 - y0 < ch.min_span:
        mid = (y0 + y1) / 2
        y0, y1 = mid - ch.min_span / 2, mid + ch.min_span / 2
    if x1 == x0:
        x1 = x0 + 1
    pad = (y1 - y0) * 0.08 or max(abs(y1) * 0.1, 1)
    y0, y1 = y0 - pad, y1 + pad

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    parts.append(
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>'
    )
    for t in _ticks(y0, y1):
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" '
            f'stroke="#eee"/><text x="{left - 6}" y="{py(t) + 4:.1f}" font-size="11" '
            f'text-anchor="end">{_fmt(t)}</text>'
        )
    for t in _ticks(x0, x1, 6):
        parts.append(
            f'<text x="{px(t):.1f}" y="{top + ph + 15}" font-size="11" '
            f'text-anchor="middle">{_fmt(t)}</text>'
        )
    parts.append(
        f'<text x="{left + pw / 2}" y="{H - 6}" font-size="12" text-anchor="middle">'
        f"{escape(ch.x_label)}</text>"
        f'<text x="14" y="{top + ph / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + ph / 2})">{escape(ch.y_label)}</text>'
    )
    for y, label in ch.hlines:
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
            f'stroke="#d62728" stroke-dasharray="6 4"/><text x="{left + pw - 4}" '
            f'y="{py(y) - 4:.1f}" font-size="11" fill="#d62728" text-anchor="end">'
            f"{escape(label)}</text>"
        )
    for x, label in ch.vlines:
        if x0 <= x <= x1:
            right = px(x) > left + pw - 8 * len(label) - 6  # label left of the line
            tx, anchor = (px(x) - 3, "end") if right else (px(x) + 3, "start")
            parts.append(
                f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top}" y2="{top + ph}" '
                f'stroke="#555" stroke-dasharray="2 3"/><text x="{tx:.1f}" y="{top + 12}" '
                f'font-size="11" fill="#555" text-anchor="{anchor}">{escape(label)}</text>'
            )
    lx = left + 8
    for i, s in enumerate(ch.series):
        colour = s.colour or COLOURS[i % len(COLOURS)]
        pts = [
            f"{px(x):.1f},{py(y):.1f}" for x, y in zip(s.xs, s.ys, strict=False) if y is not None
        ]
        if pts:
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" '
                f'points="{" ".join(pts)}"/>'
            )
        parts.append(
            f'<rect x="{lx}" y="{top + 6}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{lx + 14}" y="{top + 15}" font-size="11">{escape(s.label)}</text>'
        )
        lx += 24 + 7 * len(s.label)
    parts.append("</svg>")
    return "".join(parts)
