# Sans-I/O stream decoder: bytes in (any chunking), Frame or Error objects out.
#
# Resynchronisation rests on COBS: 0x00 occurs only as the delimiter, so after garbage, a
# truncated frame or a receiver that starts mid-frame, the next 0x00 ends the damage and the
# frame after it decodes. Memory is bounded: a segment longer than MAX_WIRE - 1 without a
# delimiter is reported once (E_OVERFLOW) and skipped up to the next 0x00.
from protocol import frame as fr

_ZERO = b"\x00"


class StreamDecoder:
    def __init__(self, uplink=None):
        self._uplink = uplink  # frame.parse's direction filter: None = every type
        self._buf = bytearray(fr.MAX_WIRE)  # a segment split across feed() calls
        self._n = 0
        self._skipping = False  # inside an over-long segment, waiting for 0x00

    def feed(self, data):
        """Return a list with a Frame or Error for every segment data completes.

        A list, not a generator: the decoder's state advances even if the caller ignores the
        result, so no bytes are lost to an unconsumed iterator. Never raises on any bytes;
        time is linear in len(data).
        """
        if not isinstance(data, (bytes, bytearray)):
            data = bytes(data)
        out = []
        pos = 0
        n = len(data)
        while pos < n:
            i = data.find(_ZERO, pos)
            end = n if i < 0 else i
            if self._skipping:
                pass
            elif self._n == 0 and i >= 0:
                # Whole segment inside this chunk: decode in place (the host's fast path).
                # i == pos is an empty segment (idle 0x00 fill): SPEC.md §3 lets a sender lead
                # with 0x00 to end a receiver's partial frame, so it is not an error.
                if i > pos:
                    out.append(fr.decode(data[pos:i], self._uplink))
            else:
                k = end - pos
                if self._n + k > fr.MAX_WIRE - 1:
                    self._skipping = True
                    self._n = 0
                    out.append(fr.Error(fr.E_OVERFLOW))
                else:
                    self._buf[self._n : self._n + k] = data[pos:end]
                    self._n += k
                    if i >= 0:
                        seg = bytes(self._buf[: self._n])
                        self._n = 0
                        out.append(fr.decode(seg, self._uplink))
            if i < 0:
                break
            self._skipping = False
            pos = i + 1
        return out

    def reset(self):
        """Forget a partial segment (e.g. after a serial port reopen)."""
        self._n = 0
        self._skipping = False
