"""Serial monitor for a detector's protocol link (RS-485 adapter, or the virtual detector's
link pty): prints every decoded frame as a JSON line, ACKs events, sends authenticated commands.

    python -m tools.monitor PORT --device ID --key-file KEY watch
    python -m tools.monitor PORT --device ID --key-file KEY reset|selftest|get-config|reboot
    python -m tools.monitor PORT --device ID --key-file KEY set-config leak_set_ma=300 ...
    python -m tools.monitor PORT --device ID --key-file KEY time-sync | snapshot

Events are ACKed once their tag verifies and delivered (printed) once: dedup on (device, seq,
crc) as protocol/SPEC.md §8 asks. A retransmitted event whose counter is no longer above the last
one seen (it was logged before a RESULT went out, or before a reboot) still verifies, so it is
ACKed and dedup decides. The downlink counter is kept in --state (default ~/.efd-monitor.json)
and never restarts below the current time in quarter-seconds since 2020, so a lost state file
cannot make commands look like replays.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import serial

from protocol import frame as fr
from protocol import messages as M
from protocol.auth import Key
from protocol.host import HOST_REQUIRES, parse_settings
from protocol.session import Peer
from protocol.stream import StreamDecoder


class HostLink:
    """Host side of one detector's link: decode, verify, ACK + dedup events, send commands."""

    def __init__(self, port, device: int, key: bytes, state: Path | None = None):
        self.ser = port if hasattr(port, "read") else serial.Serial(port, 115200, timeout=0.05)
        self.device = device
        self.key = Key(key)
        self.enc = fr.Encoder(device, self.key, self._counter)
        self.peer = Peer(self.key, 0, HOST_REQUIRES, uplink=True)
        self.dec = StreamDecoder()
        self.state = state
        self.ctr = int((time.time() - fr.EPOCH_UNIX) * 4)
        if state and state.exists():
            with contextlib.suppress(ValueError, KeyError, OSError):
                self.ctr = max(self.ctr, int(json.loads(state.read_text())["counter"]))
        self.seen: set[tuple[int, int, int]] = set()
        self.events: list[dict] = []  # delivered (deduplicated) events, in arrival order
        self.frames: list[dict] = []  # every frame decoded (telemetry, results, ...)
        self.errors: list[dict] = []
        self.ack_events = True

    def _counter(self) -> int:
        self.ctr += 1
        if self.state:
            self.state.write_text(json.dumps({"counter": self.ctr}))
        return self.ctr

    def pump(self, duration: float = 0.0) -> list[dict]:
        """Read for `duration` seconds (at least one read); returns the frames decoded."""
        out = []
        end = time.monotonic() + duration
        while True:
            data = self.ser.read(4096)
            if data:
                for f in self.dec.feed(data):
                    d = self._handle(f)
                    if d is not None:
                        out.append(d)
            if time.monotonic() >= end:
                return out

    def _handle(self, f) -> dict | None:
        if not f.ok:
            self.errors.append(f.to_dict())
            return None
        if f.device != self.device:
            return None
        err = self.peer.check(f)
        d = f.to_dict()
        verified = err is None or err.code in (fr.E_DUPLICATE, fr.E_REPLAY)
        if f.type == M.EVENT:
            if not verified:
                self.errors.append(err.to_dict())
                return None
            if self.ack_events:
                self.send(M.ACK, {"ack_type": M.EVENT, "ack_seq": f.seq, "ack_crc": f.crc})
            key = (f.device, f.seq, f.crc)
            d["new"] = key not in self.seen
            if d["new"]:
                self.seen.add(key)
                self.events.append(d)
        elif err is not None and not verified and f.type in HOST_REQUIRES:
            self.errors.append(err.to_dict())
            return None
        self.frames.append(d)
        return d

    def send(self, typ: int, fields: dict, auth: bool = True) -> bytes:
        wire = b"\x00" + self.enc.message(typ, int(time.time()) - fr.EPOCH_UNIX, fields, auth=auth)
        self.ser.write(wire)
        return wire

    def command(self, fields: dict, timeout: float = 8.0, auth: bool = True) -> dict | None:
        """Send a command, resend it every 2 s (SPEC.md §8) until its RESULT arrives."""
        wire = self.send(M.COMMAND, fields, auth)
        counter = self.ctr if auth else None
        end = time.monotonic() + timeout
        resend = time.monotonic() + 2.0
        while time.monotonic() < end:
            for d in self.pump(0.05):
                if d["type"] == "result" and d["cmd_counter"] == counter:
                    return d
            if time.monotonic() >= resend:
                self.ser.write(wire)  # byte-identical: the detector answers a duplicate once
                resend = time.monotonic() + 2.0
        return None

    def poll(self) -> None:
        self.send(M.POLL, {}, auth=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tools.monitor",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    ap.add_argument("port", help="serial port (e.g. /dev/ttyUSB0 or the virtual link pty)")
    ap.add_argument("--device", required=True, type=lambda s: int(s, 0), help="device id")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--key", help="device key, 64 hex digits")
    g.add_argument("--key-file", help="file holding the key as 64 hex digits")
    ap.add_argument("--state", type=Path, default=Path.home() / ".efd-monitor.json")
    ap.add_argument("--seconds", type=float, default=0, help="watch: stop after this long")
    ap.add_argument(
        "action",
        choices=[
            "watch",
            "reset",
            "selftest",
            "set-config",
            "get-config",
            "time-sync",
            "snapshot",
            "reboot",
        ],
    )
    ap.add_argument("settings", nargs="*", help="set-config: NAME=VALUE ...")
    a = ap.parse_args(argv)
    try:
        key_hex = a.key if a.key else Path(a.key_file).read_text().strip()
        key = bytes.fromhex(key_hex)
        if len(key) != 32:
            raise ValueError("the key must be 32 bytes (64 hex digits)")
        params = parse_settings(a.settings) if a.action == "set-config" else []
        if a.action == "set-config" and not params:
            raise ValueError("set-config needs NAME=VALUE arguments")
        link = HostLink(a.port, a.device, key, a.state)
    except (ValueError, OSError, serial.SerialException) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    fields: dict = {
        "reset": {"cmd": "reset", "channel": "all"},
        "selftest": {"cmd": "selftest"},
        "get-config": {"cmd": "get_config"},
        "reboot": {"cmd": "reboot"},
        "time-sync": {"cmd": "time_sync", "set_time": fr.efd_time(int(time.time()))},
        "snapshot": {"cmd": "snapshot", "snap_id": 0},
        "set-config": {"cmd": "set_config", "params": params},
    }.get(a.action, {})
    try:
        if a.action == "watch":
            end = time.monotonic() + a.seconds if a.seconds else float("inf")
            while time.monotonic() < end:
                for d in link.pump(0.5):
                    print(json.dumps(d, default=lambda b: b.hex()), flush=True)
            return 0
        res = link.command(fields, timeout=12.0 if a.action == "selftest" else 8.0)
        for d in link.pump(0.5) + [x for x in link.frames if x is not res]:
            if d.get("type") in ("config", "snapshot", "event"):
                print(json.dumps(d), flush=True)
        if res is None:
            print(
                "error: no answer from the detector (link down, wrong device id or key?)",
                file=sys.stderr,
            )
            return 1
        print(json.dumps(res), flush=True)
        return 0 if res["status"] == "ok" else 1
    except KeyboardInterrupt:
        return 130
    except serial.SerialException as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
