"""protocol.host at its edges: wire time on both epochs, codes newer than this host, the
"no value" sentinels next to real readings, unknown commands, the host's error messages and
the physical units of every channel, exactly as tools print them (JSON)."""

import json
import time

import pytest

from protocol import frame as fr
from protocol import host
from protocol import messages as M

ENC = fr.Encoder(7)
ESP32_EPOCH = 946684800  # 2000-01-01T00:00:00Z in Unix seconds


# -- wire time ---------------------------------------------------------------------------------


def test_wire_time_from_unix_seconds():
    assert host.efd_time(host.EPOCH_UNIX) == 0  # the epoch itself: "clock not set"
    assert host.efd_time(host.EPOCH_UNIX + 1) == 1
    assert host.efd_time(host.EPOCH_UNIX - 1) == 0
    assert host.efd_time(0) == 0


@pytest.mark.parametrize(
    ("since_2000", "want"),
    [
        (631152000 + 1, 1),  # 2020-01-01T00:00:01Z
        (631152000 + 86400, 86400),
        (631152000, 0),
        (100, 0),  # an unset ESP32 clock starts at 2000-01-01: clock not set
        (631152000 - 1, 0),
    ],
)
def test_wire_time_on_a_port_that_counts_from_2000(monkeypatch, since_2000, want):
    real = time.gmtime
    monkeypatch.setattr(time, "time", lambda: since_2000 + 0.9)
    monkeypatch.setattr(time, "gmtime", lambda s=0: real(s + ESP32_EPOCH))
    assert host.now() == want


def test_wire_time_on_a_port_that_counts_from_1970(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: host.EPOCH_UNIX + 12.5)
    assert host.now() == 12


# -- decoding: numbers this host has no name for ----------------------------------------------


def _result(cmd, status):
    f = {"cmd_counter": 1, "cmd": cmd, "status": status, "value": 0}
    return fr.decode(ENC.message(M.RESULT, 0, f)).fields


def test_codes_past_the_name_tables_stay_numbers():
    n_status, n_cmds = len(host.RESULT_NAMES), len(host.CMD_NAMES)
    assert _result(n_cmds - 1, n_status - 1) == {
        "cmd_counter": 1,
        "cmd": host.CMD_NAMES[-1],
        "status": host.RESULT_NAMES[-1],
        "value": 0,
    }
    assert _result(n_cmds, n_status)["cmd"] == n_cmds
    assert _result(n_cmds, n_status)["status"] == n_status
    assert _result(0, 255)["cmd"] == 0  # command 0 has no name ("")
    ev = {"kind": 9, "channel": 9, "value": 1, "threshold": 2}
    assert fr.decode(ENC.message(M.EVENT, 0, ev)).fields == ev


def test_no_value_sentinels_and_the_readings_next_to_them():
    f = {
        "residual_ma": 0xFFFE,
        "temp_dc": [-32767, 32767, None, -32767],
        "line_ca": [0xFFFE, None, 0],
        "status": 0,
    }
    for t in range(4):
        temps = list(f["temp_dc"])
        temps[t] = None
        g = dict(f, temp_dc=temps)
        assert fr.decode(ENC.message(M.TELEMETRY, 0, g)).fields == g
    for p in range(3):
        lines = [0xFFFE, 0xFFFE, 0xFFFE]
        lines[p] = None
        g = dict(f, line_ca=lines, residual_ma=None)
        assert fr.decode(ENC.message(M.TELEMETRY, 0, g)).fields == g


# -- encoding: what the host sends ----------------------------------------------------------


def test_unknown_command_arguments_travel_as_given():
    f = {"cmd": 99, "args": "0a00ff"}
    enc = fr.Encoder(7)
    wire = enc.message(M.COMMAND, 0, f)
    assert fr.decode(wire).fields == {"cmd": 99, "args": "0a00ff"}
    assert len(enc.frame) == fr.MAX_FRAME  # written in place, the buffer does not grow
    assert fr.decode(enc.message(M.COMMAND, 0, {"cmd": 98})).fields == {"cmd": 98, "args": ""}


def test_packing_an_unknown_type_is_a_value_error():
    with pytest.raises(ValueError, match="unknown type 9"):
        host.pack(9, {}, bytearray(10), 0)


@pytest.mark.parametrize("item", ["=5", "leak_set_ma", "", " =1"])
def test_a_setting_without_name_or_value_is_refused(item):
    with pytest.raises(ValueError, match="use NAME=VALUE"):
        host.parse_settings([item])


def test_unknown_setting_suggestions_read_well():
    def msg(name):
        with pytest.raises(ValueError) as e:
            host.check_settings([[name, 1]])
        return str(e.value).split(": ", 1)[1]

    assert msg("arc_enable") == "unknown setting 'arc_enable', did you mean arc_enabled?"
    assert msg("ct_bias") == "unknown setting 'ct_bias', did you mean ct_bias_lo or ct_bias_hi?"
    # The three closest, of more than three close ones.
    assert msg("line_hyst") == (
        "unknown setting 'line_hyst', did you mean line_hyst_pct, line_set_a or line_delay_s?"
    )
    far = msg("zzz")
    assert far == "unknown setting 'zzz'; the settings are " + ", ".join(host.PARAMS[1:])


# -- presentation ---------------------------------------------------------------------------


def test_error_dict_and_repr():
    assert fr.Error(fr.E_CRC).to_dict() == {"error": "crc", "reason": "CRC mismatch"}
    assert fr.Error(fr.E_SHORT, b"abc").to_dict()["len"] == 3
    f = fr.decode(ENC.message(M.POLL, 0, {}, seq=9))
    assert repr(f) == "Frame(poll dev=7 seq=9)"
    assert repr(fr.decode(b"\x05")) == "Error(cobs)"


def _event(kind, channel, value, threshold=0):
    f = {"kind": kind, "channel": channel, "value": value, "threshold": threshold}
    return host.physical(fr.decode(ENC.message(M.EVENT, 0, f)).to_dict())


@pytest.mark.parametrize(
    ("channel", "value", "shown", "unit"),
    [
        ("residual", 270, "270", "mA"),
        ("arc", 14, "14", "half-cycles/s"),
        ("temp0", 705, "70.5", "degC"),
        ("temp3", -5, "-0.5", "degC"),
        ("phase0", 3201, "32.01", "A"),
        ("phase2", 7, "0.07", "A"),
    ],
)
def test_event_values_as_json_in_the_channel_unit(channel, value, shown, unit):
    d = _event("alarm", channel, value, value)
    assert json.dumps([d["value"], d["threshold"]]) == f"[{shown}, {shown}]"
    assert d["units"] == unit


def test_rate_of_rise_and_selftest_and_odd_fault_codes():
    d = _event("ror", "temp2", 123, 100)
    assert (d["value"], d["threshold"], d["units"]) == (12.3, 10.0, "degC/min")
    d = _event("selftest", "residual", 1)
    assert d == {**d, "value": 1, "threshold": 0} and "units" not in d
    assert _event("fault", "temp1", 0)["fault"] == 0  # no such fault code: the number
    assert _event("fault", "temp1", 6)["fault"] == 6
    assert _event("fault_clear", "temp1", 5)["fault"] == "sampling"


def test_snapshot_scale_and_rounding():
    f = {"snap_id": 1, "channel": "phase1", "chunk": 0, "chunks": 1, "scale_exp": -5,
         "rate_hz": 2000, "trigger": 0, "offset": 0, "samples": [1234, -1]}  # fmt: skip
    d = host.physical(fr.decode(ENC.message(M.SNAPSHOT, 0, f)).to_dict())
    assert d["samples"] == [0.000123, -0.0] and d["units"] == "A"
    f.update(channel="arc", scale_exp=2, samples=[3])
    d = host.physical(fr.decode(ENC.message(M.SNAPSHOT, 0, f)).to_dict())
    assert d["samples"] == [300.0] and d["units"] == "half-cycles/s"


def test_physical_leaves_other_frames_alone():
    d = fr.decode(ENC.message(M.POLL, 0, {})).to_dict()
    assert host.physical(d) == d
    a = fr.decode(ENC.message(M.ACK, 0, {"ack_type": "event", "ack_seq": 1, "ack_crc": 2}))
    assert host.physical(a.to_dict()) == a.to_dict()


def test_a_channel_this_host_does_not_know_keeps_its_integers():
    d = _event("alarm", 9, 1234, 1000)
    assert (d["channel"], d["value"], d["threshold"], d["units"]) == (9, 1234, 1000, "")
    f = {"snap_id": 1, "channel": 12, "chunk": 0, "chunks": 1, "scale_exp": 0,
         "rate_hz": 2000, "trigger": 0, "offset": 0, "samples": [7, -3]}  # fmt: skip
    d = host.physical(fr.decode(ENC.message(M.SNAPSHOT, 0, f)).to_dict())
    assert d["samples"] == [7.0, -3.0] and d["units"] == ""


@pytest.mark.parametrize(
    ("status", "value", "link", "rssi"),
    [
        ("ok", -61, "wifi", -61),
        ("ok", 1, "wifi_disconnected", None),
        ("ok", 0, "not_wifi", None),
        ("ok", 7, "unknown", None),
        ("locked", 0, None, None),  # not answered: nothing added
    ],
)
def test_link_status_result_shows_the_rssi_in_dbm(status, value, link, rssi):
    f = {"cmd_counter": 9, "cmd": "link_status", "status": status, "value": value}
    d = host.physical(fr.decode(ENC.message(M.RESULT, 0, f, auth=False)).to_dict())
    assert d["value"] == value  # the wire's integer stays
    assert (d.get("link"), d.get("rssi_dbm"), d.get("units")) == (
        (link, rssi, "dBm") if link else (None, None, None)
    )
