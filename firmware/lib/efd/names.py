# Names for efd.events' codes, for people: host tools, reports, logs. The detector sends and
# stores numbers only and never imports this module (docs/firmware.md, Memory budget), so
# these tables cost the board no heap.

# Event kinds (efd.events PREALARM=1 .. ROR=8).
KIND_NAMES = ("", "prealarm", "alarm", "clear", "fault", "fault_clear", "reset", "selftest", "ror")

# Channels (efd.events RESIDUAL=0, TEMP0..3=1..4, PHASE0..2=5..7, ARC=8).
CHANNEL_NAMES = (
    "residual",
    "temp0",
    "temp1",
    "temp2",
    "temp3",
    "phase0",
    "phase1",
    "phase2",
    "arc",
)

# Sensor fault codes (efd.events FAULT_OPEN=1 .. FAULT_TIMING=5: the value of a FAULT event).
FAULT_NAMES = ("", "open", "short", "overrange", "bias", "sampling")

__all__ = ["CHANNEL_NAMES", "FAULT_NAMES", "KIND_NAMES", "as_dict"]


def as_dict(event):
    """An event tuple (kind, channel, value, threshold, t) with names instead of codes."""
    kind, channel, value, threshold, t = event
    return {
        "kind": KIND_NAMES[kind],
        "channel": CHANNEL_NAMES[channel],
        "value": value,
        "threshold": threshold,
        "t_ms": t,
    }
