"""The gateway's transport-independent pipeline: wire bytes in -> decode -> authenticate ->
dedup -> batch -> database (SQLite or PostgreSQL) -> ACK -> republish.

Transports (transports.py) call Gateway.handle(wire, link, addr) for every datagram or stream
segment and implement `link.send(device, wire, addr)` for the way back. Nothing here blocks
except flush(), which the event loop calls on a timer or when a batch is full.

Exactly-once for events rests on three rules:
  1. an EVENT is ACKed only after the transaction that stores it has committed;
  2. the detector retransmits an unacknowledged event (same counter, same tag) until ACKed;
  3. events are keyed by (device, authenticated counter): UNIQUE in the database, so a
     retransmission is recognised whether this process, a restarted one or a sibling instance
     (another host sharing the PostgreSQL database) sees it.
Telemetry is periodic and not retransmitted: duplicates (MQTT QoS 1 redelivery) are dropped by
an in-memory window of the last (seq, crc) pairs per device.

Commands (SPEC.md section 8): one in flight per device, the rest queued in order. The in-flight
COMMAND is retransmitted byte-identical (same counter and tag, so the detector sees a
`duplicate`, does not execute it again and re-sends its cached RESULT) until a RESULT naming
its counter (`cmd_counter`) arrives: RS-485 once per poll cycle, other links after 2 s doubling
to 30 s. After the last try's timeout (5 tries) the command is given up: stored and
republished with status `timeout`. tick() drives the timers.

Hostile input (SPEC.md sections 5 and 7.3, docs/gateway.md "Hostile input"): for a device with
a key the gateway acts only on authenticated frames (tag verified, counter accepted). EVENT,
RESULT, CONFIG and SNAPSHOT must be tagged (`no_tag` otherwise); an untagged HELLO or TELEMETRY
is information only: stored/republished with "authenticated": false, but it neither routes
commands, nor marks the device as seen (last_seen, transport, address), nor moves a counter
(an untagged HELLO's host_counter is never taken). Every host counter emitted is in
1..HOST_COUNTER_MAX and never wraps (past it the gateway refuses to send, counted
`counter_exhausted`); a retransmitted or replayed event is answered with the ACK frame already
sent for it, byte-identical, so replays consume no counters; and handle(), result(), flush()
and tick() never raise: each frame, each ACK and each batch runs under a guard that counts
`internal_error`, logs (rate-limited) and goes on.

Counter recovery (SPEC.md section 7.4): an authentic frame (EVENT, HELLO, tagged TELEMETRY...) below
its replay mark means the detector's uplink counter went backwards (lost state file, swapped board)
or someone replays an old frame. The gateway answers it with an internal `resync` command carrying
its highest mark, sent back where the frame came from: at most one queued or in flight per device
and one per RESYNC_EVERY_S, so replays still cost at most one host counter per 10 s.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from protocol import frame as fr
from protocol import host
from protocol import messages as M
from protocol.auth import Key
from protocol.host import HOST_REQUIRES, physical
from protocol.session import Peer, replay_class
from tools.gateway.registry import Device
from tools.gateway.store import EPOCH_UNIX, Store
from tools.gateway.units import event_physical, state_kind

log = logging.getLogger("efd.gateway")

TEL_WINDOW = 16  # telemetry dedup window per device (frames)
LOG_EVERY_S = 10.0  # rate limit for per-reason rejection logs
# Command retransmission on UDP/MQTT/serial listeners (SPEC.md section 8): the first timeout,
# doubling up to the maximum, and tries before giving up. A polled RS-485 link overrides the
# timeout with its cycle time (Link.command_retry).
CMD_RETRY_S = 2.0
CMD_RETRY_MAX_S = 30.0
CMD_TRIES = 5
# The last host->device counter the gateway may emit (SPEC.md section 7.3): counters are u32,
# never 0, and never wrap.
HOST_COUNTER_MAX = 0xFFFFFFFF
# Counter recovery (SPEC.md section 7.4): at most one `resync` per device per RESYNC_EVERY_S
# (time.monotonic()), so replayed old frames cost the host at most one counter per 10 s, far
# below the time floor's 4 per second (rule H2). A resync is sent RESYNC_TRIES times, not
# CMD_TRIES: it goes where the refused frame came from, which may be an attacker replaying it,
# and it occupies the device's one command slot meanwhile (SPEC.md section 8), so an unanswered
# one must not hold operators' commands back for a minute. A genuinely stuck detector needs no
# retransmission from us: it retransmits its event (SPEC.md section 8), which asks again.
RESYNC_EVERY_S = 10.0
RESYNC_TRIES = 1


class Link(Protocol):
    name: str

    def send(self, device: int, wire: bytes, addr: Any) -> None: ...

    # Optional: `command_retry(tries) -> float | None`, seconds until a command sent `tries`
    # times is retransmitted on this link (None: the gateway's UDP/MQTT schedule).


class Command:
    """One command request: queued, then in flight (byte-identical retransmissions), then
    done (a RESULT named its counter) or timeout (no RESULT after the last try)."""

    __slots__ = ("counter", "device", "done", "due", "fields", "first_sent", "internal",
                 "last_sent", "max_tries", "request", "requested", "requested_by", "result",
                 "route", "status", "tries", "value", "wire")  # fmt: skip

    def __init__(
        self, device: int, fields: dict, requested: float, requested_by: str | None = None
    ):
        self.request = uuid.uuid4().hex
        self.requested_by = requested_by  # MQTT user who asked (None: in-process/unknown)
        self.device = device
        self.fields = fields
        self.requested = requested
        # The gateway's own `resync` (SPEC.md section 7.4): sent to `route`, the (link, addr)
        # of the refused frame, instead of the device's route, at most `max_tries` times.
        self.internal = False
        self.route: tuple[Link, Any] | None = None
        self.max_tries: int | None = None  # None: the gateway's cmd_tries
        self.status = "queued"
        self.counter: int | None = None
        self.wire = b""
        self.tries = 0
        self.first_sent: float | None = None
        self.last_sent: float | None = None
        self.due = 0.0  # time.monotonic() of the next retransmission or the give-up
        self.result: str | None = None
        self.value: int | None = None
        self.done: float | None = None

    @property
    def cmd(self) -> str:
        return str(self.fields.get("cmd"))

    def row(self, gateway: str) -> tuple:
        return (self.request, self.device, gateway, self.cmd, json.dumps(self.fields),
                self.requested, self.counter, self.first_sent, self.last_sent, self.tries,
                self.status, self.result, self.value, self.done, self.requested_by)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"request": self.request, "device": self.device, "cmd": self.cmd,
                "cmd_counter": self.counter, "status": self.status, "tries": self.tries,
                "result": self.result, "value": self.value}  # fmt: skip


Publish = Callable[[str, bytes, bool], None]


def host_counter_floor(now: float) -> int:
    """Time-based floor for host->device counters: 4 per second since 2020 (fits u32 until
    2054). Any gateway instance, and a restarted one without saved state, then starts above
    what a sibling used a moment ago, so the detector's strict high-water mark holds. Clamped,
    never wrapped: from 2054 on the floor is HOST_COUNTER_MAX and the gateway stops emitting
    (SPEC.md section 7.3: re-key before then)."""
    return min(HOST_COUNTER_MAX, max(1, int((now - EPOCH_UNIX) * 4)))


class _Dev:
    __slots__ = ("ack", "addr", "cmd", "cmds", "dev", "enc", "host_ctr", "link", "peer",
                 "resync_at", "tel")  # fmt: skip

    def __init__(self, dev: Device):
        self.dev = dev
        key = Key(dev.key) if dev.key else None
        self.peer = Peer(key, 0, HOST_REQUIRES, uplink=True) if key else None
        self.enc = fr.Encoder(dev.device, key, None) if key else None
        self.host_ctr = 0  # the last host counter emitted (or taken from an authentic HELLO)
        # The ACK sent for the latest event: (event counter, event CRC, wire). A retransmission
        # or replay of that event is answered with these same bytes, never a new counter.
        self.ack: tuple[int, int, bytes] | None = None
        # The command route: set by authenticated frames only (SPEC.md section 5: an untagged
        # TELEMETRY or HELLO is information only; anyone can send one from any address).
        self.link: Link | None = None
        self.addr: Any = None
        self.resync_at: float | None = None  # time.monotonic() of the last resync requested/sent
        self.tel: deque[tuple[int, int]] = deque(maxlen=TEL_WINDOW)
        self.cmd: Command | None = None  # in flight
        self.cmds: deque[Command] = deque()  # waiting behind it


class Gateway:
    def __init__(
        self,
        devices: dict[int, Device],
        store: Store,
        name: str = "gw",
        publish: Publish | None = None,
        topic_prefix: str = "efd",
        republish_telemetry: bool = True,
        batch: int = 2000,
        cmd_retry: float = CMD_RETRY_S,
        cmd_retry_max: float = CMD_RETRY_MAX_S,
        cmd_tries: int = CMD_TRIES,
        raw_json: bool = False,
    ):
        self.name = name
        # The JSON republished: physical units with `units` (protocol.host.physical), or with
        # raw_json (`run --raw-json`) the wire's integers as Frame.to_dict() gives them.
        self.raw_json = raw_json
        self.cmd_retry = cmd_retry
        self.cmd_retry_max = cmd_retry_max
        self.cmd_tries = cmd_tries
        self.store = store
        self.publish = publish
        self.prefix = topic_prefix
        self.republish_telemetry = republish_telemetry
        self.batch = batch
        self.devs = {d: _Dev(v) for d, v in devices.items()}
        store.register(devices.values())
        for d, (counter, tag) in store.last_events().items():
            st = self.devs.get(d)
            if st is not None and st.peer is not None:
                # Replay class 0 (EVENT): the persisted mark, with its tag. The other two start
                # at it (SPEC.md section 7.3): the detector's counter is shared and rising, so
                # this only under-states them, but a tagged HELLO or TELEMETRY captured before
                # that event can no longer be replayed after a restart to take the route, and
                # a detector whose counter went backwards is recognised by its HELLO too.
                st.peer.marks[:] = [counter] * 3
                st.peer.tags[0] = tag
        n = store.abandon_commands(name, time.time())
        if n:
            log.warning("%d commands left in flight by an earlier run of %s: abandoned", n, name)
        self.stats: dict[str, int] = {}
        self._unflushed: dict[str, int] = {}
        self._tel: list[tuple] = []
        self._ev: list[tuple] = []
        self._ev_meta: list[tuple] = []  # (frame, link, addr) per _ev row
        self._res: list[tuple] = []
        self._cfg: list[tuple] = []  # CONFIG rows
        self._snap: list[tuple] = []  # SNAPSHOT chunk rows
        self._res_meta: list[tuple] = []  # (frame, link, addr, request id or None)
        self._cmd_dirty: dict[str, Command] = {}  # command rows to write with the next batch
        self._inflight: dict[int, Command] = {}  # device -> its command in flight
        self._reack: list[tuple] = []  # (frame, link, addr): duplicates to answer after flush
        self._seen: dict[int, tuple] = {}
        self._last_log: dict[str, float] = {}
        self.on_flush: Callable[[], None] | None = None  # hook for the event loop / tests
        self.default_link: Link | None = None  # route for commands to devices not heard yet

    # -- accounting --------------------------------------------------------------------------
    def count(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n
        self._unflushed[name] = self._unflushed.get(name, 0) + n

    def _reject(self, reason: str, detail: str) -> None:
        self.count("rejected:" + reason)
        t = time.monotonic()
        if t - self._last_log.get(reason, -1e9) >= LOG_EVERY_S:
            self._last_log[reason] = t
            log.warning(
                "rejected frame (%s): %s [%d so far]",
                reason,
                detail,
                self.stats["rejected:" + reason],
            )

    def internal_error(self, where: str) -> None:
        """A bug met by some input (not bad input: that is `rejected:*`): counted, logged at
        most once per LOG_EVERY_S with its traceback, and the gateway goes on. Call it from an
        `except Exception` block."""
        self.count("internal_error")
        t = time.monotonic()
        if t - self._last_log.get("internal_error", -1e9) >= LOG_EVERY_S:
            self._last_log["internal_error"] = t
            log.exception(
                "internal error in %s [%d so far]; carrying on", where, self.stats["internal_error"]
            )

    def pending(self) -> int:
        return (
            len(self._tel)
            + len(self._ev)
            + len(self._res)
            + len(self._reack)
            + len(self._cfg)
            + len(self._snap)
        )

    def commands_in_flight(self) -> int:
        return len(self._inflight)

    # -- ingest ------------------------------------------------------------------------------
    def handle(self, wire: bytes, link: Link, addr: Any = None) -> None:
        """One stuffed frame (a datagram, an MQTT payload or a stream segment). Never raises
        for any bytes: everything wrong is counted and logged, nothing of it is stored."""
        self.count("rx")
        try:  # the per-frame guard: decode -> checks -> batch (-> a full batch's flush)
            f = fr.decode(wire)
            if not f.ok:
                self._reject(f.name, f"{len(wire)} bytes via {link.name} {addr!r}")
                return
            self.frame(f, link, addr)
        except Exception:  # a bug, not bad input (the codec never raises on bytes): keep going
            self.internal_error(f"a {len(wire)}-byte frame via {link.name}")

    def result(self, res: fr.Frame | fr.Error, link: Link, addr: Any = None) -> None:
        """A StreamDecoder result (serial): the same path as handle() after decoding."""
        self.count("rx")
        try:
            if not res.ok:
                self._reject(res.name, f"stream segment via {link.name} {addr!r}")
                return
            self.frame(res, link, addr)  # type: ignore[arg-type]
        except Exception:
            self.internal_error(f"a stream frame via {link.name}")

    def frame(self, f: fr.Frame, link: Link, addr: Any = None) -> None:
        st = self.devs.get(f.device)
        if st is None:
            self._reject("unknown_device", f"device {f.device} via {link.name} {addr!r}")
            return
        peer = st.peer
        if peer is None:
            if f.tag is not None or f.type in HOST_REQUIRES:
                self._reject("no_key", f"device {f.device} has no key in the registry")
                return
            trusted = True  # no key, nothing to authenticate: the registry's choice
        else:
            err = peer.check(f)
            if err is not None:
                if err.code in (fr.E_DUPLICATE, fr.E_REPLAY) and f.type in (M.EVENT, M.RESULT):
                    self._maybe_duplicate(st, f, link, addr, err)
                else:
                    self._reject(err.name, f"device {f.device} {f.name} seq {f.seq}")
                    if err.code == fr.E_REPLAY and f.counter < peer.marks[replay_class(f.type)]:
                        # Authentic, below its mark: the counter went backwards (SPEC 7.4).
                        # Any tagged type asks (HELLO at boot, TELEMETRY once a minute, ...):
                        # a detector with no event to send is recovered too, so commands
                        # reach it again.
                        self._resync(st, f, link, addr)
                return
            # Past peer.check: a tag here is verified and its counter accepted. An untagged
            # frame got here only because its type may be untagged (HELLO, TELEMETRY).
            trusted = f.tag is not None
        self._accepted(st, f, link, addr, trusted)

    def _accepted(self, st: _Dev, f: fr.Frame, link: Link, addr: Any, trusted: bool) -> None:
        """A frame that passed the checks. `trusted`: authenticated (or from a device without a
        key). Only a trusted frame sets the command route and the device's last_seen,
        transport and address (SPEC.md section 5: a host acts only on authenticated frames;
        an untagged TELEMETRY or HELLO from a keyed device is information only)."""
        t = f.type
        if f.tag is None and t in HOST_REQUIRES:
            # Unreachable (frame() refuses these as no_tag / no_key); kept next to the stores
            # below, the SNAPSHOT one being INSERT OR REPLACE: no untagged frame overwrites a
            # stored record, whatever a future change to frame() does.
            self._reject("no_tag", f"device {f.device} {f.name} seq {f.seq}")
            return
        now = time.time()
        if trusted:
            st.link = link
            st.addr = addr
        fields = f.fields
        if t == M.TELEMETRY:
            key = (f.seq, f.crc)
            if key in st.tel:
                self.count("duplicate:telemetry")
                return
            st.tel.append(key)
            temps = fields["temp_dc"]
            lines = fields["line_ca"]
            self._tel.append(
                (
                    f.device,
                    now,
                    f.time + EPOCH_UNIX if f.time else None,
                    f.seq,
                    fields["residual_ma"],
                    temps[0],
                    temps[1],
                    temps[2],
                    temps[3],
                    lines[0],
                    lines[1],
                    lines[2],
                    fields["status"],
                )
            )
            if not trusted:
                self.count("rx:telemetry_unauthenticated")
            # Untagged: the status is shown (it is stored in `telemetry` anyway), the device
            # is not marked as seen: a silent detector whose reports someone spoofs stays
            # offline (SPEC.md section 5).
            self._seen_update(f.device, now if trusted else None, link, addr, fields["status"])
            if self.publish is not None and self.republish_telemetry:
                self._pub(f.device, "telemetry", f, now)
        elif t == M.EVENT:
            self._ev.append(
                (
                    f.device,
                    f.counter,
                    f.seq,
                    now,
                    f.time + EPOCH_UNIX if f.time else None,
                    fields["kind"],
                    fields["channel"],
                    fields["value"],
                    fields["threshold"],
                    bytes(f.tag),
                    self.name,
                )
            )
            self._ev_meta.append((f, link, addr))
            self._touch(f.device, now, link, addr)
        elif t == M.RESULT:
            c = st.cmd
            req = None
            status = str(fields["status"])
            if status == "locked":
                self._locked(f)
            if c is not None and fields["cmd_counter"] == c.counter:
                req = c.request
                self._complete(st, c, status, fields["value"], now)
            self._res.append(
                (
                    f.device,
                    f.counter,
                    now,
                    fields["cmd_counter"],
                    str(fields["cmd"]),
                    str(fields["status"]),
                    fields["value"],
                )
            )
            self._res_meta.append((f, link, addr, req))
            self._touch(f.device, now, link, addr)
        elif t == M.HELLO:
            # SPEC.md section 7.3: only an authenticated HELLO (tag verified, counter above its
            # mark: peer.check passed) may raise the host counter. An untagged one's
            # host_counter is republished, never trusted: anyone can send it.
            hc = fields["host_counter"]
            if f.tag is not None and hc > st.host_ctr:
                st.host_ctr = hc
            if trusted:  # an untagged one (keyed device) is only republished
                fw = ".".join(str(x) for x in fields["fw"])
                self._seen_update(f.device, now, link, addr, None, fw, fields["boot_count"])
            if self.publish is not None:
                self._pub(f.device, "hello", f, now)
        elif t in (M.CONFIG, M.SNAPSHOT):  # stored with the next batch, republished now
            self._touch(f.device, now, link, addr)
            self.count("rx:" + f.name)
            dev_time = f.time + EPOCH_UNIX if f.time else None
            if t == M.CONFIG:
                self._cfg.append((f.device, f.counter, now, dev_time, fields["config_hash"],
                                  json.dumps(fields["params"]), self.name))  # fmt: skip
            else:
                self._snap.append((f.device, now, dev_time, fields["snap_id"],
                                   str(fields["channel"]), fields["chunk"], fields["chunks"],
                                   fields["scale_exp"], fields["rate_hz"], fields["trigger"],
                                   fields["offset"], json.dumps(fields["samples"])))  # fmt: skip
            if self.publish is not None:
                self._pub(f.device, f.name, f, now)
        if len(self._tel) + len(self._ev) >= self.batch:
            self.flush()

    def _touch(self, device: int, now: float, link: Link, addr: Any) -> None:
        self._seen_update(device, now, link, addr)

    def _seen_update(
        self,
        device: int,
        now: float | None,
        link: Link,
        addr: Any,
        status: int | None = None,
        fw: str | None = None,
        boot_count: int | None = None,
    ) -> None:
        """Merge into the batch's devices-table update (Store.flush's `seen`). now=None (an
        unauthenticated frame): last_seen, transport and address stay as they are. A status
        with a time is an authenticated TELEMETRY's: kept apart as well (query.py's alarms
        "from telemetry" trust only those)."""
        prev = self._seen.get(device) or (None, None, None, None, None, None, None)
        where = prev[:3] if now is None else (now, link.name, _addr(addr))
        self._seen[device] = (
            *where,
            prev[3] if status is None else status,
            prev[4] if fw is None else fw,
            prev[5] if boot_count is None else boot_count,
            (status, now) if status is not None and now is not None else prev[6],
        )

    def _maybe_duplicate(self, st: _Dev, f: fr.Frame, link: Link, addr: Any, err) -> None:
        """A retransmission of something already accepted: answer it again (after the pending
        batch is committed), never store it twice. A replayed counter whose tag is not the one
        stored is an attack or a bug: rejected."""
        if f.type == M.EVENT and err.code == fr.E_REPLAY:
            # Below the mark (or at it with another tag). Stop-and-wait (SPEC.md section 8):
            # the detector sent the event at the mark only after this one was ACKed, so nobody
            # waits for an answer; a replay is neither stored nor answered (SPEC.md 7.3).
            self._reject(err.name, f"device {f.device} event counter {f.counter}")
            assert st.peer is not None
            if f.counter < st.peer.marks[0]:
                # Authentic (the tag verified) but strictly below the mark: either an old copy
                # replayed, or a detector whose counter went backwards and would otherwise stay
                # silenced for good. Ask it to move above the mark (SPEC.md 7.4). At the mark
                # with another tag is neither: no resync.
                self._resync(st, f, link, addr)
            return
        pending = any(
            m[0].device == f.device and m[0].counter == f.counter for m in self._ev_meta
        ) or any(m[0].device == f.device and m[0].counter == f.counter for m in self._res_meta)
        if pending or (f.type == M.EVENT and self.store.has_event(f.device, f.counter, f.tag)):
            self.count("duplicate:" + f.name)
            if f.type == M.EVENT:  # an event's ACK may have been lost: answer again (the
                self._reack.append((f, link, addr))  # same ACK bytes, see _ack)
            return
        if f.type == M.RESULT:
            if self.store.has_result(f.device, f.counter):
                # The cached RESULT re-sent for a retransmitted command, already stored.
                self.count("duplicate:result")
                return
            if err.code == fr.E_DUPLICATE:  # in memory, its batch failed: the command retries
                self.count("duplicate:result")
                return
            self._reject(err.name, f"device {f.device} result counter {f.counter}")
            return
        if err.code == fr.E_DUPLICATE:
            # Accepted in memory but not stored (a failed batch): take it as new.
            self.count("retry_unstored")
            st.peer.tags[0] = None  # type: ignore[union-attr]
            self.frame(f, link, addr)
            return
        self._reject(err.name, f"device {f.device} {f.name} counter {f.counter}")

    # -- flush / ack -------------------------------------------------------------------------
    def flush(self) -> None:
        """Commit the batch, then ACK its events and republish. Never raises (the event loop,
        a full batch in handle() and the RS-485 master call it): a failed commit ACKs nothing
        (the devices retransmit), anything else is an `internal_error`."""
        try:
            self._flush()
        except Exception:
            self.internal_error("flush")

    def _flush(self) -> None:
        if not (
            self._tel
            or self._ev
            or self._res
            or self._cfg
            or self._snap
            or self._reack
            or self._seen
            or self._unflushed
            or self._cmd_dirty
        ):
            return
        tel, ev, meta = self._tel, self._ev, self._ev_meta
        res, rmeta, reack, seen = self._res, self._res_meta, self._reack, self._seen
        self._tel, self._ev, self._ev_meta, self._res, self._res_meta = [], [], [], [], []
        self._reack, self._seen = [], {}
        cmds, self._cmd_dirty = self._cmd_dirty, {}
        cfg, snap, self._cfg, self._snap = self._cfg, self._snap, [], []
        self.count("stored:telemetry", len(tel))
        counters, self._unflushed = self._unflushed, {}
        try:
            new = self.store.flush(
                tel, ev, res, seen, counters, [c.row(self.name) for c in cmds.values()], cfg, snap
            )
        except Exception:  # disk full, locked for > busy_timeout...: nothing ACKed, devices retry
            log.exception(
                "batch of %d rows not stored; events will be retransmitted", len(tel) + len(ev)
            )
            self.count("stored:telemetry", -len(tel))
            self.count("batch_failed")
            for k, c in cmds.items():  # rows are snapshots: the next batch writes them again
                self._cmd_dirty.setdefault(k, c)
            for f, *_ in meta:
                # Forget the unstored event: lower the mark below it, so its retransmission
                # (same counter) is accepted as new. One event per device is in flight
                # (SPEC 8), so nothing newer from that device can be in this batch.
                st = self.devs[f.device]
                if st.peer is not None and st.peer.marks[0] == f.counter:
                    st.peer.marks[0] = f.counter - 1
                    st.peer.tags[0] = None
            return
        now = time.time()
        # Committed: each ACK and republication under its own guard, so one that fails cannot
        # cost the others their ACK (the detector would retransmit, but an alarm waits).
        for (f, link, addr), is_new in zip(meta, new, strict=True):
            self.count("stored:event" if is_new else "duplicate:event_db")
            try:
                self._ack(f, link, addr, now)
                if is_new and self.publish is not None:
                    self._pub(f.device, "event", f, now)
                    self._pub_state(f)
            except Exception:
                self.internal_error(f"ACK of event {f.counter} of device {f.device}")
        for f, _link, _addr, req in rmeta:  # RESULTs are not ACKed (SPEC.md section 8)
            self.count("stored:result")
            if self.publish is not None:
                try:
                    self._pub(f.device, "result", f, now, {"request": req} if req else None)
                except Exception:
                    self.internal_error(f"republishing a RESULT of device {f.device}")
        for f, link, addr in reack:
            try:
                self._ack(f, link, addr, now, again=True)
            except Exception:
                self.internal_error(f"re-ACK of event {f.counter} of device {f.device}")
        if self.on_flush is not None:
            self.on_flush()

    def close(self) -> None:
        """Final flush: the batch, then the counters its commit produced (stored, ACKs sent),
        which otherwise ride along with the next batch. Commands still queued or in flight
        are stored as `abandoned` (their timers end with this process)."""
        now = time.time()
        for st in self.devs.values():
            for c in ([st.cmd] if st.cmd is not None else []) + list(st.cmds):
                c.status, c.done = "abandoned", now
                self._cmd_dirty[c.request] = c
            st.cmd = None
            st.cmds.clear()
        self._inflight.clear()
        self.flush()
        self.flush()

    def _next_counter(self, st: _Dev, now: float) -> int | None:
        """The next host counter for this device (SPEC.md section 7.3): max(last + 1, the time
        floor), or None, counted and logged, if that would pass HOST_COUNTER_MAX: the
        counter space under this key is used up and nothing tagged may be sent any more
        (no wrap: the detector would refuse it, or later accept replays)."""
        c = max(st.host_ctr + 1, host_counter_floor(now))
        if c > HOST_COUNTER_MAX:
            self.count("counter_exhausted")
            t = time.monotonic()
            if t - self._last_log.get("counter_exhausted", -1e9) >= LOG_EVERY_S:
                self._last_log["counter_exhausted"] = t
                log.error(
                    "host counter of device %d exhausted (last %d): nothing tagged is sent to "
                    "it until it is re-provisioned with a new key [%d refused so far]",
                    st.dev.device, st.host_ctr, self.stats["counter_exhausted"],
                )  # fmt: skip
            return None
        st.host_ctr = c
        return c

    def _ack(self, f: fr.Frame, link: Link, addr: Any, now: float, again: bool = False) -> None:
        """ACK an event. The first ACK of an event takes a counter and is kept; a
        retransmission or replay of that event gets the same bytes again, so no number of
        copies can push the counter ahead of the clock (SPEC.md section 7.3). again: a copy
        taken as a duplicate (its first copy still in the batch, or stored already)."""
        st = self.devs[f.device]
        if st.enc is None:
            return
        a = st.ack
        if a is not None and a[0] == f.counter and a[1] == f.crc:
            wire = a[2]
            self.count("ack_resent")
        elif again and a is not None and a[0] > f.counter:
            # A copy of an event older than the one ACKed last, e.g. [e1, e1, e2] in one batch
            # (the second e1 was a duplicate of the pending first, answered after e2's ACK).
            # Stop-and-wait (SPEC.md section 8): the detector sent the newer event only after
            # this one's ACK arrived, so nobody waits for this answer, and a new counter for
            # it would let copies move the host counter (rule H3). Found by the fuzz test.
            self.count("ack_superseded")
            return
        else:
            counter = self._next_counter(st, now)
            if counter is None:
                self.count("ack_failed")
                return
            wire = st.enc.message(
                M.ACK,
                host.efd_time(int(now)),
                {"ack_type": f.type, "ack_seq": f.seq, "ack_crc": f.crc},
                auth=True,
                counter=counter,
            )
            st.ack = (f.counter, f.crc, wire)
        try:
            link.send(f.device, wire, addr)
            self.count("ack_sent")
        except OSError as e:
            self.count("ack_failed")
            log.warning("ACK to device %d via %s failed: %s", f.device, link.name, e)

    # -- commands ----------------------------------------------------------------------------
    def command(self, device: int, fields: dict, requested_by: str | None = None) -> Command:
        """Queue an authenticated COMMAND for a device; it goes out now if none is in flight
        for that device, else after the ones before it are answered or given up. Raises
        ValueError for a request that cannot be sent."""
        st = self.devs.get(device)
        if st is None:
            raise ValueError(f"unknown device {device}")
        if st.enc is None:
            raise ValueError(f"device {device} has no key: commands must be authenticated")
        if st.link is None and self.default_link is None:
            raise ValueError(f"device {device} has not been heard from: no route to it")
        if max(st.host_ctr + 1, host_counter_floor(time.time())) > HOST_COUNTER_MAX:
            self.count("counter_exhausted")
            raise ValueError(
                f"device {device}: host counter exhausted, re-provision it with a new key"
            )
        try:
            host.check_command(fields)  # set_config: the detector's own ranges (protocol/host.py)
            M.pack(M.COMMAND, fields, bytearray(256), 0)  # validate now, encode when sent
        except (KeyError, ValueError, TypeError, AttributeError, IndexError) as e:
            raise ValueError(f"bad command {fields!r}: {e}") from None
        c = Command(device, fields, time.time(), requested_by)
        st.cmds.append(c)
        self._cmd_dirty[c.request] = c
        self.count("command_requested")
        if st.cmd is None:
            self._next_command(st, time.monotonic())
        return c

    def describe(self, c: Command) -> str:
        if c.status == "queued":
            st = self.devs[c.device]
            return f"queued {c.cmd} for {c.device} behind {len(st.cmds)} command(s)"
        return f"sent {c.cmd} to {c.device} (counter {c.counter}), awaiting its RESULT"

    def _route(self, st: _Dev) -> tuple[Link | None, Any]:
        # Not heard by this instance (a sibling behind the same shared subscription may have):
        # MQTT still reaches it on its own downlink topic.
        if st.link is not None:
            return st.link, st.addr
        return self.default_link, None

    def _next_command(self, st: _Dev, mono: float) -> None:
        while st.cmd is None and st.cmds:
            c = st.cmds.popleft()
            now = time.time()
            assert st.enc is not None
            counter = self._next_counter(st, now)
            if counter is None:  # used up while the command was queued: cannot be sent
                c.status, c.done = "abandoned", now
                self._cmd_dirty[c.request] = c
                continue
            c.counter = counter
            c.wire = st.enc.message(
                M.COMMAND, host.efd_time(int(now)), c.fields, auth=True, counter=c.counter
            )
            c.status = "sent"
            c.first_sent = now
            if c.cmd == "resync":  # the rate limit counts from the last one sent (SPEC 7.4)
                st.resync_at = mono
            st.cmd = c
            self._inflight[c.device] = c
            self.count("command_sent")
            self._transmit(st, c, mono)

    def _transmit(self, st: _Dev, c: Command, mono: float) -> None:
        """Send (or re-send: the same bytes) the command in flight and arm its timer."""
        link, addr = c.route if c.route is not None else self._route(st)
        c.tries += 1
        c.last_sent = time.time()
        self._cmd_dirty[c.request] = c
        delay = None
        if link is not None:
            retry = getattr(link, "command_retry", None)
            delay = retry(c.tries) if retry is not None else None
            try:
                link.send(c.device, c.wire, addr)
            except OSError as e:  # counted as a try: the timer retransmits
                self.count("command_send_failed")
                log.warning("COMMAND to device %d via %s failed: %s", c.device, link.name, e)
        if delay is None:
            delay = min(self.cmd_retry * 2 ** (c.tries - 1), self.cmd_retry_max)
        c.due = mono + delay

    def _complete(self, st: _Dev, c: Command, result: str, value: int, now: float) -> None:
        c.status, c.result, c.value, c.done = "done", result, value, now
        self._cmd_dirty[c.request] = c
        self.count("command_done")
        if c.cmd == "resync":
            self._resync_outcome(c, result, value)
        st.cmd = None
        self._inflight.pop(c.device, None)
        self._next_command(st, time.monotonic())

    def tick(self, mono: float | None = None) -> None:
        """Retransmit the commands whose timeout has passed, give up those out of tries. The
        event loop calls this every flush interval; tests pass their own clock."""
        if not self._inflight:
            return
        mono = time.monotonic() if mono is None else mono
        for c in [c for c in self._inflight.values() if c.due <= mono]:
            try:  # one command's trouble (a lost database, a bug) must not stop the others
                self._tick_one(c, mono)
            except Exception:
                self.internal_error(f"command {c.request} to device {c.device}")
                c.due = mono + self.cmd_retry  # not again at every tick

    def _tick_one(self, c: Command, mono: float) -> None:
        st = self.devs[c.device]
        assert c.counter is not None
        got = self.store.result_for(c.device, c.counter)
        if got is not None:  # stored by a sibling instance that received the RESULT
            self._complete(st, c, got[0], got[1], time.time())
        elif c.tries >= (self.cmd_tries if c.max_tries is None else c.max_tries):
            self._give_up(st, c)
        else:
            self.count("command_retransmit")
            self._transmit(st, c, mono)

    def _give_up(self, st: _Dev, c: Command) -> None:
        now = time.time()
        c.status, c.done = "timeout", now
        self._cmd_dirty[c.request] = c
        self.count("command_timeout")
        if c.internal:
            # The gateway's own resync, perhaps sent to an attacker replaying an old frame:
            # stored and counted, logged rate-limited, not published (nobody asked for it).
            self.count("resync_timeout")
            self._log_limited(
                "resync_timeout", logging.INFO,
                "resync to device %d (counter %s) via %s %r unanswered: given up (the frame "
                "that asked for it may have been replayed by someone else)",
                c.device, c.counter, c.route[0].name if c.route else "?",
                c.route[1] if c.route else None,
            )  # fmt: skip
        else:
            log.warning(
                "command %s to device %d (counter %s) unanswered after %d tries: given up",
                c.cmd, c.device, c.counter, c.tries,
            )  # fmt: skip
        if self.publish is not None and not c.internal:
            dev = st.dev
            d = {**c.to_dict(), "source": "gateway", "gateway": self.name, "rx": round(now, 3),
                 "district": dev.district, "category": dev.category}  # fmt: skip
            self.publish(f"{self.prefix}/json/{c.device}/result", json.dumps(d).encode(), False)
        st.cmd = None
        self._inflight.pop(c.device, None)
        self._next_command(st, time.monotonic())

    # -- counter recovery (SPEC.md section 7.4) ----------------------------------------------
    def _resync(self, st: _Dev, f: fr.Frame, link: Link, addr: Any) -> None:
        """An authentic uplink frame (EVENT, HELLO, tagged TELEMETRY...) was refused as a replay
        below its mark: queue a `resync` carrying the highest of the device's three marks, to
        where that frame came from. The detector moves its counter above the mark and re-sends
        its pending events under new counters; a replayed copy changes nothing on the detector
        (its counter only rises), so sending one to an attacker's address is harmless. Bounded:
        none while one is queued or in flight, none within RESYNC_EVERY_S of the last, so at
        most one host counter per 10 s (rule H2/H3 still hold). Nothing here makes the refused
        frame count: it is neither stored nor ACKed (rule H3).
        """
        peer = st.peer
        assert peer is not None
        if any(c.cmd == "resync" for c in (st.cmd, *st.cmds) if c is not None):
            return
        mono = time.monotonic()
        if st.resync_at is not None and mono - st.resync_at < RESYNC_EVERY_S:
            return
        st.resync_at = mono
        mark = max(peer.marks)
        c = Command(f.device, {"cmd": "resync", "mark": mark}, time.time(), "gateway")
        c.internal = True
        c.route = (link, addr)
        c.max_tries = RESYNC_TRIES
        # Ahead of queued requests (behind the one in flight): until the detector's counter
        # is above the marks, its RESULTs to them would be refused as replays too.
        st.cmds.appendleft(c)
        self._cmd_dirty[c.request] = c
        self.count("command_requested")
        self.count("resync_requested")
        self._log_limited(
            "resync_requested", logging.WARNING,
            "device %d: authentic %s with counter %d below the mark %d (its counter went "
            "backwards, or an old frame is replayed): resync above %d requested via %s %r",
            f.device, f.name, f.counter, peer.marks[replay_class(f.type)], mark, link.name,
            addr,
        )  # fmt: skip
        if st.cmd is None:
            self._next_command(st, mono)

    def _resync_outcome(self, c: Command, result: str, value: int) -> None:
        mark = c.fields.get("mark")
        if result == "ok":
            self.count("resync_done")
            log.info(
                "device %d: uplink counter re-synchronised above %s (boot count %s)",
                c.device, mark, value,
            )  # fmt: skip
        elif result == "failed":
            # Rule W (SPEC.md 7.3): the boot count would pass 0xFFFF; the detector changed
            # nothing and can send nothing the host will accept under this device id.
            self.count("resync_failed")
            self._log_limited(
                "resync_failed", logging.ERROR,
                "device %d: resync above %s failed: the detector's uplink counter space is "
                "used up (boot count 0xFFFF); its events cannot be accepted any more. "
                "Re-provision it under a new device id (SPEC.md 7.4, docs/firmware.md "
                "'Recovering a detector')",
                c.device, mark,
            )  # fmt: skip

    def _locked(self, f: fr.Frame) -> None:
        """RESULT `locked` (SPEC.md 5.9, 7.4): the detector lost its state file, so it cannot
        tell old commands from new and refuses all but `resync` until re-provisioned."""
        self.count("command_locked")
        self._log_limited(
            "command_locked", logging.WARNING,
            "device %d refused %s as locked: it lost its replay state and refuses every "
            "command but resync; re-provision it (SPEC.md 7.4, docs/firmware.md 'Recovering "
            "a detector')",
            f.device, f.fields.get("cmd"),
        )  # fmt: skip

    def _log_limited(self, reason: str, level: int, msg: str, *args: Any) -> None:
        """Log at most once per LOG_EVERY_S per reason, with the running count (input an
        attacker can repeat must not flood the log)."""
        t = time.monotonic()
        if t - self._last_log.get(reason, -1e9) >= LOG_EVERY_S:
            self._last_log[reason] = t
            log.log(level, msg + " [%d so far]", *args, self.stats.get(reason, 0))

    # -- republish ---------------------------------------------------------------------------
    def _pub(
        self, device: int, kind: str, f: fr.Frame, now: float, extra: dict | None = None
    ) -> None:
        d = f.to_dict()
        if self.raw_json:
            if kind == "telemetry":
                d["flags"] = host.status_flags(d["status"])
        else:  # degC, A, mA and names, with `units` (docs/gateway.md, MQTT topics)
            d = physical(d)
        if extra:
            d.update(extra)
        # Past the checks a tag is a verified one. False: an untagged HELLO or TELEMETRY,
        # information only (SPEC.md section 5), or anything from a device without a key.
        d["authenticated"] = f.tag is not None
        d["rx"] = round(now, 3)
        d["gateway"] = self.name
        if d.get("time"):
            d["time"] = d["time"] + EPOCH_UNIX
        dev = self.devs[device].dev
        d["district"] = dev.district
        d["category"] = dev.category
        assert self.publish is not None
        self.publish(f"{self.prefix}/json/{device}/{kind}", json.dumps(d).encode(), False)

    def _pub_state(self, f: fr.Frame) -> None:
        rows = self.store.db.execute(
            "SELECT channel, state, since, value, threshold, kind FROM alarm_state WHERE device=?",
            (f.device,),
        ).fetchall()
        state: dict[str, dict[str, Any]] = {}
        for ch, st, since, value, threshold, kind in rows:
            s: dict[str, Any] = {"state": st, "since": round(since, 3)}
            if self.raw_json:
                s.update(value=value, threshold=threshold)
            else:  # as the event that set it: its unit, or a fault's name
                s.update(event_physical(state_kind(kind, st), ch, value, threshold))
            state[ch] = s
        payload = json.dumps({"device": f.device, "channels": state}).encode()
        assert self.publish is not None
        self.publish(f"{self.prefix}/state/{f.device}", payload, True)


def _addr(addr: Any) -> str | None:
    if addr is None:
        return None
    if isinstance(addr, tuple):
        return ":".join(str(x) for x in addr)
    return str(addr)
