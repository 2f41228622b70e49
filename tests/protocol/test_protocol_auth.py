"""Authentication and replay: every rejection is a typed Error, never an exception."""

from binascii import unhexlify

import pytest
from hypothesis import given
from hypothesis import strategies as st

from efd import events as ev
from protocol import auth, messages, session
from protocol import frame as fr
from protocol.host import HOST_REQUIRES

KEY = auth.Key(bytes(range(32)))
DEV = 0x0A0B0C0D


def host_enc(counter_start=1):
    c = [counter_start - 1]

    def nxt():
        c[0] += 1
        return c[0]

    return fr.Encoder(DEV, KEY, counter=nxt)


def detector(last=0):
    return session.Peer(KEY, last, session.DETECTOR_REQUIRES, uplink=False)


def cmd(enc, **kw):
    return fr.decode(enc.message(messages.COMMAND, 1, {"cmd": "reset", "channel": "all"}, **kw))


def test_authentic_command_accepted_then_counter_advances():
    peer, enc = detector(), host_enc()
    assert peer.check(cmd(enc, auth=True)) is None
    assert peer.check(cmd(enc, auth=True)) is None
    assert peer.marks[0] == 2


def test_forged_tag_rejected_and_state_untouched():
    peer, enc = detector(), host_enc()
    f = cmd(enc, auth=True)
    raw = bytearray(f.raw)
    raw[-3] ^= 0x01  # last tag byte
    forged = fr.parse(_recrc(raw))
    assert forged.ok  # CRC is fine: only the tag can catch it
    e = peer.check(forged)
    assert e.name == "bad_tag" and e.device == DEV
    assert peer.marks[0] == 0
    assert peer.check(f) is None  # the genuine frame still goes through


def test_wrong_key_rejected():
    other = fr.Encoder(DEV, auth.Key(b"k" * 32), counter=lambda: 5)
    assert detector().check(cmd(other, auth=True)).name == "bad_tag"


def test_modified_payload_with_fixed_crc_rejected(vectors):
    v = next(v for v in vectors["vectors"] if v["name"] == "cmd_forged_args")
    f = fr.decode(unhexlify(v["hex"]))
    assert f.ok and f.fields == {"cmd": "reset", "channel": "temp3"}
    assert detector().check(f).name == "bad_tag"


def test_replayed_counter_rejected():
    peer, enc = detector(), host_enc()
    old = cmd(enc, auth=True)
    assert peer.check(old) is None
    assert peer.check(cmd(enc, auth=True)) is None
    assert peer.check(old).name == "replay"
    # the same counter with a different message (same key) is a replay, not a duplicate
    again = cmd(enc, auth=True, counter=2, seq=99)
    assert peer.check(again).name == "replay"


def test_retransmission_is_a_duplicate_not_an_action():
    peer, enc = detector(), host_enc()
    wire = enc.message(messages.COMMAND, 1, {"cmd": "selftest"}, auth=True)
    assert peer.check(fr.decode(wire)) is None
    assert peer.check(fr.decode(wire)).name == "duplicate"


def test_persisted_high_water_mark_survives_reboot():
    enc = host_enc(counter_start=500)
    assert detector(last=500).check(cmd(enc, auth=True)).name == "replay"
    assert detector(last=499).check(cmd(enc, auth=True)) is None


def test_untagged_command_and_ack_rejected_untagged_poll_accepted():
    enc = fr.Encoder(DEV)
    peer = detector()
    assert peer.check(cmd(enc)).name == "no_tag"
    ack = enc.message(messages.ACK, 1, {"ack_type": "event", "ack_seq": 1, "ack_crc": 2})
    assert peer.check(fr.decode(ack)).name == "no_tag"
    assert peer.check(fr.decode(enc.message(messages.POLL, 1, {}))) is None


def test_direction_is_enforced():
    # A tagged event reflected back at the detector must not pass as a downlink frame.
    enc = fr.Encoder(DEV, KEY, counter=lambda: 9)
    f = fr.decode(bytes(enc.view(enc.event(1, ev.ALARM, ev.RESIDUAL, 400, 300))))
    assert detector().check(f).name == "direction"
    host = session.Peer(KEY, 0, HOST_REQUIRES, uplink=True)
    assert host.check(f) is None


def test_host_requires_tagged_events():
    host = session.Peer(KEY, 0, HOST_REQUIRES, uplink=True)
    enc = fr.Encoder(DEV)  # no key: the event goes out untagged
    f = fr.decode(bytes(enc.view(enc.event(1, ev.ALARM, ev.RESIDUAL, 1, 1))))
    assert f.tag is None
    assert host.check(f).name == "no_tag"


@given(st.integers(1, 80))
def test_truncated_tagged_frame_rejected(cut):
    wire = host_enc().message(messages.COMMAND, 1, {"cmd": "selftest"}, auth=True)
    raw = fr.cobs.decode(wire[:-1])
    cut = min(cut, len(raw) - 1)
    short = raw[:-cut]
    # Truncation with the CRC recomputed by an attacker: still never accepted.
    body = raw[:-2][:-cut]
    for candidate in (short, _recrc(bytearray(body) + b"\0\0")):
        r = fr.parse(bytes(candidate))
        if r.ok:
            assert detector().check(r) is not None
        else:
            assert r.name in ("short", "crc", "length", "unknown_type")
    # and through the wire path
    assert not fr.decode(wire[: len(wire) - 1 - cut] + b"\0").ok


def test_counter_construction_is_monotonic_across_boots():
    seq = [auth.make_counter(b, n) for b in (1, 2) for n in (0, 1, 0xFFFF)]
    assert seq == sorted(seq) and len(set(seq)) == len(seq)


def _recrc(raw):
    raw = bytearray(raw)
    c = fr.crc16(raw, 0, len(raw) - 2)
    raw[-2], raw[-1] = c & 0xFF, c >> 8
    return bytes(raw)


@pytest.mark.parametrize("name", ["event_wrong_key", "cmd_forged_args"])
def test_auth_stage_vectors_rejected(vectors, name):
    v = next(v for v in vectors["vectors"] if v["name"] == name)
    f = fr.decode(unhexlify(v["hex"]))
    f_type_uplink = messages.uplink(f.type)
    peer = session.Peer(
        auth.Key(unhexlify(vectors["test_key"])),
        0,
        HOST_REQUIRES if f_type_uplink else session.DETECTOR_REQUIRES,
        uplink=f_type_uplink,
    )
    assert peer.check(f).name == v["error"]


def _counted(counter):
    return fr.Encoder(DEV, KEY, counter=lambda: counter)


def test_event_retransmitted_after_a_result_overtook_it_is_still_accepted():
    """SPEC §7.3: an event whose first copy was lost, retransmitted after a RESULT (with a
    higher counter) got through, must be accepted, else stop-and-wait blocks every later
    event forever. An older, already-superseded event counter is still a replay."""
    host = session.Peer(KEY, 0, HOST_REQUIRES, uplink=True)
    e0 = _counted(5)
    old = fr.decode(bytes(e0.view(e0.event(1, ev.ALARM, ev.RESIDUAL, 9, 9))))
    assert host.check(old) is None
    e1 = _counted(10)
    event = bytes(e1.view(e1.event(2, ev.ALARM, ev.RESIDUAL, 400, 270)))  # first copy lost
    result = _counted(12).message(
        messages.RESULT, 3, {"cmd_counter": 7, "cmd": "selftest", "status": "ok", "value": 1},
        auth=True,
    )  # fmt: skip
    assert host.check(fr.decode(result)) is None
    assert host.check(fr.decode(event)) is None, "retransmitted event must be accepted"
    assert host.check(fr.decode(event)).name == "duplicate"
    assert host.check(old).name == "replay"


def test_command_retransmitted_after_an_ack_overtook_it_is_still_accepted():
    det = detector()
    cmd = _counted(20).message(messages.COMMAND, 1, {"cmd": "reset", "channel": "all"}, auth=True)
    ack = _counted(21).message(
        messages.ACK, 2, {"ack_type": "event", "ack_seq": 1, "ack_crc": 2}, auth=True
    )
    assert det.check(fr.decode(ack)) is None
    assert det.check(fr.decode(cmd)) is None
    assert det.check(fr.decode(cmd)).name == "duplicate"
    assert det.check(fr.decode(ack)).name == "duplicate"


def test_cached_result_resent_after_its_config_got_through_is_accepted():
    """get_config answers RESULT (counter c) then CONFIG (c + 1; a HELLO here, the same class).
    If the RESULT is lost, the
    host retransmits the command and the detector re-sends the cached RESULT: it must be
    accepted, not taken for a replay behind the CONFIG's higher counter."""
    host = session.Peer(KEY, 0, HOST_REQUIRES, uplink=True)
    fields = {"cmd_counter": 7, "cmd": "get_config", "status": "ok", "value": 0}
    result = _counted(30).message(messages.RESULT, 4, fields, auth=True)  # lost
    hello = _counted(31).message(
        messages.HELLO,
        5,
        {"fw": [1, 0, 0], "config_hash": 1, "boot_count": 1, "reset_cause": "watchdog",
         "host_counter": 0},
        auth=True,
    )  # fmt: skip
    assert host.check(fr.decode(hello)) is None
    assert host.check(fr.decode(result)) is None
    assert host.check(fr.decode(result)).name == "duplicate"


def test_persisted_mark_is_the_retransmitted_class():
    """A host persists marks[0] (the EVENT class) and restarts from it: a replay of any event
    it accepted is refused after the restart, while a RESULT or HELLO sent after those events
    (higher counters, other classes) does not move the persisted mark past an event that may
    still be retransmitted."""
    host = session.Peer(KEY, 40, HOST_REQUIRES, uplink=True)
    e = _counted(40)
    old_event = fr.decode(bytes(e.view(e.event(1, ev.ALARM, 0, 1, 1))))
    assert host.check(old_event).name == "replay"  # at the restored mark: not new
    e = _counted(50)
    event = fr.decode(bytes(e.view(e.event(2, ev.ALARM, ev.RESIDUAL, 400, 270))))
    fields = {"cmd_counter": 7, "cmd": "selftest", "status": "ok", "value": 1}
    result = fr.decode(_counted(60).message(messages.RESULT, 3, fields, auth=True))
    assert host.check(event) is None and host.check(result) is None
    assert session.replay_class(messages.EVENT) == session.replay_class(messages.COMMAND) == 0
    assert session.replay_class(messages.RESULT) == 1
    assert session.replay_class(messages.HELLO) == session.replay_class(messages.ACK) == 2
    restored = session.Peer(KEY, host.marks[0], HOST_REQUIRES, uplink=True)
    assert restored.check(event).name == "replay"
    e = _counted(51)
    assert restored.check(fr.decode(bytes(e.view(e.event(4, ev.ALARM, 0, 1, 1))))) is None
    # Every class starts at the restored mark: a RESULT between the two is still new.
    r55 = fr.decode(_counted(55).message(messages.RESULT, 5, fields, auth=True))
    assert restored.check(r55) is None
