# Consistent Overhead Byte Stuffing (Cheshire & Baker, IEEE/ACM ToN 7(2), 1999).
#
# A frame is COBS-encoded so that it contains no 0x00, then a single 0x00 delimiter follows.
# A receiver that starts mid-stream, or sees line noise, resynchronises at the next 0x00:
# nothing inside a frame can look like a delimiter. Overhead is exactly 1 byte for frames of
# up to 254 bytes (SPEC.md caps frames at 254 bytes for that reason), plus the delimiter.
#
# On the host, un-stuffing is the largest single cost of decoding a frame in Python (~0.7 us of
# ~2.2 us for a telemetry frame, measured), so CPython uses the C implementation of the PyPI
# `cobs` package (pinned in requirements.txt) when it is installed; MicroPython, and a host
# without it, use decode_py() below. tests/protocol checks both give the same answers.
try:
    from cobs.cobs import DecodeError as _CDecodeError
    from cobs.cobs import decode as _c_decode
except ImportError:  # MicroPython (and a host without the package)
    _c_decode = None


def encode_into(src, n, dst):
    """COBS-encode src[0:n] into dst and append the 0x00 delimiter.

    Returns the number of bytes written (n + 2 when n <= 254). Allocation-free: dst must hold
    n + n // 254 + 2 bytes. This is the canonical encoding: a block is closed at 254 data
    bytes only if more data follows, so the decoder below accepts exactly what this emits.
    """
    code_i = 0  # where the current block's code byte goes
    o = 1
    code = 1
    for i in range(n):
        b = src[i]
        if b == 0:
            dst[code_i] = code
            code_i = o
            o += 1
            code = 1
        else:
            dst[o] = b
            o += 1
            code += 1
            if code == 0xFF and i + 1 < n:
                dst[code_i] = code
                code_i = o
                o += 1
                code = 1
    dst[code_i] = code
    dst[o] = 0
    return o + 1


def decode_py(src, n=-1):
    """Decode src[:n] (n -1: all of it), one COBS block sequence without its 0x00 delimiter.
    Returns bytes, or None if it is not valid COBS (a zero byte inside, or a code that runs
    past the end). This is what the detector runs; hosts with the `cobs` package get decode()
    below in C, with the same answers (tests/protocol).

    Works on one copy: each code byte marks where the previous block's implied 0x00 goes, so
    it is overwritten with 0 and the first code byte dropped. Only a 0xFF block followed
    by more data (no implied zero: a frame of over 254 bytes) needs the general path.
    """
    if n < 0:
        n = len(src)
    if n == 0:
        return b""
    if src.find(b"\x00", 0, n) >= 0:
        return None
    out = bytearray(src[1:n])
    i = src[0]
    if i == 0xFF and i < n:
        return _decode_general(src[:n])
    while i < n:
        code = src[i]
        out[i - 1] = 0
        i += code
        if code == 0xFF and i < n:
            return _decode_general(src[:n])
    if i != n:
        return None
    return bytes(out)


def _decode_general(src):
    n = len(src)
    out = bytearray()
    i = 0
    while i < n:
        code = src[i]
        j = i + code
        if j > n:
            return None
        out += src[i + 1 : j]
        i = j
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


if _c_decode is None:  # MicroPython (or a host without the package)
    decode = decode_py
else:

    def decode(src, n=-1):
        """decode_py() in C (the `cobs` package): same arguments, same answers."""
        if n < 0:
            n = len(src)
        if n == 0:
            return b""
        try:
            whole = n == len(src) and isinstance(src, (bytes, bytearray))
            return _c_decode(src if whole else bytes(src[:n]))
        except _CDecodeError:
            return None
