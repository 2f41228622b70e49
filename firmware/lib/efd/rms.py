# Windowed true RMS of one 12-bit ADC channel, in integer arithmetic that is 32-bit safe.
#
# Sampling plan (documented in docs/detection.md):
#   40 samples per mains cycle -> 2000 Hz at 50 Hz, 2400 Hz at 60 Hz. Nyquist is the 20th
#   harmonic, so the 15th (750 Hz / 900 Hz), which the issue and real VFD/SMPS leakage need, is
#   measured with margin; an RC anti-alias filter on the board handles the rest.
#   A window is 5 whole cycles = 200 samples (100 ms at 50 Hz): an integer number of cycles makes
#   every harmonic below the 20th average exactly over the window (coherent sampling).
#
# Why 200 samples: samples are taken relative to mid-scale, d = x - 2048, so |d| <= 2048 and
#   d^2 <= 2^22. Sum(d^2) over N samples must stay a MicroPython small int (< 2^30 on the ESP32),
#   so N <= 256. 200 is the largest whole number of 40-sample cycles below that.
#
# DC offset: removed by the window mean, exactly: with S1 = sum(d), S2 = sum(d^2),
#   N^2 * var = N*S2 - S1^2, but N*S2 overflows. Writing S1 = q*N + r (0 <= r < N):
#   T = S2 - q*(S1 + r) = sum((d - q)^2) >= 0 and var = T/N - r^2/N^2, every term small.
#   (|q| <= 2048, |S1 + r| <= 409800 -> |q*(S1 + r)| < 2^30.)
# The result is var * 64 (three fractional bits of RMS after the square root).
from efd.compat import const, micropython, ptr16, ptr32

SAMPLES_PER_CYCLE = const(40)
_WINDOW_CYCLES = const(5)
N = const(200)  # SAMPLES_PER_CYCLE * _WINDOW_CYCLES
MID = const(2048)  # 12-bit mid-scale
ADC_MAX = const(4095)
# A sample at or beyond these counts is clipped: the ESP32 ADC saturates at 0 and 4095 and is
# non-linear in the last few counts (Espressif ADC docs), so the edge counts are not trusted.
CLIP_LO = const(3)
CLIP_HI = const(4092)
_RMS_FRAC_BITS = const(3)  # rms8 = RMS in counts * 8
_GAIN_SHIFT = const(12)  # calibration gains are Q12: units per count * 4096
GAIN_MAX = const(60000)  # rms8 <= 16380, 16380 * 60000 + 2^14 < 2^30

# Indexes into the `out` array filled by accumulate().
S1 = const(0)
S2 = const(1)
CLIPPED = const(2)


def accumulate(buf, n, out):
    """Plain version: S1, S2 and the clipped-sample count of buf[0:n] into out[0:3]."""
    s1 = 0
    s2 = 0
    clipped = 0
    for i in range(n):
        x = buf[i]
        if x <= CLIP_LO or x >= CLIP_HI:
            clipped += 1
        d = x - MID
        s1 += d
        s2 += d * d
    out[S1] = s1
    out[S2] = s2
    out[CLIPPED] = clipped
    return s2


@micropython.viper
def accumulate_viper(buf, n: int, out) -> int:
    """Viper version of accumulate(): same results (tests prove it on the unix port)."""
    p = ptr16(buf)
    o = ptr32(out)
    s1 = 0
    s2 = 0
    clipped = 0
    i = 0
    while i < n:
        x = int(p[i])
        if x <= 3 or x >= 4092:  # CLIP_LO / CLIP_HI (viper inlines literals, not globals)
            clipped += 1
        d = x - 2048
        s1 += d
        s2 += d * d
        i += 1
    o[0] = s1
    o[1] = s2
    o[2] = clipped
    return s2


def variance64(n, s1, s2):
    """Population variance of the window in counts^2, times 64, from S1 and S2."""
    # Floor division/modulo: q = floor(S1/N) and 0 <= r < N on both interpreters.
    q = s1 // n
    r = s1 - q * n
    t = s2 - q * (s1 + r)  # = sum((d - q)^2), 0 <= t <= S2 + N
    v = (t // n) * 64 + ((t % n) * 64) // n - (r * r * 64) // (n * n)
    if v < 0:  # only from the two floor divisions rounding in opposite directions
        v = 0
    return v


def isqrt(x):
    """floor(sqrt(x)) for 0 <= x < 2^30, bit by bit: no division, no allocation."""
    r = 0
    bit = 1 << 28
    while bit > x:
        bit >>= 2
    while bit:
        if x >= r + bit:
            x -= r + bit
            r = (r >> 1) + bit
        else:
            r >>= 1
        bit >>= 2
    return r


def rms8(n, s1, s2):
    """RMS of the window in ADC counts * 8 (0 .. 16380), rounded to nearest."""
    v = variance64(n, s1, s2)
    r = isqrt(v)
    # (r + 1/2)^2 = r^2 + r + 1/4: round up when v lies past that midpoint.
    if v - r * r > r:
        r += 1
    return r


def to_units(r8, gain_q12):
    """Scale rms8 by a Q12 calibration gain (units per count * 4096), rounded."""
    # r8 * gain < 16381 * 60000 < 2^30: see GAIN_MAX.
    shift = _GAIN_SHIFT + _RMS_FRAC_BITS  # folded to one constant by the compiler
    return (r8 * gain_q12 + (1 << (shift - 1))) >> shift


def mean_code(n, s1):
    """Window mean in ADC counts (the CT's bias point), rounded down."""
    return MID + s1 // n
