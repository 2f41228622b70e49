# The protocol link: events out of the log with stop-and-wait retransmission, telemetry,
# authenticated commands in. Never blocks: poll() does what the transport can take right now.
#
# Transport (HAL): read(buf) -> n bytes available now (0 if none), write(view) queues bytes
# without waiting, busy() -> True while a frame is still going out (RS-485 driver enabled).
# Rules implemented (protocol/SPEC.md): §7.3 counters and replay checks (protocol.session.Peer),
# the detector persists the host counter before acting on a command and answers nothing to
# no_tag/bad_tag/replay; §8 one event in flight, byte-identical retransmission, 2 s doubling
# to 60 s; §9 polled mode for RS-485: transmit only in answer to a frame for us, one frame each.
from efd import ticks
from efd.compat import const
from protocol import frame as fr
from protocol import messages as M
from protocol.session import DETECTOR_REQUIRES, Peer
from protocol.stream import StreamDecoder

_RETX_FIRST_MS = const(2000)
_RETX_MAX_MS = const(60000)
_TELEMETRY_MS = const(10000)
_RX = const(64)


class Link:
    def __init__(self, io, device, key, log, counter, host_counter, save_host_counter, polled):
        self.io = io
        self.log = log
        self.enc = fr.Encoder(device, key, counter)
        self.peer = None
        if key is not None:
            self.peer = Peer(key, host_counter, DETECTOR_REQUIRES, uplink=False)
        self.device = device
        self.save_host_counter = save_host_counter
        self.polled = polled
        self.dec = StreamDecoder(uplink=False)  # downlink types only: see _frame
        self.rx = bytearray(_RX)
        self.rxv = memoryview(self.rx)
        self.outbox = []  # owed frames (bytes): RESULT, CONFIG, SNAPSHOT, HELLO; sent first
        self.inflight = 0  # event id on the wire, 0 = none
        self.inflight_seq = 0
        self.inflight_crc = -1
        self.inflight_wire = None
        self.retx_at = 0
        self.retx_ms = _RETX_FIRST_MS
        self.tele_at = 0
        self.last_result = None  # (counter, bytes) for duplicate commands
        self.handler = None  # app: command(fields, counter, now) -> (status, value, extra)
        self.telemetry = None  # app: telemetry(now) -> wire length in enc.wire
        self.stats = [0, 0, 0]  # frames in, rejected, events delivered

    # -- receive -----------------------------------------------------------------------------
    def poll(self, now):
        grants = 0
        n = self.io.read(self.rx)
        while n:
            for f in self.dec.feed(self.rxv[:n]):
                if self._frame(f, now):
                    grants += 1
            n = self.io.read(self.rx)
        if self.polled:
            while grants and not self.io.busy():
                if not self._send_one(now, True):
                    break
                grants -= 1
        elif not self.io.busy():
            self._send_one(now, False)

    def _frame(self, f, now):
        """Handle one decoded frame; True if it grants us the bus (addressed to us)."""
        if f.device != self.device:
            return False
        if not f.ok:
            # The decoder leaves uplink payloads undecoded (E_DIRECTION with the header):
            # counted as the Peer's direction check below would count them.
            if f.code == fr.E_DIRECTION:
                self.stats[0] += 1
                if self.peer is not None:
                    self.stats[1] += 1
            return False
        self.stats[0] += 1
        if self.peer is None:  # not provisioned: no key, so no command or ACK can be trusted
            return f.type == M.POLL
        err = self.peer.check(f)
        t = f.type
        if err is not None:
            if err.code != fr.E_DUPLICATE:
                # SPEC.md §7.3: no answer to no_tag, bad_tag or replay: no oracle, no bus time.
                self.stats[1] += 1
                return False
            if t == M.COMMAND and self.last_result is not None:
                self.outbox.append(self.last_result)
            return True
        if t == M.COMMAND:
            # Persist before acting (SPEC.md §7.3): a replay after a power cut stays a replay.
            self.save_host_counter(f.counter)
            fields = f.fields
            status, value, extra = self.handler(fields, f.counter, now)
            cmd = fields["cmd"]  # a number: the link decodes the detector's view (uplink=False)
            self.last_result = None
            if status >= 0:  # < 0: the app answers later (self-test) with send_result()
                self.send_result(f.counter, cmd, status, value)
            for x in extra:
                self.outbox.append(x)
        elif t == M.ACK:
            a = f.fields
            if (
                self.inflight
                and a["ack_type"] == M.EVENT
                and a["ack_seq"] == self.inflight_seq
                and a["ack_crc"] == self.inflight_crc
            ):
                self.log.ack(self.inflight)
                self.inflight = 0
                self.inflight_wire = None
                self.retx_ms = _RETX_FIRST_MS
                self.stats[2] += 1
        if t == M.POLL:
            self.tele_at = now  # a POLL asks for the latest telemetry now
        # Any authentic frame (or a POLL) means the host is back: retransmit without waiting.
        if self.inflight:
            self.retx_at = now
        return True

    def send_result(self, counter, cmd, status, value):
        res = self.enc.message(
            M.RESULT,
            self.time(),
            {"cmd_counter": counter, "cmd": cmd, "status": status, "value": value},
            auth=True,
        )
        self.last_result = res
        self.outbox.append(res)

    hello = False
    time = None  # app installs: () -> wire time

    # -- transmit ------------------------------------------------------------------------------
    def _load(self):
        """Put the oldest pending event on the wire (encoded once, resent byte-identical)."""
        log = self.log
        rid = log.first_pending()
        while rid and rid <= log.head:
            r = log.read(rid)
            if r is not None:
                t, counter, seq, kind, ch, value, thr = r
                n = self.enc.event(t, kind, ch, value, thr, True, seq, counter)
                self.inflight_wire = bytes(self.enc.view(n))
                # The ACK names the frame's CRC: the encoder keeps the last one it computed.
                self.inflight_crc = self.enc.crc
                self.inflight = rid
                self.inflight_seq = seq
                return True
            log.ack(rid)  # torn or overwritten record: nothing left to send for this id
            rid += 1
        return False

    def _send_one(self, now, polled):
        io = self.io
        if self.outbox:
            io.write(self.outbox.pop(0))
            return True
        if self.hello:
            self.hello = False
            io.write(self.hello_frame())
            return True
        if not self.inflight:
            self._load()
        if self.inflight and (polled or ticks.diff(now, self.retx_at) >= 0):
            io.write(self.inflight_wire)
            if not polled:
                self.retx_at = ticks.add(now, self.retx_ms)
                ms = self.retx_ms
                self.retx_ms = ms * 2 if ms < _RETX_MAX_MS // 2 else _RETX_MAX_MS
            return True
        if polled or ticks.diff(now, self.tele_at) >= 0:
            self.tele_at = ticks.add(now, _TELEMETRY_MS)
            n = self.telemetry(now)
            io.write(self.enc.view(n))
            return True
        return False

    hello_frame = None  # app installs: () -> bytes
