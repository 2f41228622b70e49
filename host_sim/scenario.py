"""Scenario files: the TOML contract QA writes by hand, parsed and checked into plain data.

The format is a contract (issue 4): files that load today must keep loading unchanged, so new
keys and sections may be added but existing ones never change meaning. Every mistake is
reported as a ScenarioError naming the file, the line (when it can be found) and the key, and
saying what is wrong; detector settings are checked by the firmware's own efd.config (there is
no second copy of the ranges here). docs/simulator.md is the reference for every key.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from efd import config
from efd.names import CHANNEL_NAMES

# A week keeps every event time inside the core's 2^29 ms clock-difference range (6.2 days)
# and the per-window trace for the plot below a few hundred MB.
MAX_DURATION_S = 6 * 86400
HARMONIC_MAX = 19  # 40 samples per cycle: the 20th harmonic is Nyquist (efd/rms.py)
TEMP_RANGE_C = (-60.0, 300.0)  # the NTC model covers this; beyond it the ADC is at a rail anyway
SENSORS = CHANNEL_NAMES[:-1]  # residual, temp0..3, phase0..2 (the arc input has no lead to break)


class ScenarioError(Exception):
    """A user mistake in a scenario file: printed as `file:line: where: what`, exit status 2."""

    def __init__(self, path: str, what: str, line: int | None = None, where: str = ""):
        self.path = path
        self.line = line
        self.where = where
        self.what = what
        loc = path if line is None else f"{path}:{line}"
        super().__init__(f"{loc}: {where + ': ' if where else ''}{what}")


@dataclass(frozen=True)
class CtSegment:
    """Residual (mA) or phase (A) current: true RMS `level` at t0, ramping to `end_level`."""

    channel: int  # 0 for the residual input, 0..2 for phases
    t0: float
    t1: float
    level: float
    end_level: float  # == level when there is no ramp
    harmonics: dict[int, float] = field(default_factory=dict)  # order -> rel. amplitude
    noise: float = 0.0  # RMS of Gaussian noise on the line, same units as level
    steps: int = 0  # > 0: the ramp is a staircase of this many equal steps


@dataclass(frozen=True)
class TempSegment:
    channel: int
    t0: float
    t1: float
    start_c: float
    end_c: float


@dataclass(frozen=True)
class FaultSegment:
    sensor: str  # residual | temp0..3 | phase0..2
    kind: str  # open | short
    t0: float
    t1: float


@dataclass(frozen=True)
class ArcSegment:
    t0: float
    t1: float
    half_cycles_per_s: int


@dataclass(frozen=True)
class AdcModel:
    """The front end between the wire and the codes the firmware sees (docs/hardware.md)."""

    bias: float = 2048.0  # CT bias point, ADC counts
    noise_counts: float = 1.0  # converter noise RMS, counts (every channel)
    residual_ma_per_count: float | None = None  # None: what config res_gain_q12 says
    phase_a_per_count: float | None = None  # None: what config phase_gain_q12 says


@dataclass
class Scenario:
    path: str
    name: str
    duration_s: float
    mains_hz: int = 50
    seed: int = 0
    clock_start_ms: int = 0
    description: str = ""
    config: dict[str, int] = field(default_factory=dict)  # as written (validated)
    settings: dict[str, int] = field(default_factory=dict)  # complete, as the detector uses it
    adc: AdcModel = field(default_factory=AdcModel)
    residual: list[CtSegment] = field(default_factory=list)
    phase: list[CtSegment] = field(default_factory=list)
    temperature: list[TempSegment] = field(default_factory=list)
    fault: list[FaultSegment] = field(default_factory=list)
    arc: list[ArcSegment] = field(default_factory=list)
    reset: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def residual_units_per_count(self) -> float:
        g = self.adc.residual_ma_per_count
        return g if g is not None else self.settings["res_gain_q12"] / 4096.0

    def phase_units_per_count(self) -> float:
        # The core's phase unit is 0.01 A, so its Q12 gain is 0.01 A per count * 4096.
        g = self.adc.phase_a_per_count
        return g if g is not None else self.settings["phase_gain_q12"] / 4096.0 / 100.0


# -- key specs ------------------------------------------------------------------------------
# Each key: (kind, required). Kinds: "num" (int or float, finite), "int", "str", "table".
_Spec = dict[str, tuple[str, bool]]

SCENARIO_KEYS: _Spec = {
    "name": ("str", False),
    "description": ("str", False),
    "duration_s": ("num", True),
    "mains_hz": ("int", False),
    "seed": ("int", False),
    "clock_start_ms": ("int", False),  # the detector clock at t = 0 (exercises 2^30 wrap)
}
ADC_KEYS: _Spec = {
    "bias": ("num", False),
    "noise_counts": ("num", False),
    "residual_ma_per_count": ("num", False),
    "phase_a_per_count": ("num", False),
}
_TIME: _Spec = {"t0": ("num", True), "t1": ("num", True)}
RESIDUAL_KEYS: _Spec = {
    **_TIME,
    "rms_ma": ("num", True),
    "end_rms_ma": ("num", False),
    "harmonics": ("table", False),
    "noise_ma": ("num", False),
    "steps": ("int", False),
}
PHASE_KEYS: _Spec = {
    "channel": ("int", False),
    **_TIME,
    "rms_a": ("num", True),
    "end_rms_a": ("num", False),
    "harmonics": ("table", False),
    "noise_a": ("num", False),
    "steps": ("int", False),
}
TEMPERATURE_KEYS: _Spec = {
    "channel": ("int", False),
    **_TIME,
    "start_c": ("num", True),
    "end_c": ("num", False),
}
FAULT_KEYS: _Spec = {"sensor": ("str", True), "kind": ("str", True), **_TIME}
ARC_KEYS: _Spec = {**_TIME, "half_cycles_per_s": ("int", True)}
RESET_KEYS: _Spec = {"t": ("num", True)}

TABLES = {"scenario": SCENARIO_KEYS, "config": None, "adc": ADC_KEYS}
ARRAYS = {
    "residual": RESIDUAL_KEYS,
    "phase": PHASE_KEYS,
    "temperature": TEMPERATURE_KEYS,
    "fault": FAULT_KEYS,
    "arc": ARC_KEYS,
    "reset": RESET_KEYS,
}


# -- loading --------------------------------------------------------------------------------
def load(path: str | Path) -> Scenario:
    """Read and check a scenario file. Raises ScenarioError (never anything else for bad input)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(str(p), "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(str(p), f"cannot read: {e}") from None
    return loads(text, str(p))


_TOML_POS = re.compile(r"^(?P<msg>.*?) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def loads(text: str, path: str = "<scenario>") -> Scenario:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = _TOML_POS.match(str(e))
        if m:
            raise ScenarioError(
                path, f"TOML syntax: {m['msg']} (column {m['col']})", int(m["line"])
            ) from None
        raise ScenarioError(path, f"TOML syntax: {e}") from None
    return _Checker(path, text).scenario(doc)


class _Checker:
    def __init__(self, path: str, text: str):
        self.path = path
        self.lines = _key_lines(text)

    # errors ----------------------------------------------------------------------------------
    def fail(self, what: str, section: str = "", index: int | None = None, key: str | None = None):
        line = self.lines.get((section, index, key)) or self.lines.get((section, index, None))
        raise ScenarioError(self.path, what, line, _where(section, index, key))

    # the document ----------------------------------------------------------------------------
    def scenario(self, doc: dict[str, Any]) -> Scenario:
        known = [*TABLES, *ARRAYS]
        for name, val in doc.items():
            if name not in known:
                if isinstance(val, dict | list):
                    self.fail(
                        f"unknown section{_suggest(name, known)}; known: {', '.join(known)}", name
                    )
                self.fail(f"unknown top-level key{_suggest(name, known)}", "", None, name)
            if name in TABLES and not isinstance(val, dict):
                self.fail(f"must be a single table, written [{name}]", name)
            if name in ARRAYS and not isinstance(val, list):
                self.fail(f"must be a list of segments, written [[{name}]]", name)
        if "scenario" not in doc:
            raise ScenarioError(self.path, "missing the [scenario] table (duration_s is required)")
        head = self.fields(doc["scenario"], SCENARIO_KEYS, "scenario")
        duration = head["duration_s"]
        if not 0 < duration <= MAX_DURATION_S:
            self.fail(
                f"must be > 0 and <= {MAX_DURATION_S} s, got {duration}",
                "scenario",
                None,
                "duration_s",
            )
        mains = head.get("mains_hz", 50)
        if mains not in (50, 60):
            self.fail(f"must be 50 or 60, got {mains}", "scenario", None, "mains_hz")
        seed = head.get("seed", 0)
        if seed < 0:
            self.fail(f"must be >= 0, got {seed}", "scenario", None, "seed")
        clock = head.get("clock_start_ms", 0)
        if not 0 <= clock < 1 << 30:
            self.fail(
                "must be in 0 .. 2^30 - 1 (the core's ms clock wraps at 2^30)",
                "scenario",
                None,
                "clock_start_ms",
            )
        scn = Scenario(
            path=self.path,
            name=head.get("name", Path(self.path).stem),
            duration_s=float(duration),
            mains_hz=mains,
            seed=seed,
            clock_start_ms=clock,
            description=head.get("description", ""),
        )
        self.settings(doc.get("config", {}), scn)
        scn.adc = self.adc(doc.get("adc", {}))
        scn.residual = [
            self.ct(seg, "residual", i, "rms_ma", "end_rms_ma", "noise_ma", scn)
            for i, seg in enumerate(self.segments(doc, "residual"))
        ]
        scn.phase = [
            self.ct(seg, "phase", i, "rms_a", "end_rms_a", "noise_a", scn)
            for i, seg in enumerate(self.segments(doc, "phase"))
        ]
        scn.temperature = [
            self.temp(seg, i, scn) for i, seg in enumerate(self.segments(doc, "temperature"))
        ]
        scn.fault = [self.fault(seg, i, scn) for i, seg in enumerate(self.segments(doc, "fault"))]
        scn.arc = [self.arc(seg, i, scn) for i, seg in enumerate(self.segments(doc, "arc"))]
        scn.reset = sorted(
            self.instant(self.fields(seg, RESET_KEYS, "reset", i), "reset", i, scn)
            for i, seg in enumerate(self.segments(doc, "reset"))
        )
        self.no_overlaps(scn)
        self.warn_disabled(scn)
        return scn

    def segments(self, doc: dict[str, Any], name: str) -> list[dict[str, Any]]:
        segs = doc.get(name, [])
        for i, seg in enumerate(segs):
            if not isinstance(seg, dict):
                self.fail(f"each entry must be a table, written [[{name}]]", name, i)
        return segs

    def fields(self, table: dict[str, Any], spec: _Spec, section: str, index: int | None = None):
        out: dict[str, Any] = {}
        for key, val in table.items():
            if key not in spec:
                self.fail(
                    f"unknown key{_suggest(key, list(spec))}; allowed: {', '.join(spec)}",
                    section,
                    index,
                    key,
                )
            kind, _ = spec[key]
            out[key] = self.typed(val, kind, section, index, key)
        for key, (_, required) in spec.items():
            if required and key not in table:
                self.fail(f"missing required key '{key}'", section, index)
        return out

    def typed(self, val: Any, kind: str, section: str, index: int | None, key: str) -> Any:
        def bad(expected: str) -> None:
            self.fail(f"must be {expected}, got {_toml_repr(val)}", section, index, key)

        if kind == "num":
            if isinstance(val, bool) or not isinstance(val, int | float):
                bad("a number")
            if not math.isfinite(val):
                bad("a finite number")
        elif kind == "int":
            if isinstance(val, bool) or not isinstance(val, int):
                bad("a whole number")
        elif kind == "str":
            if not isinstance(val, str):
                bad("a string")
        elif kind == "table" and not isinstance(val, dict):
            bad("an inline table such as { 3 = 0.3, 5 = 0.1 }")
        return val

    # sections ----------------------------------------------------------------------------------
    def settings(self, table: dict[str, Any], scn: Scenario) -> None:
        merged = dict(table)
        if "mains_hz" in merged and merged["mains_hz"] != scn.mains_hz:
            self.fail(
                f"{merged['mains_hz']!r} contradicts [scenario] mains_hz = {scn.mains_hz} "
                "(set it in one place)",
                "config",
                None,
                "mains_hz",
            )
        merged["mains_hz"] = scn.mains_hz
        try:
            # The firmware's own validation: same names, ranges and messages as on the device.
            scn.settings = config.make(merged)
        except config.ConfigError as e:
            extra = ""
            if e.reason == "unknown setting":
                extra = _suggest(e.key, list(config.NAMES))
            self.fail(e.reason + extra, "config", None, e.key)
        scn.config = dict(table)

    def adc(self, table: dict[str, Any]) -> AdcModel:
        f = self.fields(table, ADC_KEYS, "adc")
        bias = f.get("bias", 2048.0)
        if not 0 <= bias <= 4095:
            self.fail(f"must be in 0..4095 ADC counts, got {bias}", "adc", None, "bias")
        for key in ("noise_counts",):
            if f.get(key, 0) < 0:
                self.fail(f"must be >= 0, got {f[key]}", "adc", None, key)
        for key in ("residual_ma_per_count", "phase_a_per_count"):
            if key in f and f[key] <= 0:
                self.fail(f"must be > 0, got {f[key]}", "adc", None, key)
        return AdcModel(
            bias=float(bias),
            noise_counts=float(f.get("noise_counts", 1.0)),
            residual_ma_per_count=f.get("residual_ma_per_count"),
            phase_a_per_count=f.get("phase_a_per_count"),
        )

    def span(self, f: dict[str, Any], section: str, i: int, scn: Scenario) -> tuple[float, float]:
        t0, t1 = float(f["t0"]), float(f["t1"])
        if t0 < 0:
            self.fail(f"must be >= 0 s, got {f['t0']}", section, i, "t0")
        if t1 <= t0:
            self.fail(f"must be after t0 (t0 = {f['t0']}, t1 = {f['t1']})", section, i, "t1")
        if t1 > scn.duration_s + 1e-9:
            self.fail(
                f"{f['t1']} is after the end of the scenario (duration_s = {scn.duration_s:g})",
                section,
                i,
                "t1",
            )
        return t0, t1

    def instant(self, f: dict[str, Any], section: str, i: int, scn: Scenario) -> float:
        t = float(f["t"])
        if not 0 <= t <= scn.duration_s:
            self.fail(f"must be within 0..{scn.duration_s:g} s, got {f['t']}", section, i, "t")
        return t

    def nonneg(self, f: dict[str, Any], key: str, section: str, i: int) -> None:
        if key in f and f[key] < 0:
            self.fail(f"must be >= 0, got {f[key]}", section, i, key)

    def ct(self, seg, section, i, level_key, end_key, noise_key, scn: Scenario) -> CtSegment:
        spec = RESIDUAL_KEYS if section == "residual" else PHASE_KEYS
        f = self.fields(seg, spec, section, i)
        t0, t1 = self.span(f, section, i, scn)
        for key in (level_key, end_key, noise_key):
            self.nonneg(f, key, section, i)
        channel = f.get("channel", 0)
        if not 0 <= channel <= 2:
            self.fail(f"must be 0, 1 or 2, got {channel}", section, i, "channel")
        harmonics = self.harmonics(f.get("harmonics", {}), section, i)
        steps = f.get("steps", 0)
        if steps and (steps < 2 or end_key not in f):
            self.fail(
                f"needs {end_key} and must be >= 2 (a staircase from {level_key} to "
                f"{end_key}), got {steps}",
                section,
                i,
                "steps",
            )
        if steps < 0:
            self.fail(f"must be >= 2, got {steps}", section, i, "steps")
        level = float(f[level_key])
        return CtSegment(
            channel=channel,
            t0=t0,
            t1=t1,
            level=level,
            end_level=float(f.get(end_key, level)),
            harmonics=harmonics,
            noise=float(f.get(noise_key, 0.0)),
            steps=steps,
        )

    def harmonics(self, table: dict[str, Any], section: str, i: int) -> dict[int, float]:
        out: dict[int, float] = {}
        for k, v in table.items():
            if not k.isdigit() or not 2 <= int(k) <= HARMONIC_MAX:
                self.fail(
                    f"harmonic order {k!r} must be a whole number 2..{HARMONIC_MAX} (the "
                    "20th is the Nyquist frequency at 40 samples per cycle)",
                    section,
                    i,
                    "harmonics",
                )
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 10:
                self.fail(
                    f"harmonic {k}: amplitude relative to the fundamental must be a number "
                    f"0..10, got {_toml_repr(v)}",
                    section,
                    i,
                    "harmonics",
                )
            out[int(k)] = float(v)
        return out

    def temp(self, seg: dict[str, Any], i: int, scn: Scenario) -> TempSegment:
        f = self.fields(seg, TEMPERATURE_KEYS, "temperature", i)
        t0, t1 = self.span(f, "temperature", i, scn)
        channel = f.get("channel", 0)
        if not 0 <= channel <= 3:
            self.fail(f"must be 0..3, got {channel}", "temperature", i, "channel")
        lo, hi = TEMP_RANGE_C
        for key in ("start_c", "end_c"):
            if key in f and not lo <= f[key] <= hi:
                self.fail(f"must be in {lo:g}..{hi:g} degC, got {f[key]}", "temperature", i, key)
        start = float(f["start_c"])
        return TempSegment(channel, t0, t1, start, float(f.get("end_c", start)))

    def fault(self, seg: dict[str, Any], i: int, scn: Scenario) -> FaultSegment:
        f = self.fields(seg, FAULT_KEYS, "fault", i)
        t0, t1 = self.span(f, "fault", i, scn)
        if f["sensor"] not in SENSORS:
            self.fail(
                f"must be one of {', '.join(SENSORS)}, got {f['sensor']!r}", "fault", i, "sensor"
            )
        if f["kind"] not in ("open", "short"):
            self.fail(f"must be 'open' or 'short', got {f['kind']!r}", "fault", i, "kind")
        return FaultSegment(f["sensor"], f["kind"], t0, t1)

    def arc(self, seg: dict[str, Any], i: int, scn: Scenario) -> ArcSegment:
        f = self.fields(seg, ARC_KEYS, "arc", i)
        t0, t1 = self.span(f, "arc", i, scn)
        n = f["half_cycles_per_s"]
        if not 0 <= n <= 2 * scn.mains_hz:
            self.fail(
                f"must be 0..{2 * scn.mains_hz} (two half-cycles per mains cycle), got {n}",
                "arc",
                i,
                "half_cycles_per_s",
            )
        return ArcSegment(t0, t1, n)

    def no_overlaps(self, scn: Scenario) -> None:
        """Two segments driving the same input at once is ambiguous: refuse rather than guess."""
        groups: list[tuple[str, list[Any], Callable[[Any], Any]]] = [
            ("residual", scn.residual, lambda s: 0),
            ("phase", scn.phase, lambda s: s.channel),
            ("temperature", scn.temperature, lambda s: s.channel),
            ("fault", scn.fault, lambda s: s.sensor),
            ("arc", scn.arc, lambda s: 0),
        ]
        for section, segs, key in groups:
            order = sorted(range(len(segs)), key=lambda j: (key(segs[j]), segs[j].t0))
            for a, b in itertools.pairwise(order):
                sa, sb = segs[a], segs[b]
                if key(sa) == key(sb) and sb.t0 < sa.t1 - 1e-9:
                    self.fail(
                        f"overlaps [[{section}]] #{a + 1} ({sa.t0:g}..{sa.t1:g} s) on the "
                        "same input; segments are half-open [t0, t1) and may only touch",
                        section,
                        b,
                        "t0",
                    )

    def warn_disabled(self, scn: Scenario) -> None:
        s = scn.settings
        for seg in scn.phase:
            if seg.channel >= s["phase_channels"]:
                scn.warnings.append(
                    f"phase{seg.channel} is driven but config phase_channels = "
                    f"{s['phase_channels']}: the detector ignores it"
                )
        for t in scn.temperature:
            if t.channel >= s["temp_channels"]:
                scn.warnings.append(
                    f"temp{t.channel} is driven but config temp_channels = "
                    f"{s['temp_channels']}: the detector ignores it"
                )
        if scn.arc and not s["arc_enabled"]:
            scn.warnings.append("[[arc]] segments given but config arc_enabled = 0")


# -- helpers ---------------------------------------------------------------------------------
def _where(section: str, index: int | None, key: str | None) -> str:
    if not section:
        return key or ""
    head = f"[{section}]" if index is None else f"[[{section}]] #{index + 1}"
    return f"{head} {key}" if key else head


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _toml_repr(val: Any) -> str:
    if isinstance(val, bool):
        return "true" if val else "false"
    if isinstance(val, str):
        return f'"{val}" (a string)'
    if isinstance(val, dict):
        return "a table"
    if isinstance(val, list):
        return "an array"
    return repr(val)


_HEADER2 = re.compile(r"^\[\[\s*([A-Za-z0-9_-]+)\s*\]\]")
_HEADER1 = re.compile(r"^\[\s*([A-Za-z0-9_-]+)\s*\]")
_KEY = re.compile(r"^(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)\s*=")


def _key_lines(text: str) -> dict[tuple[str, int | None, str | None], int]:
    """(section, index of [[section]] or None, key or None) -> first line number (1-based).

    Good enough for hand-written files: tomllib does not report where a parsed value came from,
    and a message pointing at the line is what makes a refusal quick to fix.
    """
    out: dict[tuple[str, int | None, str | None], int] = {}
    counts: dict[str, int] = {}
    cur: tuple[str, int | None] = ("", None)
    for no, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        m = _HEADER2.match(s)
        if m:
            idx = counts.get(m[1], 0)
            counts[m[1]] = idx + 1
            cur = (m[1], idx)
            out.setdefault((m[1], idx, None), no)
            continue
        m = _HEADER1.match(s)
        if m:
            cur = (m[1], None)
            out.setdefault((m[1], None, None), no)
            continue
        m = _KEY.match(s)
        if m:
            out.setdefault((cur[0], cur[1], m[1].strip("\"'")), no)
    return out
