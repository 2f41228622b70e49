# Cross-field rules of the settings: combinations that make an alarm impossible.
#
# A set value beyond its CT input's full scale (at that input's Q12 gain) is never reliably
# reached: the samples clip, the reading is only a lower bound (efd.detector FAULT_OVERRANGE),
# and GB 14287.2 asks for an alarm at >= 100 % of the set value, always. Exactly at full scale is
# allowed. efd.config.make checks every setting alone; check() here the combinations. A module of
# its own: app.settings (set_config, boot) and the host tools load it; the detector's main loop
# never holds it (docs/firmware.md, Memory budget).
from efd.config import ConfigError

# (set value, its gain, the set value's unit in the gain's units): mA per mA, 0.01 A per A.
RULES = (("leak_set_ma", "res_gain_q12", 1), ("line_set_a", "phase_gain_q12", 100))


def full_scale(gain_q12):
    """A CT input's full scale in its gain's units (mA residual, 0.01 A phase): the RMS of the
    largest sine the 12-bit ADC holds unclipped about mid-scale (2047 counts peak; 14142 /
    10000 = sqrt(2)). (A long int on the ESP32 for a moment: rare code.)"""
    return 2047 * gain_q12 * 10000 // (14142 * 4096)


def check(cfg):
    """Raise ConfigError(set value, reason, gain) for the first rule cfg breaks."""
    for name, gain, k in RULES:
        fs = full_scale(cfg[gain])
        if cfg[name] * k > fs:
            raise ConfigError(
                name,
                "%d %s is above the input's full scale, %d.%02d %s at %s %d"
                % (cfg[name], "mA" if k == 1 else "A", fs // k, fs % k if k > 1 else 0,
                   "mA" if k == 1 else "A", gain, cfg[gain]),
                gain,
            )  # fmt: skip
