"""Serial monitor for a detector's protocol link (RS-485 adapter, or the virtual detector's
link pty): prints every decoded frame as a JSON line, ACKs events, sends authenticated commands.

    python -m tools.monitor PORT --device ID --key-file KEY watch
    python -m tools.monitor PORT --device ID --key-file KEY reset|selftest|get-config|reboot
    python -m tools.monitor PORT --device ID --key-file KEY set-config leak_set_ma=300 ...
    python -m tools.monitor PORT --device ID --key-file KEY time-sync | snapshot
    python -m tools.monitor PORT --device ID --key-file KEY link-status

Events are ACKed once their tag verifies and delivered (printed) once: dedup on (device, seq,
crc) as protocol/SPEC.md §8 asks, across runs too (the last events delivered are kept in
--state). A retransmitted event whose counter is no longer above the last one seen (it was
logged before a RESULT went out, or before a reboot) still verifies, so it is ACKed and dedup
decides. The downlink counter is kept in --state (default ~/.efd-monitor.json) and never
restarts below the current time in quarter-seconds since 2020, so a lost state file cannot make
commands look like replays.

Every frame carries "time_utc", the detector's clock; while that clock is unset (time 0, e.g.
the virtual device without --rtc, or before time-sync) it carries "clock": "unset" and
"rx_utc", the host's reception time, instead. set-config refuses unknown settings and values
outside the detector's ranges before sending anything (exit status 2), and combinations that
make an alarm impossible (a set value beyond its input's full scale at the detector's gain,
checked against the detector's settings fetched first), naming both settings; a "bad_argument"
RESULT names the refused setting in "param" ("a+b" for a refused combination).

link-status prints the link as {"link": "wifi", "rssi_dbm": -61} (the WiFi signal strength in
dBm; "wifi_disconnected" or "not_wifi", e.g. RS-485, with "rssi_dbm": null): the
link_status command's RESULT (protocol/SPEC.md §5.9); --raw prints that RESULT instead.
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
from protocol import host
from protocol import messages as M
from protocol.auth import Key
from protocol.host import HOST_REQUIRES, parse_key, parse_settings, physical
from protocol.session import Peer
from protocol.stream import StreamDecoder

COMMAND_TIMEOUT_S = 8.0  # resent every 2 s meanwhile (SPEC.md §8); a self-test gets 1.5 times
HINT_AFTER_S = 3.0  # a POLL is answered at once (SPEC.md §9): silence this long means trouble


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
        self.ctr = int((time.time() - host.EPOCH_UNIX) * 4)
        # Events delivered, by (device, seq, crc): the last SEEN_KEPT are kept in the state
        # file, so a retransmission whose ACK was lost is not delivered again by the next run.
        self.seen: dict[tuple[int, int, int], None] = {}
        if state and state.exists():
            with contextlib.suppress(ValueError, KeyError, OSError, TypeError):
                saved = json.loads(state.read_text())
                self.ctr = max(self.ctr, int(saved["counter"]))
                for k in saved.get("seen", []):
                    self.seen[(int(k[0]), int(k[1]), int(k[2]))] = None
        self.events: list[dict] = []  # delivered (deduplicated) events, in arrival order
        self.frames: list[dict] = []  # every frame decoded (telemetry, results, ...)
        self.errors: list[dict] = []
        self.others: set[int] = set()  # ids of other devices heard (a wrong --device?)
        self.ack_events = True

    SEEN_KEPT = 16  # one event in flight per detector (SPEC.md §8): plenty

    def _counter(self) -> int:
        self.ctr += 1
        self._save()
        return self.ctr

    def _save(self) -> None:
        if self.state:
            seen = [list(k) for k in self.seen][-self.SEEN_KEPT :]
            self.state.write_text(json.dumps({"counter": self.ctr, "seen": seen}))

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
            self.others.add(f.device)
            return None
        err = self.peer.check(f)
        d = f.to_dict()
        # The detector's clock, or (unset: time 0) the host's reception time, labelled so.
        if f.time:
            d["time_utc"] = _utc(f.time + host.EPOCH_UNIX)
        else:
            d["clock"] = "unset"
            d["rx_utc"] = _utc(time.time(), ms=True)
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
                self.seen[key] = None
                self.events.append(d)
                self._save()
        elif err is not None and not verified and f.type in HOST_REQUIRES:
            self.errors.append(err.to_dict())
            return None
        self.frames.append(d)
        return d

    def silence_hint(self) -> str:
        """Why nothing from the device arrived, as far as this link can tell."""
        bad_auth = [e for e in self.errors if e.get("error") in ("bad_tag", "no_tag")]
        if bad_auth:
            return f"{len(bad_auth)} frame(s) from it failed authentication: wrong key?"
        if self.frames:
            return (
                "the detector is heard but did not answer: wrong key? (it drops a command "
                "whose tag does not verify, without a word)"
            )
        if self.others:
            ids = ", ".join(f"0x{d:08x}" for d in sorted(self.others))
            return f"frames came from other device ids ({ids}): wrong --device?"
        if self.errors:
            return (
                f"{len(self.errors)} undecodable frame(s): is this the link port (not the "
                "console), at the right baud rate?"
            )
        return "nothing at all: is this the detector's link port, and is it running?"

    def send(self, typ: int, fields: dict, auth: bool = True) -> bytes:
        wire = b"\x00" + self.enc.message(
            typ, int(time.time()) - host.EPOCH_UNIX, fields, auth=auth
        )
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


def device_config(link: HostLink) -> dict | None:
    """The detector's settings {name: value} (a get_config command), None if it did not
    answer with a CONFIG."""
    res = link.command({"cmd": "get_config"}, timeout=COMMAND_TIMEOUT_S)
    if res is None or res["status"] != "ok":
        return None
    # The CONFIG follows the RESULT: at once on a point-to-point link, in reply to the next
    # POLL on a polled bus (SPEC.md §9).
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        for d in reversed(link.frames):
            if d["type"] == "config":
                return {name: value for name, value in d["params"]}
        link.poll()
        link.pump(0.3)
    return None


def _utc(unix: float, ms: bool = False) -> str:
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(unix))
    return text + (f".{int(unix * 1000) % 1000:03d}Z" if ms else "Z")


def _device_id(text: str) -> int:
    try:
        v = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a device id, e.g. 0x12345678") from None
    if not 0 <= v <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"{text!r}: a device id is 32 bits")
    return v


def _shown(d: dict) -> bool:
    """Command mode prints the frames a command brings (CONFIG, SNAPSHOT) and events, each
    delivered event once (a retransmission is ACKed, not shown again)."""
    if d["type"] == "event":
        return bool(d["new"])
    return d["type"] in ("config", "snapshot")


RAW = [False]  # --raw: the wire's integers instead of physical units


def _print(d: dict) -> None:
    """One JSON line: physical units (protocol.host.physical: °C, A, mA, fault names, with
    `units`), or the wire's integers with --raw."""
    if not RAW[0] and "type" in d and "error" not in d:
        d = physical(d)
    print(json.dumps(d, default=lambda b: b.hex()), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tools.monitor",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    ap.add_argument("port", help="serial port (e.g. /dev/ttyUSB0 or the virtual link pty)")
    ap.add_argument(
        "--device", required=True, type=_device_id, help="device id (decimal or 0x hex)"
    )
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--key", help="device key, 64 hex digits")
    g.add_argument("--key-file", help="file holding the key as 64 hex digits")
    ap.add_argument(
        "--state",
        type=Path,
        default=Path.home() / ".efd-monitor.json",
        metavar="FILE",
        help="where the downlink command counter and the last events delivered are kept "
        "between runs (default: %(default)s)",
    )
    ap.add_argument("--seconds", type=float, default=0, help="watch: stop after this long")
    ap.add_argument(
        "--raw",
        action="store_true",
        help="print the wire's integers (0.1 degC, 0.01 A, codes) instead of physical units",
    )
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
            "link-status",
        ],
        help="watch: print what the detector sends; link-status: the link and its WiFi RSSI "
        "in dBm; the others send that command and print its RESULT (and the CONFIG, SNAPSHOT "
        "or events that come with it)",
    )
    ap.add_argument("settings", nargs="*", help="set-config: NAME=VALUE ...")
    a = ap.parse_args(argv)
    RAW[0] = a.raw
    try:
        key_hex = a.key if a.key else Path(a.key_file).read_text().strip()
        key = parse_key(key_hex)
        if a.action == "set-config" and not a.settings:
            raise ValueError("set-config needs NAME=VALUE arguments, e.g. leak_set_ma=300")
        if a.action != "set-config" and a.settings:
            raise ValueError(f"{a.action} takes no NAME=VALUE arguments")
        params = parse_settings(a.settings) if a.action == "set-config" else []
        link = HostLink(a.port, a.device, key, a.state)
    except (ValueError, OSError, serial.SerialException) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    fields: dict = {
        "reset": {"cmd": "reset", "channel": "all"},
        "selftest": {"cmd": "selftest"},
        "get-config": {"cmd": "get_config"},
        "reboot": {"cmd": "reboot"},
        "time-sync": {"cmd": "time_sync", "set_time": host.efd_time(int(time.time()))},
        "snapshot": {"cmd": "snapshot", "snap_id": 0},
        "set-config": {"cmd": "set_config", "params": params},
        "link-status": {"cmd": "link_status"},
    }.get(a.action, {})
    try:
        if a.action == "watch":
            return _watch(link, a.port, a.seconds)
        if a.action == "set-config":
            # The cross-field rules (efd.config) against the detector's own settings, before
            # anything changes: a refused combination is named here, both settings.
            # (No CONFIG: the detector is not answering; the command below says so.)
            current = device_config(link)
            link.frames.clear()
            try:
                if current is not None:
                    host.check_combination(params, current)
            except ValueError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
        res = link.command(
            fields, timeout=COMMAND_TIMEOUT_S * (1.5 if a.action == "selftest" else 1)
        )
        link.pump(0.5)  # the CONFIG or SNAPSHOT that follows a RESULT
        for d in link.frames:
            if d is not res and _shown(d):
                _print(d)
        if res is None:
            print(f"error: no answer from the detector: {link.silence_hint()}", file=sys.stderr)
            return 1
        if a.action == "link-status" and res["status"] == "ok" and not RAW[0]:
            ls = host.link_status(res["value"])
            print(json.dumps({"link": ls["link"], "rssi_dbm": ls["rssi_dbm"]}), flush=True)
            return 0
        _print(res)
        if res["status"] == "bad_argument" and "param" in res:
            print(
                f"error: the detector refused {res['param']} (parameter id {res['value']})",
                file=sys.stderr,
            )
        return 0 if res["status"] == "ok" else 1
    except KeyboardInterrupt:
        return 130
    except serial.SerialException as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _watch(link: HostLink, port: str, seconds: float) -> int:
    """Print every frame from the device as it arrives, each delivered event once."""
    until = f" for {seconds:g} s" if seconds else " (Ctrl-C to stop)"
    print(f"listening on {port} for device 0x{link.device:08x}{until}", file=sys.stderr, flush=True)
    link.poll()  # a POLL asks for telemetry now (and any event waiting): no 10 s of silence
    start = time.monotonic()
    end = start + seconds if seconds else float("inf")
    heard = hinted = False
    while time.monotonic() < end:
        for d in link.pump(min(0.5, max(0.0, end - time.monotonic()))):
            heard = True
            if d["type"] != "event" or d["new"]:
                _print(d)
        link.frames.clear()  # printed: a long watch keeps no history
        link.events.clear()
        if not heard and not hinted and time.monotonic() - start >= HINT_AFTER_S:
            hinted = True
            print(
                f"still nothing from device 0x{link.device:08x} after {HINT_AFTER_S:g} s: "
                + link.silence_hint(),
                file=sys.stderr,
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
