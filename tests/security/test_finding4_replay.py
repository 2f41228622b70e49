"""Finding 4 (issue 10): every re-ACK of a replayed event took a new host counter, so a flood
of replays pushed the gateway's counter ahead of the clock; the detector took those ACKs, and a
restarted or sibling gateway (whose counter starts at the clock) was refused for as long as
the flood was ahead (20,000 replays: ~5,000 s). Now a duplicate is answered with the ACK
already sent for it, byte-identical, and a replay below the mark is not answered at all
(SPEC.md section 7.3). This test failed on the old code (see the report of the change)."""

from __future__ import annotations

from protocol import frame as fr
from protocol import messages as M
from tests.security.common import DEV, T0, Clock, Link, ack_counter, gateway, key, use_clock
from tools.fleet.detector import VirtualDetector
from tools.gateway.core import host_counter_floor

REPLAYS = 3000  # 750 s ahead of the clock on the old code


def test_replays_take_no_counters_and_lock_nobody_out(tmp_path, monkeypatch):
    clock = Clock()
    use_clock(monkeypatch, clock)
    floor = host_counter_floor(T0)
    det = VirtualDetector(DEV, key(DEV), retry_s=0.0)
    gw = gateway(tmp_path, name="a")
    link = Link()
    det.raise_event(2, 0, 320, 300)
    e1 = det.uplink(0.0, 1000) or b""
    gw.handle(e1, link)
    gw.flush()
    # The attacker captured e1 and replays it; the ACKs reach the detector (MQTT: its downlink
    # topic; UDP: the attacker forwards them).
    for i in range(REPLAYS):
        gw.handle(e1, link)
        if i % 500 == 499:
            gw.flush()
    gw.flush()
    assert len(link.sent) == REPLAYS + 1  # a lost ACK is still answered, every time...
    assert len(set(link.sent)) == 1  # ...with the same frame: one counter, not 3001
    assert gw.devs[DEV].host_ctr == floor
    for w in link.sent:
        det.downlink(w, 0.1, 1000)
    assert det.inflight is None

    # 10 s later a sibling instance (or this one, restarted) ACKs the detector's next event:
    # its counter comes from the clock, 40 above the first ACK, and must be taken.
    clock.advance(10)
    gw2 = gateway(tmp_path, name="b")
    link2 = Link()
    det.raise_event(2, 0, 20, 300)
    e2 = det.uplink(1.0, 1010) or b""
    gw2.handle(e2, link2)
    gw2.flush()
    assert ack_counter(link2.sent[0]) == host_counter_floor(clock.t)
    det.downlink(link2.sent[0], 1.1, 1010)
    assert det.inflight is None, "the sibling's ACK was refused: locked out by replays"

    # Replays of the old event (below the mark) are not answered; of the latest one, answered
    # with its one ACK, which moves no counter. The first copy below the mark also asks the
    # detector to resync (SPEC.md section 7.4: its counter may have gone backwards): one
    # COMMAND, one counter, and no other for RESYNC_EVERY_S, however many copies follow.
    ctr = gw2.devs[DEV].host_ctr
    for i in range(REPLAYS // 3):
        gw2.handle(e1 if i % 2 else e2, link2)
    gw2.flush()
    kinds = [fr.decode(w).type for w in link2.sent]
    assert kinds.count(M.COMMAND) == 1 and gw2.stats["resync_requested"] == 1
    acks = [w for w in link2.sent if fr.decode(w).type == M.ACK]
    assert set(acks) == {link2.sent[0]}
    assert len(acks) == 1 + REPLAYS // 6
    assert gw2.devs[DEV].host_ctr == ctr + 1 <= host_counter_floor(clock.t) + 1
    assert gw2.stats["rejected:replay"] == REPLAYS // 6
    assert gw.stats.get("internal_error", 0) == gw2.stats.get("internal_error", 0) == 0


def test_a_copy_answered_after_a_newer_events_ack_takes_no_counter(tmp_path, monkeypatch):
    """Found by test_fuzz_gateway (present before issue 10's resync work): e1, a copy of e1,
    then e2 in one batch. The copy was answered after e2's ACK, no longer the cached one, so
    it took a third counter; rule H3 allows one per event. It is not answered now: e2 exists
    only because the detector had e1's ACK (stop-and-wait, SPEC.md section 8)."""
    use_clock(monkeypatch, Clock())
    gw = gateway(tmp_path)
    link = Link()
    det = VirtualDetector(DEV, key(DEV), retry_s=0.0)
    det.raise_event(2, 0, 320, 300)
    e1 = det.uplink(0.0, 1000) or b""
    det.inflight = None
    det.raise_event(2, 0, 20, 300)
    e2 = det.uplink(0.0, 1000) or b""
    for w in (e1, e1, e2):
        gw.handle(w, link)
    gw.flush()
    assert [fr.decode(w).fields["ack_crc"] for w in link.sent] == [
        fr.decode(e1).crc,
        fr.decode(e2).crc,
    ]
    assert gw.stats["ack_superseded"] == 1 and gw.stats["stored:event"] == 2
    assert gw.devs[DEV].host_ctr == host_counter_floor(T0) + 1
