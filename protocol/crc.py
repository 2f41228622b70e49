# CRC-16/IBM-3740 (also known as CRC-16/CCITT-FALSE): width 16, poly 0x1021, init 0xFFFF,
# not reflected, xorout 0x0000; check value crc16(b"123456789") == 0x29B1 (reveng CRC catalogue).
#
# Why this variant: the polynomial (x+1)(x^15+x^14+x^13+x^12+x^4+x^3+x^2+x+1) detects every
# error of 1, 2 or 3 bits and every odd number of bit errors in frames up to 32751 bits
# (Koopman & Chakravarty 2004, HD=4), far above our 254-byte maximum frame; every burst of up
# to 16 bits is caught. Init 0xFFFF (not XMODEM's 0) also catches leading zero bytes.
# CPython ships it in C as binascii.crc_hqx(data, 0xFFFF), so the host decodes at C speed;
# MicroPython has no crc_hqx, so the device uses the 512-byte table below (one table lookup
# per byte, no allocation).
from array import array

try:
    from binascii import crc_hqx as _crc_hqx
except ImportError:  # MicroPython
    _crc_hqx = None

CHECK = 0x29B1  # crc16(b"123456789"): the catalogue's check value; tests assert it


def _make_table():
    t = array("H", bytes(512))  # 256 zeros, without a 256-int list on the heap
    for i in range(256):
        c = i << 8
        for _ in range(8):
            if c & 0x8000:
                c = ((c << 1) ^ 0x1021) & 0xFFFF
            else:
                c = (c << 1) & 0xFFFF
        t[i] = c
    return t


_TABLE = _make_table()
del _make_table  # run once: its code need not stay loaded


def crc16_table(data, start=0, end=-1, crc=0xFFFF):
    """CRC over data[start:end] (end -1 = len(data)); table-driven, allocation-free."""
    if end < 0:
        end = len(data)
    t = _TABLE
    for i in range(start, end):
        crc = ((crc << 8) & 0xFFFF) ^ t[((crc >> 8) ^ data[i]) & 0xFF]
    return crc


def crc16(data, start=0, end=-1):
    """CRC-16/IBM-3740 of data[start:end]. Uses C code on CPython, the table on MicroPython."""
    if _crc_hqx is not None:
        if end < 0:
            end = len(data)
        if start == 0 and end == len(data):
            return _crc_hqx(data, 0xFFFF)
        return _crc_hqx(memoryview(data)[start:end], 0xFFFF)
    return crc16_table(data, start, end)


def crc16_frame(raw):
    """CRC of a frame without its 2-byte CRC field (the decoder's hot path)."""
    if _crc_hqx is not None:
        return _crc_hqx(raw[:-2], 0xFFFF)
    return crc16_table(raw, 0, len(raw) - 2)
