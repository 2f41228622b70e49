# The RS-485 bus on the twin: a MAX3485-style half-duplex transceiver with DE and /RE tied to one
# GPIO, and a polling master on the other end that follows protocol/SPEC.md §9 the way
# tools/gateway's SerialTransport does (POLL, wait 150 ms + a maximum frame's time for the reply,
# ACK every event, next device).
#
# What the transceiver does (MAX3485 data sheet, function table): with DE high the driver puts
# our TX on the bus and the receiver is off (/RE high), so bytes from the master are lost; with
# DE low our TX never reaches the bus. Every byte's fate is decided by the DE level during it.
import struct

import twin
from transceiver import Transceiver

from protocol import frame as fr
from protocol import messages as M
from protocol.auth import Key
from protocol.stream import StreamDecoder

# The master uses only the codec modules the detector's image has (protocol.host is not on the
# board): it builds POLL and ACK with the encoder's header/tag/CRC steps and reads replies with
# the detector's own decoder, which leaves uplink payloads undecoded (E_DIRECTION) but gives
# their type, seq and raw frame.
_HEADER_LEN = 10

_MAX_WIRE_BYTES = 256  # SPEC.md §9: the gateway waits 20 ms + the time of a 256-byte frame


class Bus(Transceiver):
    def __init__(self, cfg):
        Transceiver.__init__(self, cfg)
        self.master = Master(self, cfg) if cfg.get("poll_ms") else None

    def attach(self, uart):
        # Bytes that reached the pin before this UART existed (boot, a reset) were never
        # received: the peripheral was not set up.
        if self.master is not None:
            self.master.run(twin.now_us)  # what the master sent meanwhile
        lost = 0
        while self.down and self.down[0][0] <= twin.now_us:
            self.down.pop(0)
            lost += 1
        if lost:
            twin.stat("rx_lost_no_uart", lost)
        self.rx = bytearray()
        Transceiver.attach(self, uart)

    def _arrive(self, now):
        if self.master is not None:
            self.master.run(now)
        Transceiver._arrive(self, now)

    # -- the master's side -------------------------------------------------------------------------
    def send_down(self, t, data, byte_us):
        for i in range(len(data)):
            self.down.append([t + (i + 1) * byte_us, data[i]])

    def seen_up(self, now):
        """Bytes we transmitted whose stop bit has passed by `now`, as (start, end, byte or -1
        when DE was not high for the whole byte: the master saw an idle line)."""
        out = []
        u = self.up
        i = 0
        while i < len(u) and u[i][0] + u[i][1] <= now:
            s, bt, b = u[i]
            if not self.driven(s, bt):
                twin.stat("tx_undriven_bytes")
                b = -1
            out.append((s, s + bt, b))
            i += 1
        if i:
            del u[:i]
        return out


class Master:
    """The gateway's polling master, one device, in virtual time. Records every reply's latency
    (first byte of the reply minus the end of the frame it answers) in twin.stats."""

    def __init__(self, bus, cfg):
        self.bus = bus
        self.byte_us = 10000000 // cfg["baud"]
        self.poll_us = cfg["poll_ms"] * 1000
        self.wait_us = 150000 + _MAX_WIRE_BYTES * self.byte_us  # SPEC.md §9
        self.turn_us = cfg.get("turnaround_us", 2000)
        key = Key(bytes.fromhex(cfg["key"])) if cfg.get("key") else None
        self.ctr = cfg.get("master_counter0", 1 << 24)
        self.enc = fr.Encoder(cfg["device"], key, self._counter)
        self.dec = StreamDecoder(uplink=False)
        self.next_at = cfg.get("poll_start_ms", 1000) * 1000
        self.sent_end = -1  # end of the frame we wait on a reply to (-1: idle)
        self.reply_at = -1  # first byte of that reply
        self.deadline = 0
        self.last_poll = -self.poll_us
        self.lat = twin.stats.setdefault("reply_latency_us", [])  # to POLLs
        self.ack_lat = twin.stats.setdefault("ack_reply_latency_us", [])  # to ACKs
        self.sent_poll = True
        self.acked = twin.stats.setdefault("acked_events", [])

    def _counter(self):
        self.ctr += 1
        return self.ctr

    def _poll(self):
        e = self.enc
        e._header(M.POLL, 0, False, -1)
        return bytes(e.view(e._finish(_HEADER_LEN, False, 0)))

    def _ack(self, typ, seq, crc):
        e = self.enc
        e._header(M.ACK, 0, True, -1)
        struct.pack_into("<BBH", e.frame, _HEADER_LEN, typ, seq, crc)
        return bytes(e.view(e._finish(_HEADER_LEN + 4, True, -1)))

    def _send(self, t, wire):
        # Whatever arrived before this request is not its reply (a late answer to an earlier
        # one): read it off and start the decoder afresh, as a master flushes its input.
        for _s, _e, b in self.bus.seen_up(t):
            if b >= 0:
                for _f in self.dec.feed(bytes((b,))):
                    twin.stat("late_replies")
        self.bus.send_down(t, wire, self.byte_us)
        self.sent_end = t + len(wire) * self.byte_us
        self.deadline = self.sent_end + self.wait_us
        self.reply_at = -1

    def run(self, now):
        while True:
            if self.sent_end < 0:
                if self.next_at > now:
                    return
                t = self.next_at
                self.last_poll = t
                self._send(t, self._poll())
                self.sent_poll = True
                twin.stat("polls")
                continue
            got = None
            for s, e, b in self.bus.seen_up(now):
                if b < 0:
                    continue
                if self.reply_at < 0 and s >= self.sent_end:
                    self.reply_at = s
                for f in self.dec.feed(bytes((b,))):
                    if got is None:
                        got = (f, e)
            if got is not None:
                f, e = got
                if self.reply_at >= 0:
                    lat = self.lat if self.sent_poll else self.ack_lat
                    lat.append(self.reply_at - self.sent_end)
                self.sent_end = -1
                nxt = e + self.turn_us
                raw = f.raw
                if f.type == M.EVENT and raw is not None and len(raw) > 2:
                    self.acked.append(f.seq)
                    crc = raw[-2] | raw[-1] << 8
                    self._send(nxt, self._ack(f.type, f.seq, crc))
                    self.sent_poll = False
                    twin.stat("acks")
                    continue
                self.next_at = max(nxt, self.last_poll + self.poll_us)
                continue
            if now >= self.deadline:
                twin.stat("poll_timeouts")
                self.sent_end = -1
                self.next_at = max(self.deadline, self.last_poll + self.poll_us)
                continue
            return
