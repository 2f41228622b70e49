"""The ESP32 API table on the host: load it, and ask whether the ESP32 port would accept a call.

The rules live in one place, tools/twin/board/api.py, which the board twin runs under
MicroPython; this module loads that same file into CPython so host tests and the twin cannot
disagree about what the port refuses.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

TABLE = Path(__file__).with_name("esp32_api.json")
BOARD_API = Path(__file__).parent / "board" / "api.py"


def load(path: Path = TABLE) -> dict[str, Any]:
    """The table written by tools/twin/gen_api.py."""
    table: dict[str, Any] = json.loads(Path(path).read_text())
    return table


@cache
def _board() -> Any:
    # Loaded by path: tools/twin/board/ holds the twin's `machine`/`time` and is not a package.
    spec = importlib.util.spec_from_file_location("_twin_board_api", BOARD_API)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def _default_table() -> dict[str, Any]:
    return load()


def check_call(
    module: str,
    cls: str | None,
    name: str | None,
    nargs: int | None,
    kwargs: Iterable[str] = (),
    table: dict[str, Any] | None = None,
) -> str | None:
    """None if the ESP32 port accepts `module[.cls].name(<nargs positional>, **kwargs)`, else
    "<Exception>: <the port's message> [<which name or keyword, and what is allowed>]".

    cls None: a module-level name; name None: the constructor of `cls`; nargs None: attribute
    access only (no call); nargs never counts self.
    """
    r = _board().why(module, cls, name, nargs, list(kwargs), table or _default_table())
    if r is None:
        return None
    exc, message, detail = r
    return f"{exc.__name__}: {message} [{detail}]"


# What the twin models (tools/twin/board/machine.py, esp32.py): the run gives the twin only these
# entries. The whole table as MicroPython objects would sit in the twin's heap, and every
# collection the firmware triggers (gc.threshold) would walk it: a run became ~4x slower.
MODELLED = {
    "machine": (
        "Pin",
        "ADC",
        "PWM",
        "UART",
        "WDT",
        "RTC",
        "freq",
        "reset",
        "soft_reset",
        "reset_cause",
        "unique_id",
        "idle",
        "disable_irq",
        "enable_irq",
    ),
    "esp32": ("PCNT",),
}
_DOC_KEYS = frozenset(
    (
        "source",
        "c",
        "c_fun",
        "c_obj",
        "c_type",
        "signature",
        "notes",
        "args_source",
        "args_fun",
        "args_fun_source",
        "args_linkage",
        "args_note",
    )
)


def _strip(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in _DOC_KEYS}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def for_twin(table: dict[str, Any] | None = None) -> dict[str, Any]:
    """The part of the table the twin checks against: modelled names, no documentation."""
    t = table or _default_table()
    out: dict[str, Any] = {"modules": {}}
    for mod, names in MODELLED.items():
        m = t["modules"][mod]
        members = {n: _strip(m["members"][n]) for n in names if n in m["members"]}
        out["modules"][mod] = {"members": members}
    return out
