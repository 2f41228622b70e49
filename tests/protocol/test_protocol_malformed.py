"""Malformed and edge-of-spec input: every length limit of SPEC.md, one byte either side.

Frames are built here from the byte layout of SPEC.md sections 3-5 (header struct, CRC from
binascii.crc_hqx, COBS from the codec's encoder), not through the codec's own message packers,
so a wrong limit in the decoder cannot hide behind the same mistake in the encoder. Each case
says which error SPEC.md section 10 names for it, and the shortest input that is accepted.
"""

import hmac
import signal
import struct
from binascii import crc_hqx
from hashlib import sha256

import pytest
from cobs import cobs as c_cobs
from hypothesis import example, given, seed
from hypothesis import strategies as st

from protocol import auth, cobs, messages, session
from protocol import frame as fr
from protocol.stream import StreamDecoder

M = messages
DEV = 0x01020304


@pytest.fixture(autouse=True)
def finishes():
    """Every decoder here must answer at once: a receive loop that never returns is a dead
    link (and a hung `make mutate` run). Fail after 5 s instead."""

    def stuck(*_):
        raise TimeoutError("decoder did not return")

    old = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def raw_frame(typ, payload=b"", version=1, a_bit=False, device=DEV, seq=5, t=77):
    hdr = (version << 5) | typ | (0x80 if a_bit else 0)
    body = struct.pack("<BIBI", hdr, device, seq, t) + bytes(payload)
    return body + struct.pack("<H", crc_hqx(body, 0xFFFF))


def stuff(raw):
    out = bytearray(len(raw) + len(raw) // 254 + 2)
    return bytes(out[: cobs.encode_into(raw, len(raw), out)])


def decode(raw, uplink=None):
    return fr.decode(stuff(raw), uplink)


def name(r):
    return "ok" if r.ok else r.name


# -- payload lengths (SPEC.md section 5 tables) --------------------------------------------------

# The fixed part of each payload, from SPEC.md's field tables.
LAYOUT = {
    M.HELLO: 16,
    M.TELEMETRY: 18,
    M.EVENT: 10,
    M.RESULT: 10,
    M.CONFIG: 4,
    M.SNAPSHOT: 12,
    M.POLL: 0,
    M.ACK: 4,
    M.COMMAND: 1,
}


@pytest.mark.parametrize("typ", sorted(LAYOUT))
def test_payload_one_byte_short_is_a_length_error(typ):
    n = LAYOUT[typ]
    payload = bytes([M.CMD_SELFTEST]) if typ == M.COMMAND else bytes(n)
    views = (None, False) if not M.uplink(typ) else (None, True)
    for view in views:
        r = decode(raw_frame(typ, payload), view)
        assert r.ok, (typ, view, r)
        if n:
            short = decode(raw_frame(typ, payload[:-1]), view)
            assert name(short) == "length", (typ, view)
            assert (short.device, short.seq, short.type) == (DEV, 5, typ)


@pytest.mark.parametrize("typ", [M.HELLO, M.TELEMETRY, M.EVENT, M.RESULT, M.ACK])
def test_fixed_layouts_ignore_appended_fields(typ):
    r = decode(raw_frame(typ, bytes(LAYOUT[typ] + 3)))
    assert r.ok


def test_config_parameters_come_in_fives():
    for n in range(4):
        body = struct.pack("<I", 9) + b"".join(struct.pack("<Bi", 2 + k, -k) for k in range(n))
        r = decode(raw_frame(M.CONFIG, body))
        assert r.ok and r.fields["params"] == [[r.fields["params"][k][0], -k] for k in range(n)]
        for extra in range(1, 5):
            assert name(decode(raw_frame(M.CONFIG, body + bytes(extra)))) == "length"


def test_snapshot_samples_are_whole_and_at_most_96():
    head = struct.pack("<HBBBbHHH", 1, 0, 0, 1, 0, 2000, 0, 0)
    for n in (0, 1, 95, 96):
        r = decode(raw_frame(M.SNAPSHOT, head + struct.pack(f"<{n}h", *range(n))))
        assert r.ok and r.fields["samples"] == list(range(n))
    for tail in (b"\x01", struct.pack("<97h", *range(97))):
        assert name(decode(raw_frame(M.SNAPSHOT, head + tail))) == "length"


# The arguments each command needs (SPEC.md 5.9); longer is ignored, shorter is `length`.
ARGS = {
    M.CMD_RESET: (struct.pack("<B", 3), {"channel": 3}),
    M.CMD_TIME_SYNC: (struct.pack("<I", 0x01020304), {"set_time": 0x01020304}),
    M.CMD_SNAPSHOT: (struct.pack("<H", 513), {"snap_id": 513}),
    M.CMD_RESYNC: (struct.pack("<I", 0xFFFFFFFE), {"mark": 0xFFFFFFFE}),
}


@pytest.mark.parametrize("cmd", sorted(ARGS))
@pytest.mark.parametrize("view", [None, False])
def test_command_arguments_exact_short_and_long(cmd, view):
    args, fields = ARGS[cmd]
    r = decode(raw_frame(M.COMMAND, bytes([cmd]) + args), view)
    assert r.ok and {k: r.fields[k] for k in fields} == (
        fields if view is False or cmd != M.CMD_RESET else {"channel": "temp2"}
    )
    assert decode(raw_frame(M.COMMAND, bytes([cmd]) + args + b"\x09"), view).ok
    short = decode(raw_frame(M.COMMAND, bytes([cmd]) + args[:-1]), view)
    assert name(short) == "length"


@pytest.mark.parametrize("view", [None, False])
def test_set_config_arguments_are_whole_pairs(view):
    pairs = struct.pack("<Bi", 2, 500) + struct.pack("<Bi", 99, -1)
    for n in (0, 5, 10):
        r = decode(raw_frame(M.COMMAND, bytes([M.CMD_SET_CONFIG]) + pairs[:n]), view)
        assert r.ok and r.fields["params"] == [["leak_set_ma", 500], ["p99", -1]][: n // 5]
    for n in (1, 4, 6, 9, 11):
        body = bytes([M.CMD_SET_CONFIG]) + (pairs + b"\x07")[:n]
        assert name(decode(raw_frame(M.COMMAND, body), view)) == "length", n


def test_commands_without_arguments_and_unknown_ones():
    for cmd in (M.CMD_SELFTEST, M.CMD_REBOOT, M.CMD_GET_CONFIG):
        r = decode(raw_frame(M.COMMAND, bytes([cmd])), False)
        assert r.ok and r.fields == {"cmd": cmd}
    r = decode(raw_frame(M.COMMAND, bytes([99, 0xAB, 0x00])), False)
    assert r.ok and r.fields == {"cmd": 99, "args": "ab00"}
    r = decode(raw_frame(M.COMMAND, bytes([M.CMD_RESET, M.CMD_ALL])))
    assert r.fields == {"cmd": "reset", "channel": "all"}


def test_ack_fields_little_endian():
    r = decode(raw_frame(M.ACK, struct.pack("<BBH", M.EVENT, 200, 0xBEEF)), False)
    assert r.fields == {"ack_type": M.EVENT, "ack_seq": 200, "ack_crc": 0xBEEF}
    r = decode(raw_frame(M.ACK, struct.pack("<BBH", M.EVENT, 200, 0xBEEF)))
    assert r.fields == {"ack_type": "event", "ack_seq": 200, "ack_crc": 0xBEEF}


# -- frame limits (SPEC.md sections 3, 4 and 10) --------------------------------------------------


def test_frame_of_254_bytes_is_the_largest():
    biggest = raw_frame(M.POLL, bytes(range(1, 243)))
    assert len(biggest) == fr.MAX_FRAME == 254
    assert fr.parse(biggest).ok
    wire = stuff(biggest)
    assert len(wire) == 256  # + one COBS code byte + the delimiter
    assert fr.decode(wire).ok and fr.decode(wire[:-1]).ok
    too_big = raw_frame(M.POLL, bytes(range(1, 244)))
    assert name(fr.parse(too_big)) == "overflow"
    assert name(fr.decode(stuff(too_big))) == "overflow"


def test_stuffed_segment_longer_than_255_bytes_is_overflow_before_cobs():
    # An invalid COBS segment (its first code runs past the end): cobs at 255 bytes,
    # overflow at 256, whatever the content (section 10, check 1).
    bad = b"\xfe" * 255  # codes at 0 and 254; the second block would end at 508
    assert name(fr.decode(bad)) == "cobs"
    assert name(fr.decode(bad + b"\x00")) == "cobs"
    assert name(fr.decode(bad + b"\xfe")) == "overflow"
    e = fr.decode(bad + b"\xfe" + b"\x00")
    assert name(e) == "overflow"


def test_short_frames():
    assert fr.parse(raw_frame(M.POLL)).ok  # header + CRC: 12 bytes
    assert name(fr.parse(raw_frame(M.POLL)[:-1])) == "short"
    assert name(fr.decode(b"")) in ("short", "cobs")


def test_crc_is_little_endian_over_everything_before_it():
    raw = bytearray(raw_frame(M.POLL, b"\x05"))
    assert raw[-2] != raw[-1]
    raw[-2], raw[-1] = raw[-1], raw[-2]
    assert name(fr.parse(bytes(raw))) == "crc"
    raw = bytearray(raw_frame(M.POLL, b"\x05"))
    raw[5] ^= 0x40  # the seq byte
    assert name(fr.parse(bytes(raw))) == "crc"


@pytest.mark.parametrize(("version", "want"), [(0, "version"), (1, "ok"), (2, "version")])
def test_version(version, want):
    assert name(fr.parse(raw_frame(M.POLL, version=version))) == want
    # Version 3 (reserved) too, and the A bit does not change what the version is.
    assert name(fr.parse(raw_frame(M.POLL, version=3))) == "version"


@pytest.mark.parametrize("typ", [0, 8, 15, 20, 31])
def test_unknown_type_keeps_the_header(typ):
    e = fr.parse(raw_frame(typ, bytes(20)))
    assert name(e) == "unknown_type" and (e.device, e.seq, e.type) == (DEV, 5, typ)


def test_tagged_frame_needs_room_for_counter_and_tag():
    ctr_tag = struct.pack("<I", 7) + bytes(8)
    ok = raw_frame(M.POLL, ctr_tag, a_bit=True)  # 24 bytes: header, counter, tag, CRC
    r = fr.parse(ok)
    assert r.ok and r.counter == 7 and r.tag == bytes(8)
    short = fr.parse(raw_frame(M.POLL, ctr_tag[:-1], a_bit=True))
    assert name(short) == "length" and short.device == DEV
    r = fr.parse(raw_frame(M.ACK, struct.pack("<BBH", 3, 1, 2) + ctr_tag, a_bit=True))
    assert r.ok and r.counter == 7 and r.fields["ack_seq"] == 1
    # The payload is what lies between header and counter: one byte short is `length`.
    r = fr.parse(raw_frame(M.ACK, struct.pack("<BBH", 3, 1, 2)[:-1] + ctr_tag, a_bit=True))
    assert name(r) == "length"


def test_direction_and_the_telemetry_fast_path():
    tele = raw_frame(M.TELEMETRY, struct.pack("<HhhhhHHHH", 5, 1, 2, 3, 4, 6, 7, 8, 0x201))
    assert len(tele) == 30
    host = fr.decode(stuff(tele), True)
    assert host.ok and host.fields == {
        "residual_ma": 5,
        "temp_dc": [1, 2, 3, 4],
        "line_ca": [6, 7, 8],
        "status": 0x201,
    }
    assert (host.device, host.seq, host.time, host.counter, host.tag) == (DEV, 5, 77, None, None)
    assert fr.decode(stuff(tele)).fields == host.fields
    # A detector hears another detector's TELEMETRY on the bus: refused, not decoded.
    e = fr.decode(stuff(tele), False)
    assert name(e) == "direction" and e.device == DEV
    e = fr.decode(stuff(raw_frame(M.COMMAND, bytes([M.CMD_SELFTEST]))), True)
    assert name(e) == "direction"
    tagged = raw_frame(M.TELEMETRY, bytes(18) + struct.pack("<I", 3) + bytes(8), a_bit=True)
    assert fr.decode(stuff(tagged), True).counter == 3


# -- COBS at its block boundaries -----------------------------------------------------------------

EDGE_LENGTHS = [0, 1, 252, 253, 254, 255, 256, 507, 508, 509, 510]


def _edge_data():
    out = []
    for n in EDGE_LENGTHS:
        out.append(bytes((k % 255) + 1 for k in range(n)))  # no zeros: 0xFF blocks
        for z in (0, 253, 254, 255, n - 1):
            if 0 <= z < n:
                d = bytearray((k % 255) + 1 for k in range(n))
                d[z] = 0
                out.append(bytes(d))
    return out


@pytest.mark.parametrize("data", _edge_data(), ids=lambda d: f"{len(d)}")
def test_cobs_round_trip_at_block_boundaries(data):
    wire = stuff(data)
    assert wire == c_cobs.encode(data) + b"\x00"  # the reference implementation's encoding
    assert cobs.decode_py(wire[:-1]) == data == cobs.decode(wire[:-1])
    assert cobs.decode_py(wire, len(wire) - 1) == data


NONCANONICAL = [
    b"\xff" + bytes(range(1, 255)) + b"\x01",  # a 0xFF block, then an empty block
    b"\xff" + bytes(range(1, 255)) + b"\x01\x01",
    b"\xff" + bytes(range(1, 255)) + b"\x02\x07",
    b"\x01\xff" + bytes(range(1, 255)),
    b"\xff" + bytes(range(1, 254)),  # a 0xFF block cut short
    b"\xff" + bytes(range(1, 255)) + b"\x03\x07",  # the next block cut short
    b"\x02\x05\x00\x01",  # a zero inside
    b"\x00\x01",  # a zero first
    b"\x00",
    b"\x02\x00",
    b"\x01",
    b"\x05\x01\x02",
]


@pytest.mark.parametrize("seg", NONCANONICAL, ids=range(len(NONCANONICAL)))
def test_cobs_device_decoder_agrees_with_the_reference_on_odd_input(seg):
    try:
        want = c_cobs.decode(seg)
    except c_cobs.DecodeError:
        want = None
    assert cobs.decode_py(seg) == want
    assert cobs.decode(seg) == want


def test_cobs_decodes_only_the_first_n_bytes():
    wire = stuff(b"\x11\x00\x22")  # 02 11 02 22 00
    for dec in (cobs.decode_py, cobs.decode):
        assert dec(wire, 0) == b"" and dec(b"\x00\x00", 0) == b""
        assert dec(wire, len(wire) - 1) == b"\x11\x00\x22"
        assert dec(bytearray(wire), 4) == b"\x11\x00\x22"
        assert dec(wire, 2) == b"\x11"
        assert dec(wire, 3) is None  # the second block runs past n
        assert dec(wire[:-1]) == b"\x11\x00\x22"


# -- the stream decoder's memory bound ----------------------------------------------------------


def _split_feed(wire, at):
    d = StreamDecoder()
    return d.feed(wire[:at]) + d.feed(wire[at:]), d


@pytest.mark.parametrize("at", [1, 128, 255])
def test_stream_takes_the_largest_frame_in_pieces(at):
    wire = stuff(raw_frame(M.POLL, bytes(range(1, 243))))
    out, d = _split_feed(b"\x00" + wire, at)
    assert [name(r) for r in out] == ["ok"] and d._n == 0


def test_stream_overflow_at_256_bytes_without_a_delimiter():
    for n in (255, 256):
        junk = b"\xfe" * n  # invalid COBS: its second block runs past the end
        out, d = _split_feed(junk + b"\x00", 100)
        assert [name(r) for r in out] == (["cobs"] if n == 255 else ["overflow"]), n
        # The overflow is reported when the 256th byte arrives, not at the delimiter; the
        # buffer never grows past its 256 bytes.
        d = StreamDecoder()
        assert [name(r) for r in d.feed(junk)] == ([] if n == 255 else ["overflow"]), n
        assert d._n < fr.MAX_WIRE and len(d._buf) == fr.MAX_WIRE
        assert [name(r) for r in d.feed(b"\x00")] == (["cobs"] if n == 255 else []), n
    # After an overflow the decoder skips to the next delimiter and goes on.
    d = StreamDecoder()
    good = stuff(raw_frame(M.POLL))
    out = d.feed(b"\x01" * 300) + d.feed(b"\x01" * 10 + b"\x00" + good + good)
    assert [name(r) for r in out] == ["overflow", "ok", "ok"]


def test_stream_pieces_never_grow_the_buffer():
    wire = stuff(raw_frame(M.POLL, bytes(range(1, 243))))
    d = StreamDecoder()
    out = []
    for k in range(0, len(wire), 37):
        out += d.feed(wire[k : k + 37])
        assert len(d._buf) == fr.MAX_WIRE
    assert [name(r) for r in out] == ["ok"]


def test_stream_reset_forgets_a_partial_segment_and_a_skip():
    good = stuff(raw_frame(M.POLL, b"\x01"))
    d = StreamDecoder()
    assert d.feed(good[:7]) == []
    d.reset()
    assert [name(r) for r in d.feed(good)] == ["ok"]
    d.feed(b"\x05" * 400)  # overflowed: skipping to the next delimiter
    d.reset()
    assert [name(r) for r in d.feed(good)] == ["ok"]


# -- the counter (SPEC.md 7.3) -------------------------------------------------------------------


@seed(7303)
@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
)
@example(0x7FFF, 0xFFFF, 0x8000, 0)
@example(1, 0xFFFF, 2, 0)
@example(0xFFFE, 0xFFFF, 0xFFFF, 0)
def test_counter_is_boot_count_high_and_frame_count_low(b1, n1, b2, n2):
    c1, c2 = auth.make_counter(b1, n1), auth.make_counter(b2, n2)
    assert (c1 >> 16, c1 & 0xFFFF) == (b1, n1)
    assert 0 <= c1 <= auth.COUNTER_MAX
    if (b1, n1) < (b2, n2):
        assert c1 < c2  # later boots, and later frames of a boot, always count higher
    assert auth.make_counter(b1 + 0x10000, n1) == c1  # the boot count's top bits wrap


def test_the_largest_counter_travels():
    e = fr.Encoder(DEV, auth.Key(bytes(32)), counter=lambda: auth.COUNTER_MAX)
    f = fr.decode(bytes(e.view(e.event(1, 2, 0, 3, 4))))
    assert f.ok and f.counter == auth.COUNTER_MAX == 2**32 - 1


def test_a_fresh_peer_accepts_counters_from_1():
    key = auth.Key(bytes(32))
    for ctr, ok in ((0, False), (1, True)):
        e = fr.Encoder(DEV, key, counter=lambda c=ctr: c)
        f = fr.decode(bytes(e.view(e.event(1, 2, 0, 3, 4))))
        assert (session.Peer(key).check(f) is None) is ok, ctr


@seed(2104)
@given(st.binary(max_size=80), st.binary(max_size=100), st.integers(0, 100), st.integers(0, 100))
@example(b"k", b"abc", 0, 0)
@example(b"k", b"abc", 3, 3)
def test_mac_and_tag_cover_exactly_the_range_asked(key, data, a, b):
    s, e = min(a, b, len(data)), min(max(a, b), len(data))
    k = auth.Key(key)
    want = hmac.new(key, data[s:e], sha256).digest()
    assert k.mac(data, s, e) == want and k.tag(data, s, e) == want[:8]
    assert k.mac(data, s) == hmac.new(key, data[s:], sha256).digest()
