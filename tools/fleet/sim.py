"""The fleet: many VirtualDetectors on one event loop, paced telemetry, events from scenario
timelines, over UDP (one socket, like a NAT'd concentrator) or MQTT (one client publishing
each detector's frames on its own topic efd/up/<device>)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol import frame as fr
from protocol import host
from tools.fleet.detector import VirtualDetector
from tools.fleet.timeline import Timeline
from tools.gateway.registry import Device

log = logging.getLogger("efd.fleet")

TICK_S = 0.005


@dataclass
class FleetOptions:
    interval: float = 10.0  # telemetry period per detector, s
    duration: float = 30.0  # how long telemetry runs, s
    drain: float = 30.0  # after that, how long to wait for unacknowledged events, s
    alarm_share: float = 0.1  # fraction of detectors that play a scenario
    speed: float = 1.0  # scenario seconds per wall second
    retry_s: float = 1.0  # event retransmission timeout
    seed: int = 1
    hello: bool = True
    progress: float = 5.0  # seconds between progress lines on the log (0: none)


def build(
    devices: list[Device], timelines: list[Timeline], o: FleetOptions, t0: float
) -> list[VirtualDetector]:
    rng = random.Random(o.seed)
    out = []
    for i, d in enumerate(devices):
        if d.key is None:
            raise ValueError(f"device {d.device} has no key: the fleet signs its events")
        tl = None
        start = t0
        if timelines and rng.random() < o.alarm_share:
            tl = timelines[i % len(timelines)]
            span = max(0.0, o.duration - tl.duration_s / o.speed)
            start = t0 + rng.uniform(0, span)
        out.append(VirtualDetector(d.device, d.key, tl, start, o.speed, retry_s=o.retry_s,
                                   seed=o.seed + i))  # fmt: skip
    return out


class Fleet:
    def __init__(
        self, dets: list[VirtualDetector], send: Callable[[int, bytes], None], o: FleetOptions
    ):
        self.dets = dets
        self.by_id = {d.device: d for d in dets}
        self.send = send
        self.o = o
        self.active = [d for d in dets if d.timeline]
        self.sent_tel = 0
        self.errors = 0

    def downlink(self, wire: bytes) -> None:
        """A frame from a gateway: routed by the header's device id (bytes 1..4 after COBS)."""
        f = fr.decode(wire)
        if not f.ok:
            self.errors += 1
            return
        d = self.by_id.get(f.device)
        if d is None:
            self.errors += 1
            return
        now = time.monotonic()
        for out in d.downlink(wire, now, host.now()):
            self.send(d.device, out)
        if (d.queue or d.inflight is not None) and d not in self.active:
            self.active.append(d)  # events a command raised (reset, selftest): sent too

    def events_step(self, now: float, wire_now: int) -> None:
        keep = []
        for d in self.active:
            d.due(now)
            w = d.uplink(now, wire_now)
            if w is not None:
                self.send(d.device, w)
            if not d.done():
                keep.append(d)
        self.active = keep

    def counts(self) -> tuple[int, int, int]:
        """(events sent, acknowledged, waiting: in flight or queued)."""
        sent = sum(d.stats.events for d in self.dets)
        acked = sum(d.stats.acked for d in self.dets)
        waiting = sum((d.inflight is not None) + len(d.queue) for d in self.dets)
        return sent, acked, waiting

    def _progress(self, now: float, t0: float, draining: bool) -> None:
        sent, acked, waiting = self.counts()
        o = self.o
        if draining:
            phase = f"draining {now - t0 - o.duration:.0f}/{o.drain:g} s"
        else:
            phase = f"{now - t0:.0f}/{o.duration:g} s"
        log.info(
            "%s: %d telemetry frames, events %d sent, %d acknowledged, %d waiting%s",
            phase,
            self.sent_tel,
            sent,
            acked,
            waiting,
            f", {len(self.active)} detectors still playing" if not draining else "",
        )

    async def run(self) -> None:
        o = self.o
        n = len(self.dets)
        t0 = time.monotonic()
        wire_now = host.now()
        if o.hello:
            for d in self.dets:
                self.send(d.device, d.hello(wire_now))
        t_end = t0 + o.duration
        rate = n / o.interval
        next_progress = t0 + o.progress if o.progress > 0 else float("inf")
        drain_said = False
        while True:
            now = time.monotonic()
            if now >= next_progress:
                next_progress = now + o.progress
                self._progress(now, t0, now >= t_end)
            wire_now = host.now()
            if now < t_end:
                due = int((now - t0) * rate)
                while self.sent_tel < due:
                    d = self.dets[self.sent_tel % n]
                    self.send(d.device, d.telemetry(wire_now))
                    self.sent_tel += 1
            self.events_step(now, wire_now)
            if now >= t_end and not self.active:
                break
            if now >= t_end and not drain_said and o.progress > 0:
                drain_said = True
                log.info(
                    "telemetry done; waiting up to %g s (--drain) for %d events to be acknowledged",
                    o.drain,
                    self.counts()[2],
                )
            if now >= t_end + o.drain:
                log.warning("%d detectors still have unacknowledged events", len(self.active))
                break
            await asyncio.sleep(TICK_S)

    def summary(self) -> dict[str, Any]:
        s: dict[str, Any] = {"detectors": len(self.dets), "telemetry": self.sent_tel}
        for k in ("events", "acked", "retransmits", "results", "rejected_downlink"):
            s[k] = sum(getattr(d.stats, k) for d in self.dets)
        s["unacked"] = sum(1 for d in self.dets if d.inflight is not None) + sum(
            len(d.queue) for d in self.dets
        )
        s["downlink_errors"] = self.errors
        s["resyncs"] = sum(d.stats.resyncs for d in self.dets)
        s["restamped"] = sum(d.stats.restamped for d in self.dets)
        s["event_log"] = [list(e) for d in self.dets for e in d.stats.log]
        return s

    def unacked_reasons(self, where: str) -> list[str]:
        """Why events are still unacknowledged, in plain words: one line per cause, naming
        how many detectors it concerns and a few of their ids. `where`: the gateway's address
        as the user gave it (for the messages)."""
        stuck = [d for d in self.dets if d.inflight is not None or d.queue]
        groups: dict[str, list[int]] = {}
        for d in stuck:
            st = d.stats
            if st.resync_failed:
                why = (
                    "the gateway asked them to resync (their counters are below what its "
                    "database holds) and their boot count would pass 0xFFFF: use a fresh "
                    "--db, or give the fleet other device ids (SPEC.md 7.4)"
                )
            elif st.downlink == 0 and st.rejected_downlink:
                why = (
                    f"every frame from {where} failed authentication: the gateway has "
                    "other keys for these devices (another registry or --secret-file?)"
                )
            elif st.downlink == 0:
                why = (
                    f"nothing came back from {where}: is the gateway running there, and "
                    "does its registry list these devices?"
                )
            elif d.inflight is not None and d.inflight.tries > 1 and st.acked == 0:
                why = (
                    f"{where} answered other frames but never these events: it refuses "
                    "them (see its log, e.g. 'rejected frame (replay)': a gateway without "
                    "resync and a database from an earlier run; use a fresh --db)"
                )
            else:
                why = (
                    "still in flight when --drain ran out: the gateway is slow or frames "
                    "are lost; a longer --drain helps"
                )
            groups.setdefault(why, []).append(d.device)
        out = []
        for why, ids in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            some = ", ".join(str(i) for i in ids[:5]) + (", ..." if len(ids) > 5 else "")
            out.append(f"{len(ids)} detectors ({some}): {why}")
        return out


class UdpTransport:
    def __init__(self, host: str, port: int):
        self.dst = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.fleet: Fleet | None = None
        self.send_errors = 0

    def send(self, device: int, wire: bytes) -> None:
        try:
            self.sock.sendto(wire, self.dst)
        except BlockingIOError:
            self.send_errors += 1
        except ConnectionRefusedError:  # ICMP from an earlier datagram: gateway not up (yet)
            self.send_errors += 1

    def start(self, loop: asyncio.AbstractEventLoop, fleet: Fleet) -> None:
        self.fleet = fleet
        self.sock.setblocking(False)
        loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        assert self.fleet is not None
        for _ in range(1024):
            try:
                data, _addr = self.sock.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            self.fleet.downlink(data)

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self.sock.fileno())
        self.sock.close()


class MqttTransport:
    def __init__(
        self,
        host: str,
        port: int,
        prefix: str = "efd",
        client_id: str = "",
        username: str | None = None,
        password: str | None = None,
    ):
        import paho.mqtt.client as mqtt

        self.prefix = prefix
        self.host, self.port = host, port
        self.fleet: Fleet | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.subscribed = threading.Event()
        self._q: deque[bytes] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5)  # fmt: skip
        c.max_queued_messages_set(0)
        c.max_inflight_messages_set(2000)
        c.reconnect_delay_set(1, 2)
        if username is not None:
            c.username_pw_set(username, password)
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_disconnect = lambda *a: self.subscribed.clear()
        c.on_message = self._on_message
        self.client = c

    def _on_connect(self, c, u, flags, reason, props) -> None:
        if not reason.is_failure:
            c.subscribe(f"{self.prefix}/down/+", 1)

    def _on_message(self, c, u, msg) -> None:
        self._q.append(msg.payload)
        with self._lock:
            if self._scheduled or self.loop is None:
                return
            self._scheduled = True
        self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            self._scheduled = False
        assert self.fleet is not None
        while self._q:
            self.fleet.downlink(self._q.popleft())

    def send(self, device: int, wire: bytes) -> None:
        # QoS 1: the broker acknowledges; while it is down paho keeps the message queued and
        # sends it after the reconnect. Events are retransmitted by the detector anyway.
        self.client.publish(f"{self.prefix}/up/{device}", wire, qos=1)

    async def connect(self, timeout: float = 10.0) -> None:
        self.client.connect_async(self.host, self.port, keepalive=5)
        self.client.loop_start()
        t_end = time.monotonic() + timeout
        while not self.subscribed.is_set():
            if time.monotonic() > t_end:
                raise OSError(f"cannot reach MQTT broker {self.host}:{self.port}")
            await asyncio.sleep(0.02)

    def start(self, loop: asyncio.AbstractEventLoop, fleet: Fleet) -> None:
        self.loop = loop
        self.fleet = fleet

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()
