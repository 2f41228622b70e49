# The protocol link: events out of the log with stop-and-wait retransmission, telemetry,
# authenticated commands in. Never blocks: poll() does what the transport can take right now.
#
# Transport (HAL): read(buf) -> n bytes available now (0 if none), write(view) queues bytes
# without waiting, busy() -> True while a frame is still going out (RS-485 driver enabled).
# Rules implemented (protocol/SPEC.md): §7.3 counters and replay checks (protocol.session.Peer),
# the detector persists the host counter before acting on a command and answers nothing to
# no_tag/bad_tag/replay; §8 one event in flight, byte-identical retransmission, 2 s doubling
# to 60 s; §9 polled mode for RS-485: transmit only in answer to a frame for us, one frame each.
from array import array

from efd import events as ev
from efd import ticks
from efd.compat import const
from protocol import frame as fr
from protocol import messages as M
from protocol.auth import Key
from protocol.session import DETECTOR_REQUIRES, Peer
from protocol.stream import StreamDecoder

_RETX_FIRST_MS = const(2000)
_RETX_MAX_MS = const(60000)
_TELEMETRY_MS = const(10000)
_RX = const(64)


class Link:
    def __init__(self, app, device, key):
        # app: run.App (hal, log, det, test, host_ctr, next_counter(), command(); see there).
        # key: the device key (32 bytes), None when not provisioned.
        self.app = app
        self.io = app.hal.link
        self.peer = None
        if key is not None:
            key = Key(key)
            self.peer = Peer(key, app.host_ctr, DETECTOR_REQUIRES, uplink=False)
        self.enc = fr.Encoder(device, key, app.next_counter)
        self.dec = StreamDecoder(uplink=False)  # downlink types only: see _frame
        self.rx = bytearray(_RX)
        self.outbox = []  # owed frames (bytes): RESULT, CONFIG, SNAPSHOT, HELLO; sent first
        self.inflight = 0  # event id on the wire, 0 = none
        self.inflight_seq = 0
        self.inflight_crc = -1
        self.inflight_wire = None
        self.retx_at = 0
        self.retx_ms = _RETX_FIRST_MS
        self.tele_at = 0
        self.last_result = None  # the last RESULT (bytes): answers a duplicate command
        self.later = []  # frames service() left for poll() (bounded: the bus is polled)
        self.temps = array("h", bytes(8))  # TELEMETRY's readings, see telemetry()
        self.lines = array("H", bytes(6))

    # -- receive -----------------------------------------------------------------------------
    def service(self, now):
        """Called by the HAL inside its sampling burst (every ~10 ms): answer a POLL at once
        (SPEC.md §9: the reply starts within 20 ms), keep every other frame for poll(), which
        runs after the window (commands and ACKs need the tag check and may write flash)."""
        io = self.io
        io.busy()  # drop the RS-485 driver as soon as the last stop bit is out
        if not self.app.hal.polled:
            return
        rx = self.rx
        n = io.read(rx)
        while n:
            for f in self.dec.feed(memoryview(rx)[:n]):
                if f.ok and f.type == M.POLL and f.device == self.enc.device and not self.later:
                    self.tele_at = now
                    if self.inflight:
                        self.retx_at = now
                    if not io.busy():
                        self._send_one(now, True)
                elif f.device == self.enc.device and len(self.later) < 4:
                    self.later.append(f)  # a polled bus holds one frame per grant: 4 is plenty
            n = io.read(rx)

    def poll(self, now):
        io = self.io
        rx = self.rx
        grants = 0
        later = self.later
        while later:
            if self._frame(later.pop(0), now):
                grants += 1
        n = io.read(rx)
        while n:
            for f in self.dec.feed(memoryview(rx)[:n]):
                if self._frame(f, now):
                    grants += 1
            n = io.read(rx)
        if self.app.hal.polled:
            while grants and not io.busy():
                if not self._send_one(now, True):
                    break
                grants -= 1
        elif not io.busy():
            self._send_one(now, False)

    def _frame(self, f, now):
        """Handle one decoded frame; True if it grants us the bus (addressed to us)."""
        # Frames for other detectors, and uplink frames (the decoder leaves their payloads
        # undecoded: E_DIRECTION), are ignored.
        if f.device != self.enc.device or not f.ok:
            return False
        if self.peer is None:  # not provisioned: no key, so no command or ACK can be trusted
            return f.type == M.POLL
        err = self.peer.check(f)
        t = f.type
        if err is not None:
            if err.code != fr.E_DUPLICATE:
                # SPEC.md §7.3: no answer to no_tag, bad_tag or replay: no oracle, no bus time.
                return False
            if t == M.COMMAND and self.last_result is not None:
                self.outbox.append(self.last_result)
            return True
        if t == M.COMMAND:
            fields = f.fields
            # The app persists the host counter before it acts (SPEC.md §7.3).
            status, value, extra = self.app.command(fields, f.counter, now)
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
                self.app.log.ack(self.inflight)
                self.inflight = 0
                self.inflight_wire = None
                self.retx_ms = _RETX_FIRST_MS
        if t == M.POLL:
            self.tele_at = now  # a POLL asks for the latest telemetry now
        # Any authentic frame (or a POLL) means the host is back: retransmit without waiting.
        if self.inflight:
            self.retx_at = now
        return True

    def send_result(self, counter, cmd, status, value):
        res = self.enc.message(
            M.RESULT,
            self.app.hal.time(),
            {"cmd_counter": counter, "cmd": cmd, "status": status, "value": value},
            auth=True,
        )
        self.last_result = res
        self.outbox.append(res)

    # -- transmit ------------------------------------------------------------------------------
    def _send_one(self, now, polled):
        io = self.io
        if self.outbox:
            io.write(self.outbox.pop(0))
            return True
        if not self.inflight:
            # Put the oldest pending event on the wire (encoded once, resent byte-identical).
            log = self.app.log
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
                    break
                log.ack(rid)  # torn or overwritten record: nothing left to send for this id
                rid += 1
        if self.inflight and (polled or ticks.diff(now, self.retx_at) >= 0):
            io.write(self.inflight_wire)
            if not polled:
                self.retx_at = ticks.add(now, self.retx_ms)
                ms = self.retx_ms
                self.retx_ms = ms * 2 if ms < _RETX_MAX_MS // 2 else _RETX_MAX_MS
            return True
        if polled or ticks.diff(now, self.tele_at) >= 0:
            self.tele_at = ticks.add(now, _TELEMETRY_MS)
            io.write(self.enc.view(self.telemetry()))
            return True
        return False

    def telemetry(self):
        """Encode the periodic TELEMETRY frame; its length in enc.wire."""
        app = self.app
        det = app.det
        v = det.values
        cfg = det.cfg
        reported = det.faults.reported
        st = det.status()
        status = st & 0x1FF
        if st >> 18:
            status |= M.ST_PREALARM
        if st >> 9 & 0x1FF:
            status |= M.ST_FAULT
        if app.test is not None:
            status |= M.ST_SELFTEST
        t = app.hal.time()
        if t == 0:
            status |= M.ST_CLOCK_UNSET
        if app.log.first_pending():
            status |= M.ST_PENDING
        res = v[ev.RESIDUAL]
        if reported[ev.RESIDUAL] or res > 0xFFFE:
            res = M.NA_U16
        for i in range(4):
            ch = ev.TEMP0 + i
            ok = i < cfg["temp_channels"] and not reported[ch]
            self.temps[i] = v[ch] if ok else M.NA_I16
        for i in range(3):
            ch = ev.PHASE0 + i
            ok = i < cfg["phase_channels"] and not reported[ch] and v[ch] <= 0xFFFE
            self.lines[i] = v[ch] if ok else M.NA_U16
        return self.enc.telemetry(t, res, self.temps, self.lines, status)
