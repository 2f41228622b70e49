"""Training in alarm triage (docs/console.md, "Training").

Each scenario in host_sim/scenarios/training/ is run through the firmware's own detection code
(host_sim.simulate.run); its first alarm or fault becomes a training case carrying the same
evidence a real case shows (a waveform and the telemetry around the alarm, in physical units:
tools.console.evidence), and the known answer from answers.toml (verdict, cause, handling).
The trainee classifies the case and chooses the handling; one point each for verdict, cause
and handling; every answer is kept per trainee.

Training cases live in `training_cases` / `training_answers` only: the real case tables, the
board, the accuracy and handling figures never read them, and the training pages never read
the real ones.
"""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from host_sim import scenario as S
from host_sim import simulate
from host_sim.synth import Synth
from tools.console.cases import CASE_KINDS, CAUSES, VERDICTS, WorkflowError
from tools.console.dbx import Database
from tools.gateway import units

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "host_sim" / "scenarios" / "training"
HANDLING = {
    "repair_connection": "re-terminate and torque the joint",
    "replace_insulation": "replace the cable (insulation)",
    "dry_and_seal": "dry out and seal against water",
    "isolate_appliance": "isolate the appliance and have it repaired",
    "reduce_load": "reduce the load / split the circuit",
    "adjust_set_value": "raise the set value (nuisance rule), no repair",
    "repair_sensor": "repair the sensor lead, then reset",
}
TELEMETRY_EVERY_S = 1.0
WAVE_WINDOWS = 2  # two 200-sample windows (200 ms at 50 Hz) ending at the alarm


class TrainingError(ValueError):
    pass


def answers(directory: Path = SCENARIOS) -> dict[str, dict[str, str]]:
    try:
        doc = tomllib.loads((directory / "answers.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise TrainingError(f"{directory}/answers.toml: {e}") from None
    for name, a in doc.items():
        if (
            a.get("verdict") not in VERDICTS
            or a.get("cause") not in CAUSES
            or a.get("handling") not in HANDLING
        ):
            raise TrainingError(f"answers.toml [{name}]: bad verdict, cause or handling")
    return doc


def build(path: Path) -> dict[str, Any]:
    """Run one scenario; the case it yields: channel, kind, value, threshold, evidence."""
    scn = S.load(path)
    res = simulate.run(scn, trace=True)
    first = next((e for e in res.events if e.kind in CASE_KINDS), None)
    if first is None:
        raise TrainingError(f"{path.name}: raises no alarm or fault")
    assert res.trace is not None
    at = first.t
    step = max(1, round(TELEMETRY_EVERY_S / res.window_s))
    idx = np.arange(step - 1, res.n_windows, step)
    tr = res.trace[idx]
    t = [float((i + 1) * res.window_s - at) for i in idx]

    def col(c: int, div: float) -> list[float | None]:
        return [float(v) / div for v in tr[:, c]]

    tel: dict[str, Any] = {
        "t": t,
        "residual_ma": col(0, 1),
        "temp_c": [
            col(1 + i, 10) if i < scn.settings.get("temp_channels", 4) else [None] * len(t)
            for i in range(4)
        ],
        "line_a": [
            col(5 + i, 100) if i < scn.settings.get("phase_channels", 3) else [None] * len(t)
            for i in range(3)
        ],
    }
    # The waveform: the residual current of the windows ending at the alarm (DC offset removed),
    # what a SNAPSHOT of the residual channel holds.
    syn = Synth(scn)
    w1 = min(res.n_windows, max(WAVE_WINDOWS, round(at / res.window_s)))
    codes = syn.ct_codes("residual", w1 - WAVE_WINDOWS, w1).astype(float).ravel()
    ma = (codes - codes.mean()) * scn.residual_units_per_count()
    wave = {
        "channel": "residual",
        "units": "mA",
        "rate_hz": syn.fs,
        "trigger": len(ma) // 2,
        "samples": [round(float(x), 1) for x in ma],
        "complete": True,
    }
    return {
        "channel": first.channel,
        "kind": first.kind,
        "value": first.value,
        "threshold": first.threshold,
        "evidence": {"telemetry": tel, "waveform": wave},
        "set_ma": scn.settings.get("leak_set_ma"),
        "set_c": scn.settings.get("temp_set_c"),
    }


def generate(db: Database, directory: Path = SCENARIOS, now: float | None = None) -> int:
    """(Re)build the training cases from the scenarios; returns how many. Answers given so far
    stay (a rebuilt case keeps its id when its scenario keeps its name)."""
    ans = answers(directory)
    now = time.time() if now is None else now
    n = 0
    for name, a in sorted(ans.items()):
        path = directory / f"{name}.toml"
        try:
            case = build(path)
        except S.ScenarioError as e:
            raise TrainingError(str(e)) from None
        ev = dict(case["evidence"], set_ma=case["set_ma"], set_c=case["set_c"])
        with db.tx():
            row = db.execute("SELECT id FROM training_cases WHERE scenario = ?", (name,)).fetchone()
            vals = (
                a.get("title", name),
                a["cause"],
                a["verdict"],
                a["handling"],
                case["channel"],
                case["kind"],
                case["value"],
                case["threshold"],
                json.dumps(ev),
                now,
            )
            if row is None:
                db.execute(
                    "INSERT INTO training_cases(title, cause, verdict, handling, channel, kind, "
                    "value, threshold, evidence, created, scenario) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (*vals, name),
                )
            else:
                db.execute(
                    "UPDATE training_cases SET title=?, cause=?, verdict=?, handling=?, "
                    "channel=?, kind=?, value=?, threshold=?, evidence=?, created=? WHERE id=?",
                    (*vals, row[0]),
                )
        n += 1
    return n


def cases(db: Database) -> list[dict[str, Any]]:
    rows = db.execute(
        "SELECT id, scenario, title, channel, kind, value, threshold FROM training_cases "
        "ORDER BY id"
    ).fetchall()
    return [
        dict(id=i, scenario=s, title=t, channel=ch, kind=k, reading=reading(k, ch, v, th))
        for i, s, t, ch, k, v, th in rows
    ]


def reading(kind: str, channel: str, value: int | None, threshold: int | None) -> str:
    p = units.event_physical(kind, channel, value, threshold)
    if "fault" in p:
        return f"sensor fault: {p['fault']}"
    u = {"degC": "°C", "degC/min": "°C/min"}.get(p.get("units") or "", p.get("units") or "")
    return f"{p['value']:g} {u} (threshold {p['threshold']:g} {u})"


def case(db: Database, case_id: int) -> dict[str, Any]:
    """A training case for the trainee: no answer in it."""
    r = db.execute(
        "SELECT id, scenario, title, channel, kind, value, threshold, evidence "
        "FROM training_cases WHERE id = ?",
        (case_id,),
    ).fetchone()
    if r is None:
        raise LookupError(f"no training case {case_id}")
    i, s, t, ch, k, v, th, ev = r
    return dict(
        id=i,
        scenario=s,
        title=t,
        channel=ch,
        kind=k,
        value=v,
        threshold=th,
        reading=reading(k, ch, v, th),
        evidence=json.loads(ev),
    )


def answer(
    db: Database,
    trainee: str,
    case_id: int,
    verdict: str,
    cause: str,
    handling: str,
    now: float | None = None,
) -> dict[str, Any]:
    """Score an answer against the known one (1 point each for verdict, cause, handling),
    store it in the trainee's record and return the feedback."""
    if verdict not in VERDICTS:
        raise WorkflowError("choose a verdict")
    if cause not in CAUSES:
        raise WorkflowError("choose a cause")
    if handling not in HANDLING:
        raise WorkflowError("choose a handling")
    r = db.execute(
        "SELECT verdict, cause, handling, title FROM training_cases WHERE id = ?", (case_id,)
    ).fetchone()
    if r is None:
        raise LookupError(f"no training case {case_id}")
    kv, kc, kh, title = r
    marks = {"verdict": verdict == kv, "cause": cause == kc, "handling": handling == kh}
    score = sum(marks.values())
    now = time.time() if now is None else now
    with db.tx():
        db.execute(
            "INSERT INTO training_answers(trainee, case_id, verdict, cause, handling, score, "
            "max_score, at) VALUES (?,?,?,?,?,?,?,?)",
            (trainee, case_id, verdict, cause, handling, score, 3, now),
        )
    return dict(
        title=title,
        score=score,
        max_score=3,
        marks=marks,
        known=dict(verdict=VERDICTS[kv], cause=CAUSES[kc], handling=HANDLING[kh]),
        given=dict(verdict=VERDICTS[verdict], cause=CAUSES[cause], handling=HANDLING[handling]),
    )


def records(db: Database, trainee: str | None = None) -> list[dict[str, Any]]:
    """Per trainee: answers, points, best and latest score per case."""
    sql = (
        "SELECT a.trainee, a.case_id, t.title, a.score, a.max_score, a.at FROM training_answers a "
        "JOIN training_cases t ON t.id = a.case_id"
    )
    args: tuple = ()
    if trainee is not None:
        sql += " WHERE a.trainee = ?"
        args = (trainee,)
    out: dict[str, dict[str, Any]] = {}
    for who, cid, title, score, mx, at in db.execute(sql + " ORDER BY a.at, a.id", args):
        d = out.setdefault(who, dict(trainee=who, answers=0, points=0, max_points=0, cases={}))
        d["answers"] += 1
        d["points"] += score
        d["max_points"] += mx
        c = d["cases"].setdefault(cid, dict(title=title, tries=0, best=0, last=0, max=mx))
        c["tries"] += 1
        c["best"] = max(c["best"], score)
        c["last"] = score
        d["last_at"] = at
    return [out[k] for k in sorted(out)]
