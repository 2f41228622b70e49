"""`python -m tools.twin`: user mistakes get a message and an exit status, never a traceback;
a run writes host_sim's JSONL fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.twin.__main__ import main

HERE = Path(__file__).resolve().parent


def test_missing_scenario_is_a_message(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in capsys.readouterr().err


def test_reference_out_of_range_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", str(HERE / "selftest.toml"), "--vref-mv", "500"])
    assert e.value.code == 2
    assert "1000-1200 mV" in capsys.readouterr().err


@pytest.mark.micropython
def test_run_writes_host_sim_fields_and_figures(tmp_path, capsys):
    out = tmp_path / "ev.jsonl"
    scn = HERE.parent / "conformance" / "gb14287_2_at_set_alarms.toml"
    assert main(["run", str(scn), "--events", str(out), "--json"]) == 0
    figs = json.loads(capsys.readouterr().out)
    assert figs["result"] == "end" and figs["late"] == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    alarm = next(e for e in events if e["kind"] == "alarm")
    assert set(alarm) == {"t", "kind", "channel", "value", "threshold", "units"}
    assert alarm["channel"] == "residual" and alarm["units"] == "mA"
