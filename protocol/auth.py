# Frame authentication: HMAC-SHA256 (RFC 2104, FIPS 198-1) with a per-device 32-byte key,
# tag truncated to 8 bytes, plus a 32-bit monotonic counter against replay.
#
# MicroPython has hashlib.sha256 but no hmac module, so HMAC is written out here from RFC 2104
# and tested against CPython's hmac. The key pads are computed once per key (Key object);
# each tag then costs two SHA-256 runs over the 64-byte pad plus the frame.
#
# Why 64-bit tags: a forger must guess the tag online, one attempt per frame the detector
# receives. NIST SP 800-107 Rev.1 §5.3.4 puts the forgery resistance of a λ-bit truncated
# HMAC at λ bits and allows λ >= 32; LoRaWAN and IEEE 802.15.4 ship 32-bit MICs. At 64 bits
# and even 1000 forged frames/s (far above a 9600-baud RS-485 line's ~40 frames/s) the
# expected time to one success is 2^64 / 1000 s = ~5.8e8 years. Birthday bounds do not
# apply: the attacker cannot compute tags offline without the key. Full 32-byte tags would
# more than double a command frame.
import hashlib

from efd.compat import const

TAG_LEN = const(8)
_KEY_LEN = const(32)  # per-device key; RFC 2104 §3: at least the hash output length (32 bytes)
COUNTER_MAX = 0xFFFFFFFF


class Key:
    """A per-device HMAC-SHA256 key with its inner/outer pads precomputed."""

    def __init__(self, key):
        key = bytes(key)
        if len(key) > 64:  # RFC 2104: longer keys are hashed first
            key = hashlib.sha256(key).digest()
        # The pads are XORed in place in 64-byte buffers: a list comprehension would build a
        # 64-item list (512 bytes on a 64-bit port) for a moment, at boot when the heap is most
        # fragmented (docs/firmware.md, Memory budget).
        ipad = bytearray(64)
        ipad[: len(key)] = key
        opad = bytearray(ipad)
        for i in range(64):
            ipad[i] ^= 0x36
            opad[i] ^= 0x5C
        self._ipad = bytes(ipad)
        self._opad = bytes(opad)

    def mac(self, data, start=0, end=-1):
        """Full 32-byte HMAC-SHA256 over data[start:end]."""
        if end < 0:
            end = len(data)
        h = hashlib.sha256(self._ipad)
        h.update(memoryview(data)[start:end])
        inner = h.digest()
        h = hashlib.sha256(self._opad)
        h.update(inner)
        return h.digest()

    def tag(self, data, start=0, end=-1):
        """The 8-byte truncated tag (leftmost bytes, as RFC 2104 §5 prescribes)."""
        return self.mac(data, start, end)[:TAG_LEN]


def equal(a, b):
    """Compare two byte strings in time independent of where they differ (no early exit), so
    response timing does not leak how many leading tag bytes a forgery got right."""
    if len(a) != len(b):
        return False
    acc = 0
    for i in range(len(a)):
        acc |= a[i] ^ b[i]
    return acc == 0


def make_counter(boot_count, n):
    """Device-side counter construction (SPEC.md §7.3): the persisted boot count in the top 16
    bits, a per-boot frame count in the low 16, so the device never writes flash per frame and
    the counter still only goes up across reboots. The caller bumps the persisted boot count
    when n would pass 0xFFFF."""
    return ((boot_count & 0xFFFF) << 16) | (n & 0xFFFF)
