"""Settings validation: the same answers, and the same error, on both interpreters."""

from __future__ import annotations

import json

import pytest

from efd import config
from tests import mpy

CASES = [
    {},
    {"leak_set_ma": 500, "leak_delay_s": 5},
    {"leak_set_ma": 19},
    {"leak_set_ma": 1001},
    {"leak_delay_s": -1},
    {"temp_set_c": 44},
    {"mains_hz": 55},
    {"leak_set_ma": 300.5},
    {"leak_set_ma": True},
    {"leak_set_ma": "300"},
    {"no_such_setting": 1},
    {"ct_bias_lo": 2047, "ct_bias_hi": 2049, "fault_delay_s": 10},
    {"ct_bias_lo": 2047, "ct_bias_hi": 2049},
]

DRIVER = """
import sys, json
from efd import config
out = []
for case in json.loads(sys.stdin.read()):
    try:
        cfg = config.make(case)
        out.append(["ok", cfg["leak_set_ma"], cfg["temp_set_c"]])
    except config.ConfigError as e:
        out.append(["error", e.key, e.reason, str(e), isinstance(e, ValueError)])
print(json.dumps(out))
"""


def cpython_results(cases):
    out = []
    for case in cases:
        try:
            cfg = config.make(case)
            out.append(["ok", cfg["leak_set_ma"], cfg["temp_set_c"]])
        except config.ConfigError as e:
            out.append(["error", e.key, e.reason, str(e), isinstance(e, ValueError)])
    return out


def test_validation_names_the_key_and_the_reason():
    res = cpython_results(CASES)
    assert res[0] == ["ok", 300, 70]
    assert res[2][:2] == ["error", "leak_set_ma"] and "20..1000" in res[2][2]
    assert res[10][1:3] == ["no_such_setting", "unknown setting"]
    assert res[11][3] == "fault_delay_s: must be in 1..9 s, got 10"
    assert all(r[0] == "error" for r in res[2:-1]) and res[-1][0] == "ok"


@pytest.mark.micropython
def test_micropython_validates_identically():
    """ConfigError must be constructible on the device (MicroPython has no
    ValueError.__init__) and give the same key, reason and message."""
    got = json.loads(mpy.run(DRIVER, stdin=json.dumps(CASES)))
    assert got == cpython_results(CASES)


def test_table_rows_are_whole_and_defaults_lie_in_their_range():
    # One flat table (name, default, lo, hi per row): a row missing a column would shift every
    # later setting's default and range, and the wire ids with them.
    assert len(config.NAMES) == len(config.DEFAULTS) == 22
    for name in config.NAMES:
        assert isinstance(name, str) and name.islower()
        lo, hi = config.limits(name)
        assert isinstance(lo, int) and isinstance(hi, int) and lo <= config.DEFAULTS[name] <= hi
    config.make()  # the defaults themselves validate
    with pytest.raises(ValueError):
        config.limits("no_such_setting")


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("mains_hz", "Hz"),
        ("leak_set_ma", "mA"),
        ("leak_delay_s", "s"),
        ("leak_prealarm_pct", "% of set"),
        ("temp_set_c", "degC"),
        ("temp_ror_c_per_min", "degC/min"),
        ("line_set_a", "A"),
        ("temp_channels", ""),
        ("res_gain_q12", ""),
        ("ct_bias_lo", ""),
        ("arc_enabled", ""),
    ],
)
def test_unit_comes_from_the_name(name, unit):
    assert config.unit(name) == unit
