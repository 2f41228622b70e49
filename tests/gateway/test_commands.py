"""Command retransmission (SPEC.md section 8): one command in flight per detector, the same
bytes re-sent until a RESULT names its counter, executed once by the detector (a duplicate
gets the cached RESULT), one stored RESULT, give-up after the last try reported as `timeout`
(database, query CLI, MQTT); further commands wait their turn."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

import pytest

from efd import events as ev
from protocol import auth, host
from protocol import frame as fr
from protocol import messages as M
from tests.gateway.conftest import rs485_bus, run_cli, start_gateway
from tools.fleet.detector import VirtualDetector
from tools.gateway.core import Gateway
from tools.gateway.registry import Device, derive_key
from tools.gateway.store import Store

SECRET = b"cmd"
FAST = {"cmd_retry": 0.05, "cmd_retry_max": 0.2}  # 0.05, 0.1, 0.2, 0.2, 0.2 s


class Wire:
    """A link between the gateway and one virtual detector that drops frames by rule. Frames
    travel asynchronously: the detector's answers wait in `up` until pump()."""

    name = "test"

    def __init__(self, gw: Gateway, det: VirtualDetector | None,
                 drop_down: Callable[[fr.Frame], bool] = lambda f: False,
                 drop_up: Callable[[fr.Frame], bool] = lambda f: False):  # fmt: skip
        self.gw, self.det = gw, det
        self.drop_down, self.drop_up = drop_down, drop_up
        self.down: list[bytes] = []  # every frame the gateway sent
        self.up: list[bytes] = []
        self.log: list[tuple[str, int]] = []  # ("cmd", counter) sent / ("res", cmd_counter) in

    def send(self, device: int, wire: bytes, addr) -> None:
        self.down.append(wire)
        f = fr.decode(wire)
        if f.type == M.COMMAND:
            self.log.append(("cmd", f.counter))
        if self.det is None or self.drop_down(f):
            return
        for out in self.det.downlink(wire, time.monotonic(), host.now()):
            if not self.drop_up(fr.decode(out)):
                self.up.append(out)

    def pump(self) -> None:
        while self.up:
            w = self.up.pop(0)
            f = fr.decode(w)
            if f.type == M.RESULT:
                self.log.append(("res", f.fields["cmd_counter"]))
            self.gw.handle(w, self)

    def commands(self) -> list[bytes]:
        return [w for w in self.down if fr.decode(w).type == M.COMMAND]


def setup(target, det_on=True, **kw):
    """target: the database (store_url: a SQLite path or a PostgreSQL URL), or a directory
    for a gw.db in it."""
    if isinstance(target, Path) and target.is_dir():
        target = target / "gw.db"
    key = derive_key(SECRET, 7)
    st = Store(target, "t")
    pubs: list[tuple[str, dict]] = []
    dev = Device(7, "d7", "Sha County", "hotel", "", key)
    gw = Gateway({7: dev}, st, name="t", publish=lambda t, p, r: pubs.append((t, json.loads(p))),
                 **{**FAST, **kw})  # fmt: skip
    det = VirtualDetector(7, key) if det_on else None
    return gw, st, det, pubs


def hello(gw: Gateway, wire: Wire) -> None:
    """The detector is heard once, so the gateway has a route to it."""
    gw.handle(VirtualDetector(7, derive_key(SECRET, 7)).telemetry(host.now()), wire)


def run(gw: Gateway, wire: Wire, until: Callable[[], bool], timeout: float = 5.0) -> None:
    t_end = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < t_end, "timed out"
        wire.pump()
        gw.tick()
        gw.flush()
        time.sleep(0.005)
    wire.pump()
    gw.flush()


def db_rows(st: Store, sql: str) -> list[tuple]:
    return st.db.execute(sql).fetchall()


@pytest.mark.parametrize("lose", ["command", "result", "result_then_config"])
def test_lost_command_or_result_is_retransmitted_and_executed_once(store_url, lose):
    gw, st, det, pubs = setup(store_url)
    assert det is not None
    det.raise_event(ev.ALARM, ev.RESIDUAL, 320, 300)
    lost: list[int] = []

    def drop_down(f):  # the first copy of the command never arrives
        if lose == "command" and f.type == M.COMMAND and not lost:
            lost.append(f.counter)
            return True
        return False

    def drop_up(f):  # the detector's first RESULT never arrives (the CONFIG after it may)
        if lose != "command" and f.type == M.RESULT and not lost:
            lost.append(f.counter)
            return True
        return False

    wire = Wire(gw, det, drop_down, drop_up)
    hello(gw, wire)
    fields = (
        {"cmd": "get_config"}
        if lose == "result_then_config"
        else {"cmd": "reset", "channel": "all"}
    )
    c = gw.command(7, fields)
    run(gw, wire, lambda: c.status == "done")
    sent = wire.commands()
    assert len(sent) == 2 and sent[0] == sent[1]  # retransmitted byte-identical
    assert [n for _c, n in det.stats.executed] == [fields["cmd"]]  # executed exactly once
    assert det.stats.executed[0][0] == c.counter
    assert det.stats.cached_results == (0 if lose == "command" else 1)
    res = db_rows(st, "SELECT cmd_counter, cmd, status FROM results")
    assert res == [(c.counter, fields["cmd"], "ok")]  # one stored RESULT
    cmd = db_rows(st, "SELECT status, tries, result, cmd_counter FROM commands")
    assert cmd == [("done", 2, "ok", c.counter)]
    if lose == "result_then_config":
        # The CONFIG (sent after the lost RESULT) has a higher counter than the cached RESULT:
        # RESULT has its own replay mark (SPEC 7.3), so the RESULT is not taken for a replay.
        assert not [k for k in gw.stats if k.startswith("rejected")], gw.stats
    # Nothing more goes out once it is answered.
    time.sleep(0.3)
    gw.tick()
    assert len(wire.commands()) == 2
    assert [p["request"] for t, p in pubs if t.endswith("/result")] == [c.request]
    st.close()


def test_unanswered_command_gives_up_after_five_tries(store_url):
    gw, st, _det, pubs = setup(store_url, det_on=False)
    wire = Wire(gw, None)
    hello(gw, wire)
    t0 = time.monotonic()
    c = gw.command(7, {"cmd": "selftest"})
    nxt = gw.command(7, {"cmd": "reset", "channel": "all"})  # waits behind it
    assert c.status == "sent" and nxt.status == "queued"
    run(gw, wire, lambda: c.status == "timeout")
    elapsed = time.monotonic() - t0
    sent = wire.commands()
    assert len(sent) == 5 + 1 and len(set(sent[:5])) == 1  # 5 identical tries, then the next
    assert fr.decode(sent[5]).fields["cmd"] == "reset" and nxt.status == "sent"
    assert 0.05 + 0.1 + 0.2 + 0.2 + 0.2 <= elapsed < 3.0
    assert gw.stats["command_timeout"] == 1 and gw.stats["command_retransmit"] == 4
    gw.flush()
    row = db_rows(st, f"SELECT status, tries, result FROM commands WHERE request='{c.request}'")
    assert row == [("timeout", 5, None)]
    topic, p = next((t, p) for t, p in pubs if t.endswith("/result"))
    assert topic == "efd/json/7/result"
    assert p["status"] == "timeout" and p["tries"] == 5 and p["request"] == c.request
    assert p["cmd"] == "selftest" and p["source"] == "gateway"
    gw.close()  # the one still in flight is stored as abandoned
    st.close()
    r = run_cli("tools.gateway", "query", "commands", "--db", store_url, "--json")
    assert r.returncode == 0, r.stderr
    rows = {x["cmd"]: x for x in map(json.loads, r.stdout.splitlines())}
    assert rows["selftest"]["status"] == "timeout" and rows["selftest"]["tries"] == 5
    assert rows["reset"]["status"] == "abandoned"


def test_commands_to_one_device_are_serialised_under_loss(tmp_path):
    gw, st, det, _ = setup(tmp_path / "gw.db", cmd_tries=12)
    assert det is not None
    rng = random.Random(3)
    wire = Wire(gw, det, lambda f: rng.random() < 0.3, lambda f: rng.random() < 0.3)
    hello(gw, wire)
    want = [{"cmd": "time_sync", "set_time": 200_000_000 + i} if i % 3 else {"cmd": "get_config"}
            for i in range(10)]  # fmt: skip
    cmds = [gw.command(7, f) for f in want]
    assert [c.status for c in cmds] == ["sent"] + ["queued"] * 9
    assert gw.commands_in_flight() == 1
    run(gw, wire, lambda: all(c.status == "done" for c in cmds), timeout=15)
    # Executed exactly once each, in request order.
    assert det.stats.executed == [(c.counter, c.cmd) for c in cmds]
    # On the wire: a command's first copy goes out only after the one before it is answered.
    answered: set[int] = set()
    order: list[int] = []
    for kind, n in wire.log:
        if kind == "res":
            answered.add(n)
        elif n not in order:
            assert all(p in answered for p in order), "sent before the previous was answered"
            order.append(n)
    assert order == [c.counter for c in cmds]
    assert gw.stats.get("command_retransmit", 0) > 0  # the loss really cost copies
    res = db_rows(st, "SELECT cmd_counter FROM results ORDER BY cmd_counter")
    assert [r[0] for r in res] == [c.counter for c in cmds]  # one RESULT each
    assert db_rows(st, "SELECT DISTINCT status FROM commands") == [("done",)]
    st.close()


def test_requests_that_cannot_be_sent(tmp_path):
    gw, st, _det, _ = setup(tmp_path / "gw.db", det_on=False)
    with pytest.raises(ValueError, match="not been heard"):
        gw.command(7, {"cmd": "reset", "channel": "all"})
    hello(gw, Wire(gw, None))
    with pytest.raises(ValueError, match="unknown device"):
        gw.command(8, {"cmd": "reboot"})
    with pytest.raises(ValueError, match="bad command"):
        gw.command(7, {"cmd": "set_config", "params": [["no_such_param", 1]]})
    assert gw.commands_in_flight() == 0
    st.close()


def test_rs485_command_retransmitted_at_the_next_poll_cycle(tmp_path):
    from tools.gateway.transports import SerialLink

    master, slave = os.openpty()
    tty.setraw(slave)
    key = derive_key(SECRET, 1)
    det = VirtualDetector(1, key, polled=True)
    det.raise_event(ev.ALARM, ev.RESIDUAL, 320, 300)
    stop = threading.Event()
    lost: list[int] = []

    def drop(f):  # noise on the bus eats the first copy of the command
        if f.type == M.COMMAND and not lost:
            lost.append(f.counter)
            return True
        return False

    t = threading.Thread(
        target=rs485_bus, args=(master, {det.device: det}, stop, drop), daemon=True
    )
    t.start()
    st = Store(tmp_path / "bus.db", "bus")
    gw = Gateway({1: Device(1, "b1", "Sha County", "hotel", "", key)}, st, name="bus")
    sent_at: list[float] = []

    async def main():
        link = SerialLink(gw, os.ttyname(slave), 115200, poll=[1], poll_interval=0.15,
                          flush_request=gw.flush)  # fmt: skip
        link.start(asyncio.get_running_loop())
        c = None
        t_end = time.monotonic() + 6
        try:
            while time.monotonic() < t_end and (c is None or c.status == "sent"):
                await asyncio.sleep(0.01)
                gw.tick()
                gw.flush()
                if c is None and gw.devs[1].link is not None and det.inflight is None:
                    c = gw.command(1, {"cmd": "reset", "channel": "all"})
                    sent_at.append(time.monotonic())
            sent_at.append(time.monotonic())
        finally:
            link.close()
        return c

    try:
        c = asyncio.run(main())
    finally:
        stop.set()
        t.join(2)
        os.close(master)
        os.close(slave)
    gw.close()
    assert c is not None and c.status == "done" and c.tries == 2, c and c.to_dict()
    assert lost == [c.counter]
    assert det.stats.executed == [(c.counter, "reset")]
    assert sent_at[1] - sent_at[0] < 1.0  # one poll cycle, not the 2 s UDP timeout
    evs = [r[0] for r in st.db.execute("SELECT kind FROM events ORDER BY id")]
    assert evs == ["alarm", "reset"]  # the reset ran once: one reset event
    assert st.db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1
    st.close()


def test_mqtt_give_up_is_republished_and_queryable(tmp_path, fleet_files, procs, broker):
    import paho.mqtt.client as mqtt

    db = tmp_path / "gw.db"
    fast = ["--command-retry", "0.1", "--command-retry-max", "0.3"]
    gw = start_gateway(procs, tmp_path, fleet_files, "gwc", db, "--mqtt", broker.addr,
                       "--prefix", "tc", *broker.auth("gateway"), *fast)  # fmt: skip
    got: list[dict] = []
    sub = threading.Event()
    cl = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    cl.on_connect = lambda c, u, f, r, p: c.subscribe("tc/json/100005/result", 1)
    cl.on_subscribe = lambda *a: sub.set()
    cl.on_message = lambda c, u, m: got.append(json.loads(m.payload))
    cl.username_pw_set("operator", broker.password("operator"))
    cl.connect("127.0.0.1", broker.port)
    cl.loop_start()
    try:
        assert sub.wait(10)
        # Device 100005 is registered but nothing is on the line: routed over MQTT, unanswered.
        r = run_cli("tools.gateway", "command", "--mqtt", broker.addr, "--prefix", "tc",
                    *broker.auth("operator"), "--device", "100005", "selftest")  # fmt: skip
        assert r.returncode == 0, r.stderr
        ans = json.loads(r.stdout)
        assert ans["ok"] and ans["status"] == "sent" and ans["request"]
        t_end = time.monotonic() + 10
        while not got and time.monotonic() < t_end:
            time.sleep(0.05)
    finally:
        cl.disconnect()
        cl.loop_stop()
    assert got and got[0]["status"] == "timeout" and got[0]["tries"] == 5
    assert got[0]["request"] == ans["request"] and got[0]["gateway"] == "gwc"
    time.sleep(0.2)
    r = run_cli("tools.gateway", "query", "commands", "--db", str(db), "--status", "timeout",
                "--csv")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "100005" in r.stdout and "selftest" in r.stdout and ans["request"] in r.stdout
    gw.kill(15)
    con = sqlite3.connect(db)
    c = dict(con.execute("SELECT name, value FROM counters WHERE gateway='gwc'").fetchall())
    con.close()
    assert c["command_timeout"] == 1 and c["command_retransmit"] == 4


def test_config_and_snapshot_frames_are_stored(store_url):
    gw, st, det, pubs = setup(store_url)
    assert det is not None
    wire = Wire(gw, det)
    hello(gw, wire)
    cmds = [gw.command(7, {"cmd": "set_config", "params": [["leak_set_ma", 500]]}),
            gw.command(7, {"cmd": "set_config", "params": [["p99", 1]]}),
            gw.command(7, {"cmd": "snapshot", "snap_id": 0}),
            gw.command(7, {"cmd": "snapshot", "snap_id": 0})]  # fmt: skip
    run(gw, wire, lambda: all(c.status == "done" for c in cmds))
    # A snapshot's RESULT value is the snap_id whose chunks follow (SPEC.md 5.4).
    assert [(c.result, c.value) for c in cmds] == [("ok", 0), ("bad_argument", 99),
                                                   ("ok", 1), ("ok", 2)]  # fmt: skip
    cfg = db_rows(st, "SELECT device, counter, params FROM configs")
    assert len(cfg) == 1 and cfg[0][0] == 7 and cfg[0][1] is not None  # tagged CONFIG
    assert ["leak_set_ma", 500] in json.loads(cfg[0][2])  # the bad set_config changed nothing
    snap = db_rows(st, "SELECT snap_id, chunk, chunks, channel, samples FROM snapshots "
                       "ORDER BY snap_id, chunk")  # fmt: skip
    assert [r[:4] for r in snap] == [(1, 0, 2, "residual"), (1, 1, 2, "residual"),
                                     (2, 0, 2, "residual"), (2, 1, 2, "residual")]  # fmt: skip
    assert len(json.loads(snap[0][4])) == 16
    assert {"result", "config", "snapshot"} <= {t.rsplit("/", 1)[1] for t, _p in pubs}
    r = run_cli("tools.gateway", "query", "export", "snapshots", "--db", store_url)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 5, r.stderr
    st.close()


def test_event_whose_batch_failed_is_stored_when_retransmitted(tmp_path, monkeypatch):
    """A failed SQLite batch ACKs nothing; the detector's byte-identical retransmission must
    then be stored (once) and ACKed, not refused as a replay of a frame never stored."""
    gw, st, _det, _pubs = setup(tmp_path / "gw.db", det_on=False)
    wire = Wire(gw, None)
    hello(gw, wire)
    gw.flush()
    enc = fr.Encoder(7, auth.Key(derive_key(SECRET, 7)), counter=lambda: 0x00010005)
    event = bytes(enc.view(enc.event(host.now(), ev.ALARM, ev.RESIDUAL, 400, 270)))
    real_flush = st.flush

    def failing_flush(*a, **k):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(st, "flush", failing_flush)
    gw.handle(event, wire)
    gw.flush()
    assert gw.stats.get("batch_failed") == 1
    assert not [w for w in wire.down if fr.decode(w).type == M.ACK]
    monkeypatch.setattr(st, "flush", real_flush)
    gw.handle(event, wire)  # the retransmission
    gw.flush()
    gw.handle(event, wire)  # and one more, after it was stored: a duplicate, ACKed again
    gw.flush()
    assert db_rows(st, "SELECT kind, value FROM events") == [("alarm", 400)]
    assert len([w for w in wire.down if fr.decode(w).type == M.ACK]) == 2
    assert not [k for k in gw.stats if k.startswith("rejected")], gw.stats
    st.close()
