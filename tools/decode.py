"""Decode EFD protocol frames into JSON lines (or a table) for integrators.

Sources (one per run): hex strings as arguments, hex lines on stdin (the default), a binary
capture file (-f), a serial port (-s, pyserial; any pyserial URL such as loop:// works) or a
UDP port (-u). Every frame becomes one JSON object on stdout, values in physical units (°C, A,
mA, fault names; a "units" field says which) or with --raw the wire's integers (0.1 °C,
0.01 A, codes) as SPEC.md and the golden vectors have them; a bad frame becomes an object
with "error" and "reason" and decoding goes on. Exit status: 0 when every input could be read,
1 if some hex input was malformed, 2 for usage errors (bad file, port, key: a key is 64 hex
digits).

examples (the frames are protocol/vectors/vectors.json's, under its test key 000102...1f):
  # a TELEMETRY frame (SPEC.md section 11.1), as JSON, then as a readable line
  python -m tools.decode 0722785634120105c2eb0b7b02ea02fb0bceffc802d2046004ed0304022cea00
  python -m tools.decode --pretty 0722785634120105c2eb0b7b02ea02fb0bceffc802d2046004ed0304022cea00
  # the same with the wire's integers (temp_dc 234 = 23.4 degC), as in the golden vectors
  python -m tools.decode --raw 0722785634120105c2eb0b7b02ea02fb0bceffc802d2046004ed0304022cea00
  # hex lines on stdin (the trailing 00 delimiter is optional)
  echo 0630785634120106c2eb0b12b9 | python -m tools.decode --pretty
  # check an EVENT's tag with the device key: "auth": "ok"
  python -m tools.decode --key 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f \\
      07a3785634120305c2eb0b0203400101032c01010201022a0bc3dfccd4443138ce58b300
  # a binary capture of the bus, raw bytes as received
  python -m tools.decode -f capture.bin --pretty
  # live, 60 s: a serial port (RS-485 adapter) or UDP datagrams
  python -m tools.decode -s /dev/ttyUSB0 -b 9600 --keys keys.json --duration 60
  python -m tools.decode -u 0.0.0.0:5683 --pretty --duration 60

keys.json maps device ids to keys: {"0x12345678": "<64 hex digits>"}. The frame format is
protocol/SPEC.md; a quick start is docs/protocol.md.
"""

from __future__ import annotations

import argparse
import binascii
import json
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from protocol import auth, host, messages, session
from protocol import frame as fr
from protocol.host import parse_key
from protocol.stream import StreamDecoder


class UsageError(Exception):
    """A user mistake: reported as one line on stderr, exit status 2, no traceback."""


def parse_hex(text: str) -> bytes:
    """Hex with optional spaces, colons or a 0x prefix. Raises ValueError with a reason."""
    t = text.strip().lower()
    if t.startswith("0x"):
        t = t[2:]
    t = t.replace(" ", "").replace(":", "").replace("-", "")
    if not t:
        raise ValueError("empty")
    if len(t) % 2:
        raise ValueError("odd number of hex digits")
    try:
        return binascii.unhexlify(t)
    except binascii.Error as e:
        raise ValueError("not hex: " + str(e)) from None


class Verifier:
    """Tag and replay checks per (device, direction) when keys are given."""

    def __init__(self, keys: dict[int, bytes], default: bytes | None) -> None:
        self.keys = keys
        self.default = default
        self.peers: dict[tuple[int, bool], session.Peer] = {}

    def check(self, f: fr.Frame) -> str | None:
        if f.tag is None:
            return None
        key = self.keys.get(f.device, self.default)
        if key is None:
            return "unverified"
        up = messages.uplink(f.type)
        peer = self.peers.get((f.device, up))
        if peer is None:
            peer = self.peers[(f.device, up)] = session.Peer(auth.Key(key))
        err = peer.check(f)
        return "ok" if err is None else err.name


def describe(r: Any, verifier: Verifier | None, raw: bool = False) -> dict[str, Any]:
    """One output object: physical units (protocol.host.physical: °C, A, mA, fault names, with
    `units`), or with raw=True the wire's integers as the codec and the golden vectors have
    them (plus `status_flags` for TELEMETRY)."""
    if not r.ok:
        return r.to_dict()
    d = r.to_dict()
    if not raw:
        d = host.physical(d)
    d["device_hex"] = f"{r.device:08x}"
    if r.time:
        d["time_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.time + host.EPOCH_UNIX))
    if raw and r.type == messages.TELEMETRY:
        d["status_flags"] = host.status_flags(r.fields["status"])
    if r.tag is not None:
        d["auth"] = verifier.check(r) if verifier else "unverified"
    return d


def _fmt_value(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ",".join("-" if x is None else _fmt_value(x) for x in v) + "]"
    return "-" if v is None else str(v)


def pretty_line(d: dict[str, Any]) -> str:
    if "error" in d:
        where = f" dev={d['device']:08x} seq={d['seq']}" if "device" in d else ""
        return f"ERROR {d['error']:<12} {d['reason']}{where}"
    skip = {"type", "device", "seq", "time", "counter", "device_hex", "time_utc", "auth", "units"}
    units = d.get("units")

    def unit(k: str) -> str:  # physical output: each value followed by its unit
        u = ""
        if isinstance(units, dict):
            u = str(units.get(k) or "")
        elif units and k in ("value", "threshold", "samples"):
            u = str(units)
        return {"degC": "°C", "degC/min": "°C/min"}.get(u, u)

    body = " ".join(k + "=" + _fmt_value(v) + unit(k) for k, v in d.items() if k not in skip)
    auth_ = (" auth=" + d["auth"]) if "auth" in d else ""
    when = d.get("time_utc", "t=" + str(d["time"]))
    return f"{when:<20} {d['device_hex']} #{d['seq']:<3} {d['type']:<9} {body}{auth_}"


def hex_chunks(items: Iterable[str], bad: list[int]) -> Iterator[bytes | dict[str, Any]]:
    """Each hex string is one datagram: a missing trailing 0x00 delimiter is added."""
    for i, item in enumerate(items):
        if not item.strip() or item.lstrip().startswith("#"):
            continue
        try:
            b = parse_hex(item)
        except ValueError as e:
            bad.append(i)
            print(f"decode: input {i + 1}: bad hex ({e})", file=sys.stderr)
            yield {"error": "hex", "reason": "bad hex input: " + str(e), "input": i + 1}
            continue
        yield b if b.endswith(b"\x00") else b + b"\x00"


def file_chunks(path: str) -> Iterator[bytes]:
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below; errors become UsageError
    except OSError as e:
        raise UsageError(f"cannot open {path}: {e.strerror or e}") from None
    with fh:
        while True:
            b = fh.read(4096)
            if not b:
                return
            yield b
    # a capture that ends mid-frame: the caller flushes with a final 0x00


def serial_chunks(port: str, baud: int, deadline: float | None) -> Iterator[bytes]:
    try:
        import serial  # pyserial
    except ImportError:  # pragma: no cover - pinned in requirements.txt
        raise UsageError("pyserial is not installed (pip install pyserial)") from None
    try:
        ser = serial.serial_for_url(port, baudrate=baud, timeout=0.1)
    except (serial.SerialException, ValueError, OSError) as e:
        raise UsageError(f"cannot open serial port {port}: {e}") from None
    with ser:
        while deadline is None or time.monotonic() < deadline:
            try:
                b = ser.read(4096)
            except serial.SerialException as e:
                raise UsageError(f"serial port {port}: {e}") from None
            if b:
                yield b


def udp_chunks(spec: str, deadline: float | None) -> Iterator[bytes]:
    host, _, port_s = spec.rpartition(":")
    try:
        port = int(port_s)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise UsageError(f"bad UDP port {spec!r} (use PORT or HOST:PORT)") from None
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host or "0.0.0.0", port))
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on UDP {spec}: {e.strerror or e}") from None
    sock.settimeout(0.1)
    with sock:
        host_, port_ = sock.getsockname()
        print(f"decode: listening on UDP {host_}:{port_}", file=sys.stderr, flush=True)
        while deadline is None or time.monotonic() < deadline:
            try:
                b, _ = sock.recvfrom(65535)
            except TimeoutError:
                continue
            # A datagram holds whole frames: terminate it so no state leaks between senders.
            yield b if b.endswith(b"\x00") else b + b"\x00"


def load_keys(args: argparse.Namespace) -> Verifier | None:
    keys: dict[int, bytes] = {}
    default = None
    if args.key:
        try:
            default = parse_key(args.key)
        except ValueError as e:
            raise UsageError(f"bad --key: {e}") from None
    if args.keys:
        try:
            with open(args.keys) as fh:
                raw = json.load(fh)
            for dev, k in raw.items():
                try:
                    keys[int(str(dev), 0)] = parse_key(k)
                except ValueError as e:
                    raise ValueError(f"device {dev}: {e}") from None
        except OSError as e:
            raise UsageError(f"cannot read --keys {args.keys}: {e.strerror or e}") from None
        except (ValueError, AttributeError) as e:
            raise UsageError(
                f'bad --keys file {args.keys}: {e} (want {{"0x12345678": "<64 hex digits>"}})'
            ) from None
    if default is None and not keys:
        return None
    return Verifier(keys, default)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m tools.decode",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("hex", nargs="*", help="frames as hex (one datagram each)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("-f", "--file", help="binary capture file (raw stream bytes)")
    src.add_argument("-s", "--serial", metavar="PORT", help="serial port or pyserial URL")
    src.add_argument("-u", "--udp", metavar="[HOST:]PORT", help="listen for UDP datagrams")
    ap.add_argument("-b", "--baud", type=int, default=9600, help="serial baud rate (9600)")
    ap.add_argument(
        "--key", help="device key (64 hex digits) to verify the tags of every device's frames"
    )
    ap.add_argument("--keys", metavar="FILE", help='JSON {"0x<device>": "<key hex>"}')
    ap.add_argument("--pretty", action="store_true", help="one readable line per frame")
    ap.add_argument(
        "--raw",
        action="store_true",
        help="wire integers (0.1 degC, 0.01 A, fault codes) as in SPEC.md and the golden "
        "vectors, instead of physical units",
    )
    ap.add_argument("--count", type=int, help="stop after this many frames or errors")
    ap.add_argument("--duration", type=float, help="stop after this many seconds")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.hex and (args.file or args.serial or args.udp):
        ap.error("give hex arguments or one of -f/-s/-u, not both")
    bad: list[int] = []
    try:
        verifier = load_keys(args)
        deadline = time.monotonic() + args.duration if args.duration else None
        chunks: Iterable[bytes | dict[str, Any]]
        if args.file:
            chunks = file_chunks(args.file)
        elif args.serial:
            chunks = serial_chunks(args.serial, args.baud, deadline)
        elif args.udp:
            chunks = udp_chunks(args.udp, deadline)
        elif args.hex:
            chunks = hex_chunks(args.hex, bad)
        else:
            chunks = hex_chunks(sys.stdin, bad)
        return run(chunks, verifier, args, bad)
    except UsageError as e:
        print("decode: " + str(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `... | head`
        return 0


def run(
    chunks: Iterable[bytes | dict[str, Any]],
    verifier: Verifier | None,
    args: argparse.Namespace,
    bad: list[int],
) -> int:
    dec = StreamDecoder()
    n = 0

    def emit(d: dict[str, Any]) -> bool:
        nonlocal n
        line = pretty_line(d) if args.pretty else json.dumps(d)
        print(line, flush=True)
        n += 1
        return args.count is not None and n >= args.count

    for chunk in chunks:
        if isinstance(chunk, dict):
            if emit(chunk):
                break
            continue
        if any(emit(describe(r, verifier, args.raw)) for r in dec.feed(chunk)):
            break
    else:
        for r in dec.feed(b"\x00"):  # a capture that ends without its last delimiter
            emit(describe(r, verifier, args.raw))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
