"""The gateway's transport-independent pipeline: wire bytes in -> decode -> authenticate ->
dedup -> batch -> SQLite -> ACK -> republish.

Transports (transports.py) call Gateway.handle(wire, link, addr) for every datagram or stream
segment and implement `link.send(device, wire, addr)` for the way back. Nothing here blocks
except flush(), which the event loop calls on a timer or when a batch is full.

Exactly-once for events rests on three rules:
  1. an EVENT is ACKed only after the transaction that stores it has committed;
  2. the detector retransmits an unacknowledged event (same counter, same tag) until ACKed;
  3. events are keyed by (device, authenticated counter): UNIQUE in SQLite, so a retransmission
     is recognised whether this process, a restarted one or a sibling instance sees it.
Telemetry is periodic and not retransmitted: duplicates (MQTT QoS 1 redelivery) are dropped by
an in-memory window of the last (seq, crc) pairs per device.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from protocol import frame as fr
from protocol import messages as M
from protocol.auth import Key
from protocol.session import HOST_REQUIRES, Peer
from tools.gateway.registry import Device
from tools.gateway.store import EPOCH_UNIX, Store

log = logging.getLogger("efd.gateway")

TEL_WINDOW = 16  # telemetry dedup window per device (frames)
LOG_EVERY_S = 10.0  # rate limit for per-reason rejection logs


class Link(Protocol):
    name: str

    def send(self, device: int, wire: bytes, addr: Any) -> None: ...


Publish = Callable[[str, bytes, bool], None]


def host_counter_floor(now: float) -> int:
    """Time-based floor for host->device counters: 4 per second since 2020 (fits u32 until
    2054). Any gateway instance, and a restarted one without saved state, then starts above
    what a sibling used a moment ago, so the detector's strict high-water mark holds."""
    return max(1, int((now - EPOCH_UNIX) * 4)) & 0xFFFFFFFF


class _Dev:
    __slots__ = ("addr", "dev", "enc", "host_ctr", "link", "peer", "tel")

    def __init__(self, dev: Device):
        self.dev = dev
        key = Key(dev.key) if dev.key else None
        self.peer = Peer(key, 0, HOST_REQUIRES, uplink=True) if key else None
        self.enc = fr.Encoder(dev.device, key, None) if key else None
        self.host_ctr = 0
        self.link: Link | None = None
        self.addr: Any = None
        self.tel: deque[tuple[int, int]] = deque(maxlen=TEL_WINDOW)


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
    ):
        self.name = name
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
                st.peer.last = counter
                st.peer.last_tag = tag
        self.stats: dict[str, int] = {}
        self._unflushed: dict[str, int] = {}
        self._tel: list[tuple] = []
        self._ev: list[tuple] = []
        self._ev_meta: list[tuple] = []  # (frame, link, addr) per _ev row
        self._res: list[tuple] = []
        self._res_meta: list[tuple] = []
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

    def pending(self) -> int:
        return len(self._tel) + len(self._ev) + len(self._res) + len(self._reack)

    # -- ingest ------------------------------------------------------------------------------
    def handle(self, wire: bytes, link: Link, addr: Any = None) -> None:
        """One stuffed frame (a datagram, an MQTT payload or a stream segment). Never raises
        for any bytes: everything wrong is counted and logged, nothing of it is stored."""
        self.count("rx")
        try:
            f = fr.decode(wire)
            if not f.ok:
                self._reject(f.name, f"{len(wire)} bytes via {link.name} {addr!r}")
                return
            self.frame(f, link, addr)
        except Exception:  # a bug, not bad input (the codec never raises on bytes): keep going
            self.count("internal_error")
            log.exception("internal error on a %d-byte frame via %s", len(wire), link.name)

    def result(self, res: fr.Frame | fr.Error, link: Link, addr: Any = None) -> None:
        """A StreamDecoder result (serial): the same path as handle() after decoding."""
        self.count("rx")
        if not res.ok:
            self._reject(res.name, f"stream segment via {link.name} {addr!r}")
            return
        self.frame(res, link, addr)  # type: ignore[arg-type]

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
        else:
            err = peer.check(f)
            if err is not None:
                if err.code in (fr.E_DUPLICATE, fr.E_REPLAY) and f.type in (M.EVENT, M.RESULT):
                    self._maybe_duplicate(st, f, link, addr, err)
                else:
                    self._reject(err.name, f"device {f.device} {f.name} seq {f.seq}")
                return
        now = time.time()
        st.link = link
        st.addr = addr
        t = f.type
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
            self._seen[f.device] = (now, link.name, _addr(addr), fields["status"], None, None)
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
            self._res_meta.append((f, link, addr))
            self._touch(f.device, now, link, addr)
        elif t == M.HELLO:
            hc = fields["host_counter"]
            if hc > st.host_ctr:
                st.host_ctr = hc
            fw = ".".join(str(x) for x in fields["fw"])
            self._seen[f.device] = (now, link.name, _addr(addr), None, fw, fields["boot_count"])
            if self.publish is not None:
                self._pub(f.device, "hello", f, now)
        else:  # CONFIG, SNAPSHOT: passed on to platforms, not stored
            self._touch(f.device, now, link, addr)
            self.count("rx:" + f.name)
            if self.publish is not None:
                self._pub(f.device, f.name, f, now)
        if len(self._tel) + len(self._ev) >= self.batch:
            self.flush()

    def _touch(self, device: int, now: float, link: Link, addr: Any) -> None:
        prev = self._seen.get(device)
        if prev is None:
            self._seen[device] = (now, link.name, _addr(addr), None, None, None)
        else:
            self._seen[device] = (now, link.name, _addr(addr), *prev[3:])

    def _maybe_duplicate(self, st: _Dev, f: fr.Frame, link: Link, addr: Any, err) -> None:
        """A retransmission of something already accepted: answer it again (after the pending
        batch is committed), never store it twice. A replayed counter whose tag is not the one
        stored is an attack or a bug: rejected."""
        pending = any(
            m[0].device == f.device and m[0].counter == f.counter for m in self._ev_meta
        ) or any(m[0].device == f.device and m[0].counter == f.counter for m in self._res_meta)
        if pending or (f.type == M.EVENT and self.store.has_event(f.device, f.counter, f.tag)):
            self.count("duplicate:" + f.name)
            if f.type == M.EVENT:  # an event's ACK may have been lost: answer again
                self._reack.append((f, link, addr))
            return
        if f.type == M.RESULT:  # a cached RESULT re-sent for a retransmitted command
            self.count("duplicate:result")
            return
        if err.code == fr.E_DUPLICATE:
            # Accepted in memory but not stored (a failed batch): take it as new.
            self.count("retry_unstored")
            st.peer.last_tag = None  # type: ignore[union-attr]
            self.frame(f, link, addr)
            return
        self._reject(err.name, f"device {f.device} {f.name} counter {f.counter}")

    # -- flush / ack -------------------------------------------------------------------------
    def flush(self) -> None:
        if not (self._tel or self._ev or self._res or self._reack or self._seen or self._unflushed):
            return
        tel, ev, meta = self._tel, self._ev, self._ev_meta
        res, rmeta, reack, seen = self._res, self._res_meta, self._reack, self._seen
        self._tel, self._ev, self._ev_meta, self._res, self._res_meta = [], [], [], [], []
        self._reack, self._seen = [], {}
        self.count("stored:telemetry", len(tel))
        counters, self._unflushed = self._unflushed, {}
        try:
            new = self.store.flush(tel, ev, res, seen, counters)
        except Exception:  # disk full, locked for > busy_timeout...: nothing ACKed, devices retry
            log.exception(
                "batch of %d rows not stored; events will be retransmitted", len(tel) + len(ev)
            )
            self.count("stored:telemetry", -len(tel))
            self.count("batch_failed")
            for f, *_ in meta:
                st = self.devs[f.device]
                if st.peer is not None and st.peer.last == f.counter:
                    st.peer.last_tag = None
            return
        now = time.time()
        for (f, link, addr), is_new in zip(meta, new, strict=True):
            self.count("stored:event" if is_new else "duplicate:event_db")
            self._ack(f, link, addr, now)
            if is_new and self.publish is not None:
                self._pub(f.device, "event", f, now)
                self._pub_state(f)
        for f, _link, _addr in rmeta:  # RESULTs are not ACKed (SPEC.md section 8)
            self.count("stored:result")
            if self.publish is not None:
                self._pub(f.device, "result", f, now)
        for f, link, addr in reack:
            self._ack(f, link, addr, now)
        if self.on_flush is not None:
            self.on_flush()

    def close(self) -> None:
        """Final flush: the batch, then the counters its commit produced (stored, ACKs sent),
        which otherwise ride along with the next batch."""
        self.flush()
        self.flush()

    def _next_counter(self, st: _Dev, now: float) -> int:
        c = max(st.host_ctr + 1, host_counter_floor(now))
        st.host_ctr = c
        return c

    def _ack(self, f: fr.Frame, link: Link, addr: Any, now: float) -> None:
        st = self.devs[f.device]
        if st.enc is None:
            return
        wire = st.enc.message(
            M.ACK,
            fr.efd_time(int(now)),
            {"ack_type": f.type, "ack_seq": f.seq, "ack_crc": f.crc},
            auth=True,
            counter=self._next_counter(st, now),
        )
        try:
            link.send(f.device, wire, addr)
            self.count("ack_sent")
        except OSError as e:
            self.count("ack_failed")
            log.warning("ACK to device %d via %s failed: %s", f.device, link.name, e)

    # -- commands ----------------------------------------------------------------------------
    def command(self, device: int, fields: dict) -> str:
        """Send an authenticated COMMAND to a device over the link it last used. Returns a
        short status text; raises ValueError for a request that cannot be sent."""
        st = self.devs.get(device)
        if st is None:
            raise ValueError(f"unknown device {device}")
        if st.enc is None:
            raise ValueError(f"device {device} has no key: commands must be authenticated")
        link, addr = st.link, st.addr
        if link is None:
            # Not heard by this instance (a sibling behind the same shared subscription may
            # have): MQTT still reaches it on its own downlink topic.
            link, addr = self.default_link, None
        if link is None:
            raise ValueError(f"device {device} has not been heard from: no route to it")
        now = time.time()
        try:
            wire = st.enc.message(
                M.COMMAND,
                fr.efd_time(int(now)),
                fields,
                auth=True,
                counter=self._next_counter(st, now),
            )
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise ValueError(f"bad command {fields!r}: {e}") from None
        link.send(device, wire, addr)
        self.count("command_sent")
        return f"sent {fields.get('cmd')} to {device} via {link.name}"

    # -- republish ---------------------------------------------------------------------------
    def _pub(self, device: int, kind: str, f: fr.Frame, now: float) -> None:
        d = f.to_dict()
        d["rx"] = round(now, 3)
        d["gateway"] = self.name
        if d.get("time"):
            d["time"] = d["time"] + EPOCH_UNIX
        if kind == "telemetry":
            d["flags"] = M.status_flags(d["status"])
        dev = self.devs[device].dev
        d["district"] = dev.district
        d["category"] = dev.category
        assert self.publish is not None
        self.publish(f"{self.prefix}/json/{device}/{kind}", json.dumps(d).encode(), False)

    def _pub_state(self, f: fr.Frame) -> None:
        rows = self.store.db.execute(
            "SELECT channel, state, since, value, threshold FROM alarm_state WHERE device=?",
            (f.device,),
        ).fetchall()
        state = {
            r[0]: {"state": r[1], "since": round(r[2], 3), "value": r[3], "threshold": r[4]}
            for r in rows
        }
        payload = json.dumps({"device": f.device, "channels": state}).encode()
        assert self.publish is not None
        self.publish(f"{self.prefix}/state/{f.device}", payload, True)


def _addr(addr: Any) -> str | None:
    if addr is None:
        return None
    if isinstance(addr, tuple):
        return ":".join(str(x) for x in addr)
    return str(addr)
