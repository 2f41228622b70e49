"""Adversarial campaign (issue 10): inputs tried, crashes, forgeries accepted, events lost or
duplicated, all measured in this run against the project's own code, from one fixed seed.

1. Decoder: protocol.frame.decode (as a host, as a detector, direction-blind) and
   protocol.stream.StreamDecoder (the same inputs as one stream in random chunks) on random
   bytes and on valid frames with 1-3 bits flipped (golden vectors, the security suite's
   pool). Must be 0: exceptions. Context: flips that turn a valid frame into another valid
   one (CRC-16 misses; the tag is what stops a forgery).
2. Gateway datagram path: tools.gateway.core.Gateway with a Store on a temporary SQLite file,
   fed as the UDP transport feeds it (transports.split_frames, then handle), flush() after
   every datagram, tick() as the clock moves. Warm-up: every authentic frame of
   tests/security/test_fuzz_gateway.py's POOL (less its ceiling-test HELLOs) and tagged HELLO,
   RESULT, CONFIG, SNAPSHOT, TELEMETRY frames, delivered once; a command left in flight. Then,
   shuffled: random datagrams; mutations of those frames (test_fuzz_gateway.mutate); forgeries
   of every uplink type with counters above the marks (untagged, random tag, wrong key, the
   other detector's key, tampered payload, device id swapped, A bit cleared); replays of the
   authentic frames, half from an attacker's address; oversize datagrams (random, frames glued
   without delimiters, padded past 256 B). After the warm-up no input may change what matters,
   so a change is charged to the input that made it: a fact stored or overwritten (events,
   results, configs, snapshots, alarm_state), a new ACK frame, an uplink mark moved, the host
   counter moved other than by a resync command sent (SPEC.md 7.3 H2). Apart, by design: a
   byte-identical re-ACK of the latest event (7.3 H3) and resync commands for authentic old
   frames (7.4: at most one per detector per 10 s, checked). Must be 0: internal_error (the
   gateway's own guard count), crashes (exceptions escaping handle/flush/tick), accepted,
   commands re-routed by unauthenticated frames (SPEC.md 5). Controls: new authentic frames
   spread through the run, every other one from a new address, must all be seen accepted and
   re-routed, so the checks cannot pass by seeing nothing.
3. Detector: the firmware (firmware/lib/app: App, Link, the event log on a flash folder,
   hal_sim with the simulated clock) on the MicroPython unix port, one 100 ms window per
   request through a pipe (DEVICE_SCRIPT), provisioned as `make provision` leaves it. 20
   classes of forged, replayed, reflected and wrong-device COMMANDs and ACKs plus fuzz, one
   input a window. Must be 0: accepted (App.command ran, the persisted host counter moved, or
   the pending event was marked delivered), answered (a RESULT for a refused frame: SPEC.md
   7.3 gives no answer to no_tag, bad_tag, replay; a duplicate of the latest command gets its
   cached RESULT by design, not counted), process exits. Controls: an authentic command
   before each class, an authentic ACK after each ACK class, all accepted. Alarm report delay
   under a replay flood: tests/security/test_detector_flood.py's SCRIPT with and without the
   flood, side by side, UDP and RS-485 polled: windows from the alarm logged to its EVENT on
   the wire, x 100 ms; the flood may add at most one window.
4. Events end to end: the same firmware process linked to the gateway in this process through
   a lossy channel (frames dropped and duplicated both ways, link outages of 1-60 s), gateway
   restarts on the same SQLite file (clean, or killed with its unflushed batch; down 0.5-5 s),
   detector power cuts (the process SIGKILLed between windows, its flash folder kept; a cut
   inside a window is not simulated). Leakage comes and goes, alarms are reset by gateway
   commands or the button, until the detector has logged N events; then the chaos stops (the
   drops do not) until nothing is pending. Every event in the detector's log must be in the
   gateway's events table exactly once: generated >= N, stored once = generated, lost 0,
   duplicated 0 (extra copies and rows matching no logged event).

The same seed gives the same inputs and the same figures (tests/security/test_bench_security.py
checks it). Times are wall clock on a shared machine, context only; delays are in simulated
windows. `python -m bench security` runs this module alone; `python -m bench.bench_security`
exits 1 if any row misses its target.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from efd import names
from protocol import cobs, host
from protocol import frame as fr
from protocol import messages as M
from protocol.auth import Key
from protocol.crc import crc16
from protocol.stream import StreamDecoder
from tests import mpy
from tests.security import common as C
from tests.security import test_detector_flood as flood
from tests.security.test_fuzz_gateway import POOL, VECTOR_DEVICE, mutate
from tools import provisioning
from tools.gateway import core
from tools.gateway.core import Gateway
from tools.gateway.store import Store
from tools.gateway.transports import split_frames

ROOT = Path(__file__).resolve().parents[1]
SEED = 20260110
VECTORS = [
    bytes.fromhex(v["hex"])
    for v in json.loads((ROOT / "protocol" / "vectors" / "vectors.json").read_text())["vectors"]
]

# Sizes of the full run (`make bench`); tests/security/test_bench_security.py runs tiny ones.
SIZES: dict[str, int] = {
    "decoder_random": 100_000,
    "decoder_flip": 100_000,
    "gw_random": 5000,
    "gw_mutated": 5000,
    "gw_forged": 4000,
    "gw_replay": 2000,
    "gw_oversize": 1000,
    "det_per_class": 150,
    "flood_copies": 8000,
    "flood_windows": 300,
    "events": 200,
}

# The figures that must be zero (figures() computes them; each is a row with target 0).
MUST_BE_ZERO = (
    "decoder_exceptions",
    "gw_internal_error",
    "gw_crashes",
    "gw_accepted",
    "gw_rerouted",
    "det_accepted",
    "det_answered",
    "det_exits",
    "ev_lost",
    "ev_duplicated",
    "ev_crashes",
)


# -- frame surgery ---------------------------------------------------------------------------------
def body(wire: bytes) -> bytes:
    """The un-stuffed frame without its CRC."""
    raw = cobs.decode(wire[:-1] if wire.endswith(b"\x00") else wire)
    assert raw is not None
    return raw[:-2]


def restuff(b: bytes) -> bytes:
    """A frame body -> a wire frame with a correct CRC (what anyone can compute)."""
    c = crc16(b, 0, len(b))
    raw = b + bytes((c & 0xFF, c >> 8))
    out = bytearray(len(raw) + len(raw) // 254 + 2)
    return bytes(out[: cobs.encode_into(raw, len(raw), out)])


def new_tag(wire: bytes, tag: bytes) -> bytes:
    b = body(wire)
    return restuff(b[:-8] + tag)


def tamper(wire: bytes, rng: random.Random, tagged: bool) -> bytes:
    """One payload or header byte changed (not the tag), CRC fixed."""
    b = bytearray(body(wire))
    end = len(b) - (8 if tagged else 0)
    i = rng.randrange(1, end)  # not the header byte (type/version): that is its own class
    b[i] ^= rng.randrange(1, 256)
    return restuff(bytes(b))


def swap_device(wire: bytes, device: int) -> bytes:
    b = bytearray(body(wire))
    b[1:5] = device.to_bytes(4, "little")
    return restuff(bytes(b))


def clear_a_bit(wire: bytes) -> bytes:
    b = bytearray(body(wire))
    b[0] &= 0x7F
    return restuff(bytes(b))


def set_type(wire: bytes, typ: int) -> bytes:
    b = bytearray(body(wire))
    b[0] = (b[0] & 0xE0) | typ
    return restuff(bytes(b))


def flip_bits(wire: bytes, rng: random.Random, k: int) -> bytes:
    x = bytearray(wire)
    for _ in range(k):
        i = rng.randrange(len(x) * 8)
        x[i >> 3] ^= 1 << (i & 7)
    return bytes(x)


# -- 1. decoder ------------------------------------------------------------------------------------
def decoder_campaign(rng: random.Random, n_random: int, n_flip: int) -> dict[str, Any]:
    seeds = [w for w in VECTORS + POOL if w]
    exc: Counter[str] = Counter()
    still_ok = 0
    stream_in: list[bytes] = []

    calls = [0]

    def one(w: bytes) -> bool:
        calls[0] += 1
        ok = False
        for up in (None, True, False):
            try:
                f = fr.decode(w, up)
                ok = ok or bool(f.ok)
                if not f.ok:
                    _ = f.name  # the host's presentation of an Error (gateway logs use it)
            except Exception as e:
                exc[type(e).__name__] += 1
        return ok

    for _ in range(n_random):
        w = rng.randbytes(rng.randint(0, 300))
        one(w)
        stream_in.append(w)
    raws = {w: (f.raw if (f := fr.decode(w)).ok else None) for w in seeds}
    for _ in range(n_flip):
        seed = rng.choice(seeds)
        w = flip_bits(seed, rng, rng.choice((1, 1, 1, 2, 3)))
        if one(w) and raws[seed] is not None and fr.decode(w).raw != raws[seed]:
            still_ok += 1  # a valid frame turned into another valid one: the CRC missed it
        stream_in.append(w)
    # The same inputs as a byte stream (a detector's UART, the serial gateway), in random
    # chunks, through a stream decoder of each direction.
    data = b"\x00".join(stream_in)
    for up in (None, True, False):
        dec = StreamDecoder(uplink=up)
        pos = 0
        while pos < len(data):
            k = rng.randint(1, 600)
            try:
                dec.feed(data[pos : pos + k])
            except Exception as e:
                exc["stream:" + type(e).__name__] += 1
            pos += k
    return {
        "random": n_random,
        "flip": n_flip,
        "tried": calls[0],
        "exceptions": sum(exc.values()),
        "by_type": dict(exc),
        "flip_still_ok": still_ok,
        "stream_bytes": len(data),
    }


# -- 2. gateway datagram path ----------------------------------------------------------------------
@contextlib.contextmanager
def quiet_gateway():
    """The gateway's rate-limited rejection warnings off (thousands are expected here); its
    internal-error reports (ERROR, with traceback) still print."""
    lg = logging.getLogger("efd.gateway")
    level = lg.level
    lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        lg.setLevel(level)


class RecLink:
    """The gateway's way back, recorded (tests.security.common.Link, named)."""

    name = "udp"

    def __init__(self, clock: C.Clock | None = None) -> None:
        self.clock = clock
        self.sent: list[bytes] = []
        self.at: list[float] = []  # the gateway's monotonic clock at each send

    def send(self, device: int, wire: bytes, addr: object) -> None:
        self.sent.append(wire)
        self.at.append(self.clock.mono if self.clock else 0.0)


AUTH_ADDR = ("192.0.2.10", 5000)  # where the detectors are
ATTACKER = ("198.51.100.7", 9)
MOVED = ("192.0.2.77", 5000)  # a detector that moved (DHCP): authenticated controls only


def _facts(db: sqlite3.Connection) -> tuple:
    """What the platform acts on: any insert or INSERT OR REPLACE moves (count, max id)."""
    out: list[Any] = []
    for t in ("events", "results", "configs", "snapshots"):
        out += db.execute(f"SELECT COUNT(*), MAX(id) FROM {t}").fetchone()
    out.append(tuple(db.execute("SELECT * FROM alarm_state ORDER BY device, channel")))
    return tuple(out)


def _authentic_extras(devices: list[int]) -> list[bytes]:
    """Tagged HELLO, RESULT, CONFIG, SNAPSHOT and TELEMETRY frames the detectors themselves send,
    with counters above the pool's (its tagged HELLO uses 7 << 16)."""
    out = []
    for d in devices:
        ctr = iter(range((8 << 16) + 1, 9 << 16))
        enc = fr.Encoder(d, Key(C.key(d)), lambda c=ctr: next(c))
        out.append(
            enc.message(
                M.HELLO,
                0,
                {
                    "fw": [1, 0, 0],
                    "reset_cause": "power_on",
                    "boot_count": 8,
                    "config_hash": 7,
                    "host_counter": 1000,
                },
                auth=True,
            )
        )
        out.append(
            enc.message(
                M.RESULT,
                0,
                {"cmd_counter": 5, "cmd": "get_config", "status": "ok", "value": 0},
                auth=True,
            )
        )
        out.append(
            enc.message(
                M.CONFIG, 0, {"config_hash": 7, "params": [["leak_set_ma", 300]]}, auth=True
            )
        )
        for k in range(2):
            out.append(
                enc.message(
                    M.SNAPSHOT,
                    0,
                    {
                        "snap_id": 1,
                        "channel": "residual",
                        "chunk": k,
                        "chunks": 2,
                        "scale_exp": -1,
                        "rate_hz": 2000,
                        "trigger": 20,
                        "offset": 8 * k,
                        "samples": [100 * k] * 8,
                    },
                    auth=True,
                )
            )
        out.append(
            enc.message(
                M.TELEMETRY,
                0,
                {"residual_ma": 30, "temp_dc": [250] * 4, "line_ca": [100] * 3, "status": 0},
                auth=True,
            )
        )
    return out


def _forged_fields(t: int, rng: random.Random, cmd_counter: int) -> dict:
    if t == M.HELLO:
        return {
            "fw": [9, 9, 9],
            "reset_cause": "power_on",
            "boot_count": 1,
            "config_hash": 0,
            "host_counter": 0xFFFFFFFF - rng.randrange(8),
        }
    if t == M.TELEMETRY:
        return {"residual_ma": 20, "temp_dc": [250] * 4, "line_ca": [100] * 3, "status": 0}
    if t == M.EVENT:
        return {
            "kind": rng.choice(["alarm", "reset", "clear"]),
            "channel": "residual",
            "value": rng.randrange(1000),
            "threshold": 300,
        }
    if t == M.RESULT:  # names the command in flight: would complete it
        return {"cmd_counter": cmd_counter, "cmd": "get_config", "status": "ok", "value": 0}
    if t == M.CONFIG:
        return {"config_hash": rng.randrange(1 << 32), "params": [["leak_set_ma", 1000]]}
    return {
        "snap_id": 1,
        "channel": "residual",
        "chunk": rng.randrange(2),
        "chunks": 2,
        "scale_exp": -1,
        "rate_hz": 2000,
        "trigger": 20,
        "offset": 0,
        "samples": [rng.randrange(-999, 999) for _ in range(8)],
    }


FORGE_KINDS = (
    "untagged",
    "random_tag",
    "wrong_key",
    "other_device_key",
    "tampered",
    "device_swapped",
    "a_bit_cleared",
)
UPLINK_TYPES = (M.HELLO, M.TELEMETRY, M.EVENT, M.RESULT, M.CONFIG, M.SNAPSHOT)


def _forge(rng: random.Random, cmd_counter: int) -> tuple[str, bytes]:
    d = rng.choice((C.DEV, C.DEV2))
    other = C.DEV2 if d == C.DEV else C.DEV
    t = rng.choice(UPLINK_TYPES)
    kind = rng.choice(FORGE_KINDS)
    fields = _forged_fields(t, rng, cmd_counter)
    ctr = (12 << 16) + rng.randrange(1, 1 << 15)  # above every mark (controls: 10 << 16)
    if kind == "untagged":
        return kind, fr.Encoder(d).message(t, 0, fields)
    if kind == "wrong_key":
        key = rng.randbytes(32)
    elif kind == "other_device_key":
        key = C.key(other)
    else:
        key = C.key(d)
    w = fr.Encoder(d, Key(key)).message(t, 0, fields, auth=True, counter=ctr)
    # The authentic frames below are made here and never sent: only what an attacker can do
    # to them reaches the gateway.
    if kind == "random_tag":
        w = new_tag(w, rng.randbytes(8))
    elif kind == "tampered":
        w = tamper(w, rng, True)
    elif kind == "device_swapped":  # a frame of one detector presented as the other's
        w = swap_device(w, other)
    elif kind == "a_bit_cleared":  # counter + tag read as payload: untagged, and longer
        w = clear_a_bit(w)
    return kind, w


def _oversize(rng: random.Random, frames: list[bytes]) -> bytes:
    k = rng.randrange(3)
    if k == 0:
        return rng.randbytes(rng.randint(fr.MAX_WIRE + 1, 4096))
    if k == 1:  # frames glued without their delimiters
        out = b""
        while len(out) <= fr.MAX_WIRE:
            out += rng.choice(frames).rstrip(b"\x00")
        return out + b"\x00"
    w = rng.choice(frames).rstrip(b"\x00")  # a frame padded past the maximum
    return w + bytes(rng.randint(1, 255) for _ in range(fr.MAX_WIRE + 1 - len(w))) + b"\x00"


def _mutation(rng: random.Random) -> list[tuple]:
    """Operations for test_fuzz_gateway.mutate, drawn like its hypothesis strategy."""
    out: list[tuple] = []
    for _ in range(rng.randint(1, 4)):
        k = rng.randrange(4)
        if k == 0:
            out.append(("flip", rng.randrange(301), rng.randrange(8)))
        elif k == 1:
            out.append(("set", rng.randrange(301), rng.randrange(256)))
        elif k == 2:
            out.append(("cut", rng.randrange(301)))
        else:
            out.append(("insert", rng.randrange(301), rng.randbytes(rng.randint(1, 8))))
    return out


def gateway_campaign(tmp: Path, rng: random.Random, sizes: dict[str, int]) -> dict[str, Any]:
    clock = C.Clock()
    saved = core.time
    core.time = clock  # type: ignore[assignment]
    try:
        with quiet_gateway():
            return _gateway_campaign(tmp, rng, sizes, clock)
    finally:
        core.time = saved


def _gateway_campaign(
    tmp: Path, rng: random.Random, sizes: dict[str, int], clock: C.Clock
) -> dict[str, Any]:
    tmp.mkdir(parents=True, exist_ok=True)
    devs = C.registry(VECTOR_DEVICE)
    store = Store(tmp / "fuzz.db", "fz")
    gw = Gateway(devs, store, name="fz")
    link = RecLink(clock)
    crashes: Counter[str] = Counter()

    def guarded(what: str, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as e:  # Gateway promises none: each one is a crash of the service
            crashes[f"{what}:{type(e).__name__}"] += 1

    def feed(data: bytes, addr) -> None:
        for seg in split_frames(data):
            guarded("handle", gw.handle, seg, link, addr)

    # Warm-up: every authentic frame once (each flushed: ACKed as it would be), a command
    # left in flight. The pool's tagged HELLOs that raise the host counter to 2^32 - 4 (the
    # ceiling test's) are left out: they would leave the gateway no counter to ACK with.
    authentic = []
    for w in POOL:
        f = fr.decode(w)
        if w and not (f.ok and f.type == M.HELLO and f.tag is not None):
            authentic.append(w)
            feed(w, AUTH_ADDR)
            gw.flush()
    cmd = gw.command(C.DEV, {"cmd": "get_config"})
    extras = _authentic_extras([C.DEV, C.DEV2])
    for w in extras:
        feed(w, AUTH_ADDR)
        gw.flush()
    authentic += extras
    warm = {"stored_event": gw.stats.get("stored:event", 0), "acks": len(link.sent)}

    inputs: list[tuple[str, str, bytes]] = []
    for _ in range(sizes["gw_random"]):
        inputs.append(("random", "random", rng.randbytes(rng.randint(0, 300))))
    for _ in range(sizes["gw_mutated"]):
        inputs.append(("mutated", "mutated", mutate(rng.choice(authentic), _mutation(rng))))
    for _ in range(sizes["gw_forged"]):
        kind, w = _forge(rng, cmd.counter or 0)
        inputs.append(("forged", kind, w))
    for _ in range(sizes["gw_replay"]):
        inputs.append(("replay", "replay", rng.choice(authentic)))
    for _ in range(sizes["gw_oversize"]):
        inputs.append(("oversize", "oversize", _oversize(rng, authentic)))
    rng.shuffle(inputs)
    # Controls: new authentic frames (an event, a CONFIG, a SNAPSHOT chunk), spread through
    # the run and checked like every input: each must be seen as accepted, or the checks
    # below are blind.
    n_controls = max(3, len(inputs) // 500)
    ctl_ctr = iter(range((10 << 16) + 1, 11 << 16))
    ctl_enc = fr.Encoder(C.DEV, Key(C.key(C.DEV)), lambda: next(ctl_ctr))
    for i in sorted((rng.randrange(len(inputs) + 1) for _ in range(n_controls)), reverse=True):
        inputs.insert(i, ("control", "", b""))  # from the end: the positions stay valid
    k = 0
    for i, (cat, _, _) in enumerate(inputs):  # encoded in input order: counters rising
        if cat == "control":
            t = (M.EVENT, M.CONFIG, M.SNAPSHOT)[k % 3]
            k += 1
            w = ctl_enc.message(t, 0, _forged_fields(t, rng, 0), auth=True)
            inputs[i] = (cat, host.TYPE_NAMES[t], w)

    def marks() -> tuple:  # the gateway's uplink marks and tags, per device
        return tuple(
            (tuple(st.peer.marks), tuple(bytes(t) if t else b"" for t in st.peer.tags))
            if st.peer
            else ()
            for st in gw.devs.values()
        )

    def host_ctrs() -> dict[int, int]:
        return {d: st.host_ctr for d, st in gw.devs.items()}

    def route() -> tuple:
        return tuple((id(st.link), st.addr) for st in gw.devs.values())

    sent = set(link.sent)
    base_marks, base_route, base_facts = marks(), route(), _facts(store.db)
    tried: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    how: Counter[str] = Counter()
    rerouted: Counter[str] = Counter()
    resyncs: dict[int, list[float]] = {}
    reacks = 0
    controls = [0, 0, 0]  # sent, seen as accepted, route followed
    for i, (cat, kind, data) in enumerate(inputs):
        if cat == "control":
            controls[0] += 1
        else:
            tried[cat] += 1
        n0 = len(link.sent)
        hc0 = host_ctrs()
        if cat == "control":  # every other one from the detector's new address (a move):
            addr = MOVED if controls[0] % 2 else AUTH_ADDR  # the route must follow it
        else:
            addr = ATTACKER if cat != "replay" or i % 2 else AUTH_ADDR
        feed(data, addr)
        guarded("flush", gw.flush)
        if i % 50 == 49:  # time passes: the command in flight is retransmitted, given up
            clock.advance(rng.uniform(0, 5))
            guarded("tick", gw.tick)
        new = [(w, t) for w, t in zip(link.sent[n0:], link.at[n0:], strict=True) if w not in sent]
        reacks += len(link.sent) - n0 - len(new)
        hit = []
        new_cmds: Counter[int] = Counter()
        for w, t in new:
            sent.add(w)
            f = fr.decode(w)
            if f.ok and f.type == M.COMMAND and f.fields.get("cmd") == "resync":
                # SPEC.md 7.4: an authentic frame below the mark (a replay, or a detector
                # whose counter went backwards) is answered by a resync command, at most one
                # per detector per 10 s: checked below, not an acceptance.
                new_cmds[f.device] += 1
                resyncs.setdefault(f.device, []).append(t)
            else:
                hit.append("new ACK" if f.ok and f.type == M.ACK else "other frame sent")
        floor = core.host_counter_floor(clock.time())
        for d, c in host_ctrs().items():
            # H2: the host counter moves only by the gateway's own new frames, never ahead
            # of max(where it was, the time floor) by more than their number.
            if c != hc0[d] and (not new_cmds[d] or c > max(hc0[d], floor) + new_cmds[d]):
                hit.append("host counter moved")
        m, r, facts = marks(), route(), _facts(store.db)
        if m != base_marks:
            hit.append("uplink mark moved")
            base_marks = m
        if facts != base_facts:
            hit.append("fact stored or overwritten")
            base_facts = facts
        if cat == "control":
            controls[1] += bool(hit)
        elif hit:
            accepted[f"{cat}:{kind}"] += 1
            for h in hit:
                how[h] += 1
        if r != base_route:
            if cat != "control":
                rerouted[f"{cat}:{kind}"] += 1
            else:
                controls[2] += 1
            base_route = r
    gaps = [b - a for ts in resyncs.values() for a, b in itertools.pairwise(ts)]
    gw.close()
    store.close()
    return {
        "tried": dict(tried),
        "total": sum(tried.values()),
        "forged_kinds": dict(Counter(k for c, k, _ in inputs if c == "forged")),
        "internal_error": gw.stats.get("internal_error", 0),
        "crashes": sum(crashes.values()),
        "crash_kinds": dict(crashes),
        "accepted": sum(accepted.values()),
        "accepted_by": dict(accepted),
        "how": dict(how),
        "rerouted": sum(rerouted.values()),
        "rerouted_by": dict(rerouted),
        "reacks_identical": reacks,
        "warmup": warm,
        "controls": controls[0],
        "controls_seen": controls[1],
        "controls_rerouted": controls[2],
        "resyncs": sum(len(v) for v in resyncs.values()),
        "resync_min_gap_s": min(gaps) if gaps else None,
        "rejected": {k[9:]: v for k, v in gw.stats.items() if k.startswith("rejected:")},
    }


# -- 3. detector (the firmware on the MicroPython unix port) ---------------------------------------
DEVICE_SCRIPT = r"""
import sys
import json
from binascii import hexlify, unhexlify
from app.hal_sim import SimHal
from app import run


class Wire:
    # The link's transport in memory: a byte stream in (what the host sent), frames out.
    def __init__(self):
        self.rx = bytearray()
        self.pos = 0
        self.out = []

    def read(self, buf):
        n = min(len(buf), len(self.rx) - self.pos)
        if n <= 0:
            return 0
        buf[:n] = memoryview(self.rx)[self.pos : self.pos + n]
        self.pos += n
        if self.pos >= len(self.rx):
            self.rx = bytearray()
            self.pos = 0
        return n

    def write(self, data):
        self.out.append(bytes(data))

    def busy(self):
        return False


wire = Wire()
hal = SimHal(clock="sim", link=wire)
hal.outputs = lambda alarm, fault, normal: None  # stdout carries the replies
app = run.App(hal)
executed = [0]
_command = app.command


def counted(f, counter, now):
    executed[0] += 1
    return _command(f, counter, now)


app.command = counted
while True:
    line = sys.stdin.readline()
    if not line:
        break
    req = json.loads(line)
    if "rx" in req:
        wire.rx.extend(unhexlify(req["rx"]))
    if "res" in req:
        hal.res_ma = req["res"]
        hal.dirty = True
    if "btn" in req:
        hal.btn = req["btn"]
    for _ in range(req.get("n", 1)):
        app.step()
    out = wire.out
    wire.out = []
    log = app.log
    rep = {"out": [hexlify(w).decode() for w in out], "x": executed[0], "hc": app.host_ctr,
           "head": log.head, "acked": log.acked, "pend": log.first_pending(),
           "inf": app.link.inflight, "err": app.errors}
    if req.get("dump"):
        rep["log"] = [log.read(i) for i in range(1, log.head + 1)]
    print("R " + json.dumps(rep))
"""


LEAK_MA = 3000  # mA: an alarm even if a forged set_config got through (it asks 1000; default 300)


class DeviceGone(Exception):
    pass


class Device:
    """One detector: the firmware process on the unix port, one window per request; its
    flash (identity, state, event log) a folder that outlives the process."""

    def __init__(self, flash: Path, device: int, key: bytes):
        self.flash = flash
        flash.mkdir(parents=True, exist_ok=True)
        # Provisioned as `make provision` leaves it (tools/provisioning.py: the identity and
        # a fresh state; a keyed detector without its state takes it as lost, SPEC.md 7.4).
        for name, text in provisioning.files(device, key.hex()).items():
            (flash / name).write_text(text)
        self.script = flash.parent / (flash.name + "-driver.py")
        self.script.write_text(DEVICE_SCRIPT)
        self.errlog = flash.parent / (flash.name + "-stderr.log")
        self.proc: subprocess.Popen | None = None
        self.boots = 0
        self.start()

    def start(self) -> None:
        env = dict(os.environ, MICROPYPATH=os.pathsep.join([str(mpy.FIRMWARE_LIB), str(mpy.ROOT)]))
        with open(self.errlog, "ab") as err:
            self.proc = subprocess.Popen(
                [mpy.binary(), "-X", "heapsize=8m", str(self.script)],
                cwd=self.flash,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                bufsize=1,
            )
        self.boots += 1

    def window(self, rx: bytes = b"", **req: Any) -> dict:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        if rx:
            req["rx"] = rx.hex()
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            while True:
                line = self.proc.stdout.readline()
                if not line:
                    raise DeviceGone(self.proc.wait(5))
                if line.startswith("R "):
                    rep = json.loads(line[2:])
                    rep["out"] = [bytes.fromhex(w) for w in rep["out"]]
                    return rep
        except (BrokenPipeError, OSError) as e:
            raise DeviceGone(str(e)) from None

    def cut(self) -> None:
        """Power cut: SIGKILL (between windows: every write has returned), then boot again."""
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            for s in (self.proc.stdin, self.proc.stdout):
                if s is not None:
                    s.close()
            self.proc = None


def _types(out: list[bytes]) -> list[int]:
    return [f.type for f in (fr.decode(w) for w in out) if f.ok]


CMD_FIELDS: list[dict] = [
    {"cmd": "reset", "channel": "all"},
    {"cmd": "reset", "channel": "residual"},
    {"cmd": "selftest"},
    {"cmd": "time_sync", "set_time": 200_000_000},
    {"cmd": "reboot"},
    {"cmd": "get_config"},
    {"cmd": "snapshot", "snap_id": 0},
    {"cmd": "set_config", "params": [["leak_set_ma", 1000]]},
    {"cmd": "resync", "mark": 0xFFFF0000},
]
DET_CLASSES = (
    "cmd_untagged",
    "cmd_random_tag",
    "cmd_wrong_key",
    "cmd_other_device_key",
    "cmd_tampered",
    "cmd_counter_raised",
    "cmd_a_bit_cleared",
    "cmd_type_changed",
    "cmd_duplicate_latest",
    "cmd_replay_old",
    "cmd_replay_after_power_cut",
    "cmd_reflected",
    "cmd_wrong_device",
    "fuzz_random_bytes",
    "fuzz_bit_flips",
    "ack_untagged",
    "ack_random_tag",
    "ack_wrong_key",
    "ack_replay_old",
    "ack_reflected",
)


def detector_campaign(tmp: Path, rng: random.Random, per_class: int) -> dict[str, Any]:
    dev_id, key = C.DEV, C.key(C.DEV)
    fields = []
    for f in CMD_FIELDS:  # what this codec can encode (resync is SPEC 7.4, newer)
        try:
            M.pack(M.COMMAND, f, bytearray(256), 0)
            fields.append(f)
        except (KeyError, ValueError, TypeError, IndexError, AttributeError):
            pass
    dev = Device(tmp / "det-flash", dev_id, key)
    hctr = [1000]

    def host_counter() -> int:
        hctr[0] += 1
        return hctr[0]

    host = fr.Encoder(dev_id, Key(key), host_counter)
    own: list[bytes] = []  # the detector's own frames, as captured on the wire
    last: dict = {}
    exits = 0

    def win(rx: bytes = b"", **kw: Any) -> dict:
        nonlocal exits
        try:
            rep = dev.window((b"\x00" + rx) if rx else b"", **kw)
        except DeviceGone:
            exits += 1
            dev.start()
            rep = dev.window(**kw)
        own.extend(w for w in rep["out"] if w not in own[-64:])
        last.update(rep)
        return rep

    def idle(n: int = 4) -> None:
        for _ in range(n):
            win()

    def control_command() -> bool:
        hctr[0] = max(hctr[0], last["hc"])  # above the detector's mark, whatever moved it
        x0 = last["x"]
        f = rng.choice([{"cmd": "reset", "channel": "all"}, {"cmd": "get_config"}])
        w = host.message(M.COMMAND, 0, f, auth=True)
        caps.append(w)
        win(w)
        ok = last["x"] == x0 + 1 and last["hc"] == hctr[0]
        idle()
        return ok

    caps: list[bytes] = []  # authentic commands the attacker captured (all accepted)
    acks: list[bytes] = []  # authentic ACKs captured
    idle(3)  # boot: HELLO, first telemetry
    controls = [0, 0]
    tried: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    answered: Counter[str] = Counter()
    for _ in range(3):  # a history of accepted commands
        controls[0] += 1
        controls[1] += control_command()

    def fresh(f: dict | None = None, k: Key | None = None, device: int = dev_id) -> bytes:
        f = f or rng.choice(fields)
        c = max(hctr[0], last["hc"]) + rng.randint(1, 1000)
        return fr.Encoder(device, k or Key(key)).message(M.COMMAND, 0, f, auth=True, counter=c)

    def command_input(cls: str) -> bytes:
        if cls == "cmd_untagged":
            return fr.Encoder(dev_id).message(M.COMMAND, 0, rng.choice(fields))
        if cls == "cmd_random_tag":
            return new_tag(fresh(), rng.randbytes(8))
        if cls == "cmd_wrong_key":
            return fresh(k=Key(rng.randbytes(32)))
        if cls == "cmd_other_device_key":
            return fresh(k=Key(C.key(C.DEV2)))
        if cls == "cmd_tampered":  # a captured command, its argument or header changed
            return tamper(rng.choice(caps), rng, True)
        if cls == "cmd_counter_raised":
            b = bytearray(body(rng.choice(caps)))
            b[-12:-8] = (last["hc"] + rng.randint(1, 1 << 20)).to_bytes(4, "little")
            return restuff(bytes(b))
        if cls == "cmd_a_bit_cleared":
            return clear_a_bit(rng.choice(caps))
        if cls == "cmd_type_changed":  # the detector's own tagged frames turned into commands
            mine = [w for w in own if (f := fr.decode(w)).ok and f.tag is not None] or caps
            return set_type(rng.choice(mine), M.COMMAND)
        if cls == "cmd_duplicate_latest":
            return caps[-1]
        if cls in ("cmd_replay_old", "cmd_replay_after_power_cut"):
            return rng.choice(caps[:-1] if cls == "cmd_replay_old" else caps)
        if cls == "cmd_reflected":
            return rng.choice(own)
        if cls == "cmd_wrong_device":  # authentic, for the other detector
            return fresh(k=Key(C.key(C.DEV2)), device=C.DEV2)
        if cls == "fuzz_random_bytes":
            return rng.randbytes(rng.randint(1, 200)).replace(b"\x00", b"\x01")
        # fuzz_bit_flips: a new authentic command damaged on the way, half of them with the
        # CRC made right again; drawn again when the damage was all in the CRC (that is the
        # authentic command itself).
        good = fresh()
        while True:
            w = flip_bits(good[:-1], rng, rng.randint(1, 3)) + b"\x00"
            if rng.random() < 0.5 and cobs.decode(w[:-1]):
                w = restuff(body(w))
            raw = cobs.decode(w[:-1])
            if raw is None or raw[:-2] != body(good):
                return w

    for cls in DET_CLASSES:
        if cls.startswith("ack_"):
            continue
        controls[0] += 1
        controls[1] += control_command()
        if cls == "cmd_replay_after_power_cut":
            dev.cut()
            idle()
        for _ in range(per_class):
            w = command_input(cls)
            x0, hc0 = last["x"], last["hc"]
            rep = win(w)
            tried[cls] += 1
            if rep["x"] != x0 or rep["hc"] != hc0:
                accepted[cls] += 1
                idle()
            if M.RESULT in _types(rep["out"]) and cls != "cmd_duplicate_latest":
                answered[cls] += 1
        idle()

    # ACK classes: an event waits for its ACK (leakage on, well above any set value a forged
    # set_config could have put); nothing forged may deliver it.
    def wait_event() -> bool:
        win(res=LEAK_MA)
        for _ in range(60):
            if last["inf"]:
                return True
            win()
        return False

    skipped = []  # ACK classes not run: no event to attack (a forgery changed the settings?)

    def pending_event() -> fr.Frame:
        evs = [f for f in (fr.decode(w) for w in own) if f.ok and f.type == M.EVENT]
        return evs[-1]

    def ack_for(f: fr.Frame, enc: fr.Encoder, counter: int | None = None, auth=True) -> bytes:
        a = {"ack_type": "event", "ack_seq": f.seq, "ack_crc": f.crc}
        if not auth:
            return enc.message(M.ACK, 0, a)
        return enc.message(M.ACK, 0, a, auth=True, counter=counter or host_counter())

    def deliver_pending() -> bool:
        """Control: an authentic ACK of the pending event must deliver it."""
        hctr[0] = max(hctr[0], last["hc"])
        acked0 = last["acked"]
        w = ack_for(pending_event(), host)
        acks.append(w)
        win(w)
        return last["acked"] > acked0

    for cls in DET_CLASSES:
        if not cls.startswith("ack_"):
            continue
        # A new pending event for each class: the ones before delivered, the alarm reset by
        # a control command, the leakage back on. The earlier events' ACKs are old ones now.
        for _ in range(200):
            if not (last["inf"] or last["pend"]):
                break
            controls[0] += 1
            controls[1] += deliver_pending()
            idle(2)
        win(res=40)
        controls[0] += 1
        controls[1] += control_command()
        if not wait_event():
            skipped.append(cls)
            continue
        ev = pending_event()
        for _ in range(per_class):
            c = max(hctr[0], last["hc"]) + rng.randint(1, 1000)
            if cls == "ack_untagged":
                w = ack_for(ev, fr.Encoder(dev_id), auth=False)
            elif cls == "ack_random_tag":
                w = new_tag(ack_for(ev, fr.Encoder(dev_id, Key(key)), c), rng.randbytes(8))
            elif cls == "ack_wrong_key":
                w = ack_for(ev, fr.Encoder(dev_id, Key(rng.randbytes(32))), c)
            elif cls == "ack_replay_old":
                w = rng.choice(acks)
            else:  # ack_reflected: the detector's own frames back, as they are or made ACKs
                w = rng.choice(own)
                if rng.random() < 0.5:
                    w = set_type(w, M.ACK)
            acked0, inf0, x0 = last["acked"], last["inf"], last["x"]
            rep = win(w)
            tried[cls] += 1
            if rep["acked"] != acked0 or (inf0 and rep["inf"] != inf0) or rep["x"] != x0:
                accepted[cls] += 1
            if M.RESULT in _types(rep["out"]):
                answered[cls] += 1
    if last["inf"]:
        controls[0] += 1
        controls[1] += deliver_pending()
    dev.stop()
    return {
        "tried": dict(tried),
        "total": sum(tried.values()),
        "classes": len(tried),
        "accepted": sum(accepted.values()),
        "accepted_by": dict(accepted),
        "answered": sum(answered.values()),
        "answered_by": dict(answered),
        "controls": controls[0],
        "controls_accepted": controls[1],
        "exits": exits,
        "firmware_errors": last["err"],
        "command_kinds": [f["cmd"] for f in fields],
        "skipped": skipped,
    }


def flood_delay(tmp: Path, copies: int, windows: int, polled: bool = False) -> dict[str, Any]:
    """tests/security/test_detector_flood.py's SCRIPT: the firmware, an in-memory host that
    ACKs every event, `copies` of a captured command queued behind the pre-alarm's ACK."""
    d = Path(tempfile.mkdtemp(prefix=f"flood-{copies}-{int(polled)}-", dir=tmp))
    key = Key(flood.KEY)
    cmd = fr.Encoder(flood.DEVICE, key, lambda: 1).message(
        M.COMMAND, 0, {"cmd": "reset", "channel": "all"}, auth=True
    )
    poll = fr.Encoder(flood.DEVICE).message(M.POLL, 0, {})
    for name, text in provisioning.files(flood.DEVICE, flood.KEY.hex()).items():
        (d / name).write_text(text)
    script = flood.SCRIPT.format(
        cmd=cmd.hex(),
        copies=copies,
        polled=polled,
        device=flood.DEVICE,
        key=flood.KEY.hex(),
        poll=(b"\x00" + poll).hex(),
        windows=windows,
    )
    stdout = mpy.run(script, heapsize="8m", timeout=300, cwd=d)  # raises if it fails
    line = [x for x in stdout.splitlines() if x.startswith("RESULT ")][-1]
    logged, sent, max_read, errors = eval(line[7:])  # the script's own repr() of lists
    alarm_at = next((w for w, kind in logged if kind == 2), None)
    out = [w for w, t, kind in sent if t == M.EVENT and kind == 2]
    alarm_sent = out[0] if out else None
    return {
        "copies": copies,
        "windows": windows,
        "alarm_logged": alarm_at,
        "alarm_sent": alarm_sent,
        "delay_ms": None
        if alarm_sent is None or alarm_at is None
        else 100 * (alarm_sent - alarm_at),
        "onset_to_wire_ms": None if alarm_sent is None else 100 * (alarm_sent - 20),
        "results_sent": sum(1 for _, t, _ in sent if t == M.RESULT),
        "max_read_per_window": max_read,
        "errors": errors,
    }


# -- 4. events end to end --------------------------------------------------------------------------
class LossyDown:
    """The gateway's way back to the detector: frames dropped or duplicated on the way."""

    name = "lossy"

    def __init__(self, rng: random.Random, drop: float, dup: float):
        self.rng, self.drop, self.dup = rng, drop, dup
        self.buf = bytearray()
        self.n = Counter[str]()

    def send(self, device: int, wire: bytes, addr: object) -> None:
        self.n["sent"] += 1
        if self.rng.random() < self.drop:
            self.n["dropped"] += 1
            return
        k = 2 if self.rng.random() < self.dup else 1
        self.n["duplicated"] += k - 1
        self.buf += (b"\x00" + wire) * k

    def take(self) -> bytes:
        b, self.buf = bytes(self.buf), bytearray()
        return b


def events_campaign(
    tmp: Path,
    rng: random.Random,
    n_events: int,
    drop: float = 0.2,
    dup: float = 0.1,
    p_cut: float = 1 / 100,
    p_restart: float = 1 / 150,
    p_outage: float = 1 / 250,
    max_heal_windows: int = 12_000,
) -> dict[str, Any]:
    """Probabilities per 100 ms window; a gateway restart is down 0.5-5 s, a link outage
    (both ways) 1-60 s."""
    clock = C.Clock()
    saved = core.time
    core.time = clock  # type: ignore[assignment]
    try:
        with quiet_gateway():
            return _events(
                tmp, rng, n_events, drop, dup, p_cut, p_restart, p_outage, max_heal_windows, clock
            )
    finally:
        core.time = saved


def _events(
    tmp: Path,
    rng: random.Random,
    n_events: int,
    drop: float,
    dup: float,
    p_cut: float,
    p_restart: float,
    p_outage: float,
    max_heal: int,
    clock: C.Clock,
) -> dict[str, Any]:
    tmp.mkdir(parents=True, exist_ok=True)
    db = tmp / "events.db"
    down = LossyDown(rng, drop, dup)
    up: Counter[str] = Counter()
    crashes: Counter[str] = Counter()
    n: Counter[str] = Counter()  # chaos injected and stimuli given

    def guarded(what: str, fn, *args) -> Any:
        try:
            return fn(*args)
        except Exception as e:  # the gateway promises none
            crashes[f"{what}:{type(e).__name__}"] += 1
            return None

    def start_gw() -> tuple[Gateway, Store]:
        st = Store(db, "ev")
        return Gateway(C.registry(), st, name="ev"), st

    gw: Gateway | None
    gw, store = start_gw()
    gw_down = outage = 0  # windows left of a gateway restart, of a link outage
    dev = Device(tmp / "ev-flash", C.DEV, C.key(C.DEV))
    phase = windows = heal = 0
    by_command = True
    healing = False
    req: dict[str, Any] = {}
    while True:
        if not healing:
            # A cycle of 9 s: leakage on for 4 s (pre-alarm, alarm), off (clear), then the
            # alarm reset, by the gateway's command or the button, in turn.
            if phase == 0:
                req["res"] = 420
            elif phase == 40:
                req["res"] = 40
            elif phase == 60:
                try:
                    if not by_command or gw is None:
                        raise ValueError("button")
                    gw.command(C.DEV, {"cmd": "reset", "channel": "all"})
                    n["reset_commands"] += 1
                except ValueError:  # or no route yet: a restarted gateway has not heard it
                    req["btn"] = 1
                    n["reset_buttons"] += 1
                by_command = not by_command
            phase = (phase + 1) % 90
            n["cycles"] += phase == 0
        rx = down.take()
        if outage:
            n["outage_lost_down"] += rx.count(b"\x00") // 2
            rx = b""
        try:
            rep = dev.window(rx, **req)
        except DeviceGone:
            n["detector_exits"] += 1
            dev.start()
            continue
        req = {}
        windows += 1
        for w in rep["out"]:
            up["sent"] += 1
            if outage or gw is None:
                up["lost_outage" if outage else "lost_gateway_down"] += 1
                continue
            if rng.random() < drop:
                up["dropped"] += 1
                continue
            k = 2 if rng.random() < dup else 1
            up["duplicated"] += k - 1
            for _ in range(k):
                for seg in split_frames(w):
                    guarded("handle", gw.handle, seg, down, AUTH_ADDR)
        clock.advance(0.1)
        outage = max(0, outage - 1)
        if gw is not None:
            guarded("flush", gw.flush)
            guarded("tick", gw.tick)
        elif gw_down > 1:
            gw_down -= 1
        else:
            gw, store = start_gw()
        if not healing:
            if rng.random() < p_cut:
                n["detector_power_cuts"] += 1
                dev.cut()
            if rng.random() < p_outage:
                n["link_outages"] += 1
                outage = rng.randint(10, 600)
            if gw is not None and rng.random() < p_restart:
                if rng.random() < 0.5:
                    n["gateway_restarts"] += 1
                    guarded("close", gw.close)
                else:
                    n["gateway_kills"] += 1  # the unflushed batch dies with it
                store.close()
                gw, gw_down = None, rng.randint(5, 50)
            if rep["head"] >= n_events:
                healing = True  # no more chaos or leakage from now on; the losses go on
                req = {"res": 40}
        else:
            heal += 1
            done = not rep["pend"] and not rep["inf"]
            if (gw is not None and done and not gw.pending()) or heal >= max_heal:
                break
    final = dev.window(dump=1)
    dev.stop()
    if gw is not None:
        guarded("close", gw.close)
        store.close()
    logged = [r for r in final["log"] if r is not None]
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT counter, seq, kind, channel, value, threshold FROM events WHERE device=?",
        (C.DEV,),
    ).fetchall()
    con.close()
    want = Counter(
        (counter, seq, names.KIND_NAMES[kind], names.CHANNEL_NAMES[ch], value, thr)
        for _t, counter, seq, kind, ch, value, thr in logged
    )
    got = Counter(rows)
    unknown = sum(v for k, v in got.items() if k not in want)
    return {
        "asked": n_events,
        "generated": len(logged),
        "torn_records": len(final["log"]) - len(logged),
        "stored_once": sum(1 for k in want if got.get(k, 0) == 1),
        "lost": sum(1 for k in want if got.get(k, 0) == 0),
        "duplicated": sum(max(0, got.get(k, 0) - 1) for k in want) + unknown,
        "unknown_rows": unknown,
        "still_pending": final["pend"] != 0,
        "windows": windows,
        "heal_windows": heal,
        "kinds": dict(Counter(k[2] for k in want)),
        "uplink": dict(up),
        "downlink": dict(down.n),
        "chaos": dict(n),
        "crashes": sum(crashes.values()),
        "crash_kinds": dict(crashes),
        "detector_boots": dev.boots,
    }


# -- the bench -------------------------------------------------------------------------------------
def campaign(sizes: dict[str, int] | None = None, seed: int = SEED) -> dict[str, Any]:
    """Every part with its own generator (seed + k), so one part's size does not change the
    inputs of another."""
    sz = {**SIZES, **(sizes or {})}
    out: dict[str, Any] = {"seed": seed, "sizes": sz, "s": {}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="efd-bench-security-") as d:
        tmp = Path(d)

        def part(name: str, fn, *args) -> None:
            t = time.perf_counter()
            out[name] = fn(*args)
            out["s"][name] = round(time.perf_counter() - t, 2)

        part(
            "decoder",
            decoder_campaign,
            random.Random(seed),
            sz["decoder_random"],
            sz["decoder_flip"],
        )
        part("gateway", gateway_campaign, tmp, random.Random(seed + 1), sz)
        part("detector", detector_campaign, tmp, random.Random(seed + 2), sz["det_per_class"])
        for polled in (False, True):
            for copies in (0, sz["flood_copies"]):
                part(
                    f"flood_{copies}_{int(polled)}",
                    flood_delay,
                    tmp,
                    copies,
                    sz["flood_windows"],
                    polled,
                )
        part("events", events_campaign, tmp, random.Random(seed + 3), sz["events"])
    out["wall_s"] = time.perf_counter() - t0
    return out


def _flood_added(r: dict[str, Any], polled: bool) -> int | None:
    a = r[f"flood_0_{int(polled)}"]["delay_ms"]
    b = r[f"flood_{r['sizes']['flood_copies']}_{int(polled)}"]["delay_ms"]
    return None if a is None or b is None else b - a


def figures(r: dict[str, Any]) -> dict[str, int]:
    """The must-be-zero figures by name (MUST_BE_ZERO)."""
    g, dt, e = r["gateway"], r["detector"], r["events"]
    return {
        "decoder_exceptions": r["decoder"]["exceptions"],
        "gw_internal_error": g["internal_error"],
        "gw_crashes": g["crashes"],
        "gw_accepted": g["accepted"],
        "gw_rerouted": g["rerouted"],
        "det_accepted": dt["accepted"],
        "det_answered": dt["answered"],
        "det_exits": dt["exits"],
        "ev_lost": e["lost"],
        "ev_duplicated": e["duplicated"],
        "ev_crashes": e["crashes"],
    }


def ok(r: dict[str, Any]) -> bool:
    """Every must-be-zero figure zero, every control seen, the alarm delay bound met, all N
    events generated and drained: what `python -m bench.bench_security` exits 0 on."""
    return all(row.get("ok", True) for row in rows(r))


def rows(r: dict[str, Any]) -> list[dict]:
    z = figures(r)
    dec, g, dt, e = r["decoder"], r["gateway"], r["detector"], r["events"]

    def zero(name: str, key: str, unit: str, **extra: Any) -> dict:
        return {
            "name": name,
            "value": z[key],
            "unit": unit,
            "target": "0",
            "ok": z[key] == 0,
            **extra,
        }

    tried = ", ".join(f"{k} {v:,}" for k, v in sorted(g["tried"].items()))
    out = [
        {
            "name": "seed (fixed: the same inputs every run)",
            "value": r["seed"],
            "unit": "",
            "sizes": r["sizes"],
            "seconds": r["s"],
        },
        {
            "name": f"decoder: inputs tried ({dec['random']:,} random, {dec['flip']:,} bit-flipped;"
            " 3 directions + stream)",
            "value": dec["tried"],
            "unit": "inputs",
            "stream_bytes": dec["stream_bytes"],
        },
        zero(
            "decoder: exceptions raised", "decoder_exceptions", "exceptions", by_type=dec["by_type"]
        ),
        {
            "name": "decoder: valid frames flipped into other valid ones (CRC-16 misses)",
            "value": dec["flip_still_ok"],
            "unit": "frames",
        },
        {
            "name": f"gateway: datagrams tried ({tried})",
            "value": g["total"],
            "unit": "datagrams",
            "tried": g["tried"],
            "forged_kinds": g["forged_kinds"],
        },
        zero("gateway: internal_error (its per-frame guard)", "gw_internal_error", "errors"),
        zero(
            "gateway: crashes (exceptions escaping handle/flush/tick)",
            "gw_crashes",
            "exceptions",
            kinds=g["crash_kinds"],
        ),
        zero(
            "gateway: forged/replayed accepted (stored, new ACK, counter or mark moved)",
            "gw_accepted",
            "datagrams",
            by=g["accepted_by"],
            how=g["how"],
        ),
        zero(
            "gateway: commands re-routed by unauthenticated frames (SPEC 5)",
            "gw_rerouted",
            "datagrams",
            by=g["rerouted_by"],
        ),
        {
            "name": "gateway: authentic controls seen accepted / re-routed (harness not blind)",
            "value": f"{g['controls_seen']} / {g['controls_rerouted']}",
            "unit": "frames",
            "target": f"{g['controls']} / {g['controls']}",
            "ok": g["controls_seen"] == g["controls_rerouted"] == g["controls"] > 0,
        },
        {
            "name": "gateway: replays answered with the identical ACK (SPEC 7.3 H3, by design)",
            "value": g["reacks_identical"],
            "unit": "frames",
        },
        {
            "name": f"gateway: resync commands for replayed old frames ({g['resyncs']}), min gap",
            "value": round(g["resync_min_gap_s"], 1) if g["resync_min_gap_s"] is not None else "-",
            "unit": "s",
            "target": ">= 10 (SPEC 7.4)",
            "ok": g["resync_min_gap_s"] is None or g["resync_min_gap_s"] >= 10,
            "resyncs": g["resyncs"],
        },
        {
            "name": f"detector: forged/replayed/reflected/wrong-device frames tried "
            f"({dt['classes']} classes)",
            "value": dt["total"],
            "unit": "frames",
            "by_class": dt["tried"],
            "target": f"= {len(DET_CLASSES) * r['sizes']['det_per_class']}",
            "ok": not dt["skipped"],
            "skipped": dt["skipped"],
        },
        zero(
            "detector: accepted (command ran, host counter moved, event ACKed)",
            "det_accepted",
            "frames",
            by=dt["accepted_by"],
        ),
        zero(
            "detector: refused frames answered with a RESULT (SPEC 7.3)",
            "det_answered",
            "frames",
            by=dt["answered_by"],
        ),
        zero("detector: firmware process exits", "det_exits", "exits"),
        {
            "name": "detector: authentic controls accepted (harness not blind)",
            "value": dt["controls_accepted"],
            "unit": "frames",
            "target": f"= {dt['controls']}",
            "ok": dt["controls_accepted"] == dt["controls"] > 0,
        },
    ]
    copies = r["sizes"]["flood_copies"]
    for polled, link in ((False, "UDP"), (True, "RS-485 polled")):
        for c in (0, copies):
            f = r[f"flood_{c}_{int(polled)}"]
            label = f"{c:,}-copy replay flood" if c else "no flood"
            keep = ("onset_to_wire_ms", "results_sent", "max_read_per_window", "errors")
            out.append(
                {
                    "name": f"detector, {link}: alarm logged -> on the wire, {label}",
                    "value": f["delay_ms"] if f["delay_ms"] is not None else "never",
                    "unit": "ms",
                    **{k: f[k] for k in keep},
                }
            )
        added = _flood_added(r, polled)
        out.append(
            {
                "name": f"detector, {link}: alarm report delay added by the flood",
                "value": added if added is not None else "never",
                "unit": "ms",
                "target": "<= 100 (one window)",
                "ok": added is not None and added <= 100,
            }
        )
    ev_ok = e["generated"] >= e["asked"] and not e["still_pending"]
    out += [
        {
            "name": f"events: generated (detector log; asked {e['asked']})",
            "value": e["generated"],
            "unit": "events",
            "target": f">= {e['asked']}",
            "ok": ev_ok,
            "kinds": e["kinds"],
            "chaos": e["chaos"],
            "uplink": e["uplink"],
            "downlink": e["downlink"],
            "windows": e["windows"],
            "heal_windows": e["heal_windows"],
        },
        {
            "name": "events: stored exactly once",
            "value": e["stored_once"],
            "unit": "events",
            "target": f"= {e['generated']}",
            "ok": e["stored_once"] == e["generated"] and ev_ok,
        },
        zero("events: lost", "ev_lost", "events", still_pending=e["still_pending"]),
        zero("events: duplicated", "ev_duplicated", "events", unknown_rows=e["unknown_rows"]),
        zero(
            "events: gateway crashes during the run",
            "ev_crashes",
            "exceptions",
            kinds=e["crash_kinds"],
        ),
        {
            "name": "campaign wall time (shared machine: context)",
            "value": round(r["wall_s"], 1),
            "unit": "s",
            "seconds": r["s"],
        },
    ]
    for row in out:
        row["seed"] = r["seed"]
    return out


def report(r: dict[str, Any]) -> None:
    """The explanation and the per-class figures behind the summary rows."""
    print(__doc__)
    print(f"seed {r['seed']}; sizes {r['sizes']}; seconds per part {r['s']}")
    g = r["gateway"]
    acc: Counter[str] = Counter()
    rer: Counter[str] = Counter()
    for k, v in g["accepted_by"].items():
        acc[k.split(":")[0]] += v
    for k, v in g["rerouted_by"].items():
        rer[k.split(":")[0]] += v
    print("\ngateway datagram path        tried  accepted  re-routed")
    for cat, n in sorted(g["tried"].items()):
        print(f"  {cat:<24} {n:>9,}  {acc[cat]:>8}  {rer[cat]:>9}")
    print(f"  forged, by kind: {g['forged_kinds']}")
    if g["accepted_by"] or g["rerouted_by"]:
        print(f"  ACCEPTED: {g['accepted_by']} ({g['how']}); RE-ROUTED: {g['rerouted_by']}")
    print(f"  rejections by reason: {g['rejected']}")
    dt = r["detector"]
    print("\ndetector (firmware, unix port)  tried  accepted  answered")
    for cls, n in dt["tried"].items():
        print(
            f"  {cls:<28} {n:>5}  {dt['accepted_by'].get(cls, 0):>8}"
            f"  {dt['answered_by'].get(cls, 0):>8}"
        )
    print(
        f"  command kinds forged: {dt['command_kinds']}; authentic controls "
        f"{dt['controls_accepted']}/{dt['controls']} accepted"
    )
    e = r["events"]
    print(
        f"\nevents: {e['generated']} logged, {e['stored_once']} stored once, {e['lost']} lost, "
        f"{e['duplicated']} duplicated; {e['windows']} windows ({e['heal_windows']} to drain "
        f"after the chaos); chaos {e['chaos']}; uplink {e['uplink']}; downlink "
        f"{e['downlink']}; kinds {e['kinds']}"
    )


def run() -> list[dict]:
    r = campaign()
    report(r)
    return rows(r)


if __name__ == "__main__":
    from bench.__main__ import print_table

    res = campaign()
    report(res)
    print_table([{"group": "security", **row} for row in rows(res)])
    sys.exit(0 if ok(res) else 1)
