# NTC thermistor: ADC code -> temperature in 0.1 degC, and open/short detection.
#
# The firmware holds no floats: the beta / Steinhart-Hart model and the divider maths live in
# tools/gen_ntc_table.py, which writes efd/ntc_table.py (temperatures at every STEP-th ADC code).
# Here we only look up and interpolate, in integers.
#
# Error budget. Temperature detectors sold for this job (GB 14287.3) cover 45..150 degC with
# +-1..+-2 degC accuracy, and the alarm set value sits at 70-80 % of the cable rating (PVC 70,
# XLPE 90 degC). The reading must be within +-1 degC over 0..150 degC; the conversion spends at
# most 0.5 degC of that, leaving the rest to the thermistor, the divider resistors, the 3.3 V
# rail and the ADC. The table's step is the largest power of two that meets 0.5 degC at every
# integer code in 0..150 degC; for the reference wiring (10 k NTC, beta 3950, + 470 ohm in
# series, low side, 10 k to 3.3 V) that is 16 codes: 206 int16 entries, 412 bytes, 0.37 degC
# worst case (near 146 degC). Step 32 would be 0.94 degC: the curve bends hardest at the hot
# end (near code 257 = 150 degC a code is already ~0.63 degC), which is where accuracy matters.
#
# Codes are 4095 * V / 3.3 V: the ESP32 HAL converts the calibrated ADC.read_uv() to that
# scale. The ESP32 ADC at 11 dB reads nothing below ~0.14 V, so the series resistor keeps the
# divider at 0.21 V (150 degC) .. 2.55 V (0 degC), inside its calibrated near-linear range
# (docs/ntc.md).
#
# Valid range and rails. Codes whose model temperature is -10..180 degC are the valid range
# (CODE_MIN..CODE_MAX). Readings below RAIL_LO (175 mV) or above RAIL_HI (2900 mV) are a broken
# lead: the table module says which rail is open and which is short for its wiring (low-side
# NTC: a short leaves 148 mV across the series resistor, at the ADC floor; open reads the ADC's
# saturation, 3.0..3.3 V). Codes between the valid range and a rail (180 .. about 190 degC, or
# -10 .. about -14 degC) are plausible but off the table: classify() accepts them and
# to_decic() clamps them to the end of the valid range. Clamping fails safe: a reading hotter
# than 180 degC reports 180 degC, above every set value (45..150), so it alarms; a reading
# colder than -10 degC never alarms. A thermistor really heated past ~190 degC reads as a
# short, but it passes every alarm threshold first, and alarms latch; one colder than ~-14 degC
# reads as open (a fault report, not a missed alarm).
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
    lies between the table's ends (-10 and 180 degC for the reference wiring); ask classify()
    whether the code is a fault.
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
