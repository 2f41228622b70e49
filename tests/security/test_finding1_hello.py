"""Finding 1 (issue 10, critical): an untagged HELLO's host_counter was trusted, the next host
counter had no 32-bit bound, and nothing guarded the ACK and the flush: one HELLO and one
replayed event stopped the gateway (struct.error, exit 1), and a HELLO pushing the counter far
ahead made the detector refuse every later gateway's ACKs. Each test here failed on that code
(see the report of the change); the rules are SPEC.md section 7.3."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from protocol import host
from tests.security.common import (
    DEV,
    DEV2,
    T0,
    U32,
    Clock,
    Link,
    ack_counter,
    gateway,
    key,
    tagged_hello,
    untagged_hello,
    use_clock,
)
from tools.fleet.detector import VirtualDetector
from tools.gateway.core import host_counter_floor

ROOT = Path(__file__).resolve().parents[2]
HOST_COUNTER_MAX = U32 - 1  # SPEC.md section 7.3 (core.HOST_COUNTER_MAX)


def test_untagged_hello_and_replay_do_not_break_the_gateway(tmp_path, monkeypatch):
    """The issue's two datagrams, in process: the gateway neither raises nor emits a counter
    of 2^32, and the HELLO does not move its counter at all."""
    clock = Clock()
    use_clock(monkeypatch, clock)
    gw = gateway(tmp_path)
    link = Link()
    det = VirtualDetector(DEV, key(DEV), retry_s=0.0)
    gw.handle(untagged_hello(DEV, 0xFFFFFFFF), link)
    det.raise_event(2, 0, 320, 300)
    ev = det.uplink(0.0, 1000)
    assert ev is not None
    gw.handle(ev, link)
    gw.flush()
    gw.handle(ev, link)  # the replay
    gw.flush()
    assert gw.stats.get("internal_error", 0) == 0
    assert len(link.sent) == 2
    assert {ack_counter(w) for w in link.sent} == {host_counter_floor(T0)}
    assert det.downlink(link.sent[0], 0.1, 1000) == [] and det.inflight is None


def test_untagged_hello_cannot_lock_out_a_restarted_gateway(tmp_path, monkeypatch):
    """Without a crash (host_counter well below 2^32) the old code still obeyed the HELLO: its
    ACKs carried the forged counter, the detector took them, and a gateway restarted 10 s later
    (or a sibling) had its ACKs refused until the clock caught up: events stuck."""
    clock = Clock()
    use_clock(monkeypatch, clock)
    det = VirtualDetector(DEV, key(DEV), retry_s=0.0)
    gw = gateway(tmp_path)
    link = Link()
    gw.handle(untagged_hello(DEV, host_counter_floor(T0) + 1_000_000), link)
    det.raise_event(2, 0, 320, 300)
    gw.handle(det.uplink(0.0, 1000) or b"", link)
    gw.flush()
    det.downlink(link.sent[-1], 0.1, 1000)
    assert det.inflight is None
    gw.close()
    clock.advance(10)
    gw2 = gateway(tmp_path, name="gw2")  # restarted: no memory, the clock is its floor
    link2 = Link()
    det.raise_event(2, 0, 20, 300)  # clear
    gw2.handle(det.uplink(1.0, 1010) or b"", link2)
    gw2.flush()
    assert len(link2.sent) == 1
    det.downlink(link2.sent[0], 1.1, 1010)
    assert det.inflight is None, "the restarted gateway's ACK was refused"


def test_authenticated_hello_moves_the_counter_within_the_ceiling(tmp_path, monkeypatch):
    """The rule for a HELLO the detector signed: it may raise the counter (the detector will
    refuse anything lower), but never past HOST_COUNTER_MAX: at the ceiling the gateway stops
    sending tagged frames to that device (counted, logged) instead of wrapping or crashing."""
    clock = Clock()
    use_clock(monkeypatch, clock)
    gw = gateway(tmp_path)
    link = Link()
    floor = host_counter_floor(T0)
    gw.handle(tagged_hello(DEV, floor + 500, counter=1 << 16), link)
    gw.handle(tagged_hello(DEV2, HOST_COUNTER_MAX, counter=1 << 16), link)
    dets = [VirtualDetector(d, key(d), retry_s=0.0) for d in (DEV, DEV2)]
    for d in dets:
        d.raise_event(2, 0, 320, 300)
        gw.handle(d.uplink(0.0, 1000) or b"", link)
    gw.flush()
    assert gw.stats.get("internal_error", 0) == 0
    assert [ack_counter(w) for w in link.sent] == [floor + 501]  # DEV2: no ACK it could take
    assert gw.stats["counter_exhausted"] == 1
    assert all(c < U32 for c in (st.host_ctr for st in gw.devs.values()))


def test_a_link_that_raises_costs_one_ack_not_the_gateway(tmp_path, monkeypatch):
    """The per-frame guard: a send that raises something other than OSError (a bug in a link,
    a codec error) is an `internal_error`; flush() returns, the other device's ACK still goes
    out, and the next batch works."""
    use_clock(monkeypatch, Clock())
    gw = gateway(tmp_path)
    good, bad = Link(), Link(fail=RuntimeError("link bug"))
    d1, d2 = (VirtualDetector(d, key(d), retry_s=0.0) for d in (DEV, DEV2))
    d1.raise_event(2, 0, 320, 300)
    d2.raise_event(2, 0, 320, 300)
    gw.handle(d2.uplink(0.0, 1000) or b"", bad)
    gw.handle(d1.uplink(0.0, 1000) or b"", good)
    gw.flush()
    assert gw.stats["internal_error"] == 1
    assert len(good.sent) == 1 and gw.stats["stored:event"] == 2
    gw.handle(d2.uplink(1.0, 1000) or b"", good)  # d2 retransmits: answered on a good link
    gw.flush()
    assert len(good.sent) == 2 and gw.stats["internal_error"] == 1


def _start(tmp: Path, port: int) -> tuple[subprocess.Popen, Path]:
    csv = tmp / "fleet.csv"
    csv.write_text(
        "device,name,district,category,site,key\n"
        + "".join(f"{d},d{d},Sha County,hotel,s,{key(d).hex()}\n" for d in (DEV, DEV2))
    )
    ready, db = tmp / "ready", tmp / "gw.db"
    log = open(tmp / "gw.log", "wb")  # noqa: SIM115 - the child keeps it
    p = subprocess.Popen(
        [sys.executable, "-m", "tools.gateway", "run", "--registry", str(csv), "--db", str(db),
         "--name", "sec", "--udp", f"127.0.0.1:{port}", "--ready-file", str(ready),
         "--flush-interval", "0.02"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    t_end = time.monotonic() + 30
    while not ready.exists():
        assert p.poll() is None and time.monotonic() < t_end, (tmp / "gw.log").read_text()
        time.sleep(0.05)
    return p, db


def test_udp_gateway_survives_the_two_datagrams(tmp_path):
    """The real service over UDP: the HELLO, the event, the replay. The process keeps
    running, answers both copies with a counter from its clock, and stops cleanly."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]  # free now; the gateway binds it
    probe.close()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    p, db = _start(tmp_path, port)
    try:
        det = VirtualDetector(DEV, key(DEV), retry_s=0.0)
        s.sendto(untagged_hello(DEV, 0xFFFFFFFF, host.now()), ("127.0.0.1", port))
        det.raise_event(2, 0, 320, 300)
        ev = det.uplink(0.0, host.now()) or b""
        counters = []
        for _ in range(2):  # the event, then its replay
            s.sendto(ev, ("127.0.0.1", port))
            counters.append(ack_counter(s.recvfrom(4096)[0]))
        assert counters[0] == counters[1] <= host_counter_floor(time.time()) + 1
        assert p.poll() is None, "the gateway stopped"
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(15)
        s.close()
    assert rc == 0, (tmp_path / "gw.log").read_text()
    con = sqlite3.connect(db)
    c = dict(con.execute("SELECT name, value FROM counters WHERE gateway='sec'").fetchall())
    con.close()
    assert c.get("internal_error", 0) == 0 and c["stored:event"] == 1
    assert os.path.getsize(db) > 0
