"""Finding 3 (issue 10), the host half: a detector whose uplink counter went backwards (lost or
corrupted state file, swapped board) had every event refused as a `replay`: never stored,
never ACKed, silenced for good. SPEC.md section 7.4: on a tag-verified EVENT or HELLO refused
as a replay strictly below its mark, the gateway sends a `resync` COMMAND carrying its highest
mark, back where the frame came from, at most one queued or in flight per device and at most
one per 10 s. The replayed frame itself is still neither stored nor ACKed (rule H3).

The fake detector below is protocol.frame.Encoder plus SPEC.md 7.3's counter construction and
7.4's `resync` handling, nothing of the gateway's. Each test fails on the code before the
change (no resync was ever sent)."""

from __future__ import annotations

import logging
from pathlib import Path

from protocol import frame as fr
from protocol import messages as M
from protocol.auth import Key, make_counter
from protocol.session import DETECTOR_REQUIRES, Peer
from tests.security.common import DEV, AddrLink, Clock, key, registry, untagged_hello, use_clock
from tools.gateway import core
from tools.gateway.core import Gateway
from tools.gateway.store import Store

DETECTOR = ("192.0.2.10", 47000)
ATTACKER = ("203.0.113.66", 5555)


class FakeDetector:
    """The detector as far as its counters go: counter = boot_count << 16 | n (SPEC.md 7.3),
    events kept until ACKed (same bytes retransmitted), and `resync` as SPEC.md 7.4 says."""

    def __init__(self, boot: int, n: int = 0):
        self.boot, self.n = boot, n
        self.key = Key(key(DEV))
        self.enc = fr.Encoder(DEV, self.key, self._counter)
        self.host = Peer(self.key, 0, DETECTOR_REQUIRES, uplink=False)  # downlink mark lost too
        self.pending: list[tuple[tuple, bytes]] = []  # ((t, kind, ch, value, thr, seq), wire)
        self.sent: list[bytes] = []  # every new event frame, in order
        self.last = 0  # the last counter used
        self.answer: str | None = None  # force a RESULT status (failed, locked)

    def _counter(self) -> int:
        self.n += 1
        self.last = make_counter(self.boot, self.n)
        return self.last

    def event(self, value: int, t: int = 1000) -> bytes:
        seq = self.enc.seq
        w = bytes(self.enc.wire[: self.enc.event(t, 2, 0, value, 300)])
        self.pending.append(((t, 2, 0, value, 300, seq), w))
        self.sent.append(w)
        return w

    def hello(self) -> bytes:
        return self.enc.message(
            M.HELLO, 1000,
            {"fw": [1, 0, 0], "reset_cause": "power_on", "boot_count": self.boot,
             "config_hash": 0, "host_counter": self.host.marks[0]},
            auth=True,
        )  # fmt: skip

    def telemetry(self) -> bytes:
        n = self.enc.telemetry(1000, 12, [250, 250, -32768, -32768], [0, 0, 0], 0, auth=True)
        return bytes(self.enc.wire[:n])

    def downlink(self, wire: bytes) -> list[bytes]:
        f = fr.decode(wire)
        if not f.ok or self.host.check(f) is not None:
            return []  # no answer to no_tag, bad_tag, replay (SPEC.md 7.3)
        if f.type == M.ACK:
            a = f.fields
            self.pending = [
                (m, w) for m, w in self.pending
                if not (fr.decode(w).seq == a["ack_seq"] and fr.decode(w).crc == a["ack_crc"])
            ]  # fmt: skip
            return []
        cmd = f.fields["cmd"]
        out = []
        status = self.answer or "ok"
        if cmd == "resync" and status == "ok":
            mark = f.fields["mark"]
            if self.last < mark:
                self.boot, self.n = (mark >> 16) + 1, 0
                old, self.pending = self.pending, []
                for (t, kind, ch, value, thr, seq), w in old:
                    if fr.decode(w).counter < mark:  # re-logged: same seq, time, content
                        w = bytes(self.enc.wire[: self.enc.event(t, kind, ch, value, thr, seq=seq)])
                    self.pending.append(((t, kind, ch, value, thr, seq), w))
                    out.append(w)
        result = self.enc.message(
            M.RESULT, 1000,
            {"cmd_counter": f.counter, "cmd": cmd, "status": status, "value": self.boot},
            auth=True,
        )  # fmt: skip
        return [result, *out]


def make(tmp: Path, name: str = "gw") -> Gateway:
    return Gateway(registry(), Store(tmp / "gw.db", name), name=name)


def history(gw: Gateway, link: AddrLink) -> FakeDetector:
    """The detector before it lost its state: boot 5, a HELLO, an event (stored and ACKed),
    then a tagged TELEMETRY with a higher counter, so the highest mark is not the event's."""
    det = FakeDetector(boot=5)
    gw.handle(det.hello(), link, DETECTOR)
    gw.handle(det.event(320), link, DETECTOR)
    gw.flush()
    for w, _a in link.sent:
        det.downlink(w)
    assert det.pending == []
    det.n = 40
    gw.handle(det.telemetry(), link, DETECTOR)
    gw.flush()
    assert gw.devs[DEV].peer is not None
    assert gw.devs[DEV].peer.marks == [make_counter(5, 2), 0, make_counter(5, 41)]
    return det


def events(gw: Gateway) -> list[tuple[int, int]]:
    return gw.store.db.execute(
        "SELECT counter, value FROM events WHERE device=? ORDER BY id", (DEV,)
    ).fetchall()


def test_detector_whose_counter_went_backwards_recovers_in_band(tmp_path, monkeypatch, caplog):
    """End to end: events refused, one resync with mark = max(marks), the detector moves above
    it and re-sends its event, which is stored and ACKed exactly once."""
    caplog.set_level(logging.INFO, "efd.gateway")
    clock = Clock()
    use_clock(monkeypatch, clock)
    gw = make(tmp_path)
    link = AddrLink()
    history(gw, link)
    mark = make_counter(5, 41)
    host_ctr = gw.devs[DEV].host_ctr

    det = FakeDetector(boot=1)  # its state file is gone: counting from boot 1 again
    e = det.event(777)
    for _ in range(3):  # the detector retransmits (SPEC.md section 8)
        gw.handle(e, link, DETECTOR)
        gw.flush()
        clock.advance(1)
    assert events(gw) == [(make_counter(5, 2), 320)]  # refused: not stored...
    assert len(link.frames(M.ACK)) == 1  # ...not ACKed (only the old event's ACK)
    assert gw.stats["rejected:replay"] == 3
    assert link.resyncs() == [(mark, DETECTOR)]  # one, with the highest mark, to its address
    assert gw.devs[DEV].host_ctr == host_ctr + 1
    assert gw.stats["resync_requested"] == 1

    answers = det.downlink(link.sent[-1][0])
    assert det.boot == 6 and len(answers) == 2
    for w in answers:
        gw.handle(w, link, DETECTOR)
    gw.flush()
    (new_counter, value), = events(gw)[1:]  # fmt: skip
    assert value == 777 and new_counter > mark
    acks = [f for f, _a in link.frames(M.ACK) if f.fields["ack_crc"] == fr.decode(answers[1]).crc]
    assert len(acks) == 1
    for w, _a in link.sent:
        det.downlink(w)
    assert det.pending == []  # ACKed: the detector has nothing left to send
    gw.handle(answers[1], link, DETECTOR)  # a retransmission (its ACK lost): the same ACK
    gw.flush()
    assert len(events(gw)) == 2 and link.sent[-1][0] == link.sent[-2][0]
    assert gw.stats["resync_done"] == 1 and gw.stats.get("resync_failed", 0) == 0
    c = gw.store.db.execute(
        "SELECT cmd, requested_by, status, result, value FROM commands WHERE cmd='resync'"
    ).fetchall()
    assert c == [("resync", "gateway", "done", "ok", 6)]
    assert f"device {DEV}: uplink counter re-synchronised above {mark} (boot count 6)" in (
        caplog.text
    )
    assert gw.stats.get("internal_error", 0) == 0


def test_at_the_mark_is_a_duplicate_one_below_is_a_resync(tmp_path, monkeypatch):
    clock = Clock()
    use_clock(monkeypatch, clock)
    gw = make(tmp_path)
    link = AddrLink()
    e1 = history(gw, link).sent[0]
    event_mark = make_counter(5, 2)
    assert fr.decode(e1).counter == event_mark
    # The stored event again (its ACK lost): a duplicate, answered with its ACK, no resync.
    gw.handle(e1, link, DETECTOR)
    gw.flush()
    assert gw.stats["duplicate:event"] == 1 and link.resyncs() == []
    assert link.sent[-1] == link.sent[0]
    # Authentic, at the mark, another tag (different content): a replay, but not below: none.
    gw.handle(FakeDetector(boot=5, n=1).event(999), link, DETECTOR)
    gw.flush()
    assert gw.stats["rejected:replay"] == 1 and link.resyncs() == []
    # HELLO: untagged, or tagged at its own mark: no resync either.
    gw.handle(untagged_hello(DEV, 0), link, ATTACKER)
    gw.handle(FakeDetector(boot=5, n=40).telemetry(), link, DETECTOR)  # duplicate of the mark
    gw.flush()
    assert link.resyncs() == []
    # One below the event mark: a resync.
    below = FakeDetector(boot=5, n=0).event(1)
    assert fr.decode(below).counter == event_mark - 1
    gw.handle(below, link, DETECTOR)
    gw.flush()
    assert link.resyncs() == [(make_counter(5, 41), DETECTOR)]
    assert len(events(gw)) == 1 and len(link.frames(M.ACK)) == 2  # e1's ACK, sent twice


def test_a_tagged_hello_below_its_mark_asks_for_a_resync(tmp_path, monkeypatch):
    """A detector that lost its state announces itself with a HELLO under its old counters."""
    use_clock(monkeypatch, Clock())
    gw = make(tmp_path)
    link = AddrLink()
    history(gw, link)
    gw.handle(FakeDetector(boot=5, n=39).hello(), link, DETECTOR)  # 1 below the HELLO mark
    gw.flush()
    assert link.resyncs() == [(make_counter(5, 41), DETECTOR)]
    assert gw.stats["rejected:replay"] == 1


def test_one_resync_per_ten_seconds_however_many_replays(tmp_path, monkeypatch):
    clock = Clock()
    use_clock(monkeypatch, clock)
    gw = make(tmp_path)
    link = AddrLink()
    history(gw, link)
    old = FakeDetector(boot=1).event(5)
    host_ctr = gw.devs[DEV].host_ctr

    def replay_at(t: float) -> None:
        clock.advance(t - (clock.mono - start))
        gw.tick()
        gw.handle(old, link, DETECTOR)
        gw.flush()

    start = clock.mono
    replay_at(0.0)
    assert len(link.resyncs()) == 1
    replay_at(3.0)  # the first has timed out by now (one try: core.RESYNC_TRIES)...
    assert gw.stats["resync_timeout"] == 1 and gw.stats["command_timeout"] == 1
    replay_at(5.0)  # ...but was sent less than 10 s ago
    replay_at(9.99)
    assert len(link.resyncs()) == 1
    replay_at(core.RESYNC_EVERY_S)  # 10 s after the first: another
    assert len(link.resyncs()) == 2
    # A flood: 1000 copies over 100 s cost at most one host counter per 10 s.
    for i in range(1000):
        replay_at(10.0 + 0.1 * (i + 1))
    n = len(link.resyncs())
    assert 11 <= n <= 12
    assert gw.devs[DEV].host_ctr <= max(host_ctr, core.host_counter_floor(clock.t)) + n
    assert len({w for w, _a in link.sent}) == len(link.sent)  # nothing else went out twice
    assert len(link.frames(M.ACK)) == 1  # the replays were never ACKed (rule H3)
    assert len(events(gw)) == 1


def test_one_resync_queued_or_in_flight_at_a_time_ahead_of_queued_requests(tmp_path, monkeypatch):
    clock = Clock()
    use_clock(monkeypatch, clock)
    gw = make(tmp_path)
    link = AddrLink()
    history(gw, link)
    c1 = gw.command(DEV, {"cmd": "selftest"})  # in flight, never answered
    c2 = gw.command(DEV, {"cmd": "get_config"})  # queued
    old = FakeDetector(boot=1).event(5)
    gw.handle(old, link, DETECTOR)
    resync = gw.devs[DEV].cmds[0]
    assert resync.cmd == "resync" and list(gw.devs[DEV].cmds) == [resync, c2]
    for _ in range(30):  # 60 s: c1's five tries; replays meanwhile queue nothing more
        clock.advance(2)
        gw.tick()
        gw.handle(old, link, DETECTOR)
        gw.flush()
        if c1.status == "timeout":
            break
    assert c1.status == "timeout" and gw.stats["resync_requested"] == 1
    sent = [f.fields["cmd"] for f, _a in link.frames(M.COMMAND)]
    assert sent[-1] == "resync" and "get_config" not in sent  # next after c1, before c2
    assert c2.status == "queued"


def test_an_attackers_replay_gets_the_resync_harmlessly(tmp_path, monkeypatch):
    """A captured old event replayed from another address: the resync goes there, the route
    for commands stays the detector's, and the detector (above the mark) would change nothing
    if it got that resync (SPEC.md 7.4: it only ever raises the counter)."""
    clock = Clock()
    use_clock(monkeypatch, clock)
    gw = make(tmp_path)
    link = AddrLink()
    det = FakeDetector(boot=5)
    e1 = det.event(320)
    gw.handle(e1, link, DETECTOR)
    gw.flush()
    for w, _a in link.sent:
        det.downlink(w)
    e2 = det.event(20)
    gw.handle(e2, link, DETECTOR)
    gw.flush()
    for w, _a in link.sent:
        det.downlink(w)
    gw.handle(e1, link, ATTACKER)  # below the mark now
    gw.flush()
    assert link.resyncs() == [(make_counter(5, 2), ATTACKER)]
    assert gw.devs[DEV].addr == DETECTOR
    clock.advance(3)
    gw.tick()  # unanswered: given up after one try
    c = gw.command(DEV, {"cmd": "selftest"})
    assert link.sent[-1][1] == DETECTOR and c.status == "sent"
    # Had it reached the detector: RESULT ok, counter unchanged, nothing re-sent.
    before = (det.boot, det.n)
    resync_wire = next(w for w, a in link.sent if a == ATTACKER)
    out = det.downlink(resync_wire)
    assert len(out) == 1 and (det.boot, det.n - 1) == before
    assert len(events(gw)) == 2


def test_failed_and_locked_results_tell_the_operator(tmp_path, monkeypatch, caplog):
    clock = Clock()
    use_clock(monkeypatch, clock)
    gw = make(tmp_path)
    link = AddrLink()
    history(gw, link)
    det = FakeDetector(boot=0xFFFF, n=0)  # restored from a bad backup at the last boot count
    det.answer = "failed"
    gw.handle(FakeDetector(boot=1).event(5), link, DETECTOR)
    for w in det.downlink(link.sent[-1][0]):
        gw.handle(w, link, DETECTOR)
    gw.flush()
    assert gw.stats["resync_failed"] == 1 and gw.stats.get("resync_done", 0) == 0
    assert "new device id" in caplog.text
    assert any(r.levelno == logging.ERROR for r in caplog.records)

    det.answer = "locked"  # lost its downlink state: every command but resync refused
    c = gw.command(DEV, {"cmd": "reset", "channel": "all"})
    for w in det.downlink(link.sent[-1][0]):
        gw.handle(w, link, DETECTOR)
    gw.flush()
    assert c.status == "done" and c.result == "locked"
    assert gw.stats["command_locked"] == 1
    assert "lost its replay state" in caplog.text and "re-provision" in caplog.text
