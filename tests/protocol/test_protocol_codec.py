"""Codec on CPython: CRC, COBS, HMAC, golden vectors, round trips, size budget, no-raise."""

import hmac
import json
import struct
from binascii import crc_hqx, unhexlify
from hashlib import sha256

import pytest
from hypothesis import given
from hypothesis import strategies as st

from efd import events as ev
from efd import names
from protocol import auth, cobs, crc, gen_vectors, host, messages
from protocol import frame as fr

KEY = auth.Key(bytes(range(32)))


def test_crc_check_value_of_the_named_variant():
    # reveng catalogue, CRC-16/IBM-3740: check=0x29b1. Both code paths must agree with it.
    assert crc.crc16(b"123456789") == 0x29B1 == crc.CHECK
    assert crc.crc16_py(b"123456789") == 0x29B1


def _crc_bitwise(data):
    # Straight from the definition, independent of the table: poly 0x1021, init 0xFFFF, MSB first.
    c = 0xFFFF
    for b in data:
        c ^= b << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
    return c


@given(st.binary(max_size=300), st.integers(0, 20), st.integers(0, 20))
def test_crc_table_matches_definition_and_c_code(data, a, b):
    assert crc.crc16_py(data) == _crc_bitwise(data) == crc_hqx(data, 0xFFFF)
    s, e = min(a, len(data)), max(len(data) - b, min(a, len(data)))
    assert crc.crc16(data, s, e) == crc.crc16_py(data, s, e) == _crc_bitwise(data[s:e])


@given(st.one_of(st.binary(max_size=600), st.lists(st.sampled_from([0, 1, 255]), max_size=600)))
def test_cobs_round_trip_and_no_zero(data):
    data = bytes(data)
    out = bytearray(len(data) + len(data) // 254 + 2)
    n = cobs.encode_into(data, len(data), out)
    wire = bytes(out[:n])
    assert wire[-1] == 0 and 0 not in wire[:-1]
    if len(data) <= 254:
        assert n == len(data) + 2  # the overhead SPEC.md promises
    assert cobs.decode(wire[:-1]) == data


def test_cobs_known_examples():
    # Examples from Cheshire & Baker (and Wikipedia's COBS table).
    for raw, enc in [
        (b"\x00", b"\x01\x01"),
        (b"\x00\x00", b"\x01\x01\x01"),
        (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
        (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
        (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255))),
    ]:
        out = bytearray(len(raw) + 3)
        n = cobs.encode_into(raw, len(raw), out)
        assert bytes(out[: n - 1]) == enc
        assert cobs.decode(enc) == raw


@given(st.binary(max_size=40))
def test_cobs_decode_rejects_without_raising(data):
    r = cobs.decode(data)
    assert r is None or isinstance(r, bytes)


def _stuffed(data):
    out = bytearray(len(data) + len(data) // 254 + 2)
    return bytes(out[: cobs.encode_into(data, len(data), out) - 1])


@given(
    st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=300).map(_stuffed),
        st.lists(st.sampled_from([1, 2, 3, 254, 255]), max_size=300).map(bytes),
    )
)
def test_host_c_cobs_decoder_agrees_with_the_device_decoder(data):
    """The host's C un-stuffing (PyPI cobs) and decode_py (what the device runs) give the same
    answer, valid or not, so the host accepts exactly the frames a detector would."""
    assert cobs._c_decode is not None, "the pinned C decoder is not installed in this venv"
    assert cobs.decode(data) == cobs.decode_py(data, len(data))


@given(st.binary(max_size=200), st.binary(max_size=300))
def test_hmac_matches_cpython(key, msg):
    assert auth.Key(key).mac(msg) == hmac.new(key, msg, sha256).digest()
    assert auth.Key(key).tag(msg) == hmac.new(key, msg, sha256).digest()[:8]


def test_equal_is_exact():
    assert auth.equal(b"abcdefgh", b"abcdefgh")
    assert not auth.equal(b"abcdefgh", b"abcdefgx")
    assert not auth.equal(b"abcdefgh", b"abcdefg")


def test_vectors_file_is_up_to_date():
    assert gen_vectors.main(["--check"]) == 0


def test_every_message_type_and_command_has_a_vector(vectors):
    names = {v["decoded"]["type"] for v in vectors["vectors"] if "decoded" in v}
    assert names == set(host.TYPE_NAMES.values())
    cmds = {v["decoded"]["cmd"] for v in vectors["vectors"] if v.get("decoded", {}).get("cmd")}
    assert cmds >= set(host.CMD_NAMES[1:])


def test_golden_vectors_decode_and_reencode(vectors):
    enc = fr.Encoder(gen_vectors.DEVICE, KEY)
    for v in vectors["vectors"]:
        wire = unhexlify(v["hex"])
        f = fr.decode(wire)
        if "error" in v:
            if v["stage"] == "decode":
                assert not f.ok and f.name == v["error"], v["name"]
            continue
        assert f.ok, (v["name"], f)
        assert json.loads(json.dumps(f.to_dict())) == v["decoded"], v["name"]
        d = v["decoded"]
        fields = {k: d[k] for k in d if k not in ("type", "device", "seq", "time", "counter")}
        again = enc.message(
            host.TYPE_CODES[d["type"]],
            d["time"],
            fields,
            auth=d["counter"] is not None,
            seq=d["seq"],
            counter=d["counter"] if d["counter"] is not None else 0,
        )
        assert again == wire, v["name"]


def test_telemetry_frame_fits_32_bytes_on_the_wire():
    enc = fr.Encoder(0xFFFFFFFF)
    worst = 0
    for r in (0, 1, 0xFFFF):
        for t in (0, -1, 0x7FFF, messages.NA_I16):
            n = enc.telemetry(0xFFFFFFFF, r, (t, t, t, t), (r, r, r), 0xFFFF)
            worst = max(worst, n)
            f = fr.decode(bytes(enc.view(n)))
            assert f.ok and f.fields["status"] == 0xFFFF
    assert worst == 32  # header 10 + payload 18 + CRC 2 + COBS 1 + delimiter 1


def test_encoder_seq_wraps_and_tags_need_a_key():
    enc = fr.Encoder(7)
    seqs = [
        fr.decode(bytes(enc.view(enc.telemetry(1, 0, (0,) * 4, (0,) * 3, 0)))).seq
        for _ in range(258)
    ]
    assert seqs[:2] == [0, 1] and seqs[255:] == [255, 0, 1]
    n = enc.event(1, ev.ALARM, ev.RESIDUAL, 1, 1)  # no key: sent untagged
    assert fr.decode(bytes(enc.view(n))).tag is None


_i32 = st.integers(-(2**31), 2**31 - 1)
_u16 = st.integers(0, 0xFFFE)
_u32 = st.integers(0, 2**32 - 1)
_names = st.one_of(
    st.sampled_from([p for p in host.PARAMS if p]),
    st.integers(len(host.PARAMS), 255).map(lambda i: "p" + str(i)),  # unknown ids survive
)
_params = st.lists(st.tuples(_names, _i32).map(list), max_size=40)
PAYLOADS = {
    messages.HELLO: st.fixed_dictionaries(
        {
            "fw": st.lists(st.integers(0, 255), min_size=3, max_size=3),
            "reset_cause": st.sampled_from(host.RESET_CAUSES),
            "boot_count": _u32,
            "config_hash": _u32,
            "host_counter": _u32,
        }
    ),
    messages.TELEMETRY: st.fixed_dictionaries(
        {
            "residual_ma": st.one_of(st.none(), _u16),
            "temp_dc": st.lists(
                st.one_of(st.none(), st.integers(-32767, 32767)), min_size=4, max_size=4
            ),
            "line_ca": st.lists(st.one_of(st.none(), _u16), min_size=3, max_size=3),
            "status": st.integers(0, 0xFFFF),
        }
    ),
    messages.EVENT: st.fixed_dictionaries(
        {
            "kind": st.sampled_from(names.KIND_NAMES[1:]),
            "channel": st.sampled_from(names.CHANNEL_NAMES),
            "value": _i32,
            "threshold": _i32,
        }
    ),
    messages.RESULT: st.fixed_dictionaries(
        {
            "cmd_counter": _u32,
            "cmd": st.sampled_from(host.CMD_NAMES[1:]),
            "status": st.sampled_from(host.RESULT_NAMES),
            "value": _i32,
        }
    ),
    messages.CONFIG: st.fixed_dictionaries({"config_hash": _u32, "params": _params}),
    messages.SNAPSHOT: st.fixed_dictionaries(
        {
            "snap_id": st.integers(0, 0xFFFF),
            "channel": st.sampled_from(names.CHANNEL_NAMES),
            "chunk": st.integers(0, 255),
            "chunks": st.integers(0, 255),
            "scale_exp": st.integers(-128, 127),
            "rate_hz": st.integers(0, 0xFFFF),
            "trigger": st.integers(0, 0xFFFF),
            "offset": st.integers(0, 0xFFFF),
            "samples": st.lists(st.integers(-32768, 32767), max_size=messages.MAX_SAMPLES),
        }
    ),
    messages.POLL: st.just({}),
    messages.ACK: st.fixed_dictionaries(
        {
            "ack_type": st.sampled_from(["event", "result", "config", "hello"]),
            "ack_seq": st.integers(0, 255),
            "ack_crc": st.integers(0, 0xFFFF),
        }
    ),
    messages.COMMAND: st.one_of(
        st.fixed_dictionaries(
            {"cmd": st.just("reset"), "channel": st.sampled_from((*names.CHANNEL_NAMES, "all"))}
        ),
        st.fixed_dictionaries({"cmd": st.sampled_from(["selftest", "reboot", "get_config"])}),
        st.fixed_dictionaries({"cmd": st.just("set_config"), "params": _params}),
        st.fixed_dictionaries({"cmd": st.just("time_sync"), "set_time": _u32}),
        st.fixed_dictionaries({"cmd": st.just("snapshot"), "snap_id": st.integers(0, 0xFFFF)}),
    ),
}


@st.composite
def messages_(draw):
    t = draw(st.sampled_from(sorted(PAYLOADS)))
    return t, draw(PAYLOADS[t])


@given(messages_(), _u32, _u32, st.integers(0, 255), st.booleans(), st.integers(1, 2**32 - 1))
def test_round_trip_every_type(msg, device, t, seq, tagged, counter):
    typ, fields = msg
    wire = fr.Encoder(device, KEY).message(typ, t, fields, auth=tagged, seq=seq, counter=counter)
    assert len(wire) <= fr.MAX_WIRE and 0 not in wire[:-1]
    f = fr.decode(wire)
    assert f.ok, f
    assert (f.type, f.device, f.seq, f.time) == (typ, device, seq, t)
    assert f.fields == fields
    assert not set(fields) & {"type", "device", "seq", "time", "counter"}  # to_dict() merges
    assert f.counter == (counter if tagged else None)
    if tagged:
        assert f.tag == KEY.tag(f.raw, 0, len(f.raw) - 10)


@given(st.binary(max_size=300))
def test_decode_never_raises(data):
    r = fr.decode(data)
    assert r.ok in (True, False)
    json.dumps(r.to_dict())


@given(st.binary(min_size=2, max_size=60))
def test_parse_of_any_crc_valid_frame_never_raises(body):
    # Random bodies with a correct CRC reach the header and payload parsers.
    raw = bytearray(body) + b"\0\0"
    struct.pack_into("<H", raw, len(raw) - 2, crc.crc16(raw, 0, len(raw) - 2))
    r = fr.parse(bytes(raw))
    json.dumps(r.to_dict())


def test_param_ids_name_real_settings():
    config = pytest.importorskip("efd.config")
    for name in host.PARAMS[1:]:
        assert name in config.DEFAULTS, name


def test_time_epoch():
    assert host.efd_time(host.EPOCH_UNIX + 5) == 5
    assert host.efd_time(0) == 0  # before 2020: clock not set
    assert 0 < host.now() < 2**30  # a small int on the ESP32 until 2054


def test_parse_settings_is_the_one_command_line_parser():
    """tools.monitor and tools.gateway both turn NAME=VALUE into set_config params here."""
    from protocol.host import parse_settings

    assert parse_settings(["leak_set_ma=300", " leak_delay_s = 0x5", "p3=1"]) == [
        ["leak_set_ma", 300],
        ["leak_delay_s", 5],
        ["p3", 1],
    ]
    for bad in ["leak_set_ma", "nosuch=1", "leak_set_ma=abc", "=1"]:
        with pytest.raises(ValueError, match="bad setting"):
            parse_settings([bad])
