"""The encoder's bytes are SPEC.md's bytes: frames built by protocol.frame.Encoder equal frames
built here by hand from the layout tables (header, payload, counter, tag, CRC), sequence
numbers and counters advance as section 4 says, tags appear exactly when asked for and a key
is there, and the encoder's two buffers never grow (it runs on the detector's small heap)."""

import hmac
import struct
from binascii import crc_hqx
from hashlib import sha256

import pytest

from efd import events as ev
from protocol import auth, cobs, messages
from protocol import frame as fr

M = messages
DEV = 0x0A0B0C0D
KEY_BYTES = bytes(range(32, 64))
KEY = auth.Key(KEY_BYTES)


def by_hand(typ, seq, t, payload, counter=None):
    hdr = (1 << 5) | typ | (0x80 if counter is not None else 0)
    body = struct.pack("<BIBI", hdr, DEV, seq, t) + payload
    if counter is not None:
        body += struct.pack("<I", counter)
        body += hmac.new(KEY_BYTES, body, sha256).digest()[:8]
    raw = body + struct.pack("<H", crc_hqx(body, 0xFFFF))
    out = bytearray(len(raw) + 3)
    return bytes(out[: cobs.encode_into(raw, len(raw), out)])


def counting(start=100):
    c = [start - 1]

    def nxt():
        c[0] += 1
        return c[0]

    return fr.Encoder(DEV, KEY, counter=nxt)


def test_event_bytes_untagged_and_tagged():
    payload = struct.pack("<BBii", ev.ALARM, ev.TEMP0 + 2, -5, 700)
    enc = fr.Encoder(DEV)  # no key: untagged even though events are tagged by default
    assert bytes(enc.view(enc.event(9, ev.ALARM, ev.TEMP0 + 2, -5, 700))) == by_hand(
        M.EVENT, 0, 9, payload
    )
    enc = counting()
    wire = bytes(enc.view(enc.event(9, ev.ALARM, ev.TEMP0 + 2, -5, 700)))
    assert wire == by_hand(M.EVENT, 0, 9, payload, counter=100)
    assert enc.crc == struct.unpack("<H", cobs.decode(wire[:-1])[-2:])[0]
    # Retransmission: the same seq and counter give the same bytes.
    again = bytes(enc.view(enc.event(9, ev.ALARM, ev.TEMP0 + 2, -5, 700, seq=0, counter=100)))
    assert again == wire
    untagged = bytes(enc.view(enc.event(9, ev.ALARM, ev.TEMP0 + 2, -5, 700, auth=False)))
    assert untagged == by_hand(M.EVENT, 1, 9, payload)


def test_telemetry_bytes_untagged_and_tagged():
    payload = struct.pack("<HhhhhHHHH", 12, 1, -2, 3, -32768, 4, 5, 0xFFFF, 0x0201)
    args = (77, 12, (1, -2, 3, -32768), (4, 5, 0xFFFF), 0x0201)
    enc = counting(500)
    assert bytes(enc.view(enc.telemetry(*args))) == by_hand(M.TELEMETRY, 0, 77, payload)
    tagged = bytes(enc.view(enc.telemetry(*args, auth=True)))
    assert tagged == by_hand(M.TELEMETRY, 1, 77, payload, counter=500)
    assert fr.decode(tagged).counter == 500
    tagged = bytes(enc.view(enc.telemetry(*args, auth=True)))
    assert fr.decode(tagged).counter == 501
    # Without a key, a tag cannot be asked for: the frame goes out untagged.
    plain = fr.Encoder(DEV)
    assert fr.decode(bytes(plain.view(plain.telemetry(*args, auth=True)))).tag is None


@pytest.mark.parametrize("kind", ["telemetry", "event", "message"])
def test_seq_counts_up_per_frame_unless_given(kind):
    enc = counting()

    def send(**kw):
        if kind == "telemetry":
            return fr.decode(bytes(enc.view(enc.telemetry(1, 0, (0,) * 4, (0,) * 3, 0, **kw))))
        if kind == "event":
            return fr.decode(bytes(enc.view(enc.event(1, 1, 0, 0, 0, **kw))))
        return fr.decode(enc.message(M.POLL, 1, {}, **kw))

    assert [send().seq for _ in range(3)] == [0, 1, 2]
    assert send(seq=200).seq == 200
    assert send().seq == 3  # a given seq does not move the count


def test_message_counter_default_and_given():
    enc = counting(40)
    f = fr.decode(enc.message(M.POLL, 1, {}, auth=True))
    assert f.counter == 40
    f = fr.decode(enc.message(M.POLL, 1, {}, auth=True, counter=7))
    assert f.counter == 7
    f = fr.decode(enc.message(M.POLL, 1, {}, auth=True))
    assert f.counter == 41


def test_the_buffers_never_grow():
    enc = counting()
    sizes = (len(enc.frame), len(enc.wire))
    for k in range(20):
        enc.event(k, 1, 0, k, k)
        enc.telemetry(k, 0, (0,) * 4, (0,) * 3, 0, auth=True)
        enc.message(M.ACK, k, {"ack_type": "event", "ack_seq": k, "ack_crc": k}, auth=True)
    assert (len(enc.frame), len(enc.wire)) == sizes == (fr.MAX_FRAME, fr.MAX_WIRE)


def _frames_of_30_bytes(typ):
    """30-byte frames of type typ (any fields), with their CRC. The device id's first byte
    is 0x22 too (the telemetry header byte), at offset 1."""
    for t in range(1, 9):
        for seq in range(256):
            body = struct.pack("<BIBI", 0x20 | typ, 0x0A0B0C22, seq, t) + bytes(18)
            crc = crc_hqx(body, 0xFFFF)
            yield body + struct.pack("<H", crc), crc


def test_only_untagged_v1_telemetry_takes_the_fast_path():
    """30-byte frames of other types decode as what they are, also when their last byte
    happens to equal the header byte of a telemetry frame (0x22)."""
    for typ in (M.HELLO, M.EVENT, M.RESULT, M.POLL):
        tried = 0
        for raw, crc in _frames_of_30_bytes(typ):
            assert len(raw) == 30
            f = fr.parse(raw)
            assert f.ok and f.type == typ, (typ, f)
            tried += 1
            if crc >> 8 == 0x22:
                break
        else:
            raise AssertionError("no frame with a last byte of 0x22 among those tried")
        assert tried >= 1


def test_every_error_is_presented_under_its_spec_name():
    names = {
        fr.E_COBS: "cobs",
        fr.E_SHORT: "short",
        fr.E_CRC: "crc",
        fr.E_VERSION: "version",
        fr.E_TYPE: "unknown_type",
        fr.E_LENGTH: "length",
        fr.E_OVERFLOW: "overflow",
        fr.E_NO_TAG: "no_tag",
        fr.E_BAD_TAG: "bad_tag",
        fr.E_REPLAY: "replay",
        fr.E_DUPLICATE: "duplicate",
        fr.E_NO_KEY: "no_key",
        fr.E_DIRECTION: "direction",
    }
    assert len(names) == 13
    for code, name in names.items():
        e = fr.Error(code, b"xx", DEV, 1, M.EVENT)
        assert e.name == name and e.to_dict()["error"] == name
        assert e.to_dict() == {
            "error": name,
            "reason": e.reason,
            "device": DEV,
            "seq": 1,
            "type": M.EVENT,
            "len": 2,
        }
        assert repr(e) == f"Error({name})"


def test_direction_of_every_type_number():
    """SPEC.md section 5: types below 16 travel detector -> host, 16..31 host -> detector."""
    assert [M.uplink(t) for t in range(32)] == [True] * 16 + [False] * 16


def test_set_config_parameters_by_name_and_by_id():
    params = [
        ["mains_hz", 60],
        ["phase_gain_q12", 40960],
        ["phase_channels", 2],
        ["p5", 3],
        ["p0", 1],
        ["p200", -7],
        ["ct_bias_hi", 3000],
    ]
    enc = counting()
    f = fr.decode(enc.message(M.COMMAND, 1, {"cmd": "set_config", "params": params}, auth=True))
    want = [[n if n != "p5" else "leak_hyst_pct", v] for n, v in params]
    assert f.fields["params"] == want
    # and as the detector reads them: ids 1 and 22 are the first and last settings.
    raw = fr.decode(enc.message(M.COMMAND, 1, {"cmd": "set_config", "params": params}), False)
    assert raw.fields["params"] == want
