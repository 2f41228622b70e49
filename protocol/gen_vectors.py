"""Generate protocol/vectors/vectors.json: golden frames for every message type.

    python -m protocol.gen_vectors          # rewrite the file
    python -m protocol.gen_vectors --check  # exit 1 if the file is stale

Each vector: name, hex (the wire bytes, delimiter included), the header arguments used to
encode it, and `decoded` (what protocol.frame.decode(...).to_dict() returns). Invalid vectors
carry `error` (the typed error name) and `stage` ("decode", or "auth" for a frame that decodes
but must be rejected by protocol.session.Peer). Tagged vectors use TEST_KEY, a public test
key that no real detector may carry.
"""

import json
import sys
from binascii import hexlify

from protocol import auth, cobs, crc, messages
from protocol import frame as fr

TEST_KEY = bytes(range(32))
DEVICE = 0x12345678
T = 200000000  # 2026-05-03T19:33:20Z on the wire's 2020 epoch
PATH = "protocol/vectors/vectors.json"
# The first 20 bytes of an update image: magic "EFU1", manifest length, "efd-update 1\nve".
UPDATE_HEAD = b"EFU1\xf0\x0eefd-update 1\nve"


def _frame(enc, typ, fields, seq, t=T, auth_=False, counter=0):
    return enc.message(typ, t, fields, auth=auth_, seq=seq, counter=counter)


def valid():
    """(name, type, fields, seq, auth, counter) for every message type and command."""
    M = messages
    sine = [0, 1131, 2078, 2717, 2941, 2717, 2078, 1131, 0, -1131, -2078, -2717, -2941, -2717]
    return [
        (
            "hello",
            M.HELLO,
            {
                "fw": [1, 2, 3],
                "reset_cause": "watchdog",
                "boot_count": 42,
                "config_hash": 0x9E3779B9,
                "host_counter": 1000,
            },
            0,
            False,
            0,
        ),
        (
            "telemetry",
            M.TELEMETRY,
            {
                "residual_ma": 123,
                "temp_dc": [234, 251, -50, 712],
                "line_ca": [1234, 1120, 1005],
                "status": M.ST_PREALARM,
            },
            1,
            False,
            0,
        ),
        (
            "telemetry_not_fitted",
            M.TELEMETRY,
            {
                "residual_ma": 305,
                "temp_dc": [655, None, None, None],
                "line_ca": [None, None, None],
                "status": 0x0001 | M.ST_FAULT | M.ST_PENDING,
            },
            2,
            False,
            0,
        ),
        (
            "event_alarm",
            M.EVENT,
            {"kind": "alarm", "channel": "residual", "value": 320, "threshold": 300},
            3,
            True,
            0x002A0001,
        ),
        (
            "event_fault_untagged",
            M.EVENT,
            {"kind": "fault", "channel": "temp2", "value": 1, "threshold": 0},
            4,
            False,
            0,
        ),
        (
            "result",
            M.RESULT,
            {"cmd_counter": 1002, "cmd": "selftest", "status": "ok", "value": 1},
            5,
            True,
            0x002A0002,
        ),
        (
            "config",
            M.CONFIG,
            {
                "config_hash": 0x9E3779B9,
                "params": [["leak_set_ma", 300], ["leak_delay_s", 1], ["temp_set_c", 70]],
            },
            6,
            True,
            0x002A0003,
        ),
        (
            "snapshot",
            M.SNAPSHOT,
            {
                "snap_id": 7,
                "channel": "residual",
                "chunk": 0,
                "chunks": 3,
                "scale_exp": -1,
                "rate_hz": 700,
                "trigger": 20,
                "offset": 0,
                "samples": sine,
            },
            7,
            False,
            0,
        ),
        ("poll", M.POLL, {}, 0, False, 0),
        (
            "ack",
            M.ACK,
            {"ack_type": "event", "ack_seq": 3, "ack_crc": 0},  # ack_crc filled in below
            0,
            True,
            1000,
        ),
        ("cmd_reset", M.COMMAND, {"cmd": "reset", "channel": "all"}, 1, True, 1001),
        ("cmd_selftest", M.COMMAND, {"cmd": "selftest"}, 2, True, 1002),
        (
            "cmd_set_config",
            M.COMMAND,
            {"cmd": "set_config", "params": [["leak_set_ma", 500], ["temp_delay_s", 10]]},
            3,
            True,
            1003,
        ),
        ("cmd_time_sync", M.COMMAND, {"cmd": "time_sync", "set_time": T + 5}, 4, True, 1004),
        ("cmd_snapshot", M.COMMAND, {"cmd": "snapshot", "snap_id": 7}, 5, True, 1005),
        ("cmd_reboot", M.COMMAND, {"cmd": "reboot"}, 6, True, 1006),
        ("cmd_get_config", M.COMMAND, {"cmd": "get_config"}, 7, True, 1007),
        ("cmd_resync", M.COMMAND, {"cmd": "resync", "mark": 0x002A0003}, 8, True, 1008),
        # The signed update (SPEC.md section 12): an image of 54253 bytes, id 0x8f2dd5c5.
        (
            "update_begin",
            M.UPDATE,
            {"op": "begin", "image": 0x8F2DD5C5, "size": 54253},
            9,
            True,
            1009,
        ),
        (
            "update_chunk",
            M.UPDATE,
            {"op": "chunk", "image": 0x8F2DD5C5, "offset": 0, "data": UPDATE_HEAD},
            10,
            True,
            1010,
        ),
        ("update_status_query", M.UPDATE, {"op": "status", "image": 0x8F2DD5C5}, 11, True, 1011),
        ("update_install", M.UPDATE, {"op": "install", "image": 0x8F2DD5C5}, 12, True, 1012),
        ("update_abort", M.UPDATE, {"op": "abort", "image": 0x8F2DD5C5}, 13, True, 1013),
        (
            "update_status",
            M.UPDATE_STATUS,
            {
                "state": "receiving",
                "result": "ok",
                "image": 0x8F2DD5C5,
                "have": 20,
                "size": 54253,
                "fw": [0, 1, 0],
            },
            9,
            True,
            0x002A0004,
        ),
        (
            "update_status_bad_offset",
            M.UPDATE_STATUS,
            {
                "state": "receiving",
                "result": "bad_offset",
                "image": 0x8F2DD5C5,
                "have": 4096,
                "size": 54253,
                "fw": [0, 1, 0],
            },
            10,
            True,
            0x002A0005,
        ),
        # The link's state (SPEC.md section 5.9): on WiFi, the RSSI in dBm.
        ("cmd_link_status", M.COMMAND, {"cmd": "link_status"}, 14, True, 1014),
        (
            "result_link_status",
            M.RESULT,
            {"cmd_counter": 1014, "cmd": "link_status", "status": "ok", "value": -61},
            11,
            True,
            0x002A0006,
        ),
    ]


def _hex(b):
    return hexlify(b).decode()


def _stuff(raw):
    out = bytearray(len(raw) + 2)
    return bytes(out[: cobs.encode_into(raw, len(raw), out)])


def _restuff(raw):
    """Re-CRC and COBS-stuff a modified raw frame (for the invalid vectors)."""
    raw = bytearray(raw)
    c = crc.crc16(raw, 0, len(raw) - 2)
    raw[-2] = c & 0xFF
    raw[-1] = c >> 8
    return _stuff(raw)


def build():
    key = auth.Key(TEST_KEY)
    enc = fr.Encoder(DEVICE, key)
    out = []
    wires = {}
    for name, typ, fields, seq, tagged, counter in valid():
        if name == "ack":  # the ACK names the event_alarm frame by its type, seq and CRC
            fields = dict(fields, ack_crc=fr.decode(wires["event_alarm"]).crc)
        wire = _frame(enc, typ, fields, seq, auth_=tagged, counter=counter)
        wires[name] = wire
        f = fr.decode(wire)
        assert f.ok, (name, f)
        out.append(
            {
                "name": name,
                "hex": _hex(wire),
                "len": len(wire),
                "header": {"device": DEVICE, "seq": seq, "time": T, "auth": tagged},
                "decoded": f.to_dict(),
            }
        )
    raw = cobs.decode(wires["telemetry"][:-1])
    flipped = bytearray(raw)
    flipped[12] ^= 0x04  # one bit of the residual current: 123 mA -> 127 mA
    bad_crc = _stuff(flipped)
    v2 = bytearray(raw)
    v2[0] = (v2[0] & 0x9F) | (2 << 5)
    t9 = bytearray(raw)
    t9[0] = (t9[0] & 0xE0) | 9
    wrong_key = fr.Encoder(DEVICE, auth.Key(b"\x55" * 32)).message(
        messages.EVENT,
        T,
        {"kind": "alarm", "channel": "residual", "value": 320, "threshold": 300},
        auth=True,
        seq=3,
        counter=0x002A0001,
    )
    zero = fr.Encoder(DEVICE, key).message(
        messages.EVENT,
        T,
        {"kind": "alarm", "channel": "residual", "value": 320, "threshold": 300},
        auth=True,
        seq=3,
        counter=0,
    )
    # A set_config whose arguments leave one byte after the last (id, value) pair.
    leftover = bytearray(cobs.decode(wires["cmd_set_config"][:-1]))
    leftover[-14:-14] = b"\x07"  # before counter, tag and CRC: payload 1 + 10 + 1 bytes
    # An ACK with 3 payload bytes instead of 4, and a SNAPSHOT of 97 samples (max 96).
    ack3 = bytearray(cobs.decode(wires["ack"][:-1]))
    del ack3[13]
    snap97 = fr.Encoder(DEVICE).message(
        messages.SNAPSHOT,
        T,
        {"snap_id": 7, "channel": "residual", "chunk": 0, "chunks": 1, "scale_exp": -1,
         "rate_hz": 2000, "trigger": 0, "offset": 0, "samples": [0] * 96},
        seq=8,
    )  # fmt: skip
    snap97 = bytearray(cobs.decode(snap97[:-1]))
    snap97[-2:-2] = b"\x01\x00"  # one more sample
    # An UPDATE chunk of 201 data bytes (at most 200) and a begin without its size.
    chunk201 = fr.Encoder(DEVICE, key).message(
        messages.UPDATE,
        T,
        {"op": "chunk", "image": 0x8F2DD5C5, "offset": 0, "data": bytes(201)},
        auth=True,
        seq=14,
        counter=1014,
    )
    begin4 = bytearray(cobs.decode(wires["update_begin"][:-1]))
    del begin4[15:19]  # the size: payload op + image only
    forged = bytearray(cobs.decode(wires["cmd_reset"][:-1]))
    forged[11] = 0x04  # "reset all" -> "reset temp3", old tag kept, CRC fixed: tag must fail
    invalid = [
        ("bad_crc", bad_crc, "crc", "decode"),
        ("truncated", wires["telemetry"][:20] + b"\x00", "cobs", "decode"),
        ("short", _restuff(raw[:9] + b"\x00\x00"), "short", "decode"),
        ("payload_too_short", _restuff(raw[:20] + b"\x00\x00"), "length", "decode"),
        ("garbage", b"\x13\x37\x00", "cobs", "decode"),
        ("version_2", _restuff(v2), "version", "decode"),
        ("unknown_type_9", _restuff(t9), "unknown_type", "decode"),
        ("event_wrong_key", wrong_key, "bad_tag", "auth"),
        ("cmd_forged_args", _restuff(forged), "bad_tag", "auth"),
        ("cmd_set_config_leftover_byte", _restuff(leftover), "length", "decode"),
        ("ack_too_short", _restuff(ack3), "length", "decode"),
        ("snapshot_97_samples", _restuff(snap97), "length", "decode"),
        ("event_counter_zero", zero, "replay", "auth"),
        ("update_chunk_201_bytes", chunk201, "length", "decode"),
        ("update_begin_without_size", _restuff(begin4), "length", "decode"),
    ]
    for name, wire, err, stage in invalid:
        f = fr.decode(wire)
        if stage == "decode":
            assert not f.ok and f.name == err, (name, f)
        out.append({"name": name, "hex": _hex(wire), "error": err, "stage": stage})
    return {
        "comment": "Golden vectors, generated by `python -m protocol.gen_vectors`; see SPEC.md.",
        "test_key": _hex(TEST_KEY),
        "vectors": out,
    }


def render():
    return json.dumps(build(), indent=1, sort_keys=True) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in argv:
        with open(PATH) as fh:
            if fh.read() != text:
                print(PATH + " is stale: run python -m protocol.gen_vectors")
                return 1
        return 0
    with open(PATH, "w") as fh:
        fh.write(text)
    print("wrote " + PATH)
    return 0


if __name__ == "__main__":
    sys.exit(main())
