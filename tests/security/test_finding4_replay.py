"""Finding 4 (issue 10): every re-ACK of a replayed event took a new host counter, so a flood
of replays pushed the gateway's counter ahead of the clock; the detector took those ACKs, and a
restarted or sibling gateway (whose counter starts at the clock) was refused for as long as
the flood was ahead (20,000 replays: ~5,000 s). Now a duplicate is answered with the ACK
already sent for it, byte-identical, and a replay below the mark is not answered at all
(SPEC.md section 7.3). This test failed on the old code (see the report of the change)."""

from __future__ import annotations

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
    # with its one ACK. Neither moves the counter.
    ctr = gw2.devs[DEV].host_ctr
    for i in range(REPLAYS // 3):
        gw2.handle(e1 if i % 2 else e2, link2)
    gw2.flush()
    assert set(link2.sent) == {link2.sent[0]}
    assert len(link2.sent) == 1 + REPLAYS // 6
    assert gw2.devs[DEV].host_ctr == ctr <= host_counter_floor(clock.t)
    assert gw2.stats["rejected:replay"] == REPLAYS // 6
    assert gw.stats.get("internal_error", 0) == gw2.stats.get("internal_error", 0) == 0
