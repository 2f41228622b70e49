"""Physical units for what the gateway publishes, lists and exports (issue 12): degC, A, mA,
degC/min and fault names instead of the wire's integers.

Every rule comes from protocol.host.physical() and its CHANNEL_UNITS, never from a table of our
own: the Python helpers call physical() on the row's values, and the rules the SQL views need
(store.py: a divisor and unit per event kind and channel, per telemetry column, per snapshot
channel; the status bits' names) are read off physical() and status_flags() by probing them
with a known value, so the views, the MQTT JSON and `query` always agree with tools.decode.
The tables keep the wire's integers: they are the record.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from efd import names
from protocol import host

_PROBE = 1_000_000  # divisible by every divisor physical() applies; read back exactly


def event_physical(
    kind: Any, channel: Any, value: int | None, threshold: int | None
) -> dict[str, Any]:
    """An event's (or an alarm state's) value and threshold as physical() presents them:
    {"value", "threshold"} in the unit of the kind and channel, plus "units" (omitted for a
    fault, whose code is named under "fault", and for a self-test's 1 pass / 0 fail)."""
    if value is None:
        return {"value": None, "threshold": threshold}
    thr = 0 if threshold is None else threshold
    d = host.physical(
        {"type": "event", "kind": kind, "channel": channel, "value": value, "threshold": thr}
    )
    out = {k: d[k] for k in ("value", "threshold", "units", "fault") if k in d}
    if threshold is None:
        out["threshold"] = None
    return out


def state_kind(kind: str | None, state: str) -> str:
    """The kind of event that last set an alarm_state row's value. Rows written before the
    gateway kept it (alarm_state.kind NULL): a fault's value is its code, anything else a
    reading in the channel's unit."""
    if kind:
        return kind
    return "fault" if state == "fault" else "alarm"


def command_args(args: dict) -> dict:
    """A command request's fields with "units" for set_config's params (physical())."""
    d = host.physical({**args, "type": "command"})
    if "type" in args:
        d["type"] = args["type"]
    else:
        del d["type"]
    return d


def result_param(cmd: Any, status: Any, value: Any) -> str | None:
    """The refused setting's name for a set_config RESULT `bad_argument` (its value is the
    parameter id), as Frame.to_dict() adds it; None otherwise."""
    if cmd == "set_config" and status == "bad_argument" and isinstance(value, int):
        return host.param_name(value)
    return None


def flags_text(status: int | None) -> str:
    """The status bits by name (protocol.host.status_flags), comma-separated."""
    return "" if status is None else ",".join(host.status_flags(status))


def config_units(params: list) -> dict[str, str]:
    """{setting: unit} for a CONFIG's params (physical())."""
    return host.physical({"type": "config", "params": params}).get("units", {})


# -- rules read off physical(), for the SQL views ------------------------------------------------
@cache
def event_rule(kind: str, channel: str) -> tuple[str | None, int, bool]:
    """(unit, divisor, is_fault) that physical() applies to an EVENT's value and threshold of
    this kind on this channel: unit None when they are not scaled (a fault's code, named
    instead; a self-test's 1/0)."""
    d = host.physical(
        {"type": "event", "kind": kind, "channel": channel, "value": _PROBE, "threshold": _PROBE}
    )
    if "fault" in d:
        return None, 1, True
    if "units" not in d:
        return None, 1, False
    return d["units"], round(_PROBE / d["value"]), False


def event_rules() -> list[tuple[str, str, str | None, int, bool]]:
    """event_rule for every known kind and channel: [(kind, channel, unit, div, is_fault)]."""
    return [
        (k, ch, *event_rule(k, ch)) for k in names.KIND_NAMES if k for ch in names.CHANNEL_NAMES
    ]


def fault_names() -> list[tuple[int, str]]:
    """[(fault code, name)] as physical() names them."""
    out = []
    for code in range(1, len(names.FAULT_NAMES)):
        ev = {"type": "event", "kind": "fault", "channel": "residual", "value": code}
        d = host.physical({**ev, "threshold": 0})
        out.append((code, str(d["fault"])))
    return out


# TELEMETRY: the telemetry table's columns -> (physical() key, index in its list or None).
_TEL_COLUMNS: list[tuple[str, str, int | None]] = [("residual_ma", "residual_ma", None)]
_TEL_COLUMNS += [(f"temp{i}_dc", "temp_c", i) for i in range(4)]
_TEL_COLUMNS += [(f"line{i}_ca", "line_a", i) for i in range(3)]


@cache
def telemetry_rules() -> tuple[tuple[str, str, str, int], ...]:
    """((table column, view column, unit, divisor), ...) for the TELEMETRY readings, read off
    physical(): temp0_dc -> temp0_c in degC / 10, line0_ca -> line0_a in A / 100, ..."""
    tel = {"type": "telemetry", "residual_ma": _PROBE, "temp_dc": [_PROBE] * 4}
    d = host.physical({**tel, "line_ca": [_PROBE] * 3, "status": 0})
    out = []
    for col, key, i in _TEL_COLUMNS:
        v = d[key] if i is None else d[key][i]
        view_col = key if i is None else key.replace("_", f"{i}_", 1)
        out.append((col, view_col, d["units"][key], round(_PROBE / v)))
    return tuple(out)


def telemetry_units() -> dict[str, str]:
    """{view column: unit} for telemetry_si."""
    return {view: unit for _c, view, unit, _d in telemetry_rules()}


@cache
def snapshot_rule(channel: str) -> tuple[str, int]:
    """(unit, divisor) physical() applies to a SNAPSHOT of this channel (after 10^scale_exp)."""
    d = host.physical({"type": "snapshot", "channel": channel, "scale_exp": 0, "samples": [_PROBE]})
    return d["units"], round(_PROBE / d["samples"][0])


def status_bits() -> list[tuple[int, str]]:
    """[(bit, name)] of the status word's named bits (protocol.host.status_flags)."""
    out = []
    for b in range(16):
        got = host.status_flags(1 << b)
        if got:
            out.append((1 << b, got[0]))
    return out


def setting_units() -> list[tuple[str, str]]:
    """[(setting, unit)] for every setting this host knows (physical()'s config units)."""
    known = [n for n in host.PARAMS if n]
    u = config_units([[n, 0] for n in known])
    return [(n, u.get(n, "")) for n in known]


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))
