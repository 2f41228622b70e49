# The protocol link: events out of the log with stop-and-wait retransmission, telemetry,
# authenticated commands in. Never blocks: poll() does what the transport can take right now.
#
# Transport (HAL): read(buf) -> n bytes available now (0 if none), write(view) queues bytes
# without waiting, busy() -> True while a frame is still going out (RS-485 driver enabled).
# Rules implemented (protocol/SPEC.md): §7.3 counters and replay checks (protocol.session.Peer),
# the detector persists the host counter before acting on a command and answers nothing to
# no_tag/bad_tag/replay; §8 one event in flight, byte-identical retransmission, 2 s doubling
# to 60 s; §9 polled mode for RS-485: transmit only in answer to a frame for us, one frame each.
#
# Bounded under a flood (docs/firmware.md, Link under a flood): service() reads once per call
# and poll() at most _RX_READS times a window, the rest waits in the transport's own buffer;
# a duplicate command re-sends its cached RESULT once per transmission slot, however many
# copies arrive; the owed best-effort frames are at most _OWED; and a new event goes out
# before anything else (see _send_one). So no input can hold the loop or queue frames in
# front of an alarm.
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
# One TELEMETRY a minute is tagged (SPEC.md §5): hosts count a detector as alive on
# authenticated frames only, so spoofed reports cannot keep a dead detector "online".
_AUTH_TELEMETRY_MS = const(60000)
_RX = const(64)
_RX_READS = const(4)  # reads per poll(): 256 B a window, one frame of the maximum wire size
# Owed best-effort frames (HELLO, CONFIG, SNAPSHOT chunks, a duplicate command's cached RESULT
# once): at most this many; when full the oldest is dropped. Safe: each is best effort (SPEC.md
# §8: never retransmitted; the host retransmits a command whose RESULT it missed and asks again
# for a CONFIG or a chunk), a newer answer supersedes an older one, only a new authenticated
# command, its duplicate or the boot's HELLO adds to it, and neither events (the flash log) nor
# a new command's RESULT (self.result) are ever in it. One host command at a time owes at most
# 3 (a snapshot's chunks), plus the HELLO of the boot.
_OWED = const(4)


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
        self.outbox = []  # owed best-effort frames (bytes): see _OWED
        self.result = None  # the RESULT owed for a new command (bytes): sent first
        # Whose turn (_send_one): 2 the in-flight event's first transmission, 1 the owed
        # frames' (the event went last), 0 the event's retransmission.
        self.turn = 0
        self.inflight = 0  # event id on the wire, 0 = none
        self.inflight_seq = 0
        self.inflight_crc = -1
        self.inflight_wire = None
        self.retx_at = 0
        self.retx_ms = _RETX_FIRST_MS
        self.tele_at = 0
        self.auth_at = 0  # when the next TELEMETRY is tagged
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
        # One read per call (every ~10 ms: 6 KB/s, six times a 9600-baud line): a flood
        # cannot hold the sampling burst; what is left waits for the next call.
        n = io.read(rx)
        if n:
            for f in self.dec.feed(memoryview(rx)[:n]):
                if f.ok and f.type == M.POLL and f.device == self.enc.device and not self.later:
                    self.tele_at = now
                    if self.inflight:
                        self.retx_at = now
                    if not io.busy():
                        self._send_one(now, True)
                elif f.device == self.enc.device and len(self.later) < 4:
                    self.later.append(f)  # a polled bus holds one frame per grant: 4 is plenty

    def poll(self, now):
        io = self.io
        rx = self.rx
        grants = 0
        later = self.later
        while later:
            if self._frame(later.pop(0), now):
                grants += 1
        # At most _RX_READS reads a window: a flood waits in the transport's buffer (and
        # overflows there), never holds the loop or the events behind it.
        for _ in range(_RX_READS):
            n = io.read(rx)
            if not n:
                break
            for f in self.dec.feed(memoryview(rx)[:n]):
                if self._frame(f, now):
                    grants += 1
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
        ob = self.outbox
        if err is not None:
            if err.code != fr.E_DUPLICATE:
                # SPEC.md §7.3: no answer to no_tag, bad_tag or replay: no oracle, no bus time.
                return False
            if t != M.UPDATE:  # UPDATE ops are idempotent: a duplicate is answered as new
                r = self.last_result
                if t == M.COMMAND and r is not None and r not in ob:
                    ob.append(r)  # owed once, however many copies arrive (a replay flood)
                    del ob[:-_OWED]
                return True
        if t == M.UPDATE:  # its UPDATE_STATUS: app/ota.py's (kept in app.upd while in use)
            u = self.app.upd
            if u is None or type(u) is int:
                ob.append(self.app.command(f.fields, -1, now))
            else:
                ob.append(u.answer(f.fields, now))
            del ob[:-_OWED]
        elif t == M.COMMAND:
            fields = f.fields
            # The app persists the host counter before it acts (SPEC.md §7.3).
            status, value, extra = self.app.command(fields, f.counter, now)
            cmd = fields["cmd"]  # a number: the link decodes the detector's view (uplink=False)
            self.last_result = None
            if status >= 0:  # < 0: the app answers later (self-test) with send_result()
                self.send_result(f.counter, cmd, status, value)
            ob.extend(extra)
            del ob[:-_OWED]  # the oldest best-effort frames beyond _OWED (see there)
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
        self.last_result = self.result = self.enc.message(
            M.RESULT,
            self.app.hal.time(),
            {"cmd_counter": counter, "cmd": cmd, "status": status, "value": value},
            auth=True,
        )

    # -- transmit ------------------------------------------------------------------------------
    def _send_one(self, now, polled):
        """Send the most urgent frame, if any is due; True if one went out. Order: the RESULT
        of a new command (one, and only the key holder makes one); a new event (its first
        transmission: an alarm waits for nothing but the event before it, §8); then the
        in-flight event's retransmission taking turns with the owed best-effort frames, so
        neither starves the other (a HELLO must get out while the host cannot ACK); then
        telemetry."""
        io = self.io
        r = self.result
        if r is not None:
            self.result = None
            io.write(r)
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
                    self.turn = 2
                    break
                log.ack(rid)  # torn or overwritten record: nothing left to send for this id
                rid += 1
        turn = self.turn
        ob = self.outbox
        if self.inflight and (
            turn == 2 or ((polled or ticks.diff(now, self.retx_at) >= 0) and not (turn and ob))
        ):
            self.turn = 1
            io.write(self.inflight_wire)
            if not polled:
                self.retx_at = ticks.add(now, self.retx_ms)
                ms = self.retx_ms
                self.retx_ms = ms * 2 if ms < _RETX_MAX_MS // 2 else _RETX_MAX_MS
            return True
        self.turn = 0
        if ob:
            io.write(ob.pop(0))
            return True
        if polled or ticks.diff(now, self.tele_at) >= 0:
            self.tele_at = ticks.add(now, _TELEMETRY_MS)
            auth = ticks.diff(now, self.auth_at) >= 0
            if auth:
                self.auth_at = ticks.add(now, _AUTH_TELEMETRY_MS)
            io.write(self.enc.view(self.telemetry(auth)))
            return True
        return False

    def telemetry(self, auth=False):
        """Encode the periodic TELEMETRY frame (tagged if auth); its length in enc.wire."""
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
        return self.enc.telemetry(t, res, self.temps, self.lines, status, -1, auth)
