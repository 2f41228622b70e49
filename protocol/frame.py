# Frame layout, typed decode results and the encoder (SPEC.md §3-§4).
#
#   offset size
#   0      1    hdr: bit 7 A (counter+tag present), bits 6-5 version (1), bits 4-0 type
#   1      4    device id, u32 LE
#   5      1    seq, u8: per-device frame counter, wraps
#   6      4    time, u32 LE: seconds since 2020-01-01T00:00:00Z, 0 = clock not set
#   10     n    payload (messages.py)
#   10+n   4    counter, u32 LE      } only if A
#   14+n   8    tag: HMAC-SHA256[:8] } over bytes 0 .. 13+n
#   end-2  2    CRC-16/IBM-3740 over everything before it, LE
#
# On a byte stream the frame is COBS-stuffed and followed by one 0x00 (cobs.py); as a datagram
# (UDP, MQTT) the same stuffed bytes are sent, delimiter included, so one parser serves both.
import struct

from efd.compat import const
from protocol import cobs, messages
from protocol.auth import TAG_LEN
from protocol.crc import crc16, crc16_frame

VERSION = const(1)
_HEADER_LEN = const(10)
CRC_LEN = const(2)
_AUTH_LEN = const(12)  # counter + tag
_A_BIT = const(0x80)
_MIN_FRAME = const(12)  # header + CRC
MAX_FRAME = const(254)  # COBS then adds exactly one byte (cobs.py)
MAX_WIRE = const(256)  # MAX_FRAME + COBS code byte + delimiter
# For type checkers only (pyproject.toml: mypy always_true = _TYPES): the host's presentation
# added by protocol.host is declared below under `if _TYPES:`, which MicroPython compiles away
# (a false const) and CPython never runs, so the detector pays nothing for it.
_TYPES = const(0)
if _TYPES:
    from typing import Any

# Error codes (typed decode results; SPEC.md §8).
E_COBS = const(1)
E_SHORT = const(2)
E_CRC = const(3)
E_VERSION = const(4)
E_TYPE = const(5)
E_LENGTH = const(6)
E_OVERFLOW = const(7)
E_NO_TAG = const(8)
E_BAD_TAG = const(9)
E_REPLAY = const(10)
E_DUPLICATE = const(11)
E_NO_KEY = const(12)
E_DIRECTION = const(13)
# Their names: host.ERROR_NAMES.


# Error and Frame carry numbers only. Their presentation (`name`, `reason`, `to_dict()`, the
# repr) is host-only: protocol/host.py adds it to both classes when a host imports it, so it is
# written once and the detector, which never imports it, spends no heap on it. Host code
# imports protocol.host for names and presentation (issue 12: no attribute forwarding from
# these device modules).


class Error:
    """A typed rejection: `code` (E_*); header fields when they were read (a frame with a good
    CRC but an unknown type still names its device)."""

    if _TYPES:  # protocol.host's (see _TYPES)
        name: str
        reason: str

        def to_dict(self) -> dict[str, Any]: ...

    ok = False

    def __init__(self, code, raw=None, device=None, seq=None, type=None):
        self.code = code
        self.raw = raw
        self.device = device
        self.seq = seq
        self.type = type


class Frame:
    """A structurally valid frame: CRC good, known version and type, payload parsed.
    `raw` is the un-stuffed frame (for tag checks); `tag`/`counter` are None without A."""

    if _TYPES:  # protocol.host's (see _TYPES)
        name: str

        def to_dict(self) -> dict[str, Any]: ...

    __slots__ = ("counter", "crc", "device", "fields", "raw", "seq", "tag", "time", "type")
    ok = True

    def __init__(self, type, device, seq, time, fields, raw, counter, tag, crc):
        self.type = type
        self.device = device
        self.seq = seq
        self.time = time
        self.fields = fields
        self.raw = raw
        self.counter = counter
        self.tag = tag
        self.crc = crc


def parse(raw, uplink=None):
    """Decode one un-stuffed frame (bytes). Returns a Frame or an Error; never raises.
    uplink False (a detector) / True (a host): a frame of the other direction's types is an
    Error(E_DIRECTION) with its header fields, and its payload is not decoded; the detector
    thus never loads the host's decoders (protocol/host.py) for the other detectors' frames
    it hears on a shared bus. None: decode every type."""
    n = len(raw)
    if n < _MIN_FRAME:
        return Error(E_SHORT, raw)
    if n > MAX_FRAME:
        return Error(E_OVERFLOW, raw)
    crc = raw[n - 2] | (raw[n - 1] << 8)
    if crc16_frame(raw) != crc:
        return Error(E_CRC, raw)
    if n == 30 and raw[0] == 0x22 and uplink is not False:
        # Untagged v1 TELEMETRY, the bulk of all traffic: one struct call for the whole frame.
        # Only hosts receive uplink, so this fast path is protocol/host.py's.
        return messages._host().telemetry_frame(raw, crc)
    hdr, dev, seq, t = struct.unpack_from("<BIBI", raw, 0)
    if (hdr >> 5) & 3 != VERSION:
        return Error(E_VERSION, raw)
    typ = hdr & 0x1F
    end = n - 2
    counter = tag = None
    if hdr & _A_BIT:
        end -= _AUTH_LEN
        if end < _HEADER_LEN:
            return Error(E_LENGTH, raw, dev, seq, typ)
        counter = struct.unpack_from("<I", raw, end)[0]
        tag = raw[end + 4 : end + 4 + TAG_LEN]
    if messages.MIN_LEN[typ] == 0xFF:
        return Error(E_TYPE, raw, dev, seq, typ)
    if uplink is not None and messages.uplink(typ) != uplink:
        return Error(E_DIRECTION, raw, dev, seq, typ)
    fields = messages.unpack(typ, raw, _HEADER_LEN, end, uplink is not False)
    if fields is None:
        return Error(E_LENGTH, raw, dev, seq, typ)
    return Frame(typ, dev, seq, t, fields, raw, counter, tag, crc)


def decode(wire, uplink=None):
    """Decode one stuffed frame: a datagram, or one segment of a stream with or without its
    0x00 delimiter. Returns a Frame or an Error; never raises on any bytes. uplink: see
    parse()."""
    n = len(wire)
    if n and wire[n - 1] == 0:
        n -= 1
    if n > MAX_WIRE - 1:
        return Error(E_OVERFLOW, bytes(wire))
    raw = cobs.decode(wire, n)
    if raw is None:
        return Error(E_COBS, bytes(wire[:n]))
    return parse(raw, uplink)


class Encoder:
    """Builds stuffed frames into two preallocated buffers (one frame in flight at a time).

    telemetry() and event() return the wire length n; the bytes are enc.wire[:n], valid until
    the next call (send at once, or copy with bytes() to keep an event for retransmission).
    They allocate nothing on MicroPython (tested with heap_lock) apart from the tag's SHA-256
    work; slicing a view for the UART is the caller's one small allocation. message() returns
    bytes. `key` (protocol.auth.Key) and a `counter` callable enable tags.
    """

    def __init__(self, device, key=None, counter=None):
        self.device = device
        self.key = key
        self.counter = counter
        self.seq = 0
        self.crc = 0  # CRC of the last frame built
        self.frame = bytearray(MAX_FRAME)
        self.wire = bytearray(MAX_WIRE)
        self._wmv = memoryview(self.wire)

    def _header(self, typ, t, auth, seq):
        if seq < 0:
            seq = self.seq
            self.seq = (seq + 1) & 0xFF
        hdr = (VERSION << 5) | typ
        if auth:
            hdr |= _A_BIT
        struct.pack_into("<BIBI", self.frame, 0, hdr, self.device, seq, t)

    def _finish(self, end, auth, counter):
        f = self.frame
        if auth:
            if counter < 0:
                counter = self.counter()
            struct.pack_into("<I", f, end, counter)
            end += 4
            f[end : end + TAG_LEN] = self.key.tag(f, 0, end)
            end += TAG_LEN
        c = crc16(f, 0, end)
        self.crc = c  # what an ACK of this frame names (SPEC.md §8)
        f[end] = c & 0xFF
        f[end + 1] = c >> 8
        return cobs.encode_into(f, end + 2, self.wire)

    def view(self, n):
        """A memoryview of the last frame's n wire bytes (allocates one small object)."""
        return self._wmv[:n]

    def telemetry(self, t, residual, temps, lines, status, seq=-1, auth=False):
        """The periodic report. temps: 4 values in 0.1 degC, lines: 3 in 0.01 A (indexable;
        NA_I16 / NA_U16 for 'no reading'). Allocation-free on MicroPython when untagged (a
        tag's SHA-256 allocates: the detector tags one a minute, SPEC.md §5)."""
        auth = auth and self.key is not None
        self._header(messages.TELEMETRY, t, auth, seq)
        struct.pack_into(
            "<HhhhhHHHH",
            self.frame,
            _HEADER_LEN,
            residual,
            temps[0],
            temps[1],
            temps[2],
            temps[3],
            lines[0],
            lines[1],
            lines[2],
            status,
        )
        return self._finish(_HEADER_LEN + 18, auth, -1)

    def event(self, t, kind, channel, value, threshold, auth=True, seq=-1, counter=-1):
        """An event (efd.events codes). Tagged by default: hosts act on events."""
        auth = auth and self.key is not None
        self._header(messages.EVENT, t, auth, seq)
        struct.pack_into("<BBii", self.frame, _HEADER_LEN, kind, channel, value, threshold)
        return self._finish(_HEADER_LEN + 10, auth, counter)

    def message(self, typ, t, fields, auth=False, seq=-1, counter=-1):
        """Any message from a fields dict (messages.pack): host side, tests, rare frames."""
        self._header(typ, t, auth, seq)
        end = messages.pack(typ, fields, self.frame, _HEADER_LEN)
        return bytes(self._wmv[: self._finish(end, auth, counter)])
