"""Helpers for the gateway tests. The shared services (broker, PostgreSQL, fleet registry,
subprocesses) and their fixtures live in tests/services.py, registered once for every test
package; their non-fixture names are re-exported here for the tests that import them."""

from __future__ import annotations

import json
import os
import select
import threading
import time
from pathlib import Path

from protocol import frame as fr
from protocol import host
from tests.services import (  # noqa: F401  (re-exported)
    BACKENDS,
    BROKER_DETECTORS,
    BROKER_SH,
    POSTGRES_SH,
    ROOT,
    SECRET,
    Broker,
    PgServer,
    Proc,
    free_port,
    new_target,
    run_cli,
    start_gateway,
)
from tools.gateway.db import open_db


def db_events(db: Path | str) -> list[tuple[int, int]]:
    c = open_db(db)
    try:
        return [tuple(r) for r in c.execute("SELECT device, counter FROM events")]  # type: ignore[misc]
    finally:
        c.close()


def db_counters(db: Path | str) -> dict[str, dict[str, int]]:
    c = open_db(db)
    out: dict[str, dict[str, int]] = {}
    try:
        for g, n, v in c.execute("SELECT gateway, name, value FROM counters"):
            out.setdefault(g, {})[n] = v
    finally:
        c.close()
    return out


def fleet_report(path: Path) -> dict:
    return json.loads(path.read_text())


def rs485_bus(
    master: int,
    dets: dict,
    stop: threading.Event,
    drop=None,
    noise_after: int | None = None,
    poll_s: float = 0.02,
) -> None:
    """The detectors' side of an RS-485 bus on a pty: every addressed frame goes to its
    detector (a frame for nobody is ignored, as a drop on the bus would); drop(frame) True
    swallows it (line noise); noise_after: garbage follows that device's replies."""
    buf = b""
    while not stop.is_set():
        r, _, _ = select.select([master], [], [], poll_s)
        if not r:
            continue
        try:
            buf += os.read(master, 4096)
        except OSError:
            return
        *segs, buf = buf.split(b"\x00")
        for seg in segs:
            f = fr.decode(seg) if seg else None
            if f is None or not f.ok or f.device not in dets:
                continue
            if drop is not None and drop(f):
                continue
            for out in dets[f.device].downlink(seg + b"\x00", time.monotonic(), host.now()):
                os.write(master, out)
                if f.device == noise_after:
                    os.write(master, b"\x55\xaa garbage \x00")


class DetectorLink:
    """The gateway's way back to one fleet VirtualDetector, in memory: each frame the gateway
    sends is handed to the detector, and the detector's answers wait in `up`."""

    name = "test"

    def __init__(self, det) -> None:
        self.det = det
        self.up: list[bytes] = []

    def send(self, device: int, wire: bytes, addr) -> None:
        self.up.extend(self.det.downlink(wire, time.monotonic(), host.now()))
