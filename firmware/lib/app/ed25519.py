# Ed25519 signature verification (RFC 8032, PureEdDSA), for the signed update's manifest
# (app/ota.py, docs/firmware.md "Signed over-the-air update"). Verification only: the detector
# never signs. Runs unchanged on MicroPython (unix port and ESP32) and CPython (the host tests
# cross-check it against the `cryptography` package).
#
# Why Ed25519 with a SHA-512 written here: the ESP32 port has no asymmetric crypto to call
# (hashlib is sha256 only: extmod/modhashlib.c, MICROPY_PY_HASHLIB_SHA512 does not exist), so
# the curve arithmetic is pure Python on MicroPython's arbitrary-precision ints either way, and
# Ed25519 needs one double-scalar multiplication and no modular inverse of the scalars (ECDSA
# P-256: the same multiplication plus an inverse mod n, and a signer that must never reuse a
# nonce). The update signs the manifest's SHA-256 (hashlib's, in C), so the SHA-512 here
# hashes R || A || 32 bytes: one block (2.3 ms on x64; a 3.7 KB manifest would be 30).
# Signatures are deterministic, so golden vectors are reproducible.
#
# Incremental: verify() is a generator. Each next() does a bounded slice of the work (one
# SHA-512 block, or _BITS bits of the scalar multiplication) so the caller (the main loop, one
# slice a 100 ms window) never holds the detection loop or the watchdog; the generator returns
# (StopIteration.value) True or False. check() runs it to the end in one go (host tests).
import struct

_BITS = 2  # scalar bits per slice: 2 doublings + up to 2 additions (~0.6 ms on x64)

_P = (1 << 255) - 19
_L = (1 << 252) + 27742317777372353535851937790883648493
_D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
_D2 = (2 * _D) % _P
_SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
_M64 = 0xFFFFFFFFFFFFFFFF

# SHA-512 round constants (FIPS 180-4 §4.2.3), big-endian u64s: 640 bytes of data instead of
# 80 long-int objects.
_K = (
    b"\x42\x8a\x2f\x98\xd7\x28\xae\x22\x71\x37\x44\x91\x23\xef\x65\xcd"
    b"\xb5\xc0\xfb\xcf\xec\x4d\x3b\x2f\xe9\xb5\xdb\xa5\x81\x89\xdb\xbc"
    b"\x39\x56\xc2\x5b\xf3\x48\xb5\x38\x59\xf1\x11\xf1\xb6\x05\xd0\x19"
    b"\x92\x3f\x82\xa4\xaf\x19\x4f\x9b\xab\x1c\x5e\xd5\xda\x6d\x81\x18"
    b"\xd8\x07\xaa\x98\xa3\x03\x02\x42\x12\x83\x5b\x01\x45\x70\x6f\xbe"
    b"\x24\x31\x85\xbe\x4e\xe4\xb2\x8c\x55\x0c\x7d\xc3\xd5\xff\xb4\xe2"
    b"\x72\xbe\x5d\x74\xf2\x7b\x89\x6f\x80\xde\xb1\xfe\x3b\x16\x96\xb1"
    b"\x9b\xdc\x06\xa7\x25\xc7\x12\x35\xc1\x9b\xf1\x74\xcf\x69\x26\x94"
    b"\xe4\x9b\x69\xc1\x9e\xf1\x4a\xd2\xef\xbe\x47\x86\x38\x4f\x25\xe3"
    b"\x0f\xc1\x9d\xc6\x8b\x8c\xd5\xb5\x24\x0c\xa1\xcc\x77\xac\x9c\x65"
    b"\x2d\xe9\x2c\x6f\x59\x2b\x02\x75\x4a\x74\x84\xaa\x6e\xa6\xe4\x83"
    b"\x5c\xb0\xa9\xdc\xbd\x41\xfb\xd4\x76\xf9\x88\xda\x83\x11\x53\xb5"
    b"\x98\x3e\x51\x52\xee\x66\xdf\xab\xa8\x31\xc6\x6d\x2d\xb4\x32\x10"
    b"\xb0\x03\x27\xc8\x98\xfb\x21\x3f\xbf\x59\x7f\xc7\xbe\xef\x0e\xe4"
    b"\xc6\xe0\x0b\xf3\x3d\xa8\x8f\xc2\xd5\xa7\x91\x47\x93\x0a\xa7\x25"
    b"\x06\xca\x63\x51\xe0\x03\x82\x6f\x14\x29\x29\x67\x0a\x0e\x6e\x70"
    b"\x27\xb7\x0a\x85\x46\xd2\x2f\xfc\x2e\x1b\x21\x38\x5c\x26\xc9\x26"
    b"\x4d\x2c\x6d\xfc\x5a\xc4\x2a\xed\x53\x38\x0d\x13\x9d\x95\xb3\xdf"
    b"\x65\x0a\x73\x54\x8b\xaf\x63\xde\x76\x6a\x0a\xbb\x3c\x77\xb2\xa8"
    b"\x81\xc2\xc9\x2e\x47\xed\xae\xe6\x92\x72\x2c\x85\x14\x82\x35\x3b"
    b"\xa2\xbf\xe8\xa1\x4c\xf1\x03\x64\xa8\x1a\x66\x4b\xbc\x42\x30\x01"
    b"\xc2\x4b\x8b\x70\xd0\xf8\x97\x91\xc7\x6c\x51\xa3\x06\x54\xbe\x30"
    b"\xd1\x92\xe8\x19\xd6\xef\x52\x18\xd6\x99\x06\x24\x55\x65\xa9\x10"
    b"\xf4\x0e\x35\x85\x57\x71\x20\x2a\x10\x6a\xa0\x70\x32\xbb\xd1\xb8"
    b"\x19\xa4\xc1\x16\xb8\xd2\xd0\xc8\x1e\x37\x6c\x08\x51\x41\xab\x53"
    b"\x27\x48\x77\x4c\xdf\x8e\xeb\x99\x34\xb0\xbc\xb5\xe1\x9b\x48\xa8"
    b"\x39\x1c\x0c\xb3\xc5\xc9\x5a\x63\x4e\xd8\xaa\x4a\xe3\x41\x8a\xcb"
    b"\x5b\x9c\xca\x4f\x77\x63\xe3\x73\x68\x2e\x6f\xf3\xd6\xb2\xb8\xa3"
    b"\x74\x8f\x82\xee\x5d\xef\xb2\xfc\x78\xa5\x63\x6f\x43\x17\x2f\x60"
    b"\x84\xc8\x78\x14\xa1\xf0\xab\x72\x8c\xc7\x02\x08\x1a\x64\x39\xec"
    b"\x90\xbe\xff\xfa\x23\x63\x1e\x28\xa4\x50\x6c\xeb\xde\x82\xbd\xe9"
    b"\xbe\xf9\xa3\xf7\xb2\xc6\x79\x15\xc6\x71\x78\xf2\xe3\x72\x53\x2b"
    b"\xca\x27\x3e\xce\xea\x26\x61\x9c\xd1\x86\xb8\xc7\x21\xc0\xc2\x07"
    b"\xea\xda\x7d\xd6\xcd\xe0\xeb\x1e\xf5\x7d\x4f\x7f\xee\x6e\xd1\x78"
    b"\x06\xf0\x67\xaa\x72\x17\x6f\xba\x0a\x63\x7d\xc5\xa2\xc8\x98\xa6"
    b"\x11\x3f\x98\x04\xbe\xf9\x0d\xae\x1b\x71\x0b\x35\x13\x1c\x47\x1b"
    b"\x28\xdb\x77\xf5\x23\x04\x7d\x84\x32\xca\xab\x7b\x40\xc7\x24\x93"
    b"\x3c\x9e\xbe\x0a\x15\xc9\xbe\xbc\x43\x1d\x67\xc4\x9c\x10\x0d\x4c"
    b"\x4c\xc5\xd4\xbe\xcb\x3e\x42\xb6\x59\x7f\x29\x9c\xfc\x65\x7e\x2a"
    b"\x5f\xcb\x6f\xab\x3a\xd6\xfa\xec\x6c\x44\x19\x8c\x4a\x47\x58\x17"
)
_H0 = (
    b"\x6a\x09\xe6\x67\xf3\xbc\xc9\x08\xbb\x67\xae\x85\x84\xca\xa7\x3b"
    b"\x3c\x6e\xf3\x72\xfe\x94\xf8\x2b\xa5\x4f\xf5\x3a\x5f\x1d\x36\xf1"
    b"\x51\x0e\x52\x7f\xad\xe6\x82\xd1\x9b\x05\x68\x8c\x2b\x3e\x6c\x1f"
    b"\x1f\x83\xd9\xab\xfb\x41\xbd\x6b\x5b\xe0\xcd\x19\x13\x7e\x21\x79"
)


def _rot(x, n):
    return ((x >> n) | (x << (64 - n))) & _M64


def _compress(h, blk):
    """One SHA-512 block (128 bytes) into the state h (a list of 8 ints)."""
    w = list(struct.unpack(">16Q", blk))
    a, b, c, d, e, f, g, hh = h
    for t in range(80):
        if t >= 16:
            x = w[(t - 15) & 15]
            y = w[(t - 2) & 15]
            w[t & 15] = (
                w[t & 15]
                + (_rot(x, 1) ^ _rot(x, 8) ^ (x >> 7))
                + w[(t - 7) & 15]
                + (_rot(y, 19) ^ _rot(y, 61) ^ (y >> 6))
            ) & _M64
        t1 = (
            hh
            + (_rot(e, 14) ^ _rot(e, 18) ^ _rot(e, 41))
            + ((e & f) ^ ((e ^ _M64) & g))
            + struct.unpack_from(">Q", _K, t * 8)[0]
            + w[t & 15]
        )
        t2 = (_rot(a, 28) ^ _rot(a, 34) ^ _rot(a, 39)) + ((a & b) ^ (a & c) ^ (b & c))
        hh = g
        g = f
        f = e
        e = (d + t1) & _M64
        d = c
        c = b
        b = a
        a = (t1 + t2) & _M64
    for i, v in enumerate((a, b, c, d, e, f, g, hh)):
        h[i] = (h[i] + v) & _M64


def sha512_blocks(chunks):
    """SHA-512 of the concatenation of `chunks` (an iterable of bytes-like). A generator:
    yields after each compressed block, returns the 64-byte digest."""
    h = list(struct.unpack(">8Q", _H0))
    buf = bytearray(128)
    n = 0  # bytes in buf
    total = 0
    for c in chunks:
        i = 0
        while i < len(c):
            k = min(128 - n, len(c) - i)
            buf[n : n + k] = c[i : i + k]
            n += k
            i += k
            total += k
            if n == 128:
                _compress(h, buf)
                n = 0
                yield
    buf[n] = 0x80
    for i in range(n + 1, 128):
        buf[i] = 0
    if n >= 112:
        _compress(h, buf)
        yield
        for i in range(128):
            buf[i] = 0
    struct.pack_into(">QQ", buf, 112, 0, total * 8)
    _compress(h, buf)
    yield
    return struct.pack(">8Q", *h)


def sha512(data):
    """SHA-512 of data in one go (tests)."""
    return _run(sha512_blocks((data,)))


# -- the curve: edwards25519, extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, T = XY/Z --


def _add(p, q):
    # add-2008-hwcd-3 (a = -1): 8 multiplications
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = t1 * _D2 * t2 % _P
    d = 2 * z1 * z2 % _P
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _dbl(p):
    # dbl-2008-hwcd (a = -1): 4 multiplications, 4 squarings
    x1, y1, z1, _ = p
    a = x1 * x1 % _P
    b = y1 * y1 % _P
    c = 2 * z1 * z1 % _P
    h = a + b
    s = x1 + y1
    e = h - s * s % _P
    g = a - b
    f = c + g
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _decode(s):
    """The point encoded by 32 bytes s (RFC 8032 §5.1.3), or None."""
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= _P:
        return None
    yy = y * y % _P
    x2 = (yy - 1) * pow(_D * yy + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) >> 3, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
        if (x * x - x2) % _P:
            return None
    if x & 1 != sign:
        if x == 0:
            return None
        x = _P - x
    return (x, y, 1, x * y % _P)


def _encode(p):
    x, y, z, _ = p
    zi = pow(z, _P - 2, _P)
    x = x * zi % _P
    y = y * zi % _P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def verify(pub, sig, chunks):
    """Whether sig (64 bytes) is pub's (32 bytes) Ed25519 signature of the concatenation of
    `chunks` (an iterable of bytes-like, read once: a file's blocks). A generator: yields
    after each slice of work, returns True or False (see the module's header)."""
    if len(pub) != 32 or len(sig) != 64:
        return False
    s = int.from_bytes(sig[32:], "little")
    if s >= _L:  # RFC 8032 §5.1.7: a non-canonical S is refused (no malleability)
        return False
    yield
    a = _decode(pub)
    if a is None:
        return False
    yield
    digest = yield from sha512_blocks(_prefixed(sig[:32], pub, chunks))
    h = int.from_bytes(digest, "little") % _L
    # [s]B - [h]A, by Straus' method: one doubling a bit, one addition of B, -A or B - A.
    b = (_BX, _BY, 1, _BX * _BY % _P)
    na = ((_P - a[0]) % _P, a[1], 1, (_P - a[3]) % _P)
    table = (None, b, na, _add(b, na))
    q = (0, 1, 1, 0)
    i = 255
    while i >= 0:
        stop = i - _BITS
        while i > stop and i >= 0:
            q = _dbl(q)
            k = (s >> i & 1) | (h >> i & 1) << 1
            if k:
                q = _add(q, table[k])
            i -= 1
        yield
    return _encode(q) == bytes(sig[:32])  # one inversion: a slice of its own


def _prefixed(r, pub, chunks):
    yield r
    yield pub
    for c in chunks:
        yield c


def _run(gen):
    try:
        while True:
            next(gen)
    except StopIteration as e:
        return e.value


def check(pub, sig, msg):
    """verify() of one message, run to the end in one go."""
    return bool(_run(verify(pub, sig, (msg,))))
