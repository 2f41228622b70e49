"""Settings validation: the same answers, and the same error, on both interpreters."""

from __future__ import annotations

import json

import pytest

from efd import config, fullscale
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


# The settings as the documentation promises them (docs/detection.md, docs/simulator.md,
# docs/hardware.md, the header of efd/config.py): name -> (default, lowest, highest). Written
# out here, not read from efd.config, so a changed default or range is a failing test.
DOCUMENTED = {
    "mains_hz": (50, 50, 60),
    "leak_set_ma": (300, 20, 1000),  # GB 14287.2: set value <= 1000 mA
    "leak_delay_s": (1, 0, 60),
    "leak_prealarm_pct": (70, 0, 85),
    "leak_hyst_pct": (5, 1, 10),
    "temp_set_c": (70, 45, 150),  # GB 14287.3 products: 45..150 degC
    "temp_delay_s": (5, 0, 30),  # keeps the alarm within GB 14287.3's 40 s
    "temp_prealarm_pct": (90, 0, 95),
    "temp_hyst_c": (2, 1, 10),
    "temp_ror_c_per_min": (10, 0, 60),
    "temp_channels": (4, 0, 4),
    "line_set_a": (32, 1, 630),
    "line_delay_s": (5, 0, 60),
    "line_prealarm_pct": (90, 0, 95),
    "line_hyst_pct": (5, 1, 10),
    "phase_channels": (3, 0, 3),
    "arc_enabled": (1, 0, 1),
    "fault_delay_s": (2, 1, 9),  # faults reported within 10 s
    "res_gain_q12": (4096, 1, 60000),  # 1 mA per count; rms.GAIN_MAX keeps products < 2^30
    "phase_gain_q12": (40960, 1, 60000),  # 0.1 A per count
    "ct_bias_lo": (1648, 256, 2047),
    "ct_bias_hi": (2448, 2049, 3839),
}


# The settings in a cross-field rule (efd.fullscale): set value vs its input's full scale.
CROSS = ("leak_set_ma", "res_gain_q12", "line_set_a", "phase_gain_q12")


def test_every_setting_has_its_documented_default():
    cfg = config.make()
    assert list(cfg) == list(DOCUMENTED) == list(config.NAMES)
    assert {k: cfg[k] for k in cfg} == {k: d for k, (d, _, _) in DOCUMENTED.items()}


@pytest.mark.parametrize("name", [n for n in DOCUMENTED if n != "mains_hz"])
def test_every_range_is_probed_at_both_ends(name):
    _, lo, hi = DOCUMENTED[name]
    other = {"ct_bias_lo": "ct_bias_hi", "ct_bias_hi": "ct_bias_lo"}
    # Range ends alone: some ends are valid only with another setting changed too (the
    # cross-field rules of efd.fullscale, test_cross_field_* below).
    for ok in (lo, hi):
        assert config.make({name: ok})[name] == ok
        if (name, ok) in (("res_gain_q12", 1), ("phase_gain_q12", 1), ("line_set_a", 630)):
            with pytest.raises(config.ConfigError):
                _make({name: ok})
    for bad in (lo - 1, hi + 1):
        with pytest.raises(config.ConfigError) as e:
            config.make({name: bad})
        assert e.value.key == name
        assert f"must be in {lo}..{hi}" in e.value.reason and e.value.reason.endswith(str(bad))
    assert config.limits(name) == (lo, hi)
    if name in other:
        config.make({name: lo, other[name]: DOCUMENTED[other[name]][0]})


def test_mains_is_50_or_60_hz_only():
    assert config.limits("mains_hz") == (50, 60)
    for ok in (50, 60):
        assert config.make({"mains_hz": ok})["mains_hz"] == ok
    for bad in (0, 49, 51, 55, 59, 61):
        with pytest.raises(config.ConfigError, match="must be 50 or 60, got " + str(bad)):
            config.make({"mains_hz": bad})


def test_settings_are_checked_one_by_one_and_applied_together():
    cfg = config.make({"leak_set_ma": 20, "temp_set_c": 150, "ct_bias_lo": 2047})
    assert (cfg["leak_set_ma"], cfg["temp_set_c"], cfg["ct_bias_lo"]) == (20, 150, 2047)
    assert config.make(None) == config.make({}) == config.DEFAULTS
    with pytest.raises(config.ConfigError) as e:
        config.make({"leak_set_ma": 300, "temp_delay_s": 31})
    assert e.value.key == "temp_delay_s"
    for bad in (True, False, 1.0, "1", None):
        with pytest.raises(config.ConfigError, match="whole number"):
            config.check("arc_enabled", bad)


def _make(overrides):
    """What the detector's settings path checks (app.settings): each setting, then the
    combinations."""
    return fullscale.check(config.make(overrides)) or config.make(overrides)


def _boundary_gain(units):
    """The lowest Q12 gain whose full scale reaches `units` (searched, not the formula)."""
    g = 1
    while fullscale.full_scale(g) < units:
        g += 1
    return g


def test_full_scale_matches_the_reading_of_the_largest_unclipped_sine():
    # Documented figures (docs/hardware.md): 1447 mA residual, 144.74 A phase at the defaults.
    assert fullscale.full_scale(4096) == 1447
    assert fullscale.full_scale(40960) == 14474
    assert fullscale.full_scale(60000) == 21203  # the highest phase full scale: 212 A


@pytest.mark.parametrize(
    "set_name,gain_name,set_value,scale",
    [("leak_set_ma", "res_gain_q12", 1000, 1), ("leak_set_ma", "res_gain_q12", 20, 1),
     ("line_set_a", "phase_gain_q12", 32, 100), ("line_set_a", "phase_gain_q12", 212, 100)],
)  # fmt: skip
def test_cross_field_set_value_at_full_scale_is_the_boundary(set_name, gain_name, set_value, scale):
    g = _boundary_gain(set_value * scale)
    # Exactly at full scale (or the first gain reaching it): accepted.
    cfg = _make({set_name: set_value, gain_name: g})
    assert fullscale.full_scale(g) >= set_value * scale > fullscale.full_scale(g - 1)
    assert cfg[gain_name] == g
    # One gain step lower: the set value is beyond full scale, refused naming both settings.
    with pytest.raises(config.ConfigError) as e:
        _make({set_name: set_value, gain_name: g - 1})
    assert (e.value.key, e.value.other) == (set_name, gain_name)
    assert "full scale" in e.value.reason and gain_name in e.value.reason


def test_cross_field_is_checked_after_every_single_setting():
    # A value out of its own range is named alone (other None), before any combination.
    with pytest.raises(config.ConfigError) as e:
        _make({"leak_set_ma": 1001, "res_gain_q12": 100})
    assert (e.value.key, e.value.other) == ("leak_set_ma", None)
    # 630 A is in line_set_a's range but beyond any phase gain's full scale (212 A).
    with pytest.raises(config.ConfigError) as e:
        _make({"line_set_a": 630, "phase_gain_q12": 60000})
    assert (e.value.key, e.value.other) == ("line_set_a", "phase_gain_q12")
    config.make({"ct_bias_lo": 2047, "ct_bias_hi": 2049})
