"""Finding 5 (issue 10): the gateway acted on frames anyone can send. An untagged TELEMETRY or
HELLO from any address took the command route (a queued command went to the sender) and kept
the device's last_seen fresh (a dead detector whose reports someone spoofs looked online), and
an untagged SNAPSHOT chunk was stored with INSERT OR REPLACE, so anybody could overwrite the
waveform recorded around an alarm (an untagged CONFIG was stored as the detector's settings).

The contract is SPEC.md section 5 ("Why each type is or is not tagged"): a host acts only on
authenticated frames. EVENT, RESULT, CONFIG and SNAPSHOT must be tagged (`no_tag` otherwise);
an untagged HELLO or TELEMETRY is information only: stored / republished with
"authenticated": false, never a route, a sign of life or a counter. Each test here fails on the
code before the change."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from protocol import frame as fr
from protocol import messages as M
from protocol.auth import Key, make_counter
from tests.security.common import DEV, T0, AddrLink, Clock, key, registry, untagged_hello, use_clock
from tools.gateway import query
from tools.gateway.core import Gateway
from tools.gateway.registry import Device
from tools.gateway.store import Store

DETECTOR = ("192.0.2.10", 47000)  # where the detector's datagrams come from
ATTACKER = ("203.0.113.66", 5555)
KEYLESS = 100009


def make(tmp: Path, name: str = "gw") -> tuple[Gateway, Store, list[tuple[str, dict]]]:
    pubs: list[tuple[str, dict]] = []
    st = Store(tmp / "gw.db", name)
    devs = registry(Device(KEYLESS, "keyless", "Sha County", "hotel", "", None))
    gw = Gateway(devs, st, name=name, publish=lambda t, p, r: pubs.append((t, json.loads(p))))
    return gw, st, pubs


def enc(counter: int, device: int = DEV, k: bytes | None = None) -> fr.Encoder:
    """The detector's encoder (its key), or with `k` someone else's."""
    return fr.Encoder(device, Key(k or key(device)), lambda: counter)


def telemetry(e: fr.Encoder, status: int = 0, auth: bool = False) -> bytes:
    n = e.telemetry(1000, 12, [250, 251, -32768, -32768], [100, 0xFFFF, 0xFFFF], status, auth=auth)
    return bytes(e.wire[:n])


def snapshot(e: fr.Encoder, samples: list[int], auth: bool) -> bytes:
    return e.message(
        M.SNAPSHOT, 1000,
        {"snap_id": 7, "channel": "residual", "chunk": 0, "chunks": 1, "scale_exp": -1,
         "rate_hz": 2000, "trigger": 8, "offset": 0, "samples": samples},
        auth=auth,
    )  # fmt: skip


def device_row(st: Store, device: int = DEV) -> tuple:
    return st.db.execute(
        "SELECT last_seen, transport, address, status FROM devices WHERE device=?", (device,)
    ).fetchone()


def test_untagged_or_forged_snapshot_cannot_overwrite_an_alarm_waveform(tmp_path, monkeypatch):
    use_clock(monkeypatch, Clock())
    gw, st, pubs = make(tmp_path)
    waveform = [900 + 300 * (i >= 8) for i in range(16)]
    gw.handle(snapshot(enc(make_counter(1, 5)), waveform, auth=True), AddrLink(), DETECTOR)
    gw.flush()
    stored = st.db.execute("SELECT samples FROM snapshots WHERE device=?", (DEV,)).fetchall()
    assert [json.loads(r[0]) for r in stored] == [waveform]

    flat = [0] * 16  # "nothing happened"
    forged = snapshot(enc(make_counter(1, 6), k=b"k" * 32), flat, auth=True)
    plain = snapshot(fr.Encoder(DEV), flat, auth=False)
    for w in (plain, forged, plain):
        gw.handle(w, AddrLink(), ATTACKER)
    gw.flush()
    stored = st.db.execute("SELECT samples FROM snapshots WHERE device=?", (DEV,)).fetchall()
    assert [json.loads(r[0]) for r in stored] == [waveform], "the alarm's waveform was replaced"
    assert gw.stats["rejected:no_tag"] == 2 and gw.stats["rejected:bad_tag"] == 1
    assert [p["authenticated"] for t, p in pubs if t.endswith("/snapshot")] == [True]
    assert device_row(st)[2] == "192.0.2.10:47000"  # nor did they move where it was seen


def test_untagged_config_is_not_stored(tmp_path, monkeypatch):
    use_clock(monkeypatch, Clock())
    gw, st, _pubs = make(tmp_path)
    cfg = {"config_hash": 1, "params": [["leak_set_ma", 1000]]}  # "leak alarm at 1 A"
    gw.handle(fr.Encoder(DEV).message(M.CONFIG, 1000, cfg), AddrLink(), ATTACKER)
    gw.flush()
    assert st.db.execute("SELECT COUNT(*) FROM configs").fetchone()[0] == 0
    assert gw.stats["rejected:no_tag"] == 1
    gw.handle(enc(make_counter(1, 2)).message(M.CONFIG, 1000, cfg, auth=True), AddrLink())
    gw.flush()
    assert st.db.execute("SELECT COUNT(*) FROM configs").fetchone()[0] == 1


def test_spoofed_telemetry_neither_reroutes_commands_nor_keeps_a_silent_device_online(
    tmp_path, monkeypatch
):
    clock = Clock()
    use_clock(monkeypatch, clock)
    gw, st, pubs = make(tmp_path)
    link = AddrLink()
    # The detector is heard once, authenticated (its tagged telemetry of the minute).
    gw.handle(telemetry(enc(make_counter(1, 1)), auth=True), link, DETECTOR)
    gw.flush()
    seen_at = device_row(st)[0]
    assert seen_at == pytest.approx(T0) and gw.devs[DEV].addr == DETECTOR
    c1 = gw.command(DEV, {"cmd": "selftest"})  # in flight (no answer comes)
    c2 = gw.command(DEV, {"cmd": "reset", "channel": "all"})  # queued behind it
    host_ctr = gw.devs[DEV].host_ctr
    # Then it falls silent; someone else sends its reports (alarm bit set) for ten minutes,
    # from another address, between the command's retransmissions.
    spoof = fr.Encoder(DEV)
    for _ in range(60):
        clock.advance(10)
        gw.handle(telemetry(spoof, status=1), link, ATTACKER)
        gw.tick()
        gw.flush()
    assert c1.status == c2.status == "timeout"  # each sent 5 times, to the detector only
    assert len(link.commands()) == 10
    assert {a for _f, a in link.commands()} == {DETECTOR}, "a command went to the spoofer"
    assert gw.devs[DEV].addr == DETECTOR
    assert gw.devs[DEV].host_ctr == c2.counter > host_ctr  # moved by the commands only
    last_seen, transport, address, status = device_row(st)
    assert (last_seen, transport, address) == (seen_at, "udp", "192.0.2.10:47000")
    assert status == 1  # the last report's status is shown (information, SPEC.md section 5)
    cols, rows = query.devices(st.db, now=clock.t)
    assert rows[[r[0] for r in rows].index(DEV)][cols.index("link")] == "offline"
    # Stored and republished, as unauthenticated.
    assert st.db.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0] == 61
    auth = [p["authenticated"] for t, p in pubs if t.endswith("/telemetry")]
    assert auth == [True] + [False] * 60
    assert gw.stats["rx:telemetry_unauthenticated"] == 60


def test_untagged_hello_is_information_only(tmp_path, monkeypatch):
    use_clock(monkeypatch, Clock())
    gw, st, pubs = make(tmp_path)
    link = AddrLink()
    gw.handle(untagged_hello(DEV, 12345), link, ATTACKER)
    gw.flush()
    assert gw.devs[DEV].link is None and gw.devs[DEV].host_ctr == 0
    with pytest.raises(ValueError, match="not been heard"):
        gw.command(DEV, {"cmd": "selftest"})
    assert device_row(st) == (None, None, None, None)
    assert st.db.execute("SELECT fw, boot_count FROM devices WHERE device=?", (DEV,)).fetchone() \
        == (None, None)  # fmt: skip
    assert [(p["authenticated"], p["host_counter"]) for t, p in pubs] == [(False, 12345)]
    # The detector's own (tagged) HELLO: a route and a sign of life.
    gw.handle(
        enc(make_counter(1, 1)).message(
            M.HELLO, 1000,
            {"fw": [1, 2, 3], "reset_cause": "power_on", "boot_count": 1, "config_hash": 0,
             "host_counter": 0},
            auth=True,
        ),
        link, DETECTOR,
    )  # fmt: skip
    gw.flush()
    assert gw.devs[DEV].addr == DETECTOR
    assert device_row(st)[:3] == (pytest.approx(T0), "udp", "192.0.2.10:47000")
    assert pubs[-1][1]["authenticated"] is True


def test_replayed_tagged_frames_do_not_take_the_route(tmp_path, monkeypatch):
    """A tagged TELEMETRY or HELLO captured on the wire and replayed from elsewhere is a
    `replay`: no route. Also across a gateway restart, where the HELLO's and TELEMETRY's mark
    starts at the persisted event mark (SPEC.md 7.3; it started at 0 before)."""
    clock = Clock()
    use_clock(monkeypatch, clock)
    gw, _st, _pubs = make(tmp_path)
    link = AddrLink()
    hello = enc(make_counter(1, 1)).message(
        M.HELLO, 1000,
        {"fw": [1, 0, 0], "reset_cause": "power_on", "boot_count": 1, "config_hash": 0,
         "host_counter": 0},
        auth=True,
    )  # fmt: skip
    tel = telemetry(enc(make_counter(1, 2)), auth=True)
    e = enc(make_counter(1, 3))
    event = bytes(e.wire[: e.event(1000, 2, 0, 320, 300)])
    for w in (hello, tel, event):
        gw.handle(w, link, DETECTOR)
    gw.flush()
    gw.handle(tel, link, ATTACKER)  # the same bytes: at the mark, a `duplicate`
    gw.flush()
    assert gw.devs[DEV].addr == DETECTOR and gw.stats["rejected:duplicate"] == 1
    gw.close()

    clock.advance(60)
    gw2, st2, _ = make(tmp_path, name="gw2")  # restarted: marks from the database
    link2 = AddrLink()
    for w in (hello, tel):
        gw2.handle(w, link2, ATTACKER)
    gw2.flush()
    assert gw2.devs[DEV].link is None, "a replayed HELLO or TELEMETRY took the route"
    assert gw2.stats["rejected:replay"] == 2
    assert device_row(st2)[2] == "192.0.2.10:47000"
    # What the replayed HELLO did do: ask that address for a resync (SPEC.md 7.4), which
    # changes nothing on a detector already above the mark.
    assert [(f.fields["cmd"], a) for f, a in link2.commands()] == [("resync", ATTACKER)]


def test_a_device_without_a_key_keeps_todays_behaviour(tmp_path, monkeypatch):
    """Nothing to authenticate against: its untagged reports still mark it as seen (the
    registry's choice). It cannot be commanded, so it never sends CONFIG or SNAPSHOT; those
    are refused (`no_key`) like its events, so nobody can store records in its name."""
    use_clock(monkeypatch, Clock())
    gw, st, pubs = make(tmp_path)
    gw.handle(telemetry(fr.Encoder(KEYLESS), status=4), AddrLink(), DETECTOR)
    gw.handle(snapshot(fr.Encoder(KEYLESS), [1] * 16, auth=False), AddrLink(), DETECTOR)
    gw.flush()
    assert device_row(st, KEYLESS) == (pytest.approx(T0), "udp", "192.0.2.10:47000", 4)
    assert gw.devs[KEYLESS].addr == DETECTOR
    assert [p["authenticated"] for _t, p in pubs] == [False]
    assert gw.stats["rejected:no_key"] == 1
    con = sqlite3.connect(tmp_path / "gw.db")
    assert con.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0] == 0
    con.close()
