"""The simulator CLI and scenario loader as QA meets them: messages for mistakes (file, line,
key, what is wrong; exit 2, no traceback), --help, the JSONL and PNG outputs, reproducibility."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from host_sim import cli, simulate
from host_sim.scenario import ScenarioError, load, loads

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "host_sim" / "scenarios" / "demo.toml"
GOOD = """\
[scenario]
name = "ok"
duration_s = 10

[[residual]]
t0 = 0
t1 = 10
rms_ma = 100
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


# (file text, line, words the message must contain)
BAD = [
    ("[scenario]\nduration_s = 10\n[[residual]]\nt0 = 5\nt1 = 3\nrms_ma = 1\n", 5, ["t1", "t0"]),
    ("[scenario]\nduration_s = 10\n[config]\nleak_set_ma = 5000\n", 4, ["leak_set_ma", "20..1000"]),
    ("[scenario]\nduration_s = 10\n[config]\nleak_set = 300\n", 4, ["unknown", "leak_set_ma"]),
    ("[scenario]\nduration_s = 10\n[sensors]\nx = 1\n", 3, ["unknown section", "sensors"]),
    ('[scenario]\nduration_s = "10"\n', 2, ["duration_s", "number", "string"]),
    ("[scenario]\nduration_s = 10\n[[residual]]\nt0 = 0\nt1 = 3\nrms_mA = 1\n", 6, ["rms_ma"]),
    ("[scenario]\nduration_s = 10\nx = = 3\n", 3, ["TOML"]),
    ("[scenario]\nduration_s = 10\n[[residual]]\nt0 = 0\nt1 = 3\n", 3, ["rms_ma", "missing"]),
    (
        "[scenario]\nduration_s = 10\n[[fault]]\nsensor = 'temp7'\nkind = 'open'\nt0 = 0\nt1 = 1\n",
        4,
        ["sensor", "temp0"],
    ),
    (
        "[scenario]\nduration_s = 10\n[[temperature]]\nchannel = 0\nt0 = 0\nt1 = 20\nstart_c = 1\n",
        6,
        ["after the end", "duration_s"],
    ),
    (
        "[scenario]\nduration_s = 10\n[[residual]]\nt0 = 0\nt1 = 5\nrms_ma = 1\n"
        "[[residual]]\nt0 = 4\nt1 = 8\nrms_ma = 2\n",
        8,
        ["overlaps"],
    ),
    (
        "[scenario]\nduration_s = 10\n[[residual]]\nt0 = 0\nt1 = 5\nrms_ma = 1\n"
        "harmonics = { 20 = 0.1 }\n",
        7,
        ["harmonic", "Nyquist"],
    ),
    ("[scenario]\nduration_s = 10\nmains_hz = 55\n", 3, ["mains_hz", "50 or 60"]),
    ("[scenario]\nduration_s = 10\n[residual]\nt0 = 0\n", 3, ["[[residual]]"]),
    ("[config]\nleak_set_ma = 300\n", None, ["[scenario]"]),
]


@pytest.mark.parametrize(("text", "line", "words"), BAD)
def test_bad_file_is_refused_with_file_line_and_reason(tmp_path, capsys, text, line, words):
    p = write(tmp_path, text)
    assert cli.main(["run", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    loc = f"{p}:{line}:" if line else f"{p}:"
    assert loc in err, err
    for w in words:
        assert w in err, (w, err)
    with pytest.raises(ScenarioError):
        load(p)


def test_missing_file_and_unwritable_output_exit_2(tmp_path, capsys):
    assert cli.main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "no such file" in capsys.readouterr().err
    p = write(tmp_path, GOOD)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["run", str(p), "--events", str(blocker / "x.jsonl")]) == 2
    assert "cannot write" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--help"], "docs/simulator.md"),
        (["run", "--help"], "threshold"),
        (["check", "--help"], ""),
    ],
)
def test_help_everywhere(args, mentions):
    r = subprocess.run(
        [sys.executable, "-m", "host_sim", *args], capture_output=True, text=True, cwd=ROOT
    )
    assert r.returncode == 0 and "usage:" in r.stdout and mentions in r.stdout, r.stderr


def test_run_writes_parseable_jsonl_png_table_and_summary(tmp_path, capsys):
    ev, png = tmp_path / "o" / "e.jsonl", tmp_path / "o" / "p.png"
    assert cli.main(["run", str(DEMO), "--events", str(ev), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in ev.read_text().splitlines()]
    assert rows, "the demo raises events"
    for r in rows:
        assert {"t", "kind", "channel", "value", "threshold"} <= set(r)
        assert r["kind"] in {
            "prealarm",
            "alarm",
            "clear",
            "fault",
            "fault_clear",
            "reset",
            "selftest",
            "ror",
        }
        assert r["channel"] in out  # the table shows it
    kinds = {(r["kind"], r["channel"]) for r in rows}
    # What the demo promises (docs/simulator.md): leakage alarm, over-temperature, sensor fault.
    assert {("alarm", "residual"), ("alarm", "temp0"), ("fault", "temp1")} <= kinds
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    summary = out.strip().splitlines()[-3]
    assert summary.startswith("demo: 120 s simulated") and "alarm" in summary


def test_same_file_same_events_and_seed_matters(tmp_path):
    noisy = GOOD.replace("rms_ma = 100", "rms_ma = 265\nnoise_ma = 20") + "[config]\n"
    noisy += "leak_delay_s = 0\n"
    a = simulate.run(loads(noisy)).events
    b = simulate.run(loads(noisy)).events
    assert a == b
    seeds = {
        tuple(simulate.run(loads(noisy.replace('"ok"', f'"ok"\nseed = {s}'))).events)
        for s in range(4)
    }
    assert len(seeds) > 1  # noise really comes from the seed


def test_check_command(tmp_path, capsys):
    assert cli.main(["check", str(DEMO)]) == 0
    assert "OK" in capsys.readouterr().out
    assert cli.main(["check", str(write(tmp_path, "[scenario]\n"))]) == 2


def test_example_scenarios_all_load():
    files = sorted((ROOT / "host_sim" / "scenarios").glob("*.toml"))
    assert DEMO in files
    for f in files:
        load(f)
