"""Fuzzing the gateway's datagram entry point (Gateway.handle, then flush and tick): random
bytes, mutations of the golden vectors (protocol/vectors/vectors.json, their device registered
with the vectors' key, so the unmutated ones authenticate) and of valid HELLOs and EVENTs,
replays in any order. Nothing escapes, nothing is an internal error, and the host counters
stay bounded: below 2^32, and never further ahead of the clock (or of an authentic HELLO)
than one per distinct event ACKed plus one `resync` per device per 10 s (SPEC.md 7.4);
replays add nothing else."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import frame as fr
from protocol import messages as M
from tests.security.common import (
    DEV,
    DEV2,
    U32,
    Clock,
    Link,
    key,
    tagged_hello,
    untagged_hello,
)
from tools.fleet.detector import VirtualDetector
from tools.gateway import core
from tools.gateway.core import Gateway, host_counter_floor
from tools.gateway.registry import Device
from tools.gateway.store import Store

ROOT = Path(__file__).resolve().parents[2]
_V = json.loads((ROOT / "protocol" / "vectors" / "vectors.json").read_text())
VDEV = 305419896
VECTOR_DEVICE = Device(VDEV, "vectors", "Sha County", "hotel", "", bytes.fromhex(_V["test_key"]))


def _pool() -> list[bytes]:
    out = [bytes.fromhex(v["hex"]) for v in _V["vectors"]]
    for d in (DEV, DEV2):
        det = VirtualDetector(d, key(d), retry_s=0.0)
        for i in range(3):  # three authentic events each, rising counters
            det.raise_event(2, 0, 320 + i, 300)
            out.append(det.uplink(float(i), 1000 + i) or b"")
            det.inflight = None
        out.append(det.telemetry(1000))
        out.append(untagged_hello(d, 0xFFFFFFFF))
        out.append(untagged_hello(d, 12345))
        out.append(tagged_hello(d, 0xFFFFFFFF - 3, counter=7 << 16))
    return out


POOL = _pool()
AUTH_HELLO_MAX = 0xFFFFFFFF - 3
STATS: list[dict[str, int]] = []  # per example, for a look at what the fuzzer reached

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 300), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 300), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 300)),
    st.tuples(st.just("insert"), st.integers(0, 300), st.binary(min_size=1, max_size=8)),
)


def mutate(b: bytes, muts: list) -> bytes:
    x = bytearray(b)
    for m in muts:
        if not x:
            break
        i = m[1] % len(x)
        if m[0] == "flip":
            x[i] ^= 1 << m[2]
        elif m[0] == "set":
            x[i] = m[2]
        elif m[0] == "cut":
            del x[i:]
        else:
            x[i:i] = m[2]
    return bytes(x)


op = st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=300)),
    st.tuples(st.just("frame"), st.integers(0, len(POOL) - 1)),
    st.tuples(
        st.just("mutated"),
        st.integers(0, len(POOL) - 1),
        st.lists(mutation, min_size=1, max_size=4),
    ),
    st.tuples(st.just("batch"), st.lists(st.integers(0, len(POOL) - 1), min_size=2, max_size=4)),
    st.tuples(st.just("flush")),
    st.tuples(st.just("time"), st.floats(0, 5)),
)


@settings(max_examples=150)
@given(st.lists(op, min_size=1, max_size=40))
def test_no_datagram_escapes_or_unbounds_the_counters(ops):
    clock = Clock()
    link = Link()
    devs = {d: Device(d, f"d{d}", "Sha County", "hotel", "", key(d)) for d in (DEV, DEV2)}
    devs[VDEV] = VECTOR_DEVICE
    saved = core.time
    core.time = clock  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "gw.db", "fz")
            gw = Gateway(devs, store, name="fz")
            for o in ops:
                if o[0] == "bytes":
                    gw.handle(o[1], link, ("198.51.100.7", 9))
                elif o[0] == "frame":
                    gw.handle(POOL[o[1]], link)
                elif o[0] == "mutated":
                    gw.handle(mutate(POOL[o[1]], o[2]), link)
                elif o[0] == "batch":  # several frames in one datagram, split like UdpLink
                    for seg in b"".join(POOL[i] for i in o[1]).split(b"\x00"):
                        if seg:
                            gw.handle(seg, link)
                elif o[0] == "flush":
                    gw.flush()
                else:
                    clock.advance(o[1])
                    gw.tick()
            gw.flush()
            gw.close()
            store.close()
    finally:
        core.time = saved
    assert gw.stats.get("internal_error", 0) == 0
    STATS.append(dict(gw.stats))
    # Every frame sent is an ACK or the gateway's own `resync` COMMAND (an authentic event or
    # HELLO below its mark, SPEC.md section 7.4), with a counter in 1..2^32-1; a new counter
    # per device only for a new ACK frame (replays get an earlier frame again) or a resync,
    # at most one per device per RESYNC_EVERY_S, rising.
    seen: dict[int, list[int]] = {}
    distinct: dict[bytes, int] = {}
    resyncs: dict[int, int] = {}
    for w in link.sent:
        f = fr.decode(w)
        assert f.ok and 0 < f.counter < U32
        assert f.type == M.ACK or (f.type == M.COMMAND and f.fields["cmd"] == "resync"), f
        if w not in distinct:
            distinct[w] = f.counter
            seen.setdefault(f.device, []).append(f.counter)
            if f.type == M.COMMAND:
                resyncs[f.device] = resyncs.get(f.device, 0) + 1
    accepted_events = gw.stats.get("stored:event", 0) + gw.stats.get("duplicate:event_db", 0)
    assert len(distinct) - sum(resyncs.values()) <= accepted_events
    elapsed = clock.mono - Clock().mono
    for n in resyncs.values():
        assert n <= 1 + elapsed // core.RESYNC_EVERY_S
    for d, cs in seen.items():
        assert cs == sorted(set(cs))
        base = max(host_counter_floor(clock.t), AUTH_HELLO_MAX if d != VDEV else 0)
        assert cs[-1] <= base + len(cs)
    for s in gw.devs.values():
        assert 0 <= s.host_ctr < U32
        if s.dev.device == VDEV:  # only untagged HELLOs for it: the clock is the bound
            assert s.host_ctr <= host_counter_floor(clock.t) + len(seen.get(VDEV, []))
