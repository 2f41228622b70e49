# Detector settings: names, units, defaults, allowed ranges and validation.
#
# These names are the firmware's own, used unchanged by the config file on flash, the
# set-config command, and the simulator's scenario files. All values are integers in the
# units the name says. Ranges come from the standards and from vendor practice:
#   leak_set_ma   20..1000, default 300   GB 14287.2 (set value <= 1000 mA); GB 50116 §9.2 and
#                                         GB 51348 §13.5.6 place the alarm at 300-500 mA
#   leak_delay_s  0..60, default 1        vendor range 0-60 s. The 30 s alarm-time limit of
#                                         GB 14287.2 holds for delays up to 25 s (docs/detection.md)
#   temp_set_c    45..150, default 70     GB 14287.3 vendors 45-150 degC; PVC cable max 70 degC
#   temp_delay_s  0..30, default 5        keeps the alarm within GB 14287.3's 40 s
#   fault_delay_s 1..9, default 2         faults reported within 10 s (issue), GB 50166 < 100 s
# A percentage of 0 switches that pre-alarm off.

# Keyword arguments, not a {"name": value} literal: the names are then identifiers, interned
# once as qstrs (~26 bytes each on the x64 port) instead of string objects (~60 bytes). Every
# later module's "leak_set_ma" etc. then loads as a reference to the same qstr, and NAMES
# below, parsed after these, is a tuple of qstrs too (docs/firmware.md, Memory budget).
DEFAULTS = dict(
    mains_hz=50,
    leak_set_ma=300,
    leak_delay_s=1,
    leak_prealarm_pct=70,
    leak_hyst_pct=5,
    temp_set_c=70,
    temp_delay_s=5,
    temp_prealarm_pct=90,
    temp_hyst_c=2,
    temp_ror_c_per_min=10,
    temp_channels=4,
    line_set_a=32,
    line_delay_s=5,
    line_prealarm_pct=90,
    line_hyst_pct=5,
    phase_channels=3,
    arc_enabled=1,
    fault_delay_s=2,
    # Calibration (Q12 fixed point: units per ADC count * 4096). Defaults match the reference
    # front end in docs/hardware.md: residual 1 mA/count (full scale 1448 mA RMS), phase
    # 0.1 A/count (full scale 144 A RMS).
    res_gain_q12=4096,
    phase_gain_q12=40960,
    # CT bias band in ADC counts: the window mean of a healthy CT input sits at mid-scale; a
    # mean outside this band is a wiring fault (docs/hardware.md, CT connection monitoring).
    ct_bias_lo=1648,
    ct_bias_hi=2448,
)


# Wire order: a setting's parameter id in CONFIG and SET_CONFIG is its position here + 1
# (protocol/SPEC.md §5), so names are only ever appended, never reordered or reused.
NAMES = (
    "mains_hz",
    "leak_set_ma",
    "leak_delay_s",
    "leak_prealarm_pct",
    "leak_hyst_pct",
    "temp_set_c",
    "temp_delay_s",
    "temp_prealarm_pct",
    "temp_hyst_c",
    "temp_ror_c_per_min",
    "temp_channels",
    "line_set_a",
    "line_delay_s",
    "line_prealarm_pct",
    "line_hyst_pct",
    "phase_channels",
    "arc_enabled",
    "fault_delay_s",
    "res_gain_q12",
    "phase_gain_q12",
    "ct_bias_lo",
    "ct_bias_hi",
)

# Lowest and highest value of each setting, in NAMES order (ints only: a cheap constant).
_LIMITS = (
    50, 60,  # mains_hz
    20, 1000,  # leak_set_ma
    0, 60,  # leak_delay_s
    0, 85,  # leak_prealarm_pct
    1, 10,  # leak_hyst_pct
    45, 150,  # temp_set_c
    0, 30,  # temp_delay_s
    0, 95,  # temp_prealarm_pct
    1, 10,  # temp_hyst_c
    0, 60,  # temp_ror_c_per_min
    0, 4,  # temp_channels
    1, 630,  # line_set_a
    0, 60,  # line_delay_s
    0, 95,  # line_prealarm_pct
    1, 10,  # line_hyst_pct
    0, 3,  # phase_channels
    0, 1,  # arc_enabled
    1, 9,  # fault_delay_s
    1, 60000,  # res_gain_q12: rms.GAIN_MAX keeps every product below 2^30
    1, 60000,  # phase_gain_q12
    256, 2047,  # ct_bias_lo
    2049, 3839,  # ct_bias_hi
)  # fmt: skip


def limits(key):
    """(lowest, highest) allowed for a setting name; ValueError if there is no such setting."""
    i = 2 * NAMES.index(key)
    return _LIMITS[i], _LIMITS[i + 1]


# Units, from the name's suffix: every name says its unit ("All values are integers in the
# units the name says"), so error messages need no second table. Code, not a tuple of
# strings: short literals in code are interned once; a constant tuple's strings are objects.
def unit(key):
    """The unit a setting's value is in ("" for counts, flags and Q12 gains)."""
    e = key.endswith
    if e("_c_per_min"):
        return "degC/min"
    if e("_pct"):
        return "% of set"
    if e("_ma"):
        return "mA"
    if e("_hz"):
        return "Hz"
    if e("_s"):
        return "s"
    if e("_c"):
        return "degC"
    if e("_a"):
        return "A"
    return ""


class ConfigError(ValueError):
    # other: the second setting of a refused combination (cross-field rules in make()), or None.
    def __init__(self, key, reason, other=None):
        super().__init__(key + ": " + reason)  # MicroPython has no ValueError.__init__
        self.key = key
        self.reason = reason
        self.other = other


def check(key, value):
    """Raise ConfigError if value is not acceptable for key."""
    if key not in DEFAULTS:
        raise ConfigError(key, "unknown setting")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, "must be a whole number, got " + repr(value))
    lo, hi = limits(key)
    if key == "mains_hz":
        if value not in (50, 60):
            raise ConfigError(key, "must be 50 or 60, got " + str(value))
    elif value < lo or value > hi:
        raise ConfigError(key, "must be in %d..%d %s, got %d" % (lo, hi, unit(key), value))


def make(overrides=None):
    """Defaults updated with overrides, validated. Raises ConfigError naming the key."""
    cfg = dict(DEFAULTS)
    if overrides:
        for key in overrides:
            check(key, overrides[key])
            cfg[key] = overrides[key]
    if cfg["ct_bias_lo"] >= cfg["ct_bias_hi"]:
        raise ConfigError("ct_bias_lo", "must be below ct_bias_hi", "ct_bias_hi")
    # The cross-field rules (a set value beyond its input's full scale) are efd/fullscale.py:
    # loaded by the settings commands and the host tools, not by the detector at boot.
    return cfg
