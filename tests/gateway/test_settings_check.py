"""set_config checked by the gateway before anything is queued or sent (efd.config's own
ranges, via protocol.host.check_settings): a platform's MQTT request and `gateway command`
are refused with the setting, its unit and its range, or a "did you mean"; a bad_argument
RESULT that does come back is republished with the setting's name."""

from __future__ import annotations

import pytest

from tests.gateway.conftest import run_cli
from tests.gateway.test_commands import Wire, db_rows, hello, run, setup


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ([["leak_set_ma", 5000]], ["leak_set_ma=5000", "leak_set_ma must be 20..1000 mA"]),
        ([["leak_set_ma", 300], ["temp_delay_s", 31]], ["temp_delay_s", "0..30 s"]),
        ([["leak_set_ma", "300"]], ["leak_set_ma", "whole number"]),
        ([["leak_set_ma", True]], ["leak_set_ma", "whole number"]),
        ([["leak_setma", 300]], ["unknown setting 'leak_setma', did you mean leak_set_ma"]),
        ([["p999", 1]], ["p999", "1..255"]),
    ],
)
def test_gateway_refuses_a_bad_set_config_before_queueing_it(tmp_path, params, words):
    gw, st, det, _ = setup(tmp_path)
    wire = Wire(gw, det)
    hello(gw, wire)
    with pytest.raises(ValueError) as e:
        gw.command(7, {"cmd": "set_config", "params": params})
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    gw.flush()
    assert wire.commands() == [] and gw.commands_in_flight() == 0
    assert db_rows(st, "SELECT * FROM commands") == []


def test_in_range_and_raw_ids_still_go_out_and_the_refusal_is_named(tmp_path):
    gw, _, det, pubs = setup(tmp_path)
    wire = Wire(gw, det)
    hello(gw, wire)
    ok = gw.command(7, {"cmd": "set_config", "params": [["leak_set_ma", 1000]]})
    # A raw id is checked only for what the wire carries (a setting newer than the host): the
    # detector decides, and its refusal is republished with the id's name (pN when unknown).
    raw = gw.command(7, {"cmd": "set_config", "params": [["p99", 1]]})
    run(gw, wire, lambda: ok.status == "done" and raw.status == "done")
    assert (ok.result, raw.result, raw.value) == ("ok", "bad_argument", 99)
    results = [p for t, p in pubs if t.endswith("/result")]
    refused = [p for p in results if p["status"] == "bad_argument"]
    assert len(refused) == 1 and refused[0]["param"] == "p99", results


@pytest.mark.parametrize(
    ("param", "words"),
    [
        ("leak_set_ma=5000", ["'leak_set_ma=5000'", "leak_set_ma must be 20..1000 mA"]),
        ("temp_set=70", ["unknown setting 'temp_set', did you mean temp_set_c"]),
    ],
)
def test_gateway_command_cli_refuses_before_connecting(param, words):
    # 127.0.0.1:1 has no broker: a refusal that mentions the setting came before connecting.
    r = run_cli("tools.gateway", "command", "--mqtt", "127.0.0.1:1", "--device", "1",
                "set_config", "--param", param, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "MQTT" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)
