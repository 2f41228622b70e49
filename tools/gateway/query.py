"""Read-side of the gateway database: alarm state, events, device liveness, CSV export, and
the fleet report against a target plan. Opens the database read-only (SQLite mode=ro;
PostgreSQL default_transaction_read_only); safe beside a running gateway (WAL / MVCC). The SQL
runs on both engines (tools/gateway/db.py).

Alarm state comes from the stored events (`alarm_state`, source "event") and, where no event
explains it, from the status bits of the detector's latest *authenticated* TELEMETRY (source
"telemetry"): an alarm latched before the gateway first heard the detector (or whose event
is still on its way) shows in the telemetry's bits 0-8 though no ALARM event was stored. An
untagged TELEMETRY is information only (anyone can send one) and never raises an alarm here.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import UTC, datetime

from efd.names import CHANNEL_NAMES
from tools.gateway import units
from tools.gateway.db import Database
from tools.gateway.registry import PlanUnit
from tools.gateway.store import view_select

OFFLINE_AFTER_S = 300.0  # a detector reports at least every minute; 5 missed reports = offline
# TELEMETRY status bits (protocol.messages, SPEC.md 5): bits 0-8 an alarm latched on that
# channel, ST_FAULT some sensor fault active (which one the frame does not say).
ST_ALARMS = (1 << len(CHANNEL_NAMES)) - 1
ST_FAULT = 0x0400


class QueryError(Exception):
    """A user mistake (bad time, unknown table): printed without a traceback."""


def parse_time(text: str, now: float | None = None) -> float:
    """Unix seconds from: a number (unix seconds), a relative age ('90s', '15m', '2h', '7d'),
    or an ISO 8601 date/time (UTC unless it carries an offset)."""
    now = time.time() if now is None else now
    t = text.strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", t)
    if m:
        mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return now - float(m.group(1)) * mult
    try:
        return float(t)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise QueryError(
            f"cannot read time {text!r}: use unix seconds, an age like 15m / 2h / 7d, "
            "or ISO 8601 like 2026-05-03T19:00"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def iso(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_telemetry(db: Database) -> dict[tuple[int, str], float]:
    """{(device, channel): when}: alarms and faults that the status bits of a device's latest
    authenticated TELEMETRY show and no stored event explains. Channel "" is a fault (the
    frame names no channel); `when` is that TELEMETRY's reception time.

    An alarm bit is explained by the channel's state `alarm` from events, and overruled by an
    event on that channel received after the TELEMETRY (a reset, say). The fault flag is
    explained by any channel in `fault`, and overruled by any event of the device received
    after the TELEMETRY. A database written before the gateway kept these bits has none."""
    if "auth_status" not in db.columns("devices"):
        return {}
    devs = db.execute(
        "SELECT device, auth_status, auth_status_at FROM devices WHERE (auth_status & ?) <> 0",
        (ST_ALARMS | ST_FAULT,),
    ).fetchall()
    if not devs:
        return {}
    state: dict[int, dict[str, tuple[str, float]]] = {}
    for dev, ch, st, since in db.execute(
        "SELECT device, channel, state, since FROM alarm_state WHERE device IN "
        "(SELECT device FROM devices WHERE (auth_status & ?) <> 0)",
        (ST_ALARMS | ST_FAULT,),
    ):
        state.setdefault(dev, {})[ch] = (st, since)
    out: dict[tuple[int, str], float] = {}
    for dev, bits, at in devs:
        chans = state.get(dev, {})
        for i, name in enumerate(CHANNEL_NAMES):
            if bits & (1 << i):
                got = chans.get(name)
                if got is None or (got[0] != "alarm" and got[1] < at):
                    out[(dev, name)] = at
        if bits & ST_FAULT and not any(st == "fault" or t >= at for st, t in chans.values()):
            out[(dev, "")] = at
    return out


def _has(db: Database, table: str, col: str) -> bool:
    return col in db.columns(table)


def _values(kind: object, channel: object, value: object, threshold: object) -> tuple:
    """(value, threshold, units, fault) as physical() presents an event's (units.py)."""
    if value is None:
        return value, threshold, "", ""
    p = units.event_physical(kind, channel, value, threshold)  # type: ignore[arg-type]
    return p["value"], p["threshold"], p.get("units", ""), p.get("fault", "")


def alarms(
    db: Database, include_normal: bool = False, raw: bool = False
) -> tuple[list[str], list[tuple]]:
    """Channels in alarm, pre-alarm or fault (with include_normal: every channel an event
    touched), from events and, labelled source "telemetry", from the latest authenticated
    TELEMETRY's status bits where no event explains them (from_telemetry). For those, `since`
    is when that TELEMETRY came, value and threshold are empty, and channel "" is a fault.
    Value and threshold in the unit of the event that set them (`units`; a fault's code
    named under `fault`); raw: the stored integers, no units or fault columns."""
    where = "" if include_normal else "WHERE a.state != 'normal'"
    kind = "a.kind" if _has(db, "alarm_state", "kind") else "NULL"
    rows = db.execute(
        "SELECT a.device, d.name, d.district, d.category, a.channel, a.state, a.since, a.value, "
        f"a.threshold, {kind} FROM alarm_state a LEFT JOIN devices d USING (device) {where}"
    ).fetchall()
    derived = from_telemetry(db)
    out = []
    for r in rows:
        if (r[0], r[4]) in derived:
            continue
        if raw:
            vals: tuple = (r[7], r[8])
        else:
            vals = _values(units.state_kind(r[9], r[5]), r[4], r[7], r[8])
        out.append((*r[:6], iso(r[6]), *vals, "event"))
    empty = (None, None) if raw else (None, None, "", "")
    if derived:
        tags = {
            d: (n, dist, cat)
            for d, n, dist, cat in db.execute(
                "SELECT device, name, district, category FROM devices WHERE (auth_status & ?) <> 0",
                (ST_ALARMS | ST_FAULT,),
            )
        }
        for (dev, ch), at in derived.items():
            n, dist, cat = tags.get(dev, (None, None, None))
            state = "alarm" if ch else "fault"
            out.append((dev, n, dist, cat, ch, state, iso(at), *empty, "telemetry"))
    out.sort(key=lambda r: (r[2] or "", r[0], r[4]))
    cols = ["device", "name", "district", "category", "channel", "state", "since", "value",
            "threshold"] + ([] if raw else ["units", "fault"]) + ["source"]  # fmt: skip
    return cols, out


def events(
    db: Database,
    since: float,
    device: int | None = None,
    kind: str | None = None,
    limit: int | None = None,
    raw: bool = False,
) -> tuple[list[str], list[tuple]]:
    """Events received since `since`: value and threshold in the channel's unit (`units`; a
    rate of rise in degC/min, a fault's code named under `fault`); raw: as stored."""
    q = (
        "SELECT e.rx, e.device, d.name, d.district, e.kind, e.channel, e.value, e.threshold, "
        "e.counter, e.dev_time, e.gateway FROM events e LEFT JOIN devices d USING (device) "
        "WHERE e.rx >= ?"
    )
    args: list = [since]
    if device is not None:
        q += " AND e.device = ?"
        args.append(device)
    if kind is not None:
        q += " AND e.kind = ?"
        args.append(kind)
    q += " ORDER BY e.rx, e.device, e.counter"
    if limit:
        q += f" LIMIT {int(limit)}"
    cols = ["rx", "device", "name", "district", "kind", "channel", "value", "threshold"]
    cols += ([] if raw else ["units", "fault"]) + ["counter", "dev_time", "gateway"]
    rows = []
    for r in db.execute(q, args):
        vals = r[6:8] if raw else _values(r[4], r[5], r[6], r[7])
        rows.append((iso(r[0]), *r[1:6], *vals, r[8], iso(r[9]), r[10]))
    return cols, rows


def devices(
    db: Database,
    offline_only: bool = False,
    after: float = OFFLINE_AFTER_S,
    now: float | None = None,
    raw: bool = False,
) -> tuple[list[str], list[tuple]]:
    """Every registered device and whether it is online; `status` the last TELEMETRY's status
    bits, and (not raw) `flags` the same bits by name (protocol.host.status_flags)."""
    now = time.time() if now is None else now
    rows = db.execute(
        "SELECT device, name, district, category, last_seen, transport, address, status "
        "FROM devices ORDER BY district, device"
    ).fetchall()
    out = []
    for dev, name, district, cat, last, tr, addr, status in rows:
        online = last is not None and now - last <= after
        if offline_only and online:
            continue
        age = "" if last is None else f"{now - last:.0f}"
        row = (dev, name, district, cat, iso(last), age, "online" if online else "offline",
               tr or "", addr or "", status if status is not None else "")  # fmt: skip
        out.append(row if raw else (*row, units.flags_text(status)))
    cols = ["device", "name", "district", "category", "last_seen", "age_s", "link", "transport",
            "address", "status"] + ([] if raw else ["flags"])  # fmt: skip
    return cols, out


def commands(
    db: Database,
    since: float,
    device: int | None = None,
    status: str | None = None,
    limit: int | None = None,
    raw: bool = False,
) -> tuple[list[str], list[tuple]]:
    """Command requests and what became of them: queued, sent (in flight), done (with the
    RESULT's status and value), timeout (given up after the last try), abandoned. Not raw:
    `args` carries the units of set_config's settings, and `param` names the setting a
    `bad_argument` RESULT refused (its value is the parameter id)."""
    q = (
        "SELECT c.requested, c.device, d.name, c.cmd, c.args, c.status, c.tries, c.result, "
        "c.value, c.cmd_counter, c.done, c.gateway, c.request, c.requested_by FROM commands c "
        "LEFT JOIN devices d USING (device) WHERE c.requested >= ?"
    )
    args: list = [since]
    if device is not None:
        q += " AND c.device = ?"
        args.append(device)
    if status is not None:
        q += " AND c.status = ?"
        args.append(status)
    q += " ORDER BY c.requested, c.device"
    if limit:
        q += f" LIMIT {int(limit)}"
    cols = ["requested", "device", "name", "cmd", "args", "status", "tries", "result", "value"]
    cols += ([] if raw else ["param"]) + ["cmd_counter", "done", "gateway", "request",
                                          "requested_by"]  # fmt: skip
    rows = []
    for r in db.execute(q, args):
        if raw:
            rows.append((iso(r[0]), *r[1:10], iso(r[10]), *r[11:]))
            continue
        param = units.result_param(r[3], r[7], r[8]) or ""
        rows.append((iso(r[0]), *r[1:4], _command_args(r[4]), *r[5:9], param, r[9],
                     iso(r[10]), *r[11:]))  # fmt: skip
    return cols, rows


def _command_args(text: str) -> str:
    """A command row's args (JSON) with the units of set_config's settings."""
    try:
        a = json.loads(text)
    except ValueError:
        return text
    return json.dumps(units.command_args(a)) if isinstance(a, dict) else text


def counters(db: Database) -> tuple[list[str], list[tuple]]:
    rows = db.execute("SELECT gateway, name, value FROM counters ORDER BY gateway, name")
    return ["gateway", "counter", "value"], list(rows)


EXPORTS = {
    "events": "SELECT * FROM events ORDER BY rx, device, counter",
    "telemetry": "SELECT * FROM telemetry ORDER BY id",
    "devices": "SELECT * FROM devices ORDER BY device",
    "alarms": "SELECT * FROM alarm_state ORDER BY device, channel",
    "results": "SELECT * FROM results ORDER BY id",
    "commands": "SELECT * FROM commands ORDER BY requested, device",
    "configs": "SELECT * FROM configs ORDER BY id",
    "snapshots": "SELECT * FROM snapshots ORDER BY device, snap_id, chunk",
}
# export in physical units: the table's view (store.VIEWS), its SELECT run as a subquery so a
# database an older gateway wrote (no views yet, opened read-only) exports the same. Results,
# commands and configs are in physical units as stored, with a column added in Python.
_EXPORT_VIEWS = {"events": "events_si", "telemetry": "telemetry_si", "devices": "devices_si",
                 "alarms": "alarm_state_si", "snapshots": "snapshots_si"}  # fmt: skip
_SINCE = ("events", "telemetry", "results", "commands", "configs", "snapshots")


def export(
    db: Database, table: str, since: float | None = None, raw: bool = False
) -> tuple[list[str], list[tuple]]:
    """Every row of a table (since a time), as CSV or JSON rows. In physical units, each value
    with its unit (the SQL views of store.py: docs/gateway.md, "Database schema"); raw: the
    table as stored."""
    if table not in EXPORTS:
        raise QueryError(f"unknown table {table!r} (one of: {', '.join(EXPORTS)})")
    q = EXPORTS[table]
    if not raw and table in _EXPORT_VIEWS:
        order = q[q.index(" ORDER BY") :]
        # The alias: PostgreSQL (before 16) requires one on a subquery in FROM.
        q = f"SELECT * FROM ({view_select(_EXPORT_VIEWS[table], db)}) AS v{order}"
    args: tuple = ()
    if since is not None and table in _SINCE:
        col = "requested" if table == "commands" else "rx"
        head, order = q.rsplit(" ORDER BY", 1)  # the last one: a view may have its own
        q = f"{head} WHERE {col} >= ? ORDER BY{order}"
        args = (since,)
    cur = db.execute(q, args)
    cols = [d[0] for d in cur.description]
    rows = [tuple(r.hex() if isinstance(r, bytes) else r for r in row) for row in cur]
    if raw or table in _EXPORT_VIEWS:
        return cols, rows
    out = []
    for r in rows:
        d = dict(zip(cols, r, strict=True))
        if table == "results":
            out.append((*r, units.result_param(d["cmd"], d["status"], d["value"]) or ""))
        elif table == "commands":
            d["args"] = _command_args(d["args"])
            out.append((*d.values(), units.result_param(d["cmd"], d["result"], d["value"]) or ""))
        else:  # configs: settings are in the unit their name says; which one, per setting
            out.append((*r, units.dumps(units.config_units(json.loads(d["params"])))))
    return [*cols, "units" if table == "configs" else "param"], out


def report(
    db: Database,
    plan: list[PlanUnit],
    after: float = OFFLINE_AFTER_S,
    now: float | None = None,
) -> tuple[list[str], list[tuple]]:
    """Per plan unit: target, installed (registered), reporting (ever heard from), online,
    in alarm (a latched alarm on any channel), in fault, and progress against the target.
    Alarms and faults count from events and from authenticated telemetry status bits no event
    explains (from_telemetry), as `query alarms` lists them."""
    now = time.time() if now is None else now
    per: dict[str, list[int]] = {}
    derived = from_telemetry(db)
    t_alarm = {d for d, ch in derived if ch}
    t_fault = {d for d, ch in derived if not ch}
    rows = db.execute(
        "SELECT d.device, d.district, d.last_seen, "
        "EXISTS(SELECT 1 FROM alarm_state a WHERE a.device=d.device AND a.state='alarm'), "
        "EXISTS(SELECT 1 FROM alarm_state a WHERE a.device=d.device AND a.state='fault') "
        "FROM devices d"
    )
    for dev, district, last, alarm, fault in rows:
        c = per.setdefault(district or "(none)", [0, 0, 0, 0, 0])
        c[0] += 1
        if last is not None:
            c[1] += 1
            if now - last <= after:
                c[2] += 1
        c[3] += int(bool(alarm) or dev in t_alarm)
        c[4] += int(bool(fault) or dev in t_fault)
    out = []
    tot = [0] * 6
    for u in plan:
        c = per.pop(u.unit, [0, 0, 0, 0, 0])
        pct = f"{100 * c[0] / u.target:.0f}%" if u.target else ""
        out.append((u.unit, u.kind, u.target, *c, pct))
        tot[0] += u.target
        for i in range(5):
            tot[i + 1] += c[i]
    for district, c in sorted(per.items()):  # devices tagged with a unit the plan lacks
        out.append((district, "unplanned", 0, *c, ""))
        for i in range(5):
            tot[i + 1] += c[i]
    pct = f"{100 * tot[1] / tot[0]:.0f}%" if tot[0] else ""
    out.append(("TOTAL", "", *tot, pct))
    cols = [
        "unit",
        "kind",
        "target",
        "installed",
        "reporting",
        "online",
        "in_alarm",
        "in_fault",
        "installed_pct",
    ]
    # Issue 15: handling figures (open cases, median time to acknowledge / close, accuracy)
    # from the console's case tables, appended per unit (tools/console/report.py).
    from tools.console.report import handling_columns

    return handling_columns(db, cols, out)


def format_table(cols: list[str], rows: list[tuple]) -> str:
    cells = [cols] + [["" if v is None else str(v) for v in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def format_csv(cols: list[str], rows: list[tuple]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    w.writerows(rows)
    return buf.getvalue()
