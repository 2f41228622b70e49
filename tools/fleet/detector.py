"""One virtual detector at telemetry level, transport-agnostic (sans-I/O).

It speaks the real protocol through protocol.frame.Encoder: periodic TELEMETRY, tagged EVENTs
held stop-and-wait until a matching authenticated ACK arrives (retransmitted with the same
bytes, counter and tag until then), COMMANDs answered with tagged RESULTs, and — on a polled
RS-485 bus — an answer to every POLL addressed to it. Its events are a scenario's timeline
(tools.fleet.timeline), replayed on its own clock.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from efd import events as ev
from protocol import frame as fr
from protocol import messages as M
from protocol.auth import Key, make_counter
from protocol.session import DETECTOR_REQUIRES, Peer
from tools.fleet.timeline import Timeline

BASE_RESIDUAL_MA = 90
BASE_TEMP_DC = 300
BASE_LINE_CA = 1250


@dataclass
class Sent:
    """An event in flight: the exact wire bytes, so a retransmission is identical."""

    wire: bytes
    seq: int
    crc: int
    counter: int
    typ: int
    sent_at: float = 0.0
    tries: int = 0


@dataclass
class Stats:
    telemetry: int = 0
    events: int = 0
    acked: int = 0
    retransmits: int = 0
    results: int = 0
    rejected_downlink: int = 0
    log: list[tuple[int, int, str, str, int]] = field(default_factory=list)


class VirtualDetector:
    def __init__(
        self,
        device: int,
        key: bytes,
        timeline: Timeline | None = None,
        start: float = 0.0,
        speed: float = 1.0,
        boot_count: int = 1,
        retry_s: float = 1.0,
        seed: int = 0,
        polled: bool = False,
    ):
        self.device = device
        self.polled = polled  # RS-485: every frame addressed to it gets exactly one reply
        self.key = Key(key)
        self.boot = boot_count
        self._n = 0
        self.enc = fr.Encoder(device, self.key, self._counter)
        self.enc.seq = seed & 0xFF
        self.host = Peer(self.key, 0, DETECTOR_REQUIRES, uplink=False)
        self.retry_s = retry_s
        self.queue: deque[tuple[int, int, int, int]] = deque()  # events waiting to be sent
        self.inflight: Sent | None = None
        self.timeline = list(timeline.events) if timeline else []
        self.t0 = start
        self.speed = speed
        self.next_ev = 0
        self.latched = 0  # status bits 0..8
        self.prealarm = 0
        self.fault = 0
        # Last value per channel (efd.events numbering), the detector's integer units.
        self.values = [BASE_RESIDUAL_MA, BASE_TEMP_DC, BASE_TEMP_DC, BASE_TEMP_DC, BASE_TEMP_DC,
                       BASE_LINE_CA, BASE_LINE_CA, BASE_LINE_CA, 0]  # fmt: skip
        self.rng = random.Random(device ^ seed)
        self.stats = Stats()

    def _counter(self) -> int:
        self._n += 1
        if self._n > 0xFFFF:  # SPEC §7.3: a new boot epoch, so the counter keeps rising
            self.boot += 1
            self._n = 1
        return make_counter(self.boot, self._n)

    # -- state ---------------------------------------------------------------------------------
    def status(self) -> int:
        s = self.latched
        if self.prealarm:
            s |= M.ST_PREALARM
        if self.fault:
            s |= M.ST_FAULT
        if self.queue or self.inflight is not None:
            s |= M.ST_PENDING
        return s

    def _apply(self, kind: int, ch: int, value: int) -> None:
        bit = 1 << ch
        if kind == ev.ALARM:
            self.latched |= bit
            self.prealarm &= ~bit
        elif kind in (ev.PREALARM, ev.ROR):
            self.prealarm |= bit
        elif kind == ev.CLEAR:
            self.prealarm &= ~bit
        elif kind == ev.RESET:
            self.latched &= ~bit
        elif kind == ev.FAULT:
            self.fault |= bit
        elif kind == ev.FAULT_CLEAR:
            self.fault &= ~bit
        if ch < len(self.values) and kind not in (ev.FAULT, ev.FAULT_CLEAR, ev.ROR):
            self.values[ch] = value

    def due(self, now: float) -> None:
        """Move the timeline's events whose time has come into the send queue."""
        tl = self.timeline
        while self.next_ev < len(tl) and self.t0 + tl[self.next_ev].t / self.speed <= now:
            e = tl[self.next_ev]
            self.next_ev += 1
            self.raise_event(e.kind, e.channel, e.value, e.threshold)

    def raise_event(self, kind: int, channel: int, value: int, threshold: int) -> None:
        self._apply(kind, channel, value)
        self.queue.append((kind, channel, value, threshold))

    def done(self) -> bool:
        return self.next_ev >= len(self.timeline) and not self.queue and self.inflight is None

    # -- uplink --------------------------------------------------------------------------------
    def telemetry(self, now_wire: int) -> bytes:
        v = self.values
        jitter = self.rng.randint(-3, 3)
        temps = [v[1] + jitter, v[2], M.NA_I16, M.NA_I16]
        if self.fault & (1 << ev.TEMP0 + 1):
            temps[1] = M.NA_I16
        n = self.enc.telemetry(
            now_wire, max(0, v[0] + jitter), temps, [v[5], M.NA_U16, M.NA_U16], self.status()
        )
        self.stats.telemetry += 1
        return bytes(self.enc.wire[:n])

    def hello(self, now_wire: int) -> bytes:
        return self.enc.message(
            M.HELLO, now_wire,
            {"fw": [0, 1, 0], "reset_cause": "power_on", "boot_count": self.boot,
             "config_hash": 0, "host_counter": self.host.last},
        )  # fmt: skip

    def uplink(self, now: float, now_wire: int) -> bytes | None:
        """The event frame to send now (new or a retransmission), or None."""
        s = self.inflight
        if s is not None:
            if now - s.sent_at < self.retry_s:
                return None
            s.sent_at = now
            s.tries += 1
            self.stats.retransmits += 1
            return s.wire
        if not self.queue:
            return None
        kind, ch, value, thr = self.queue.popleft()
        n = self.enc.event(now_wire, kind, ch, value, thr)
        wire = bytes(self.enc.wire[:n])
        f = fr.decode(wire)
        assert f.ok
        self.inflight = Sent(wire, f.seq, f.crc, f.counter, M.EVENT, now, 1)
        self.stats.events += 1
        self.stats.log.append((self.device, f.counter, ev.KIND_NAMES[kind],
                               ev.CHANNEL_NAMES[ch], value))  # fmt: skip
        return wire

    # -- downlink ------------------------------------------------------------------------------
    def downlink(self, wire: bytes, now: float, now_wire: int) -> list[bytes]:
        """Handle one frame from the host; returns frames to send back (RESULT, poll answer)."""
        f = fr.decode(wire)
        if not f.ok or f.device != self.device:
            self.stats.rejected_downlink += f.ok is False
            return []
        err = self.host.check(f)
        if err is not None:
            if err.code != fr.E_DUPLICATE:
                self.stats.rejected_downlink += 1
            return []
        if f.type == M.ACK:
            s = self.inflight
            fl = f.fields
            if (s is not None and fl["ack_seq"] == s.seq and fl["ack_crc"] == s.crc
                    and fl["ack_type"] == M.TYPE_NAMES[s.typ]):  # fmt: skip
                self.inflight = None
                self.stats.acked += 1
            nxt = self.uplink(now, now_wire)
            if nxt is None and self.polled:
                nxt = self.telemetry(now_wire)
            return [nxt] if nxt else []
        if f.type == M.COMMAND:
            return self._command(f.fields, f.counter, now, now_wire)
        if f.type == M.POLL:
            nxt = self.uplink(now, now_wire)
            if nxt is None and self.inflight is not None:
                nxt = self.inflight.wire  # polled again: answer with the pending event
            return [nxt if nxt is not None else self.telemetry(now_wire)]
        return []

    def _command(self, fields: dict, counter: int, now: float, now_wire: int) -> list[bytes]:
        cmd = fields.get("cmd")
        status, value = "ok", 0
        if cmd == "reset":
            ch = fields.get("channel")
            chans = range(ev.N_CHANNELS) if ch == "all" else [ev.CHANNEL_NAMES.index(ch)]
            for c in chans:
                if self.latched & (1 << c):
                    self.raise_event(ev.RESET, c, self.values[c], 0)
        elif cmd == "selftest":
            self.raise_event(ev.SELFTEST, ev.RESIDUAL, 1, 0)
        elif cmd not in ("time_sync", "get_config", "reboot", "snapshot", "set_config"):
            status = "unknown_command"
        self.stats.results += 1
        wire = self.enc.message(
            M.RESULT, now_wire,
            {"cmd_counter": counter, "cmd": cmd, "status": status, "value": value},
            auth=True,
        )  # fmt: skip
        return [wire]
