"""Record EFD traffic to a pcap file for Wireshark / tshark with tools/wireshark/efd.lua.

    python tools/wireshark/capture.py serial /dev/ttyUSB0 -b 9600 -o bus.pcap
    python tools/wireshark/capture.py udp --listen 0.0.0.0:47000 -o udp.pcap
    python tools/wireshark/capture.py udp --listen :47001 --forward 127.0.0.1:47000 -o relay.pcap
    python tools/wireshark/capture.py file bus.bin -o bus.pcap
    tshark -X lua_script:tools/wireshark/efd.lua -r bus.pcap

Two kinds of file (docs/protocol.md, "Wireshark and tshark"):

  serial  link type USER0 (DLT 147): each packet holds the bytes one read of the port returned,
          in order, with its time. Together the packets are the byte stream; the dissector
          splits it at 0x00 and reassembles a frame split across reads. A serial port, a pty
          (the virtual device's link) or any pyserial URL can be recorded; `file` converts a raw
          byte capture (e.g. one written for `python -m tools.decode -f`).
  udp     link type RAW (DLT 101, IPv4/IPv6): each packet is one datagram with its real source
          and destination address. `--listen` records what arrives on a socket; with
          `--forward` it is a relay between detectors (or the fleet simulator) and a gateway,
          recording both directions (uplink and the gateway's ACKs and COMMANDs): point the
          detectors at --listen and give the gateway's address as --forward.

The dissector decodes UDP port 47000 (the gateway's usual port) by itself; for another port use
`-d udp.port==PORT,efd` (tshark) or Decode As (Wireshark). It stops at --duration, --count
packets or Ctrl-C / SIGTERM, and flushes every packet, so an interrupted capture is a valid
file. Needs only Python 3 (and pyserial for `serial`); exit status 0, or 2 for a usage error.
"""

from __future__ import annotations

import argparse
import ipaddress
import selectors
import signal
import socket
import struct
import sys
import time
from typing import BinaryIO

LINKTYPE_RAW = 101  # raw IPv4 / IPv6 packets
LINKTYPE_USER0 = 147  # DLT_USER0: the EFD serial byte stream (tools/wireshark/efd.lua)
SNAPLEN = 65535


class PcapWriter:
    """A classic pcap file (microsecond timestamps), flushed after every packet."""

    def __init__(self, out: str | BinaryIO, linktype: int):
        if isinstance(out, str):
            self.f: BinaryIO = open(out, "wb")  # noqa: SIM115 - closed in close()
            self._own = True
        else:
            self.f = out
            self._own = False
        self.linktype = linktype
        self.count = 0
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, linktype))
        self.f.flush()

    def write(self, data: bytes, ts: float | None = None) -> None:
        if ts is None:
            ts = time.time()
        sec = int(ts)
        usec = round((ts - sec) * 1e6)
        if usec >= 1000000:
            sec, usec = sec + 1, usec - 1000000
        n = min(len(data), SNAPLEN)
        self.f.write(struct.pack("<IIII", sec, usec, n, len(data)))
        self.f.write(data[:n])
        self.f.flush()
        self.count += 1

    def close(self) -> None:
        if self._own:
            self.f.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_packet(src: tuple[str, int], dst: tuple[str, int], payload: bytes, ident: int = 0) -> bytes:
    """An IPv4 or IPv6 packet carrying one UDP datagram (for LINKTYPE_RAW), checksums set."""
    sa, da = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    if isinstance(sa, ipaddress.IPv4Address) != isinstance(da, ipaddress.IPv4Address):
        # one IPv4-mapped side: show both as IPv6
        sa = ipaddress.IPv6Address(f"::ffff:{sa}") if sa.version == 4 else sa
        da = ipaddress.IPv6Address(f"::ffff:{da}") if da.version == 4 else da
    ulen = 8 + len(payload)
    udp = struct.pack("!HHHH", src[1], dst[1], ulen, 0) + payload
    if sa.version == 4:
        pseudo = sa.packed + da.packed + struct.pack("!BBH", 0, 17, ulen)
        c = _checksum(pseudo + udp) or 0xFFFF
        udp = udp[:6] + struct.pack("!H", c) + udp[8:]
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, ident & 0xFFFF, 0x4000, 64, 17, 0,
                          sa.packed, da.packed)  # fmt: skip
        hdr = hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]
        return hdr + udp
    pseudo = sa.packed + da.packed + struct.pack("!IxxxB", ulen, 17)
    c = _checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    return struct.pack("!IHBB16s16s", 0x60000000, ulen, 17, 64, sa.packed, da.packed) + udp


def _addr(sockaddr: tuple) -> tuple[str, int]:
    host = str(sockaddr[0]).split("%")[0]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, int(sockaddr[1])


class SerialRecorder:
    """A serial-port-like object that records what is read from and written to `port` (any
    object with read(n) / write(b)) as packets of a USER0 pcap. Hand it to host code that
    drives the link (e.g. tools.monitor.HostLink) to capture both directions."""

    def __init__(self, port, writer: PcapWriter):
        self.port = port
        self.writer = writer

    def read(self, n: int = 1) -> bytes:
        data = self.port.read(n)
        if data:
            self.writer.write(bytes(data))
        return data

    def write(self, data: bytes) -> int:
        if data:
            self.writer.write(bytes(data))
        return self.port.write(data)

    def __getattr__(self, name: str):
        return getattr(self.port, name)


class _Stop:
    def __init__(self, duration: float, count: int):
        self.end = time.monotonic() + duration if duration > 0 else None
        self.count = count
        self.flag = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handler)

    def _handler(self, signum: int, frame: object) -> None:
        self.flag = True

    def done(self, packets: int) -> bool:
        if self.flag or (self.count and packets >= self.count):
            return True
        return self.end is not None and time.monotonic() >= self.end

    def timeout(self, cap: float = 0.2) -> float:
        if self.end is None:
            return cap
        return max(0.0, min(cap, self.end - time.monotonic()))


def capture_serial(port: str, baud: int, out: str, stop: _Stop) -> int:
    try:
        import serial  # pyserial
    except ImportError:
        print("capture.py: recording a serial port needs pyserial (pip install pyserial)",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        ser = serial.serial_for_url(port, baudrate=baud, timeout=0.05)
    except (serial.SerialException, OSError, ValueError) as e:
        print(f"capture.py: cannot open {port}: {e}", file=sys.stderr)
        return 2
    with PcapWriter(out, LINKTYPE_USER0) as w:
        while not stop.done(w.count):
            data = ser.read(4096)
            if data:
                w.write(data)
        n = w.count
    ser.close()
    print(f"capture.py: {n} packets from {port} -> {out}", file=sys.stderr)
    return 0


def _resolve(hp: str) -> tuple[int, tuple]:
    host, _, port = hp.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    infos = socket.getaddrinfo(host, int(port), 0, socket.SOCK_DGRAM)
    fam, _, _, _, sa = infos[0]
    return fam, sa


def capture_udp(listen: str, forward: str | None, out: str, stop: _Stop) -> int:
    try:
        lfam, laddr = _resolve(listen)
        target = _resolve(forward) if forward else None
    except (OSError, ValueError) as e:
        print(f"capture.py: bad address: {e}", file=sys.stderr)
        return 2
    lsock = socket.socket(lfam, socket.SOCK_DGRAM)
    try:
        lsock.bind(laddr)
    except OSError as e:
        print(f"capture.py: cannot listen on {listen}: {e.strerror}", file=sys.stderr)
        return 2
    local = _addr(lsock.getsockname())
    if local[0] in ("0.0.0.0", "::"):
        local = ("127.0.0.1" if lfam == socket.AF_INET else "::1", local[1])
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, None)
    upstream: dict[tuple, socket.socket] = {}  # client address -> its socket to the target
    fwd = f", forwarding to {forward}" if forward else ""
    print(f"capture.py: listening on {local[0]}:{local[1]}{fwd}", file=sys.stderr, flush=True)
    with PcapWriter(out, LINKTYPE_RAW) as w:
        ident = 0
        while not stop.done(w.count):
            for key, _ in sel.select(stop.timeout()):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                try:
                    data, sa = s.recvfrom(65535)
                except OSError:
                    continue
                ident += 1
                if key.data is None:  # from a client (detector, fleet) to the listening socket
                    w.write(udp_packet(_addr(sa), local, data, ident))
                    if target is not None:
                        u = upstream.get(sa)
                        if u is None:
                            u = socket.socket(target[0], socket.SOCK_DGRAM)
                            u.connect(target[1])
                            upstream[sa] = u
                            sel.register(u, selectors.EVENT_READ, sa)
                        u.send(data)
                else:  # from the target, back to the client it answers
                    w.write(udp_packet(local, _addr(key.data), data, ident))
                    lsock.sendto(data, key.data)
        n = w.count
    for u in upstream.values():
        u.close()
    lsock.close()
    print(f"capture.py: {n} datagrams -> {out}", file=sys.stderr)
    return 0


def capture_file(src: str, out: str, chunk: int) -> int:
    try:
        data = sys.stdin.buffer.read() if src == "-" else open(src, "rb").read()  # noqa: SIM115
    except OSError as e:
        print(f"capture.py: {src}: {e.strerror}", file=sys.stderr)
        return 2
    t = time.time()
    with PcapWriter(out, LINKTYPE_USER0) as w:
        for i in range(0, len(data), chunk):
            w.write(data[i : i + chunk], t)
        n = w.count
    print(f"capture.py: {len(data)} bytes in {n} packets -> {out}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(
        prog="capture.py",
        description=doc.split("\n\n")[0],
        epilog="\n\n".join(doc.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="what", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("-o", "--out", required=True, help="pcap file to write")
        p.add_argument("--duration", type=float, default=0, help="stop after S seconds")
        p.add_argument("--count", type=int, default=0, help="stop after N packets")

    s = sub.add_parser("serial", help="record a serial port, pty or pyserial URL (USER0 pcap)")
    s.add_argument("port", help="e.g. /dev/ttyUSB0, the virtual device's link pty, rfc2217://...")
    s.add_argument("-b", "--baud", type=int, default=9600, help="baud rate (default 9600)")
    common(s)
    u = sub.add_parser("udp", help="record datagrams on a UDP socket, optionally relaying them")
    u.add_argument("--listen", required=True, metavar="HOST:PORT", help="address to receive on")
    u.add_argument(
        "--forward",
        metavar="HOST:PORT",
        help="relay to this address (a gateway), recording answers",
    )
    common(u)
    f = sub.add_parser("file", help="convert a raw byte capture to a serial (USER0) pcap")
    f.add_argument("src", help="binary file of bytes as received, or - for stdin")
    f.add_argument("-o", "--out", required=True, help="pcap file to write")
    f.add_argument("--chunk", type=int, default=4096, help="bytes per packet (default 4096)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.what == "file":
        return capture_file(args.src, args.out, max(1, args.chunk))
    stop = _Stop(args.duration, args.count)
    if args.what == "serial":
        return capture_serial(args.port, args.baud, args.out, stop)
    return capture_udp(args.listen, args.forward, args.out, stop)


if __name__ == "__main__":
    sys.exit(main())
