"""Issue 10, finding 3 end to end: the real firmware (virtual detector: unix port, pty link) and
the real gateway pipeline (tools.gateway.core with its SQLite store), a detector whose state file
is lost, then re-provisioned under a new key (protocol/SPEC.md section 7.4).

Before: after the lost state every event was a `replay`, never stored, never ACKed, for good.
Now: the detector boots at a random high boot count after losing its state, so its events are
stored once; its commands answer `locked` until it is re-provisioned with a new key; then its
fresh counters are below the gateway's marks, the gateway sends `resync`, the detector lifts
its counter, and events and commands work again.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
import serial

from protocol.stream import StreamDecoder
from tests.firmware.conftest import DEVICE, KEY, VDev
from tools.gateway.core import Gateway
from tools.gateway.registry import Device
from tools.gateway.store import Store

pytestmark = pytest.mark.micropython

NEW_KEY = bytes(range(100, 132))


class PtyLink:
    """The gateway's end of the virtual detector's serial link, pumped by the test."""

    name = "serial"

    def __init__(self, gw: Gateway, port: str):
        self.gw = gw
        self.port = port
        self.ser = serial.serial_for_url(port, baudrate=115200, timeout=0.02)
        self.dec = StreamDecoder()

    def send(self, device: int, wire: bytes, addr) -> None:
        self.ser.write(wire)

    def pump(self, seconds: float, until=None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            data = self.ser.read(4096)
            for r in self.dec.feed(data) if data else ():
                self.gw.result(r, self, self.port)
            self.gw.flush()
            self.gw.tick()
            if until is not None and until():
                return True
        return until is None

    def close(self) -> None:
        self.ser.close()


def gateway(db: Path, key: bytes) -> Gateway:
    return Gateway({DEVICE: Device(DEVICE, "d", "Sha County", "hotel", "", key)}, Store(db))


def stored_events(gw: Gateway) -> list[tuple]:
    return gw.store.db.execute(
        "SELECT counter, kind, channel FROM events WHERE device=? ORDER BY id", (DEVICE,)
    ).fetchall()


def command_status(gw: Gateway, c) -> str | None:
    return c.result if c.status == "done" else None


def boot(tmp_path: Path, *extra: str) -> VDev:
    (tmp_path / "state.json").unlink(missing_ok=True)  # the supervisor's, so start() waits
    return VDev(tmp_path, *extra)


def test_lost_state_then_new_key(tmp_path):
    db = tmp_path / "gw.sqlite"
    v = boot(tmp_path)
    gw = gateway(db, KEY)
    link = PtyLink(gw, v.state["link"])
    try:
        assert link.pump(60, lambda: gw.devs[DEVICE].link is not None), "no authenticated frame"
        v.ctl("res", "420")  # leakage above the set value: pre-alarm, then alarm
        assert link.pump(60, lambda: len(stored_events(gw)) >= 2), stored_events(gw)
        before = stored_events(gw)
        mark = max(c for c, *_ in before)

        # Power off; the state file is lost (a flash fault); the same identity boots again.
        link.close()
        v.close()
        (v.flash / "state.json").unlink()
        v = boot(tmp_path)
        link = PtyLink(gw, v.state["link"])
        v.ctl("res", "420")  # the condition is still there: detected again after boot
        assert link.pump(60, lambda: len(stored_events(gw)) > len(before)), (
            gw.stats,
            stored_events(gw),
        )
        # It boots at a random high boot count (SPEC 7.4), so its events are above the mark
        # already; no event of the earlier life can be repeated byte for byte.
        after = stored_events(gw)[len(before) :]
        assert all(c > mark for c, *_ in after)  # lifted above the host's mark
        assert len({c for c, *_ in stored_events(gw)}) == len(stored_events(gw))  # once each
        # Commands are locked: the downlink mark was lost with the state.
        c = gw.command(DEVICE, {"cmd": "reset", "channel": "all"}, "op")
        assert link.pump(60, lambda: c.status == "done"), c.to_dict()
        assert c.result == "locked"
        assert gw.stats.get("command_locked") == 1

        # Re-provisioning with a new key (on site); the gateway restarts with it (same store).
        link.close()
        v.close()
        gw.close()
        v = boot(tmp_path, "--key", NEW_KEY.hex())
        gw = gateway(db, NEW_KEY)
        link = PtyLink(gw, v.state["link"])
        assert link.pump(60, lambda: gw.devs[DEVICE].link is not None), gw.stats
        v.ctl("res", "40")
        assert link.pump(5) and len(stored_events(gw)) >= 1
        c = gw.command(DEVICE, {"cmd": "reset", "channel": "all"}, "op")
        assert link.pump(60, lambda: c.status == "done"), c.to_dict()
        assert c.result == "ok", c.to_dict()  # acted on: no longer locked
        n = len(stored_events(gw))
        v.ctl("res", "420")
        assert link.pump(60, lambda: len(stored_events(gw)) >= n + 2), gw.stats
        counters = [c for c, *_ in stored_events(gw)]
        assert len(set(counters)) == len(counters)
        # The new key's fresh state counts from boot 1, below the marks the lost-state life
        # left (0x8000 and up): the gateway's resync lifted it, or nothing would be stored.
        assert gw.stats.get("resync_done", 0) >= 1, gw.stats
        assert min(counters[n:]) > max(counters[:n])
    finally:
        with contextlib.suppress(Exception):
            link.close()
        v.close()
