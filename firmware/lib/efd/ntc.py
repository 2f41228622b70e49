# NTC thermistor: ADC code -> temperature in 0.1 degC, and open/short detection.
#
# The firmware holds no floats: the beta / Steinhart-Hart model and the divider maths live in
# tools/gen_ntc_table.py, which writes efd/ntc_table.py (temperatures at every STEP-th ADC code).
# Here we only look up and interpolate, in integers.
#
# Error budget. Temperature detectors sold for this job (GB 14287.3) cover 45..150 degC with
# +-1..+-2 degC accuracy, and the alarm set value sits at 70-80 % of the cable rating (PVC 70,
# XLPE 90 degC). We spend at most 0.5 degC of that on the conversion, over -20..150 degC (cold
# distribution rooms to well past any set value), leaving the rest to the thermistor (+-1 %
# beta class), the fixed resistor and the ADC. The table's step is the largest power of two
# that meets 0.5 degC at every integer code in that range; for the reference wiring (10 k NTC,
# beta 3950, low side, 10 k fixed) that is 16 codes: 249 int16 entries, 498 bytes, 0.29 degC
# worst case. Step 32 would be 1.2 degC: the curve bends hardest at the hot end (near code 80 a
# code is already ~0.5 degC), which is exactly where accuracy matters. Outside -20..150 the
# table stays within 1.5 degC (hot end, 150..200 degC). The ADC, not the table, limits the hot
# end: see docs/ntc.md on the ESP32's dead zone near 0 V and the choice of fixed resistor.
#
# Valid range and rails. Codes whose model temperature is -40..200 degC are the valid range
# (CODE_MIN..CODE_MAX). Codes within RAIL (16) codes of 0 or 4095 are a broken lead: the table
# module says which rail is open and which is short for its wiring (low-side NTC: open reads
# full scale, short reads 0). Codes between the valid range and a rail (below -40 degC, or
# 200 .. about 244 degC for the reference wiring) are plausible but off the table: classify()
# accepts them and to_decic() clamps them to the end of the valid range. Clamping fails safe:
# a reading hotter than 200 degC reports the hot end (~199 degC), above every set value, so it
# alarms;
# a reading colder than -40 degC never alarms. A thermistor really heated to the short rail
# (~244 degC) would read as a fault, but it passes every alarm threshold first, and alarms latch.
#
# Cost. to_decic() is called every window for each temperature channel: a clamp, a shift, a
# mask, two array reads and one multiply, no allocation (checked with micropython.heap_lock()
# in tests/test_ntc.py). 32-bit safety: codes are clamped to CODE_MIN..CODE_MAX first;
# table entries are int16 and adjacent entries differ by < 500 (0.1 degC), so the largest
# intermediate, (t1 - t0) * f + STEP / 2 with f < STEP, is below 2**14 -- far inside the
# +-2**30 small-int range on ESP32 (the generator refuses a table that could exceed it).
from efd.compat import const
from efd.ntc_table import (
    BASE,
    CODE_MAX,
    CODE_MIN,
    FAULT_HI,
    FAULT_LO,
    RAIL_HI,
    RAIL_LO,
    SHIFT,
    TABLE,
)

OK = const(0)  # classify(): reading plausible


def to_decic(code):
    """ADC code (0..4095) -> temperature in 0.1 degC (int), linear between table entries.

    Codes outside the valid range (CODE_MIN..CODE_MAX) are clamped to it, so the result always
    lies between the table's -40 and 200 degC ends; ask classify() whether the code is a fault.
    """
    return interpolate(TABLE, BASE, SHIFT, CODE_MIN, CODE_MAX, code)


def interpolate(table, base, shift, lo, hi, code):
    """The lookup itself, on any table: tools/gen_ntc_table.py measures candidate tables with
    this very function, so the error it reports is the firmware's error."""
    if code < lo:
        code = lo
    elif code > hi:
        code = hi
    x = code - base
    i = x >> shift
    f = x & ((1 << shift) - 1)
    t0 = table[i]
    if f == 0:
        return t0  # also keeps table[i + 1] in range at the last entry
    return t0 + (((table[i + 1] - t0) * f + ((1 << shift) >> 1)) >> shift)


def classify(code):
    """0 if the reading is a plausible temperature, else efd.events.FAULT_OPEN / FAULT_SHORT."""
    if code < RAIL_LO:
        return FAULT_LO
    if code > RAIL_HI:
        return FAULT_HI
    return OK
