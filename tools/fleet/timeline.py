"""Event timelines from scenario files, computed by the firmware's own Detector (host_sim)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from efd import names

SCENARIOS = Path(__file__).resolve().parent / "scenarios"


@dataclass(frozen=True)
class TimedEvent:
    t: float  # seconds from the scenario's start
    kind: int  # efd.events codes: the wire values
    channel: int
    value: int
    threshold: int


@dataclass(frozen=True)
class Timeline:
    name: str
    duration_s: float
    events: tuple[TimedEvent, ...]


def default_paths() -> list[Path]:
    return sorted(SCENARIOS.glob("*.toml"))


def load(path: str | Path) -> Timeline:
    """Run one scenario through the real detector (host_sim.simulate) and keep its events.
    Raises host_sim.scenario.ScenarioError for a bad file."""
    from host_sim import scenario, simulate

    scn = scenario.load(path)
    res = simulate.run(scn)
    out = tuple(
        TimedEvent(
            e.t,
            names.KIND_NAMES.index(e.kind),
            names.CHANNEL_NAMES.index(e.channel),
            e.value,
            e.threshold,
        )
        for e in res.events
    )
    return Timeline(scn.name, scn.duration_s, out)
