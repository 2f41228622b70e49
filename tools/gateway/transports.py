"""Transports: UDP socket, MQTT client (paho), serial port (pyserial; listener or RS-485
polling master). Each hands wire bytes to the Gateway on the asyncio loop's thread and
implements send(device, wire, addr) for ACKs and commands."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from protocol import frame as fr
from protocol import host
from protocol import messages as M
from protocol.stream import StreamDecoder
from tools.gateway.core import Gateway

log = logging.getLogger("efd.gateway")

UDP_RCVBUF = 4 << 20  # bytes; the kernel caps it at net.core.rmem_max
RECV_BURST = 1024  # datagrams per readiness callback before yielding to the loop
FRAMES_BURST = 4096  # frames handled per readiness callback (a datagram may carry many)
UDP_MAX = 65535  # receive buffer per datagram: the largest UDP payload, so none is truncated


def split_frames(data: bytes) -> list[bytes]:
    """A datagram carries one stuffed frame with its delimiter, or several back to back
    (a concentrator forwarding a batch): split on the delimiters."""
    if data.count(0) <= 1:
        return [data]
    return [s for s in data.split(b"\x00") if s]


class UdpLink:
    """Non-blocking UDP socket drained in bursts from the loop's reader callback: one epoll
    wake-up serves up to RECV_BURST datagrams (asyncio's DatagramProtocol wakes per datagram).
    The socket is bound here (OSError if the address is busy); `gw` may be attached later,
    before start() (the service binds before it opens the database)."""

    def __init__(self, gw: Gateway | None, host: str, port: int):
        self.gw = gw
        self.name = "udp"
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
        self.sock.bind((host, port))
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        """Bounded per wake-up: at most RECV_BURST datagrams and, once FRAMES_BURST frames
        are handled, the rest waits for the next callback (the socket is still readable), so
        a flood of many-frame datagrams cannot hold the loop (flushes, ACKs, other links).
        Datagrams are read whole (UDP_MAX): a concentrator's batch is never truncated.
        Gateway.handle() never raises."""
        recv = self.sock.recvfrom
        gw = self.gw
        assert gw is not None
        handle = gw.handle
        frames = 0
        for _ in range(RECV_BURST):
            try:
                data, addr = recv(UDP_MAX)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # ICMP errors from an earlier send: not fatal
                gw.count("udp_error")
                log.debug("udp recv: %s", e)
                continue
            if data.count(0) <= 1:
                handle(data, self, addr)
                frames += 1
            else:
                segs = split_frames(data)
                for seg in segs:
                    handle(seg, self, addr)
                frames += len(segs)
            if frames >= FRAMES_BURST:
                return

    def send(self, device: int, wire: bytes, addr: Any) -> None:
        self.sock.sendto(wire, addr)

    def close(self) -> None:
        if self.loop is not None:
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class MqttLink:
    """paho-mqtt (MQTT 5) client: subscribes to uplinks (optionally as a member of a shared
    subscription group), publishes ACKs/commands downlink and decoded JSON for platforms, and
    takes command requests. paho's network thread only queues; the gateway runs on the loop.

    Command requests arrive on `<prefix>/cmd/<user>/<device>`: the broker's ACL lets each
    operator publish only under its own user name (docs/gateway.md), so `<user>` is the
    authenticated MQTT user who asked, stored with the command (MQTT 5 delivers no user id)."""

    def __init__(
        self,
        gw: Gateway | None,
        host: str,
        port: int,
        client_id: str,
        prefix: str = "efd",
        share: str | None = None,
        ingest: bool = True,
        session_expiry: int = 3600,
        username: str | None = None,
        password: str | None = None,
    ):
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.gw = gw
        self.name = "mqtt"
        self.prefix = prefix
        self.host, self.port = host, port
        up = f"{prefix}/up/+"
        cmd = f"{prefix}/cmd/+/+"
        if share:
            up = f"$share/{share}/{up}"
            cmd = f"$share/{share}/{cmd}"
        self.topics = ([up] if ingest else []) + [cmd]
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._q: deque[Any] = deque()
        self._scheduled = False
        self._lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.max_queued_messages_set(0)
        c.max_inflight_messages_set(1000)
        c.reconnect_delay_set(1, 2)
        if username is not None:
            c.username_pw_set(username, password)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        status = f"{prefix}/gw/{client_id}/status"
        c.will_set(status, b"offline", qos=1, retain=True)
        self._status = status
        self.client = c
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry
        self._props = props

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # clean_start=False + session expiry: while this gateway restarts, the broker keeps
        # its subscription and queues QoS 1 uplinks for it.
        self.client.connect_async(
            self.host, self.port, keepalive=5, clean_start=False, properties=self._props
        )
        self.client.loop_start()

    def _on_connect(self, c, userdata, flags, reason, props) -> None:
        if reason.is_failure:
            log.warning("mqtt connect to %s:%d refused: %s", self.host, self.port, reason)
            return
        log.info(
            "mqtt connected to %s:%d (session present: %s)",
            self.host,
            self.port,
            flags.session_present,
        )
        self.connected.set()
        # Always (re)subscribe: a broker restarted without persistence forgot the session.
        c.subscribe([(t, 1) for t in self.topics])
        c.publish(self._status, b"online", qos=1, retain=True)

    def _on_subscribe(self, c, userdata, mid, reasons, props) -> None:
        bad = [r for r in reasons if r.is_failure]
        if bad:
            log.error("mqtt subscription refused: %s", bad)
        else:
            self.subscribed.set()

    def _on_disconnect(self, c, userdata, flags, reason, props) -> None:
        self.connected.clear()
        self.subscribed.clear()
        log.warning("mqtt disconnected (%s); reconnecting", reason)

    def _on_message(self, c, userdata, msg) -> None:
        self._q.append((msg.topic, msg.payload))
        with self._lock:
            if self._scheduled or self.loop is None:
                return
            self._scheduled = True
        self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            self._scheduled = False
        q = self._q
        gw = self.gw
        assert gw is not None
        cmd_prefix = self.prefix + "/cmd/"
        n = 0
        while q and n < 4096:
            topic, payload = q.popleft()
            n += 1
            if topic.startswith(cmd_prefix):
                try:  # a request is input too: nothing in it may stop the drain
                    self._command(topic[len(cmd_prefix) :], payload)
                except Exception:
                    gw.internal_error("an MQTT command request")
                continue
            # The topic's device id is only a routing hint; the frame's header is the truth.
            for seg in split_frames(payload):
                gw.handle(seg, self, None)
        if q:
            with self._lock:
                if not self._scheduled and self.loop is not None:
                    self._scheduled = True
                    self.loop.call_soon(self._drain)

    def _command(self, rest: str, payload: bytes) -> None:
        import json

        reply: dict[str, Any]
        assert self.gw is not None
        user, _, dev_text = rest.partition("/")
        try:
            device = int(dev_text)
            fields = json.loads(payload)
            if not isinstance(fields, dict) or "cmd" not in fields:
                raise ValueError('command must be a JSON object with "cmd"')
            c = self.gw.command(device, fields, requested_by=user)
            reply = {"ok": True, "detail": self.gw.describe(c), "request": c.request,
                     "status": c.status, "cmd_counter": c.counter}  # fmt: skip
        except (ValueError, TypeError) as e:
            self.gw.count("command_refused")
            reply = {"ok": False, "error": str(e)}
        log.info("command request by %r for %s: %s", user, dev_text, reply)
        self.publish(f"{self.prefix}/json/{dev_text}/command", json.dumps(reply).encode(), False)

    def send(self, device: int, wire: bytes, addr: Any) -> None:
        self.client.publish(f"{self.prefix}/down/{device}", wire, qos=1)

    def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.publish(self._status, b"offline", qos=1, retain=True).wait_for_publish(1)
        self.client.disconnect()
        self.client.loop_stop()


REPLY_START_S = 0.150  # SPEC.md section 9: a detector's reply MUST start within 150 ms


class SerialLink:
    """A serial port in its own thread. Without `poll`, a listener: the device(s) push frames
    (point-to-point RS-232/USB or a bus where detectors talk on their own). With `poll` (device
    ids), the RS-485 polling master: the host owns the half-duplex bus and addresses one
    detector at a time with POLL; a detector answers only when polled, with its oldest
    unacknowledged event or else its telemetry, and sets ST_PENDING while more events wait.
    ACKs and commands queued by the gateway go out at the start of the next bus slot; a
    command unanswered is retransmitted once per poll cycle (command_retry). The port is
    opened here (serial.SerialException, an OSError, if it cannot be); `gw` may be attached
    later, before start()."""

    def __init__(
        self,
        gw: Gateway | None,
        port: str,
        baud: int = 115200,
        poll: list[int] | None = None,
        reply_timeout: float | None = None,
        poll_interval: float = 1.0,
        flush_request: Callable[[], None] | None = None,
    ):
        import serial  # pyserial

        self.gw = gw
        self.name = "serial"
        self.port = port
        self.ser = serial.serial_for_url(port, baudrate=baud, timeout=0.02)
        self.poll = poll or []
        # SPEC.md section 9: a reply starts within 150 ms (a POLL's usually within 20 ms), then
        # a maximum frame (256 bytes, 10 bits each) takes its transmission time.
        self.reply_timeout = reply_timeout or REPLY_START_S + 256 * 10 / baud
        self.poll_interval = poll_interval
        self.flush_request = flush_request
        self.dec = StreamDecoder()
        self.out: queue.Queue[bytes] = queue.Queue()
        self.stop = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, name="serial-" + port, daemon=True)
        self._poll_enc: dict[int, fr.Encoder] = {}
        self.cycle_s = 0.0  # duration of the last full poll cycle

    def command_retry(self, tries: int) -> float | None:
        """SPEC.md section 8: on the polled bus a command is retransmitted at the next poll
        cycle (the RESULT comes in the command's own slot, or not at all). A listener port
        uses the gateway's UDP/MQTT schedule."""
        if not self.poll:
            return None
        return max(self.poll_interval, self.cycle_s)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread.start()

    def send(self, device: int, wire: bytes, addr: Any) -> None:
        if self.poll:
            self.out.put(wire)
        else:
            self.ser.write(wire)

    def _dispatch(self, results: list) -> list:
        if results and self.loop is not None:
            assert self.gw is not None
            for r in results:
                self.loop.call_soon_threadsafe(self.gw.result, r, self, self.port)
        return results

    def _run(self) -> None:
        try:
            if self.poll:
                self._master()
            else:
                while not self.stop.is_set():
                    data = self.ser.read(4096)
                    if data:
                        self._dispatch(self.dec.feed(data))
        except Exception as e:  # port gone (USB unplugged): logged, the gateway keeps going
            if not self.stop.is_set():
                log.error("serial %s stopped: %s", self.port, e)

    def _slot(self, wire: bytes) -> list:
        """One bus slot (SPEC.md section 9): write a downlink frame (POLL, ACK or COMMAND),
        then wait for the addressed detector's single reply (or the timeout)."""
        self.ser.write(b"\x00" + wire)  # leading 0x00 ends any partial frame (SPEC §3)
        self.dec.reset()
        got: list = []
        deadline = time.monotonic() + self.reply_timeout
        while time.monotonic() < deadline and not got and not self.stop.is_set():
            data = self.ser.read(512)
            if data:
                got = self._dispatch(self.dec.feed(data))
        return got

    def _queued(self) -> list:
        """Send every queued ACK/COMMAND, each in its own slot; return the replies."""
        out: list = []
        while not self.stop.is_set():
            try:
                w = self.out.get_nowait()
            except queue.Empty:
                break
            out.extend(self._slot(w))
        return out

    def _poll_one(self, device: int) -> list:
        enc = self._poll_enc.get(device)
        if enc is None:
            enc = self._poll_enc[device] = fr.Encoder(device)
        got = self._slot(enc.message(M.POLL, host.now(), {}))
        if not got:
            self.gw_count("poll_timeout")
        return got

    def gw_count(self, name: str) -> None:
        if self.loop is not None and self.gw is not None:
            self.loop.call_soon_threadsafe(self.gw.count, name)

    @staticmethod
    def _more(got: list) -> bool:
        return any(
            r.ok
            and (r.type == M.EVENT or (r.type == M.TELEMETRY and r.fields["status"] & M.ST_PENDING))
            for r in got
        )

    def _master(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            for dev in self.poll:
                if self.stop.is_set():
                    return
                got = self._queued() + self._poll_one(dev)
                # An event (or ST_PENDING): the gateway commits it, the ACK goes out in its own
                # slot, and the detector's reply to the ACK is its next event or telemetry.
                # Bounded per cycle so one chatty detector cannot hold the bus.
                for _ in range(8):
                    if not self._more(got) or self.stop.is_set():
                        break
                    self._wait_ack()
                    got = self._queued()
                    if not got:
                        got = self._poll_one(dev)
            self._queued()
            self.cycle_s = time.monotonic() - t0
            rest = self.poll_interval - self.cycle_s
            if rest > 0:
                self.stop.wait(rest)

    def _wait_ack(self) -> None:
        if self.flush_request is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self.flush_request)
        deadline = time.monotonic() + 0.5
        while self.out.empty() and time.monotonic() < deadline and not self.stop.is_set():
            time.sleep(0.002)

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():  # not started when the service could not start
            self.thread.join(2)
        with contextlib.suppress(Exception):
            self.ser.close()
