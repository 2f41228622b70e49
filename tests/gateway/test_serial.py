"""RS-485 polling master over a pty: the gateway polls three addresses on one bus, each
virtual detector answers only its own POLL (telemetry, or its pending event), events are
stored once and ACKed on the bus, and garbage on the line is counted, not stored."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import tty

from efd import events as ev
from tests.gateway.conftest import rs485_bus
from tools.fleet.detector import VirtualDetector
from tools.gateway.registry import Device, derive_key
from tools.gateway.server import Options, serve

SECRET = b"bus"


def test_polling_master_on_a_multidrop_bus(tmp_path):
    master, slave = os.openpty()
    tty.setraw(slave)
    name = os.ttyname(slave)
    ids = [1, 2, 3]
    keys = {d: derive_key(SECRET, d) for d in [*ids, 4]}
    dets = {d: VirtualDetector(d, keys[d], retry_s=60, polled=True) for d in ids}
    dets[2].raise_event(ev.PREALARM, ev.RESIDUAL, 220, 210)
    dets[2].raise_event(ev.ALARM, ev.RESIDUAL, 320, 300)
    dets[2].raise_event(ev.ALARM, ev.TEMP0, 760, 700)
    dets[3].raise_event(ev.FAULT, ev.TEMP0 + 1, ev.FAULT_OPEN, 0)
    devices = {
        d: Device(d, f"bus-{d}", "Sha County", "textile_mill", "", keys[d]) for d in [*ids, 4]
    }  # fmt: skip  (4 is registered but not on the bus)
    stop = threading.Event()
    t = threading.Thread(
        target=rs485_bus,
        args=(master, dets, stop),
        kwargs={"noise_after": 2, "poll_s": 0.05},
        daemon=True,
    )
    t.start()
    db = tmp_path / "bus.db"
    try:
        stats = asyncio.run(serve(Options(
            db=str(db), devices=devices, name="bus", serial=[(name, 115200)],
            poll=[*ids, 4], poll_interval=0.2, duration=3.0,
            flush_interval=0.02)))  # fmt: skip
    finally:
        stop.set()
        t.join(2)
        os.close(master)
        os.close(slave)
    con = sqlite3.connect(db)
    evs = con.execute("SELECT device, kind, channel FROM events ORDER BY id").fetchall()
    tel = dict(con.execute("SELECT device, COUNT(*) FROM telemetry GROUP BY device").fetchall())
    con.close()
    assert evs == [(2, "prealarm", "residual"), (2, "alarm", "residual"),
                   (2, "alarm", "temp0"), (3, "fault", "temp1")]  # fmt: skip
    assert all(d.inflight is None and not d.queue for d in dets.values())
    assert set(tel) == {1, 2, 3} and min(tel.values()) >= 5
    assert stats["poll_timeout"] >= 5  # device 4 never answers
    assert stats.get("rejected:cobs", 0) + stats.get("rejected:crc", 0) >= 1
    assert stats.get("internal_error", 0) == 0
