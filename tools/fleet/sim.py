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
        for out in d.downlink(wire, now, fr.now()):
            self.send(d.device, out)

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

    async def run(self) -> None:
        o = self.o
        n = len(self.dets)
        t0 = time.monotonic()
        wire_now = fr.now()
        if o.hello:
            for d in self.dets:
                self.send(d.device, d.hello(wire_now))
        t_end = t0 + o.duration
        rate = n / o.interval
        while True:
            now = time.monotonic()
            wire_now = fr.now()
            if now < t_end:
                due = int((now - t0) * rate)
                while self.sent_tel < due:
                    d = self.dets[self.sent_tel % n]
                    self.send(d.device, d.telemetry(wire_now))
                    self.sent_tel += 1
            self.events_step(now, wire_now)
            if now >= t_end and not self.active:
                break
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
        s["event_log"] = [list(e) for d in self.dets for e in d.stats.log]
        return s


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
