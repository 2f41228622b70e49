"""Training mode: scenarios with a known cause become training cases with evidence, answers
are scored and recorded per trainee, and nothing mixes with the real cases."""

from __future__ import annotations

import pytest

from tests.console.conftest import T0, add_event
from tools.console import training as TR
from tools.console.cases import WorkflowError


def test_each_scenario_yields_its_case_with_evidence():
    got = {p.stem: TR.build(p) for p in sorted(TR.SCENARIOS.glob("*.toml")) if p.stem != "answers"}
    assert set(got) == set(TR.answers())
    assert {k: (v["kind"], v["channel"]) for k, v in got.items()} == {
        "loose_joint": ("alarm", "temp0"),
        "insulation_ageing": ("alarm", "residual"),
        "damp": ("alarm", "residual"),
        "appliance": ("alarm", "residual"),
        "natural_leakage": ("alarm", "residual"),
        "broken_lead": ("fault", "temp1"),
    }
    ev = got["appliance"]["evidence"]
    assert len(ev["waveform"]["samples"]) == 400 and ev["waveform"]["units"] == "mA"
    tel = ev["telemetry"]
    assert len(tel["t"]) == len(tel["residual_ma"]) > 100
    # telemetry in mA: 70 mA before the appliance, ~360 mA after
    before = [v for t, v in zip(tel["t"], tel["residual_ma"], strict=True) if t < -10]
    assert 50 < max(before) < 100
    lj = got["loose_joint"]["evidence"]["telemetry"]
    assert max(v for v in lj["temp_c"][0] if v is not None) > 80  # in degC
    assert lj["line_a"][0][-1] == pytest.approx(18, abs=1)  # in A


def test_answers_scored_and_recorded_never_mixed_with_real_cases(db, store):
    assert TR.generate(db, now=T0) == 6
    assert TR.generate(db, now=T0) == 6  # rebuilt in place
    cs = TR.cases(db)
    assert len(cs) == 6
    store.sync()
    assert store.open_cases() == [] and store.accuracy("county") == []  # no training case there
    by = {c["scenario"]: c["id"] for c in cs}
    shown = TR.case(db, by["natural_leakage"])
    assert "cause" not in shown and "verdict" not in shown  # no answer on the trainee's page
    assert shown["reading"].endswith("(threshold 270 mA)")
    fb = TR.answer(db, "tom", by["natural_leakage"], "nuisance", "other", "adjust_set_value")
    assert fb["score"] == 3 and all(fb["marks"].values())
    fb = TR.answer(db, "tom", by["loose_joint"], "real_hazard", "overload", "reduce_load")
    assert fb["score"] == 1 and fb["marks"] == {"verdict": True, "cause": False, "handling": False}
    assert fb["known"]["cause"] == "loose joint"
    TR.answer(db, "tom", by["loose_joint"], "real_hazard", "loose_joint", "repair_connection")
    TR.answer(db, "ann", by["broken_lead"], "real_hazard", "damp", "dry_and_seal")
    recs = {r["trainee"]: r for r in TR.records(db)}
    assert (recs["tom"]["answers"], recs["tom"]["points"], recs["tom"]["max_points"]) == (3, 7, 9)
    lj = recs["tom"]["cases"][by["loose_joint"]]
    assert (lj["tries"], lj["best"], lj["last"]) == (2, 3, 3)
    assert recs["ann"]["points"] == 0
    assert [r["trainee"] for r in TR.records(db, "ann")] == ["ann"]
    with pytest.raises(WorkflowError):
        TR.answer(db, "tom", by["damp"], "real_hazard", "damp", "pray")
    with pytest.raises(LookupError):
        TR.answer(db, "tom", 999, "real_hazard", "damp", "dry_and_seal")
    # and a real alarm never shows up in training
    add_event(db, 100001, "alarm", "residual", 320, 300, T0)
    store.sync()
    assert len(TR.cases(db)) == 6 and len(store.open_cases()) == 1
