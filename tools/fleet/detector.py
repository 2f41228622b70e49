"""One virtual detector at telemetry level, transport-agnostic (sans-I/O).

It speaks the real protocol through protocol.frame.Encoder: periodic TELEMETRY, tagged EVENTs
held stop-and-wait until a matching authenticated ACK arrives (retransmitted with the same
bytes, counter and tag until then), COMMANDs executed once and answered with a tagged RESULT
(plus CONFIG / SNAPSHOT frames where SPEC §5.9 says so), a retransmitted COMMAND (a
`duplicate`, SPEC §7.3) answered with the cached RESULT and not executed again, and — on a
polled RS-485 bus — exactly one answer to every frame addressed to it, owed frames first
(SPEC §9). Its events are a scenario's timeline (tools.fleet.timeline), replayed on its own
clock.

Like the firmware (firmware/lib/app/counters.py) it obeys the gateway's `resync` (SPEC §7.4): a
virtual detector always boots with boot count 1, so against a database that already holds its
events from an earlier run its counter is below the gateway's marks; the gateway's `resync`
raises its boot count above the mark and its in-flight event is sent again under a new counter.

And like the firmware it follows SPEC.md for what it says about itself: a HELLO after every
boot (the first, and each `reboot` command's: RESULT, then a new boot count and its HELLO),
a `selftest` EVENT on channel residual with value 1 (pass) for the `selftest` command (§2,
§5.9), and a HELLO / CONFIG `config_hash` computed over its canonical config (§5.1): every
setting of efd.config, as app.settings.config_hash does on the detector.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from efd import config, names
from efd import events as ev
from protocol import frame as fr
from protocol import host
from protocol import messages as M
from protocol.auth import COUNTER_MAX, Key, make_counter
from protocol.session import DETECTOR_REQUIRES, Peer
from tools.fleet.timeline import Timeline

BASE_RESIDUAL_MA = 90
BASE_TEMP_DC = 300
BASE_LINE_CA = 1250
BOOT_MAX = 0xFFFF  # the boot count never wraps (SPEC §7.3 rule W)

# The settings a virtual detector runs with are every one of efd.config (names, detector units,
# its defaults updated with VirtualDetector(settings=...)), so its CONFIG carries every parameter
# and its config_hash is the canonical one (SPEC.md §5.1). set_config checks them as the
# firmware does (efd.config, all or none); an unknown id or a value out of range gets
# bad_argument with value = the parameter id.


def config_hash(params: Iterable[tuple[str, int] | list]) -> int:
    """SPEC.md §5.1: the first 4 bytes (LE u32) of SHA-256 over the canonical config, each
    parameter as (u8 id, i32 value) little-endian in ascending id order. params: (name, value)
    pairs, names as protocol.host.PARAMS (the SPEC §5.5 ids) or pN for a raw id; for the hash
    to be the detector's they must be every setting it knows."""
    packed = sorted((_param_id(n), v) for n, v in params)
    h = hashlib.sha256(b"".join(struct.pack("<Bi", i, v) for i, v in packed))
    return int.from_bytes(h.digest()[:4], "little")


def _param_id(name: str) -> int:
    if name in host.PARAMS and name:
        return host.PARAMS.index(name)
    if name[:1] == "p" and name[1:].isdigit():
        return int(name[1:])
    raise ValueError(f"unknown setting {name!r}")


SNAPSHOT_CHUNKS = 2
SNAPSHOT_SAMPLES = 16  # per chunk


@dataclass
class Sent:
    """An event in flight: the exact wire bytes, so a retransmission is identical."""

    wire: bytes
    seq: int
    crc: int
    counter: int
    typ: int
    sent_at: float = 0.0
    tries: int = 0  # 0: not on the wire yet (re-stamped by a resync): sent at the next chance
    # (wire time, kind, channel, value, threshold): what a resync re-stamps (SPEC §7.4)
    content: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)


@dataclass
class Stats:
    telemetry: int = 0
    events: int = 0
    acked: int = 0
    retransmits: int = 0
    results: int = 0
    cached_results: int = 0  # RESULTs re-sent for a duplicate COMMAND (not executed again)
    rejected_downlink: int = 0
    downlink: int = 0  # frames from the host that passed the checks (ACK, COMMAND, POLL...)
    resyncs: int = 0  # resync commands executed (SPEC §7.4)
    resync_failed: int = 0  # ... answered `failed`: the boot count would pass 0xFFFF
    restamped: int = 0  # events sent again under a new counter by a resync
    reboots: int = 0  # reboot commands executed (each followed by a HELLO)
    # Commands executed, in order: (command counter, command name). Exactly once each.
    executed: list[tuple[int, str]] = field(default_factory=list)
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
        settings: dict[str, int] | None = None,
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
        self.outbox: deque[bytes] = deque()  # owed frames (CONFIG, SNAPSHOT): sent first
        self.last_result: tuple[int, bytes] | None = None  # (command counter, RESULT wire)
        self.config = config.make(settings)  # every setting: SPEC §5.1's canonical config
        self.reset_cause = "power_on"  # of the current boot, for its HELLO
        self.snap_id = 0
        self.auth_at: int | None = None  # wire time of the last tagged TELEMETRY

    def _counter(self) -> int:
        if self._n >= 0xFFFF:  # SPEC §7.3: a new boot epoch, so the counter keeps rising
            if self.boot >= BOOT_MAX:  # rule W: no wrap; the last counter again (a replay)
                return COUNTER_MAX
            self.boot += 1
            self._n = 0
        self._n += 1
        return make_counter(self.boot, self._n)

    def last_counter(self) -> int:
        """The last uplink counter used (boot count << 16 | frames since boot)."""
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
        if ch < len(self.values) and kind not in (ev.FAULT, ev.FAULT_CLEAR, ev.ROR, ev.SELFTEST):
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
        # Like the firmware (SPEC §5): one tagged TELEMETRY a minute, the rest untagged.
        auth = self.auth_at is None or now_wire - self.auth_at >= 60
        if auth:
            self.auth_at = now_wire
        n = self.enc.telemetry(
            now_wire,
            max(0, v[0] + jitter),
            temps,
            [v[5], M.NA_U16, M.NA_U16],
            self.status(),
            auth=auth,
        )
        self.stats.telemetry += 1
        return bytes(self.enc.wire[:n])

    def hello(self, now_wire: int) -> bytes:
        """The HELLO of the current boot (SPEC.md §5.1): sent once after every boot."""
        return self.enc.message(
            M.HELLO, now_wire,
            {"fw": [0, 1, 0], "reset_cause": self.reset_cause, "boot_count": self.boot,
             "config_hash": self.config_hash(), "host_counter": self.host.marks[0]}, auth=True,
        )  # fmt: skip

    def params(self) -> list[list]:
        """Every setting as [name, value] in ascending parameter id order (the CONFIG's)."""
        return [[k, self.config[k]] for k in sorted(self.config, key=_param_id)]

    def config_hash(self) -> int:
        return config_hash(self.params())

    def reboot(self, now_wire: int) -> bytes:
        """A simulated reboot (the `reboot` command; SPEC.md §5.9: RESULT, then reboot, then a
        HELLO): a new boot count, as the firmware's app.boot does (rule W: never past 0xFFFF),
        frames since boot 0, the first TELEMETRY tagged again. What the firmware keeps on flash
        stays: settings, latched alarms, the events not yet acknowledged (the one in flight is
        retransmitted with the same bytes, SPEC §8), the downlink mark. Returns the HELLO."""
        if self.boot >= BOOT_MAX:
            self.boot, self._n = BOOT_MAX, 0xFFFF  # app.boot: the counter space stays used up
        else:
            self.boot += 1
            self._n = 0
        self.reset_cause = "soft"  # machine.reset()
        self.auth_at = None
        self.stats.reboots += 1
        return self.hello(now_wire)

    def uplink(self, now: float, now_wire: int) -> bytes | None:
        """The event frame to send now (new or a retransmission), or None."""
        s = self.inflight
        if s is not None:
            if s.tries == 0:  # re-stamped by a resync: its first transmission
                s.sent_at, s.tries = now, 1
                return s.wire
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
        self.inflight = Sent(wire, f.seq, f.crc, f.counter, M.EVENT, now, 1,
                             (now_wire, kind, ch, value, thr))  # fmt: skip
        self.stats.events += 1
        self.stats.log.append((self.device, f.counter, names.KIND_NAMES[kind],
                               names.CHANNEL_NAMES[ch], value))  # fmt: skip
        return wire

    # -- downlink ------------------------------------------------------------------------------
    def downlink(self, wire: bytes, now: float, now_wire: int) -> list[bytes]:
        """Handle one frame from the host; returns frames to send back (RESULT, poll answer).
        Polled (RS-485): exactly one frame per frame addressed to it that passes the checks."""
        f = fr.decode(wire)
        if not f.ok or f.device != self.device:
            self.stats.rejected_downlink += f.ok is False
            return []
        err = self.host.check(f)
        if err is None:
            self.stats.downlink += 1
        else:
            if err.code != fr.E_DUPLICATE:
                self.stats.rejected_downlink += 1
                return []  # SPEC §7.3: no answer to no_tag, bad_tag, replay
            # A retransmission of the frame just accepted: never act again, answer again.
            lr = self.last_result
            if f.type == M.COMMAND and lr is not None and lr[0] == f.counter:
                self.stats.cached_results += 1
                return [lr[1]]
            return [self._reply(now, now_wire)] if self.polled else []
        if f.type == M.ACK:
            s = self.inflight
            fl = f.fields
            if (s is not None and fl["ack_seq"] == s.seq and fl["ack_crc"] == s.crc
                    and fl["ack_type"] == host.TYPE_NAMES[s.typ]):  # fmt: skip
                self.inflight = None
                self.stats.acked += 1
            if self.polled:
                return [self._reply(now, now_wire)]
            nxt = self.uplink(now, now_wire)
            return [nxt] if nxt else []
        if f.type == M.COMMAND:
            result, extra = self._command(f.fields, f.counter, now_wire)
            if self.polled:
                self.outbox.extend(extra)  # one frame per slot: the rest at the next polls
                return [result]  # a re-stamped event goes out at the next poll (_reply)
            s = self.inflight
            if s is not None and s.tries == 0:  # re-stamped by a resync: send it now
                nxt = self.uplink(now, now_wire)
                if nxt is not None:
                    extra = [*extra, nxt]
            return [result, *extra]
        if f.type == M.POLL:
            return [self._reply(now, now_wire)]
        return []

    def _reply(self, now: float, now_wire: int) -> bytes:
        """The one frame a polled detector sends (SPEC §9): owed frames, then the in-flight
        event (new or again), then the latest telemetry."""
        if self.outbox:
            return self.outbox.popleft()
        nxt = self.uplink(now, now_wire)
        if nxt is None and self.inflight is not None:
            nxt = self.inflight.wire  # polled again: answer with the pending event
        return nxt if nxt is not None else self.telemetry(now_wire)

    def config_frame(self, now_wire: int) -> bytes:
        """CONFIG (SPEC.md §5.5): every setting, and their hash (§5.1, as in HELLO)."""
        params = self.params()
        return self.enc.message(
            M.CONFIG, now_wire, {"config_hash": config_hash(params), "params": params}, auth=True
        )

    def snapshot_frames(self, now_wire: int) -> list[bytes]:
        self.snap_id = self.snap_id % 0xFFFF + 1
        out = []
        n = SNAPSHOT_SAMPLES
        for k in range(SNAPSHOT_CHUNKS):
            samples = [3200 if (k * n + i) >= n else 900 + 10 * i for i in range(n)]
            out.append(self.enc.message(
                M.SNAPSHOT, now_wire,
                {"snap_id": self.snap_id, "channel": "residual", "chunk": k,
                 "chunks": SNAPSHOT_CHUNKS, "scale_exp": -1, "rate_hz": 2000, "trigger": n,
                 "offset": k * n, "samples": samples}, auth=True,
            ))  # fmt: skip
        return out

    def _command(self, fields: dict, counter: int, now_wire: int) -> tuple[bytes, list[bytes]]:
        """Execute a new (authenticated, counter above the mark) command once: the RESULT
        (cached for duplicates) and the frames that follow it."""
        cmd = fields.get("cmd")
        status, value = "ok", 0
        then = None  # what follows the RESULT (encoded after it: counters in sending order)
        self.stats.executed.append((counter, str(cmd)))
        if cmd == "reset":
            ch = fields.get("channel")
            chans = range(ev.N_CHANNELS) if ch == "all" else [names.CHANNEL_NAMES.index(ch)]
            for c in chans:
                if self.latched & (1 << c):
                    self.raise_event(ev.RESET, c, self.values[c], 0)
        elif cmd == "selftest":
            # It passes: RESULT value 1 and the selftest EVENT (SPEC §2: channel residual, the
            # test current's path; value 1 pass / 0 fail, threshold 0), as app.run sends them.
            value = 1
            self.raise_event(ev.SELFTEST, ev.RESIDUAL, 1, 0)
        elif cmd == "set_config":
            bad = self._set_config(fields.get("params") or [])
            if bad is None:
                then = cmd
            else:
                status, value = "bad_argument", bad
        elif cmd == "get_config":
            then = cmd
        elif cmd == "snapshot":
            then = cmd
            value = self.snap_id % 0xFFFF + 1  # SPEC §5.4: the snap_id whose chunks follow
        elif cmd == "reboot":
            then = cmd  # after the RESULT: the reboot, and the new boot's HELLO
        elif cmd == "resync":
            status, value = self.resync(int(fields.get("mark") or 0))
        elif cmd != "time_sync":
            status = "unknown_command"
        self.stats.results += 1
        wire = self.enc.message(
            M.RESULT, now_wire,
            {"cmd_counter": counter, "cmd": cmd, "status": status, "value": value},
            auth=True,
        )  # fmt: skip
        self.last_result = (counter, wire)
        if then == "snapshot":
            return wire, self.snapshot_frames(now_wire)
        if then == "reboot":
            return wire, [self.reboot(now_wire)]
        return wire, [self.config_frame(now_wire)] if then else []

    def _set_config(self, params: list) -> int | None:
        """Apply set_config's params all or none (SPEC §5.9), checked by efd.config like the
        firmware's app.settings.validate_update. -> None, or the first bad parameter id."""
        new = dict(self.config)
        for name, v in params:
            if not isinstance(name, str) or name not in config.DEFAULTS:
                return _bad_id(name)
            new[name] = v
        try:
            self.config = config.make(new)
        except config.ConfigError as e:
            return _bad_id(e.key)
        return None

    def resync(self, mark: int) -> tuple[str, int]:
        """SPEC §7.4, as the firmware does it (firmware/lib/app/counters.py): make every
        counter from now on exceed the host's `mark`, and give a pending event below it a new
        counter. -> (RESULT status, value = the boot count).

        If the last counter used is below `mark`, the boot count becomes (mark >> 16) + 1 and
        the frame count 0; past 0xFFFF nothing changes and the answer is `failed` (rule W).
        Only the in-flight event has a counter (the queued ones get theirs when sent, above
        the mark now): below the mark, it is encoded again with the same seq, time and
        content under a new counter and goes out as a new frame; at or above it (the one the
        host accepted last, its ACK lost) it keeps its counter and bytes. Only ever raises the
        counter, so a replayed resync changes nothing."""
        self.stats.resyncs += 1
        if self.last_counter() < mark:
            boot = (mark >> 16) + 1
            if boot > BOOT_MAX:
                self.stats.resync_failed += 1
                return "failed", self.boot
            self.boot, self._n = boot, 0
        s = self.inflight
        if s is not None and s.counter < mark:
            t, kind, ch, value, thr = s.content
            n = self.enc.event(t, kind, ch, value, thr, seq=s.seq)
            wire = bytes(self.enc.wire[:n])
            f = fr.decode(wire)
            assert f.ok
            self.inflight = Sent(wire, s.seq, f.crc, f.counter, M.EVENT, 0.0, 0, s.content)
            self.stats.restamped += 1
            log = self.stats.log  # the old copy was never stored: the log names the new one
            for i in range(len(log) - 1, -1, -1):
                if log[i][1] == s.counter:
                    log[i] = (log[i][0], f.counter, *log[i][2:])
                    break
        return "ok", self.boot


def _bad_id(name: object) -> int:
    """set_config's bad_argument value: the parameter id (pN: N; unknown: 0)."""
    if isinstance(name, str):
        try:
            return _param_id(name)
        except ValueError:
            pass
    return 0
