"""Parameter ids never change meaning (issue 12): the normative id table is SPEC.md section 5.5;
the detector numbers its settings by position in efd.config.NAMES (id = position + 1, which
keeps the device's heap free of a second table), and the host names them through
protocol.host.PARAMS. Reordering or removing a setting, or adding one without giving it the next
id in SPEC.md, fails here before any frame carries a wrong id."""

import re
from pathlib import Path

from efd import config
from protocol import host

SPEC = Path(__file__).resolve().parents[2] / "protocol" / "SPEC.md"


def spec_ids() -> dict[int, str]:
    text = SPEC.read_text()
    section = text[text.index("### 5.5 CONFIG") : text.index("### 5.6 SNAPSHOT")]
    section = section[section.index("Parameter ids") : section.index("Unknown ids")]
    ids: dict[int, str] = {}
    for line in section.splitlines():
        for num, name in re.findall(r"\|\s*(\d+)\s*\|\s*([a-z][a-z0-9_]*)\s*(?=\|)", line):
            assert int(num) not in ids, f"id {num} listed twice in SPEC.md 5.5"
            ids[int(num)] = name
    return ids


def test_spec_table_is_complete_and_dense():
    ids = spec_ids()
    assert sorted(ids) == list(range(1, len(ids) + 1)), "ids are 1..N with no gap"
    assert len(ids) >= 22


def test_detector_ids_are_the_spec_ids():
    ids = spec_ids()
    assert len(config.NAMES) == len(ids), (
        "a setting was added or removed: give a new one the next id in SPEC.md 5.5 (append "
        "only), never reuse an id"
    )
    for i, name in enumerate(config.NAMES):
        assert ids[i + 1] == name, (
            f"id {i + 1} is {ids[i + 1]!r} in SPEC.md, {name!r} on the detector"
        )


def test_host_names_are_the_spec_ids():
    ids = spec_ids()
    assert host.PARAMS[0] in ("", None)
    assert {i: host.PARAMS[i] for i in ids} == ids
