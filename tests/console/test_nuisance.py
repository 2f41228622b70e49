"""The nuisance rule on constructed telemetry (docs/console.md)."""

from __future__ import annotations

import json

import pytest

from tests.console.conftest import T0, add_telemetry
from tools.console import nuisance as N


def test_rule_on_readings():
    # 20 readings 100..195 mA, set 300: p90 = 185.5 mA > 150 -> prone, 2 x 185.5 -> 380 mA
    xs = [100.0 + 5 * k for k in range(20)]
    a = N.assess(7, xs, 300)
    assert a.leakage_ma == pytest.approx(185.5)
    assert a.prone and a.recommended_ma == 380
    assert "raise the set value to 380 mA" in a.advice
    # the same circuit with set 400: 185.5 <= 200 -> fine
    assert not N.assess(7, xs, 400).prone
    # readings at or above the set value are the alarm, not natural leakage
    assert N.assess(7, xs + [900.0] * 50, 400).leakage_ma == pytest.approx(185.5)
    # too few readings: no verdict
    b = N.assess(7, xs[:5], 300)
    assert not b.prone and b.leakage_ma is None and "not enough" in b.advice
    # no CONFIG stored: the firmware default 300 mA
    c = N.assess(7, xs, None)
    assert c.set_ma == 300 and not c.set_from_config and c.prone
    # a leaky circuit: the recommendation is capped and the advice says to inspect it
    d = N.assess(7, [400.0 + k for k in range(20)], 500)
    assert d.recommended_ma == 840 and "insulation" in d.advice
    assert N.assess(7, [600.0] * 20, 1000).recommended_ma == 1000


def test_prone_devices_from_the_store(db):
    for k in range(30):
        add_telemetry(db, 100001, T0 + 10 * k, 160 + (k % 5))  # ~164 mA p90 vs 300 -> prone
        add_telemetry(db, 100002, T0 + 10 * k, 60)  # healthy
        add_telemetry(db, 100003, T0 + 10 * k, 180)  # set 400 in its CONFIG -> fine
    with db.tx():
        db.execute(
            "INSERT INTO configs(device, counter, rx, dev_time, config_hash, params, gateway) "
            "VALUES (?,?,?,?,?,?,?)",
            (100003, 1, T0, None, 0, json.dumps([["leak_set_ma", 400], ["leak_delay_s", 1]]), "gw"),
        )
    got = N.prone_devices(db, T0 + 400)
    assert [a.device for a in got] == [100001]
    assert got[0].recommended_ma == 330 and got[0].set_ma == 300
    assert N.assess_device(db, 100003, T0 + 400).set_ma == 400
    assert N.prone_devices(db, T0 + 400 + 2 * N.WINDOW_S) == []  # outside the window
