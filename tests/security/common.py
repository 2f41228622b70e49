"""Shared pieces of the adversarial suite: a registry with keys, a link that records what the
gateway sends, a clock the tests move, and frames an attacker on the network can produce."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from protocol import frame as fr
from protocol import messages as M
from protocol.auth import Key
from tools.gateway import core
from tools.gateway.core import Gateway
from tools.gateway.registry import Device, derive_key
from tools.gateway.store import EPOCH_UNIX, Store

SECRET = b"security-suite-fleet-secret"
DEV = 100001
DEV2 = 100002
U32 = 1 << 32
T0 = EPOCH_UNIX + 200_000_000.0  # mid-2026 on the wire's 2020 epoch


def key(device: int) -> bytes:
    return derive_key(SECRET, device)


def registry(*extra: Device) -> dict[int, Device]:
    devs = {d: Device(d, f"d{d}", "Sha County", "hotel", "", key(d)) for d in (DEV, DEV2)}
    for d in extra:
        devs[d.device] = d
    return devs


class Link:
    """Records every frame the gateway sends; `fail` makes send() raise it (a broken link or a
    bug in one)."""

    name = "test"

    def __init__(self, fail: BaseException | None = None):
        self.sent: list[bytes] = []
        self.fail = fail

    def send(self, device: int, wire: bytes, addr: object) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.append(wire)


class AddrLink:
    """Records (wire, addr) for every frame the gateway sends (UDP-like: the address matters,
    SPEC.md section 5: commands go where authenticated frames came from)."""

    name = "udp"

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def send(self, device: int, wire: bytes, addr: Any) -> None:
        self.sent.append((wire, addr))

    def frames(self, typ: int) -> list[tuple[fr.Frame, Any]]:
        out = [(fr.decode(w), a) for w, a in self.sent]
        return [(f, a) for f, a in out if f.type == typ]

    def commands(self) -> list[tuple[fr.Frame, Any]]:
        return self.frames(M.COMMAND)

    def resyncs(self) -> list[tuple[int, Any]]:
        """(mark, addr) of every resync COMMAND sent."""
        return [(f.fields["mark"], a) for f, a in self.commands() if f.fields["cmd"] == "resync"]


class Clock:
    """Stands in for the `time` module inside tools.gateway.core (time() and monotonic())."""

    def __init__(self, t: float = T0):
        self.t = t
        self.mono = 1000.0

    def time(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.mono

    def advance(self, s: float) -> None:
        self.t += s
        self.mono += s


def use_clock(monkeypatch, clock: Clock) -> None:
    monkeypatch.setattr(core, "time", clock)


def gateway(tmp: Path, name: str = "gw", db: str = "gw.db", **devs: Device) -> Gateway:
    st = Store(tmp / db, name)
    return Gateway(registry(*devs.values()), st, name=name)


def untagged_hello(device: int, host_counter: int, now_wire: int = 0) -> bytes:
    """What anyone on the network can send: HELLO needs no tag (SPEC.md section 5)."""
    return fr.Encoder(device).message(
        M.HELLO, now_wire,
        {"fw": [1, 0, 0], "reset_cause": "power_on", "boot_count": 1, "config_hash": 0,
         "host_counter": host_counter},
    )  # fmt: skip


def tagged_hello(device: int, host_counter: int, counter: int, now_wire: int = 0) -> bytes:
    """A HELLO the detector itself signed (it holds the key)."""
    return fr.Encoder(device, Key(key(device))).message(
        M.HELLO, now_wire,
        {"fw": [1, 0, 0], "reset_cause": "power_on", "boot_count": 1, "config_hash": 0,
         "host_counter": host_counter},
        auth=True, counter=counter,
    )  # fmt: skip


def ack_counter(wire: bytes) -> int:
    f = fr.decode(wire)
    assert f.ok and f.type == M.ACK, f
    return int(f.counter)
