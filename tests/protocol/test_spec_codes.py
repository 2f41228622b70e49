"""The numbers on the wire are SPEC.md's: channels, event kinds and fault codes (section 2) and
the TELEMETRY status bits (section 5.2), on the detector (efd.events, Detector.status) and in
every name a host shows (efd.names, protocol.host). The tables are read from SPEC.md itself,
the normative text, so a code changed on one side only fails here."""

import re
from pathlib import Path

import pytest

from efd import events as ev
from efd import names
from protocol import host, messages

SPEC = (Path(__file__).resolve().parents[2] / "protocol" / "SPEC.md").read_text()
DASH = "\u2013"  # SPEC.md writes ranges with an en dash: 1\u20134


def _range(code: str, name: str) -> list[tuple[int, str]]:
    """'1-4', 'temp0-3' (en dashes) -> [(1, 'temp0'), ..., (4, 'temp3')]."""
    if DASH not in code:
        return [(int(code), name)]
    a, b = (int(x) for x in code.split(DASH))
    stem = re.match(r"[a-z]+", name).group(0)
    first = int(name[len(stem) : name.index(DASH)])
    return [(a + k, f"{stem}{first + k}") for k in range(b - a + 1)]


def section2() -> tuple[dict[int, str], dict[int, str], dict[int, str]]:
    text = SPEC[SPEC.index("| Channel | Name") :]
    channels, kinds = {}, {}
    for line in text.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if cells[0]:
            channels.update(_range(cells[0], cells[1]))
        kinds[int(cells[4])] = cells[5]
    words = {"open": "open", "shorted": "short", "over-range": "overrange"}
    words |= {"CT bias": "bias", "sampling": "sampling"}
    faults = {}
    para = SPEC[SPEC.index("Fault codes:") :][:400]
    for code, word in re.findall(r"(\d) (open|shorted|over-range|CT bias|sampling)", para):
        faults[int(code)] = words[word]
    return channels, kinds, faults


def test_channel_numbers():
    channels, _, _ = section2()
    assert channels == dict(enumerate(names.CHANNEL_NAMES))
    assert len(channels) == ev.N_CHANNELS
    where = {n: k for k, n in channels.items()}
    assert (
        where["residual"],
        where["temp0"],
        where["phase0"],
        where["arc"],
    ) == (ev.RESIDUAL, ev.TEMP0, ev.PHASE0, ev.ARC)


def test_event_kinds():
    _, kinds, _ = section2()
    assert kinds == {k: n for k, n in enumerate(names.KIND_NAMES) if k}
    for code, name in kinds.items():
        assert getattr(ev, name.upper()) == code, name


def test_fault_codes():
    _, _, faults = section2()
    assert faults == {k: n for k, n in enumerate(names.FAULT_NAMES) if k}
    detector = {
        "open": ev.FAULT_OPEN,
        "short": ev.FAULT_SHORT,
        "overrange": ev.FAULT_OVERRANGE,
        "bias": ev.FAULT_BIAS,
        "sampling": ev.FAULT_TIMING,
    }
    assert {code: name for name, code in detector.items()} == faults


def status_bits() -> dict[int, str]:
    row = next(line for line in SPEC.splitlines() if "| status | bit n (0" + DASH + "8)" in line)
    return {int(b): what.strip() for b, what in re.findall(r"bit (\d+) ([a-z \-]+)", row)}


def test_status_flag_bits():
    bits = status_bits()
    assert bits == {
        9: "pre-alarm active",
        10: "sensor fault active",
        11: "self-test running",
        12: "clock not set",
        13: "unacknowledged events queued",
    }
    flags = (
        messages.ST_PREALARM,
        messages.ST_FAULT,
        messages.ST_SELFTEST,
        messages.ST_CLOCK_UNSET,
        messages.ST_PENDING,
    )
    assert [f.bit_length() - 1 for f in flags] == sorted(bits)
    assert [host.status_flags(f) for f in flags] == [[n] for n in host.STATUS_FLAGS]


@pytest.mark.parametrize("ch", range(9))
def test_status_alarm_bit_per_channel(ch):
    assert host.status_flags(1 << ch) == ["alarm:" + names.CHANNEL_NAMES[ch]]


def test_status_word_names_everything_set():
    every = (1 << 14) - 1
    assert host.status_flags(every) == [f"alarm:{n}" for n in names.CHANNEL_NAMES] + list(
        host.STATUS_FLAGS
    )
    assert host.status_flags(0) == []
    assert host.status_flags(0xC000) == []  # reserved bits: ignored
