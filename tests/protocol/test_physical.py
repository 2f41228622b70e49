"""protocol.host.physical: what every host tool prints by default (issue 12: degC, A, mA and
names; the wire's integers only with --raw)."""

import pytest

from protocol import frame as fr
from protocol import host
from protocol import messages as M

ENC = fr.Encoder(7)


def event(kind: str, channel: str, value: int, threshold: int) -> dict:
    f = {"kind": kind, "channel": channel, "value": value, "threshold": threshold}
    return fr.decode(ENC.message(M.EVENT, 0, f)).to_dict()


def test_telemetry_in_degc_and_amps_with_no_value_kept():
    n = ENC.telemetry(0, M.NA_U16, [234, -50, M.NA_I16, 1], [1234, M.NA_U16, 5], 0x0600)
    d = host.physical(fr.decode(bytes(ENC.wire[:n])).to_dict())
    assert d["residual_ma"] is None
    assert d["temp_c"] == [23.4, -5.0, None, 0.1]
    assert d["line_a"] == [12.34, None, 0.05]
    assert d["flags"] == ["prealarm", "fault"]
    assert "temp_dc" not in d and "line_ca" not in d and d["status"] == 0x0600


@pytest.mark.parametrize(
    ("kind", "channel", "value", "threshold", "want", "unit"),
    [
        ("alarm", "residual", 320, 300, (320, 300), "mA"),
        ("alarm", "temp1", 712, 700, (71.2, 70.0), "degC"),
        ("prealarm", "phase2", 3305, 3200, (33.05, 32.0), "A"),
        ("alarm", "arc", 14, 10, (14, 10), "half-cycles/s"),
        ("ror", "temp0", 95, 80, (9.5, 8.0), "degC/min"),
        ("clear", "temp3", -15, 0, (-1.5, 0.0), "degC"),
    ],
)
def test_event_values_in_their_channels_unit(kind, channel, value, threshold, want, unit):
    d = host.physical(event(kind, channel, value, threshold))
    assert (d["value"], d["threshold"], d["units"]) == (*want, unit)


def test_fault_events_name_the_fault_and_selftest_stays_pass_fail():
    d = host.physical(event("fault", "temp2", 2, 0))
    assert d["fault"] == "short" and d["value"] == 2 and "units" not in d
    d = host.physical(event("fault_clear", "residual", 4, 0))
    assert d["fault"] == "bias"
    d = host.physical(event("fault", "residual", 99, 0))  # a code newer than this host
    assert d["fault"] == 99
    d = host.physical(event("selftest", "residual", 1, 0))
    assert d["value"] == 1 and "units" not in d


def test_snapshot_samples_in_the_channels_unit():
    f = {"snap_id": 1, "channel": "residual", "chunk": 0, "chunks": 1, "scale_exp": -1,
         "rate_hz": 2000, "trigger": 0, "offset": 0, "samples": [0, 15, -3200]}  # fmt: skip
    d = host.physical(fr.decode(ENC.message(M.SNAPSHOT, 0, f)).to_dict())
    assert d["samples"] == [0.0, 1.5, -320.0] and d["units"] == "mA"
    f.update(channel="temp0", scale_exp=0, samples=[250])  # 0.1 degC units on the wire
    d = host.physical(fr.decode(ENC.message(M.SNAPSHOT, 0, f)).to_dict())
    assert d["samples"] == [25.0] and d["units"] == "degC"


def test_config_units_from_the_setting_names():
    f = {"config_hash": 1, "params": [["leak_set_ma", 300], ["temp_set_c", 70], ["p99", 5]]}
    d = host.physical(fr.decode(ENC.message(M.CONFIG, 0, f)).to_dict())
    assert d["units"] == {"leak_set_ma": "mA", "temp_set_c": "degC", "p99": ""}
    assert d["params"] == f["params"]  # settings are already in the unit their name says
