"""Bad frames and unknown devices are counted and logged, never stored as data, and never
stop the gateway: in-process through the pipeline, and over UDP against the real process."""

from __future__ import annotations

import random
import socket
import sqlite3
import time

from protocol import frame as fr
from protocol import host
from protocol import messages as M
from protocol.auth import Key
from tests.gateway.conftest import db_counters, free_port, start_gateway
from tools.fleet.detector import VirtualDetector
from tools.gateway.core import Gateway
from tools.gateway.registry import Device, derive_key
from tools.gateway.store import Store

SECRET = b"unit"


class Link:
    name = "test"

    def __init__(self):
        self.sent: list[bytes] = []

    def send(self, device, wire, addr):
        self.sent.append(wire)


def make(tmp_path, n=3):
    devs = {d: Device(d, f"d{d}", "Sha County", "hotel", "", derive_key(SECRET, d))
            for d in range(1, n + 1)}  # fmt: skip
    devs[99] = Device(99, "keyless", "Sha County", "hotel", "", None)
    st = Store(tmp_path / "gw.db", "t")
    return Gateway(devs, st, name="t"), st


def rows(st: Store) -> dict[str, int]:
    return {t: st.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("telemetry", "events", "results", "alarm_state")}  # fmt: skip


def test_garbage_and_forgeries_are_counted_not_stored(tmp_path):
    gw, st = make(tmp_path)
    link = Link()
    good = VirtualDetector(1, derive_key(SECRET, 1))
    tel = good.telemetry(1000)
    rng = random.Random(5)
    # Random bytes, truncations and bit flips of a valid frame.
    for _ in range(500):
        gw.handle(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300))), link)
    for k in range(1, len(tel) - 1):  # tel[:-1] is the frame without its delimiter: valid
        gw.handle(tel[:k], link)
    for i in range(len(tel) - 1):
        b = bytearray(tel)
        b[i] ^= 1 << rng.randrange(8)
        gw.handle(bytes(b), link)
    # A valid frame from a device not in the registry.
    stranger = VirtualDetector(4242, derive_key(SECRET, 4242))
    gw.handle(stranger.telemetry(1000), link)
    gw.handle(stranger.hello(1000), link)
    # Events: untagged, tagged with the wrong key, from a device without a key, downlink type.
    plain = fr.Encoder(2)
    n = plain.event(1000, 2, 0, 400, 300, auth=False)
    gw.handle(bytes(plain.wire[:n]), link)
    forged = fr.Encoder(2, Key(b"x" * 32), lambda: 7)
    n = forged.event(1000, 2, 0, 400, 300)
    gw.handle(bytes(forged.wire[:n]), link)
    keyless = fr.Encoder(99, Key(b"y" * 32), lambda: 7)
    n = keyless.event(1000, 2, 0, 400, 300)
    gw.handle(bytes(keyless.wire[:n]), link)
    gw.handle(fr.Encoder(3).message(M.POLL, 0, {}), link)  # host->detector type uplink
    gw.flush()
    s = gw.stats
    assert rows(st) == {"telemetry": 0, "events": 0, "results": 0, "alarm_state": 0}
    assert link.sent == []  # nothing ACKed
    assert s.get("internal_error", 0) == 0
    assert s["rejected:unknown_device"] == 2
    assert s["rejected:no_tag"] == 1
    assert s["rejected:bad_tag"] == 1
    assert s["rejected:no_key"] == 1
    assert s["rejected:direction"] == 1
    assert s["rejected:crc"] > 0 and s["rejected:short"] > 0
    total_rejected = sum(v for k, v in s.items() if k.startswith("rejected:"))
    assert total_rejected == s["rx"]
    # The counters are in the database too (per gateway instance), the frames are not.
    c = {n: v for n, v in st.db.execute("SELECT name, value FROM counters WHERE gateway='t'")}
    assert c["rejected:unknown_device"] == 2

    # And the pipeline still works afterwards: a good frame and an event are stored.
    gw.handle(tel, link)
    good.raise_event(2, 0, 320, 300)
    gw.handle(good.uplink(0.0, 1000) or b"", link)
    gw.flush()
    assert rows(st)["telemetry"] == 1 and rows(st)["events"] == 1
    assert len(link.sent) == 1  # the event's ACK
    assert good.downlink(link.sent[0], 0.1, 1000) == [] and good.inflight is None
    st.close()


def test_replay_and_retransmission(tmp_path):
    gw, st = make(tmp_path)
    link = Link()
    d = VirtualDetector(1, derive_key(SECRET, 1), retry_s=0.0)
    d.raise_event(2, 0, 320, 300)
    first = d.uplink(0.0, 1000)
    assert first is not None
    gw.handle(first, link)
    gw.handle(first, link)  # retransmitted before the batch committed
    gw.flush()
    gw.handle(first, link)  # after the commit
    gw.flush()
    assert rows(st)["events"] == 1
    assert len(link.sent) == 3  # every copy answered, stored once
    assert gw.stats["duplicate:event"] == 2
    # A restarted gateway (fresh memory) still recognises it from the database.
    gw2 = Gateway({k: v.dev for k, v in gw.devs.items()}, st, name="t2")
    gw2.handle(first, link)
    gw2.flush()
    assert rows(st)["events"] == 1 and gw2.stats["duplicate:event"] == 1
    # A different frame replaying an old counter (same counter, other content) is refused.
    enc = fr.Encoder(1, Key(derive_key(SECRET, 1)), lambda: 1)
    n = enc.event(1000, 2, 0, 999, 300, counter=fr.decode(first).counter)
    gw2.handle(bytes(enc.wire[:n]), link)
    gw2.flush()
    assert gw2.stats["rejected:replay"] == 1 and rows(st)["events"] == 1
    st.close()


def test_udp_gateway_survives_garbage(tmp_path, fleet_files, procs):
    port = free_port(socket.SOCK_DGRAM)
    db = tmp_path / "gw.db"
    gw = start_gateway(procs, tmp_path, fleet_files, "gwg", db, "--udp", f"127.0.0.1:{port}")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rng = random.Random(1)
    for _ in range(2000):
        s.sendto(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))),
                 ("127.0.0.1", port))  # fmt: skip
    s.sendto(b"", ("127.0.0.1", port))
    det = VirtualDetector(100001, derive_key(b"gateway-test-fleet-secret", 100001))
    s.sendto(det.telemetry(host.now()), ("127.0.0.1", port))
    t_end = time.monotonic() + 10
    c: dict = {}
    while time.monotonic() < t_end:
        c = db_counters(db).get("gwg", {})
        if c.get("stored:telemetry"):
            break
        time.sleep(0.1)
    assert gw.p.poll() is None  # still running
    assert c.get("stored:telemetry") == 1
    assert c.get("internal_error", 0) == 0
    # A datagram with several 0x00 is taken as several frames (a concentrator's batch), so
    # there are at least as many rejections as garbage datagrams; all but one frame rejected.
    assert sum(v for k, v in c.items() if k.startswith("rejected:")) == c["rx"] - 1 >= 2001
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0] == 1
    con.close()
    gw.kill(15)
    assert "rejected frame" in gw.text()  # logged (rate-limited), not silent
    s.close()
