# CRC-16/IBM-3740 (also known as CRC-16/CCITT-FALSE): width 16, poly 0x1021, init 0xFFFF,
# not reflected, xorout 0x0000; check value crc16(b"123456789") == 0x29B1 (reveng CRC catalogue).
#
# Why this variant: the polynomial (x+1)(x^15+x^14+x^13+x^12+x^4+x^3+x^2+x+1) detects every
# error of 1, 2 or 3 bits and every odd number of bit errors in frames up to 32751 bits
# (Koopman & Chakravarty 2004, HD=4), far above our 254-byte maximum frame; every burst of up
# to 16 bits is caught. Init 0xFFFF (not XMODEM's 0) also catches leading zero bytes.
# CPython ships it in C as binascii.crc_hqx(data, 0xFFFF), so the host decodes at C speed;
# MicroPython has no crc_hqx, so the device runs crc16_py below: byte-at-a-time without a
# table (the shift form of poly 0x1021; a 512-byte table was 560 bytes of the detector's heap
# for a few microseconds per frame, and a frame goes out every few seconds at 9600 baud).
try:
    from binascii import crc_hqx as _crc_hqx
except ImportError:  # MicroPython
    _crc_hqx = None

CHECK = 0x29B1  # crc16(b"123456789"): the catalogue's check value; tests assert it


def crc16_py(data, start=0, end=-1, crc=0xFFFF):
    """CRC over data[start:end] (end -1 = len(data)) in Python, allocation-free."""
    if end < 0:
        end = len(data)
    for i in range(start, end):
        # x = the byte's index into the table a table-driven CRC would use; the table entry
        # for x is (x << 12) ^ (x << 5) ^ x once x's top nibble is folded in (x ^= x >> 4).
        x = ((crc >> 8) ^ data[i]) & 0xFF
        x ^= x >> 4
        crc = ((crc << 8) ^ (x << 12) ^ (x << 5) ^ x) & 0xFFFF
    return crc


if _crc_hqx is None:  # MicroPython: crc16_py is the CRC (no wrapper code on the detector)
    crc16 = crc16_py

    def crc16_frame(raw):
        """CRC of a frame without its 2-byte CRC field (the decoder's hot path)."""
        return crc16_py(raw, 0, len(raw) - 2)

else:

    def crc16(data, start=0, end=-1):
        """CRC-16/IBM-3740 of data[start:end], in C (binascii.crc_hqx)."""
        if end < 0:
            end = len(data)
        if start == 0 and end == len(data):
            return _crc_hqx(data, 0xFFFF)
        return _crc_hqx(memoryview(data)[start:end], 0xFFFF)

    def crc16_frame(raw):
        """CRC of a frame without its 2-byte CRC field (the decoder's hot path)."""
        return _crc_hqx(raw[:-2], 0xFFFF)
