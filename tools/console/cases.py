"""Alarm cases: from a stored alarm or fault event to a closed case (issue 15, docs/console.md).

Workflow (each step records who, when and notes; anything else is refused):

    new --acknowledge--> acknowledged --dispatch--> dispatched --verify--> verified
        --remove--> hazard_removed --close--> closed

`verify` records the verdict (real_hazard / nuisance / sensor_fault) and a cause from CAUSES.
A case not acknowledged within its unit's escalation delay (default 5 min) is escalated once:
marked, a step written and the case republished on MQTT `<prefix>/case/<device>`.

Cases come from the gateway's `events` table (kinds `alarm` and `fault`): `CaseStore.sync()`
reads events above a high-water mark of event ids (re-reading the last LOOKBACK ids, because
PostgreSQL can commit ids out of order; `case_events` makes that harmless), so the gateway's hot
path is untouched and several gateways may feed one database. Consoles sharing a database sync
one at a time (the write transaction; on PostgreSQL an advisory lock). An event on a (device,
channel) that already has an open case joins that case's timeline instead of opening another.

Alarm accuracy = real hazards / all verified alarm cases (kind `alarm`, a verdict recorded),
per detector, site, industry category or county/bureau, over cases opened in a period; None
(shown as "-") when none was verified.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tools.console.dbx import Database
from tools.gateway import units

STATES = ("new", "acknowledged", "dispatched", "verified", "hazard_removed", "closed")
# action -> (state it needs, state it leads to)
ACTIONS = {
    "acknowledge": ("new", "acknowledged"),
    "dispatch": ("acknowledged", "dispatched"),
    "verify": ("dispatched", "verified"),
    "remove": ("verified", "hazard_removed"),
    "close": ("hazard_removed", "closed"),
}
ACTION_LABELS = {
    "acknowledge": "Acknowledge",
    "dispatch": "Dispatch to site",
    "verify": "Record verification",
    "remove": "Hazard removed",
    "close": "Close case",
}
STATE_LABELS = {
    "new": "new",
    "acknowledged": "acknowledged",
    "dispatched": "dispatched",
    "verified": "verified on site",
    "hazard_removed": "hazard removed",
    "closed": "closed",
}
VERDICTS = {
    "real_hazard": "real hazard",
    "nuisance": "nuisance (false alarm)",
    "sensor_fault": "sensor fault",
}
CAUSES = {
    "insulation_ageing": "insulation ageing",
    "overload": "overload",
    "loose_joint": "loose joint",
    "damp": "damp",
    "appliance": "appliance",
    "other": "other",
}
CASE_KINDS = ("alarm", "fault")
DEFAULT_ESCALATE_S = 300.0
LOOKBACK = 1000  # event ids re-read below the mark (out-of-order commits on PostgreSQL)
SYNC_BATCH = 5000
NOTES_MAX = 2000
GROUPS = ("detector", "site", "industry", "county")
# pg_advisory_xact_lock key serialising sync() across consoles sharing a PostgreSQL database
# ("efdC"), so two of them never open two cases for one channel.
SYNC_LOCK_KEY = 0x65666443


class WorkflowError(ValueError):
    """An illegal transition or a bad argument to one (shown to the user, never a 500)."""


class NotFound(LookupError):
    pass


Publish = Callable[[str, bytes], None]

_CASE_COLS = (
    "id, event_id, device, channel, kind, value, threshold, opened, unit, category, site, "
    "state, acked, acked_by, dispatched, verified, verdict, cause, removed, closed, escalated, "
    "updated"
)


@dataclass
class Case:
    id: int
    event_id: int | None
    device: int
    channel: str
    kind: str
    value: int | None
    threshold: int | None
    opened: float
    unit: str
    category: str
    site: str
    state: str
    acked: float | None
    acked_by: str | None
    dispatched: float | None
    verified: float | None
    verdict: str | None
    cause: str | None
    removed: float | None
    closed: float | None
    escalated: float | None
    updated: float

    @classmethod
    def from_row(cls, r: Iterable[Any]) -> Case:
        return cls(*r)

    def physical(self) -> dict[str, Any]:
        """value / threshold in the channel's unit (or the fault's name)."""
        return units.event_physical(self.kind, self.channel, self.value, self.threshold)

    def reading(self) -> str:
        p = self.physical()
        if "fault" in p:
            return f"sensor fault: {p['fault']}"
        u = unit_text(p.get("units"))
        return f"{fmt_num(p['value'])} {u} (threshold {fmt_num(p['threshold'])} {u})".strip()


def unit_text(u: Any) -> str:
    return {"degC": "°C", "degC/min": "°C/min", None: ""}.get(u, str(u))


def fmt_num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return "" if v is None else str(v)


class CaseStore:
    def __init__(
        self,
        db: Database,
        clock: Callable[[], float] = time.time,
        publish: Publish | None = None,
        prefix: str = "efd",
        default_escalate_s: float = DEFAULT_ESCALATE_S,
    ):
        self.db = db
        self.clock = clock
        self.publish = publish
        self.prefix = prefix
        self.default_escalate_s = default_escalate_s
        self.opened: list[int] = []  # ids of the cases the last sync() opened

    # -- from events to cases ------------------------------------------------------------------
    def sync(self) -> int:
        """Open cases for new alarm/fault events; returns how many cases were opened."""
        opened = 0
        self.opened = []
        with self.db.tx():
            if self.db.dialect == "postgresql":  # one syncer at a time (SQLite: BEGIN IMMEDIATE)
                self.db.execute("SELECT pg_advisory_xact_lock(?)", (SYNC_LOCK_KEY,))
            row = self.db.execute("SELECT mark FROM case_sync WHERE name = 'events'").fetchone()
            mark = int(row[0]) if row else 0
            rows = self.db.execute(
                "SELECT e.id, e.device, e.rx, e.kind, e.channel, e.value, e.threshold, "
                "d.district, d.category, d.site FROM events e "
                "LEFT JOIN devices d ON d.device = e.device "
                "LEFT JOIN case_events ce ON ce.event_id = e.id "
                "WHERE e.id > ? AND e.kind IN ('alarm', 'fault') AND ce.event_id IS NULL "
                "ORDER BY e.id LIMIT ?",
                (mark - LOOKBACK, SYNC_BATCH),
            ).fetchall()
            top = mark
            for eid, dev, rx, kind, ch, val, thr, unit, cat, site in rows:
                top = max(top, int(eid))
                cur = self.db.execute(
                    "SELECT id FROM cases WHERE device = ? AND channel = ? AND state != 'closed' "
                    "ORDER BY id DESC LIMIT 1",
                    (dev, ch),
                ).fetchone()
                if cur is not None:
                    case_id = int(cur[0])
                else:
                    got = self.db.execute(
                        "INSERT INTO cases(event_id, device, channel, kind, value, threshold, "
                        "opened, unit, category, site, state, updated) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,'new',?) "
                        "ON CONFLICT(event_id) DO NOTHING RETURNING id",
                        (
                            eid,
                            dev,
                            ch,
                            kind,
                            val,
                            thr,
                            rx,
                            unit or "",
                            cat or "",
                            site or "",
                            self.clock(),
                        ),
                    ).fetchone()
                    if got is None:
                        continue
                    case_id = int(got[0])
                    opened += 1
                    self.opened.append(case_id)
                    self._step(case_id, "new", "gateway", f"{kind} on {ch}", rx)
                self.db.execute(
                    "INSERT INTO case_events(event_id, case_id) VALUES (?,?) "
                    "ON CONFLICT(event_id) DO NOTHING",
                    (eid, case_id),
                )
            if top != mark:
                self.db.execute(
                    "INSERT INTO case_sync(name, mark) VALUES ('events', ?) "
                    "ON CONFLICT(name) DO UPDATE SET mark = excluded.mark",
                    (top,),
                )
        return opened

    def _step(self, case_id: int, step: str, actor: str, notes: str, at: float) -> None:
        self.db.execute(
            "INSERT INTO case_steps(case_id, step, at, actor, notes) VALUES (?,?,?,?,?)",
            (case_id, step, at, actor, notes),
        )

    # -- reading ------------------------------------------------------------------------------
    def get(self, case_id: int) -> Case:
        r = self.db.execute(f"SELECT {_CASE_COLS} FROM cases WHERE id = ?", (case_id,)).fetchone()
        if r is None:
            raise NotFound(f"no case {case_id}")
        return Case.from_row(r)

    def open_cases(self, unit: str | None = None) -> list[Case]:
        """Cases not closed, oldest first (optionally one unit's)."""
        sql = f"SELECT {_CASE_COLS} FROM cases WHERE state != 'closed'"
        args: tuple = ()
        if unit:
            sql += " AND unit = ?"
            args = (unit,)
        return [Case.from_row(r) for r in self.db.execute(sql + " ORDER BY opened, id", args)]

    def cases(self, limit: int = 200, unit: str | None = None) -> list[Case]:
        sql = f"SELECT {_CASE_COLS} FROM cases"
        args: tuple = ()
        if unit:
            sql += " WHERE unit = ?"
            args = (unit,)
        sql += " ORDER BY opened DESC, id DESC LIMIT ?"
        return [Case.from_row(r) for r in self.db.execute(sql, (*args, limit))]

    def steps(self, case_id: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT step, at, actor, notes FROM case_steps WHERE case_id = ? ORDER BY at, id",
            (case_id,),
        ).fetchall()
        return [dict(step=s, at=a, actor=b, notes=n) for s, a, b, n in rows]

    def events(self, case_id: int) -> list[dict[str, Any]]:
        """The events of this case (its own and those that joined it), in physical units."""
        rows = self.db.execute(
            "SELECT e.id, e.rx, e.kind, e.channel, e.value, e.threshold FROM case_events ce "
            "JOIN events e ON e.id = ce.event_id WHERE ce.case_id = ? ORDER BY e.rx, e.id",
            (case_id,),
        ).fetchall()
        out = []
        for eid, rx, kind, ch, val, thr in rows:
            d: dict[str, Any] = dict(id=eid, rx=rx, kind=kind, channel=ch)
            d.update(units.event_physical(kind, ch, val, thr))
            out.append(d)
        return out

    def commands(self, case_id: int) -> list[dict[str, Any]]:
        """Commands issued from the case, with the gateway's status of the request."""
        rows = self.db.execute(
            "SELECT cc.at, cc.actor, cc.cmd, cc.args, cc.request, cc.reply, c.status, c.result "
            "FROM case_commands cc LEFT JOIN commands c ON c.request = cc.request "
            "WHERE cc.case_id = ? ORDER BY cc.at, cc.id",
            (case_id,),
        ).fetchall()
        return [
            dict(
                at=a,
                actor=b,
                cmd=c,
                args=json.loads(g),
                request=rq,
                reply=rp,
                status=st or ("refused" if rp and '"ok": false' in rp else "requested"),
                result=res,
            )
            for a, b, c, g, rq, rp, st, res in rows
        ]

    # -- workflow ------------------------------------------------------------------------------
    def act(
        self,
        case_id: int,
        action: str,
        actor: str,
        notes: str = "",
        verdict: str | None = None,
        cause: str | None = None,
    ) -> Case:
        """Apply one workflow action; WorkflowError if it is not allowed from the case's state
        (or its arguments are bad), NotFound for an unknown case."""
        if action not in ACTIONS:
            raise WorkflowError(f"unknown action {action!r}")
        need, to = ACTIONS[action]
        notes = (notes or "").strip()
        if len(notes) > NOTES_MAX:
            raise WorkflowError(f"notes are limited to {NOTES_MAX} characters")
        if action == "verify":
            if verdict not in VERDICTS:
                raise WorkflowError("choose a verdict: " + ", ".join(VERDICTS.values()))
            if cause not in CAUSES:
                raise WorkflowError("choose a cause: " + ", ".join(CAUSES.values()))
        now = self.clock()
        with self.db.tx():
            c = self.get(case_id)
            if c.state != need:
                raise WorkflowError(
                    f"case {case_id} is {STATE_LABELS[c.state]}: "
                    f"'{ACTION_LABELS[action]}' needs it {STATE_LABELS[need]}"
                )
            sets = {"state": to, "updated": now}
            if action == "acknowledge":
                sets.update(acked=now, acked_by=actor)
            elif action == "dispatch":
                sets["dispatched"] = now
            elif action == "verify":
                sets.update(verified=now, verdict=verdict, cause=cause)
            elif action == "remove":
                sets["removed"] = now
            else:
                sets["closed"] = now
            cols = ", ".join(f"{k} = ?" for k in sets)
            cur = self.db.execute(
                f"UPDATE cases SET {cols} WHERE id = ? AND state = ?",
                (*sets.values(), case_id, need),
            )
            if cur.rowcount != 1:  # someone else moved it meanwhile
                raise WorkflowError(f"case {case_id} changed meanwhile: reload")
            text = notes
            if action == "verify":
                text = f"{VERDICTS[verdict or '']}; cause: {CAUSES[cause or '']}" + (
                    f"; {notes}" if notes else ""
                )
            self._step(case_id, to, actor, text, now)
        return self.get(case_id)

    def link_command(
        self,
        case_id: int,
        actor: str,
        device: int,
        fields: dict[str, Any],
        request: str | None,
        reply: dict[str, Any] | None,
    ) -> None:
        """Record a command issued from a case (its gateway request id links to `commands`)."""
        now = self.clock()
        with self.db.tx():
            self.db.execute(
                "INSERT INTO case_commands(case_id, at, actor, device, cmd, args, request, reply) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (
                    case_id,
                    now,
                    actor,
                    device,
                    str(fields.get("cmd")),
                    json.dumps(fields),
                    request,
                    json.dumps(reply) if reply is not None else None,
                ),
            )
            self._step(case_id, "command", actor, f"{fields.get('cmd')} requested", now)

    # -- escalation ----------------------------------------------------------------------------
    def escalate_after(self, unit: str) -> float:
        r = self.db.execute(
            "SELECT escalate_after_s FROM case_units WHERE unit = ?", (unit,)
        ).fetchone()
        return float(r[0]) if r else self.default_escalate_s

    def set_escalate_after(self, unit: str, seconds: float) -> None:
        if not 0 < seconds <= 7 * 86400:
            raise WorkflowError("escalation delay must be between 0 and 7 days")
        with self.db.tx():
            self.db.execute(
                "INSERT INTO case_units(unit, escalate_after_s) VALUES (?,?) "
                "ON CONFLICT(unit) DO UPDATE SET escalate_after_s = excluded.escalate_after_s",
                (unit, seconds),
            )

    def escalation(self, c: Case, now: float | None = None) -> tuple[str, float]:
        """('escalated', since) / ('due', seconds left) / ('-', 0) for a handled case."""
        if c.escalated is not None:
            return "escalated", c.escalated
        if c.state != "new":
            return "-", 0.0
        now = self.clock() if now is None else now
        return "due", c.opened + self.escalate_after(c.unit) - now

    def escalate(self) -> list[Case]:
        """Escalate every case still new past its unit's delay (once each); publish them."""
        now = self.clock()
        out: list[Case] = []
        with self.db.tx():
            rows = self.db.execute(
                f"SELECT {_CASE_COLS} FROM cases WHERE state = 'new' AND escalated IS NULL "
                "ORDER BY opened"
            ).fetchall()
            for r in rows:
                c = Case.from_row(r)
                limit = self.escalate_after(c.unit)
                if now - c.opened < limit:
                    continue
                cur = self.db.execute(
                    "UPDATE cases SET escalated = ?, updated = ? "
                    "WHERE id = ? AND escalated IS NULL",
                    (now, now, c.id),
                )
                if cur.rowcount != 1:
                    continue
                self._step(
                    c.id, "escalated", "console", f"not acknowledged within {limit / 60:g} min", now
                )
                c.escalated = now
                out.append(c)
        for c in out:
            self._publish(c, now)
        return out

    def _publish(self, c: Case, now: float) -> None:
        if self.publish is None:
            return
        msg = {
            "case": c.id,
            "device": c.device,
            "channel": c.channel,
            "kind": c.kind,
            "state": c.state,
            "escalated": True,
            "opened": c.opened,
            "waited_s": round(now - c.opened, 1),
            "unit": c.unit,
            "category": c.category,
            "site": c.site,
        }
        msg.update(c.physical())
        try:
            self.publish(f"{self.prefix}/case/{c.device}", json.dumps(msg).encode())
        except Exception:  # the broker is down: the case stays escalated on the board
            import logging

            logging.getLogger("tools.console").warning("could not publish case %d", c.id)

    # -- figures -------------------------------------------------------------------------------
    def accuracy(
        self, group: str, since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        """Alarm accuracy per group (detector, site, industry, county) over alarm cases opened
        in [since, until): verified, real, nuisance, sensor_fault, accuracy (None if 0 verified).
        Every group with an alarm case in the period is listed."""
        if group not in GROUPS:
            raise WorkflowError(f"group must be one of {', '.join(GROUPS)}")
        key = {
            "detector": "c.device",
            "site": "c.site",
            "industry": "COALESCE(ci.code, 10)",
            "county": "c.unit",
        }[group]
        sql = (
            f"SELECT {key}, c.verdict, COUNT(*) FROM cases c "
            "LEFT JOIN category_industry ci ON ci.category = c.category "
            "WHERE c.kind = 'alarm'"
        )
        period, args = _period(since, until)
        sql += period + f" GROUP BY {key}, c.verdict"
        acc: dict[Any, dict[str, Any]] = {}
        for k, verdict, n in self.db.execute(sql, args).fetchall():
            d = acc.setdefault(
                k, dict(key=k, alarms=0, verified=0, real=0, nuisance=0, sensor_fault=0)
            )
            d["alarms"] += n
            if verdict in VERDICTS:
                d["verified"] += n
                d[{"real_hazard": "real"}.get(verdict, verdict)] += n
        out = []
        names = self.industry_names() if group == "industry" else {}
        for k in sorted(acc, key=lambda x: (str(type(x)), x)):
            d = acc[k]
            d["accuracy"] = d["real"] / d["verified"] if d["verified"] else None
            d["label"] = names.get(k, str(k)) if group == "industry" else str(k)
            out.append(d)
        return out

    def industry_names(self) -> dict[int, str]:
        rows = self.db.execute("SELECT code, zh, en FROM industry_categories").fetchall()
        return {int(c): f"{c}. {en} / {zh}" for c, zh, en in rows}

    def handling(
        self, by: str = "unit", since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        """Handling figures per unit (county/bureau), industry, or over all cases (by="all"):
        cases, open cases, median time to acknowledge and to close (s, None without any),
        alarm accuracy."""
        key = {"unit": "c.unit", "industry": "COALESCE(ci.code, 10)", "all": "'all'"}[by]
        sql = (
            f"SELECT {key}, c.kind, c.state, c.opened, c.acked, c.closed, c.verdict FROM cases c "
            "LEFT JOIN category_industry ci ON ci.category = c.category WHERE 1 = 1"
        )
        period, args = _period(since, until)
        sql += period
        groups: dict[Any, list[tuple]] = {}
        for r in self.db.execute(sql, args).fetchall():
            groups.setdefault(r[0], []).append(r[1:])
        names = self.industry_names() if by == "industry" else {}
        out = []
        for k in sorted(groups, key=lambda x: (str(type(x)), x)):
            rows = groups[k]
            ack = [a - o for _, _, o, a, _, _ in rows if a is not None]
            close = [cl - o for _, _, o, _, cl, _ in rows if cl is not None]
            verified = [v for kind, _, _, _, _, v in rows if kind == "alarm" and v in VERDICTS]
            real = sum(1 for v in verified if v == "real_hazard")
            out.append(
                dict(
                    key=k,
                    label=names.get(k, str(k)) if by == "industry" else str(k),
                    cases=len(rows),
                    open=sum(1 for r in rows if r[1] != "closed"),
                    median_ack_s=statistics.median(ack) if ack else None,
                    median_close_s=statistics.median(close) if close else None,
                    verified=len(verified),
                    accuracy=real / len(verified) if verified else None,
                )
            )
        return out


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = max(0.0, s)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def fmt_time(t: float | None) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + " UTC"


def _period(since: float | None, until: float | None) -> tuple[str, list[Any]]:
    """The SQL condition (to append after a WHERE) and its arguments for cases opened in
    [since, until); either end may be open."""
    sql, args = "", []
    if since is not None:
        sql += " AND c.opened >= ?"
        args.append(since)
    if until is not None:
        sql += " AND c.opened < ?"
        args.append(until)
    return sql, args
