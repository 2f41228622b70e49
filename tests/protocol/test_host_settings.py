"""protocol.host's set_config check is efd.config's (names, ranges, units: reused, never
copied), a bad_argument RESULT names its setting, and a device key is 32 bytes."""

from __future__ import annotations

import pytest

from protocol import auth
from protocol import frame as fr
from protocol import messages as M
from protocol.host import check_command, check_settings, param_name, parse_key, parse_settings

config = pytest.importorskip("efd.config")
KEY = auth.Key(bytes(range(32)))


@pytest.mark.parametrize("name", [n for n in config.NAMES if n != "mains_hz"])
def test_every_setting_is_checked_against_efd_config(name):
    lo, hi = config.limits(name)
    unit = config.unit(name)
    check_settings([[name, lo], [name, hi]])
    for bad in (lo - 1, hi + 1):
        with pytest.raises(ValueError) as e:
            check_settings([[name, bad]])
        msg = str(e.value)
        assert msg.startswith(f"bad setting {name}={bad}: out of range, ")
        assert msg.endswith(f"{name} must be {lo}..{hi}" + (f" {unit}" if unit else ""))


def test_mains_hz_and_types():
    check_settings([["mains_hz", 50], ["mains_hz", 60]])
    with pytest.raises(ValueError, match=r"mains_hz=55: mains_hz \(Hz\) must be 50 or 60"):
        check_settings([["mains_hz", 55]])
    for v in ("300", 3.0, None, True):
        with pytest.raises(ValueError, match="must be a whole number"):
            check_settings([["leak_set_ma", v]])


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("leak_set", "leak_set_ma"), ("temp_set", "temp_set_c"), ("fault_delay", "fault_delay_s")],
)
def test_unknown_names_get_a_did_you_mean(name, suggestion):
    with pytest.raises(ValueError) as e:
        parse_settings([f"{name}=1"])
    assert f"bad setting '{name}=1': unknown setting {name!r}, did you mean {suggestion}" in str(
        e.value
    )


def test_a_name_like_none_lists_every_setting():
    with pytest.raises(ValueError) as e:
        check_settings([["zzz", 1]])
    assert all(n in str(e.value) for n in config.NAMES)
    with pytest.raises(ValueError, match="unknown setting 3"):
        check_settings([[3, 1]])


def test_raw_ids_are_checked_only_for_what_the_wire_carries():
    check_settings([["p2", 5000], ["p255", -(2**31)], ["p1", 2**31 - 1]])
    for bad in (["p0", 1], ["p256", 1], ["p2", 2**31], ["p2", "1"]):
        with pytest.raises(ValueError, match="raw parameter"):
            check_settings([bad])


def test_check_command_only_looks_at_set_config():
    check_command({"cmd": "reset", "channel": "all"})
    with pytest.raises(ValueError, match=r"leak_set_ma must be 20\.\.1000 mA"):
        check_command({"cmd": "set_config", "params": [["leak_set_ma", 5000]]})
    with pytest.raises(ValueError, match=r"leak_set_ma must be 20\.\.1000 mA"):
        check_command({"cmd": M.CMD_SET_CONFIG, "params": [["leak_set_ma", 5000]]})


def _result(cmd, status, value):
    enc = fr.Encoder(0x12345678, KEY, lambda: 1)
    fields = {"cmd_counter": 7, "cmd": cmd, "status": status, "value": value}
    return fr.decode(enc.message(M.RESULT, 0, fields, auth=True))


def test_bad_argument_result_names_the_setting():
    f = _result("set_config", "bad_argument", 2)
    assert f.to_dict()["param"] == "leak_set_ma"
    assert "param" not in f.fields  # presentation only: the decoded fields stay the wire's
    assert _result("set_config", "bad_argument", 99).to_dict()["param"] == "p99"
    assert "param" not in _result("set_config", "ok", 0).to_dict()
    assert "param" not in _result("snapshot", "bad_argument", 3).to_dict()
    assert [param_name(i) for i in (1, 22, 0, 23)] == ["mains_hz", "ct_bias_hi", "p0", "p23"]


@pytest.mark.parametrize("text", ["12", "", "zz" * 32, "00" * 31, "00" * 33, "0" * 63])
def test_a_key_is_64_hex_digits(text):
    with pytest.raises(ValueError, match="64 hex digits"):
        parse_key(text)


def test_key_spellings():
    want = bytes(range(32))
    assert parse_key(want.hex()) == want
    assert parse_key("0x" + want.hex().upper()) == want
    assert parse_key(":".join(f"{b:02x}" for b in want)) == want
