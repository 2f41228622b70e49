"""The gateway's storage on SQLite (WAL journal) or PostgreSQL (tools/gateway/db.py), one
transaction per batch, the schema made and upgraded by tools/gateway/migrations/.

Tables (docs/gateway.md has the full description):
  devices      one row per registered device: registry tags, last seen, last status (any
               TELEMETRY), and the status of the last authenticated TELEMETRY with its time
               (auth_status, auth_status_at: query.py's alarms "from telemetry")
  telemetry    one row per TELEMETRY frame (values in the detector's integer units)
  events       one row per EVENT, UNIQUE(device, counter): the authenticated counter is the
               natural key, so a retransmission can never be stored twice, whichever gateway
               instance (sharing this file or PostgreSQL database) receives it
  alarm_state  latest state per (device, channel): alarm / prealarm / fault / normal
  results      command results (RESULT frames)
  configs      CONFIG frames: the detector's settings (answer to get_config / set_config)
  snapshots    SNAPSHOT chunks: waveform samples around an alarm, one row per chunk
  commands     one row per command request: queued / sent / done / timeout / abandoned,
               the COMMAND's host counter, tries, and the RESULT that answered it
  counters     per gateway instance: frames in, stored, rejected by reason (never the frames)

The tables hold the detector's integers (0.1 degC, 0.01 A, fault codes): they are the record.
Views in physical units for platforms (VIEWS, view_select): telemetry_si, events_si,
alarm_state_si, devices_si, snapshots_si, config_params_si (protocol.host.physical's rules).

Several gateway processes may share one database file: WAL lets readers run beside the one
writer, and busy_timeout serialises the writers' short batch transactions. Gateways on several
hosts share one PostgreSQL database the same way (row locks, the UNIQUE keys).

Durability: a batch that carries EVENT rows commits with `PRAGMA synchronous=FULL` (the WAL is
fsynced before COMMIT returns), because the gateway ACKs those events right after the commit and
an ACKed detector forgets the event: with NORMAL, a power loss after the ACK could lose an alarm
nobody will ever send again. Batches without events (telemetry, counters, commands) stay NORMAL:
never corrupt, and losing the last moments of telemetry is harmless. Store.flush picks the level.
PostgreSQL: the same split with synchronous_commit (Store._pg_sync).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from pathlib import Path

from efd import names
from tools.gateway import db as db_mod
from tools.gateway import migrations, retention, units
from tools.gateway.db import Database
from tools.gateway.registry import Device

# Unix time <-> the wire's 2020 epoch (protocol.frame.EPOCH_UNIX); 0 on the wire = unset.
EPOCH_UNIX = 1577836800

# What an event does to a channel's alarm state. Alarms latch (GB 14287): only `reset`
# (or a later fault/alarm) moves a latched channel; `clear` ends a pre-alarm only.
_STATE_BY_KIND = {
    "prealarm": "prealarm",
    "ror": "prealarm",
    "alarm": "alarm",
    "fault": "fault",
    "fault_clear": "normal",
    "reset": "normal",
}

_INS_TEL = "INSERT INTO telemetry(device, rx, dev_time, seq, residual_ma, temp0_dc, temp1_dc, \
temp2_dc, temp3_dc, line0_ca, line1_ca, line2_ca, status) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
_INS_EV = "INSERT INTO events(device, counter, seq, rx, dev_time, kind, channel, value, \
threshold, tag, gateway) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(device, counter) DO NOTHING"
_INS_STATE = "INSERT INTO alarm_state(device, channel, state, since, value, threshold, kind) \
VALUES (?,?,?,?,?,?,?) ON CONFLICT(device, channel)"
_INS_RES = "INSERT INTO results(device, counter, rx, cmd_counter, cmd, status, value) \
VALUES (?,?,?,?,?,?,?) ON CONFLICT(device, counter) DO NOTHING"
_INS_CFG = "INSERT INTO configs(device, counter, rx, dev_time, config_hash, params, \
gateway) VALUES (?,?,?,?,?,?,?) ON CONFLICT(device, counter) DO NOTHING"
# A snapshot chunk received again (the host re-requests missing chunks by repeating the command,
# SPEC 5.6) replaces the earlier copy: the latest snapshot with that id wins.
_INS_SNAP = 'INSERT INTO snapshots(device, rx, dev_time, snap_id, channel, chunk, \
chunks, scale_exp, rate_hz, trigger, "offset", samples) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) \
ON CONFLICT(device, snap_id, chunk) DO UPDATE SET rx=excluded.rx, dev_time=excluded.dev_time, \
channel=excluded.channel, chunks=excluded.chunks, scale_exp=excluded.scale_exp, \
rate_hz=excluded.rate_hz, trigger=excluded.trigger, "offset"=excluded."offset", \
samples=excluded.samples'
# A command row as the gateway last knew it. A `done` written meanwhile (a sibling instance
# stored the RESULT, or a late RESULT arrived) is never turned back into timeout/abandoned.
_UPS_CMD = "INSERT INTO commands(request, device, gateway, cmd, args, requested, cmd_counter, \
first_sent, last_sent, tries, status, result, value, done, requested_by) \
VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) \
ON CONFLICT(request) DO UPDATE SET cmd_counter=excluded.cmd_counter, \
first_sent=excluded.first_sent, last_sent=excluded.last_sent, tries=excluded.tries, \
status=CASE WHEN commands.status='done' THEN 'done' ELSE excluded.status END, \
result=COALESCE(commands.result, excluded.result), value=COALESCE(commands.value, excluded.value), \
done=CASE WHEN commands.status='done' THEN commands.done ELSE excluded.done END"
# Every stored RESULT completes the command it names (device, cmd_counter), whichever gateway
# instance sent the command and whether or not that one had given up on it already.
_DONE_CMD = "UPDATE commands SET status='done', result=?, value=?, done=? \
WHERE device=? AND cmd_counter=? AND status != 'done'"
# A device's liveness after a batch (Store.flush's `seen`). t = the batch's last authenticated
# frame time or NULL (only unauthenticated frames since the last batch: an untagged
# TELEMETRY's status, SPEC.md section 5): then when and where the device was last seen stay as
# they are. The latest authenticated status only moves forward in time (a sibling instance
# sharing the database may commit an older one after a newer one). _seen_row gives the values
# in the order of the `?`s. The CASTs: PostgreSQL cannot type a bare `? IS NULL` (SQLite
# ignores them: DOUBLE PRECISION has REAL affinity).
_UPD_SEEN = "UPDATE devices SET \
last_seen=CASE WHEN CAST(? AS DOUBLE PRECISION) IS NULL THEN last_seen \
WHEN COALESCE(last_seen, 0) > ? THEN last_seen ELSE ? END, \
first_seen=COALESCE(first_seen, ?), \
transport=CASE WHEN CAST(? AS DOUBLE PRECISION) IS NULL THEN transport ELSE ? END, \
address=CASE WHEN CAST(? AS DOUBLE PRECISION) IS NULL THEN address ELSE ? END, \
status=COALESCE(?, status), fw=COALESCE(?, fw), boot_count=COALESCE(?, boot_count), \
auth_status=CASE WHEN ? > COALESCE(auth_status_at, 0) THEN ? ELSE auth_status END, \
auth_status_at=CASE WHEN ? > COALESCE(auth_status_at, 0) THEN ? ELSE auth_status_at END \
WHERE device=?"


def _seen_row(device: int, s: tuple) -> tuple:
    t, transport, address, status, fw, boot = s[:6]
    ast, at = s[6] if len(s) > 6 and s[6] else (None, None)
    return (t, t, t, t, t, transport, t, address, status, fw, boot, at, ast, at, at, device)


# PRAGMA synchronous levels accepted by connect() and Store (no other text reaches the SQL).
SYNC_LEVELS = db_mod.SYNC_LEVELS
_sync_level = db_mod.sync_level


def connect(target: str | Path, readonly: bool = False, synchronous: str = "NORMAL") -> Database:
    """open_db, then (unless readonly) the schema brought up to date: migrations, views."""
    db = db_mod.open_db(target, readonly=readonly, synchronous=synchronous)
    if not readonly:
        try:
            prepare(db)
        except BaseException:
            db.close()
            raise
    return db


def prepare(db: Database) -> list[int]:
    """Apply the missing migrations, (re)create the views, and (PostgreSQL) the telemetry
    partitions of the coming days; the versions applied now."""
    done = migrations.upgrade(db)
    create_views(db)
    retention.ensure_partitions(db)
    return done


# -- views in physical units (docs/gateway.md, "Schema") ----------------------------------------
# The tables keep the wire's integers (the record); these views present them as people and
# platforms read them, by the rules of protocol.host.physical() (tools/gateway/units.py reads
# them off it): degC, A, mA, degC/min, fault and status-bit names, each with its unit. Made by
# connect() for new and existing databases, and replaced when their definition changes.
# The same columns and values on both engines; where their SQL differs (JSON functions, round()
# on PostgreSQL wanting numeric) the two texts are side by side below, chosen by `pg`.
VIEWS = ("telemetry_si", "events_si", "alarm_state_si", "devices_si", "snapshots_si",
         "config_params_si")  # fmt: skip


def _lit(v: object) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int | float):
        return repr(v)
    return "'" + str(v).replace("'", "''") + "'"


def _values(rows: Iterable[tuple]) -> str:
    return "VALUES " + ", ".join("(" + ", ".join(_lit(v) for v in r) + ")" for r in rows)


def _round(expr: str, places: int, pg: bool) -> str:
    # PostgreSQL's round(x, n) exists for numeric only; back to float8 so the view's column
    # reads as SQLite's REAL does.
    return f"round(({expr})::numeric, {places})::float8" if pg else f"round({expr}, {places})"


def _scaled(expr: str, div: str | int, places: int = 3, pg: bool = False) -> str:
    """SQL for physical()'s _scaled: the integer as it is when div is 1, else rounded."""
    if isinstance(div, int):
        return expr if div == 1 else _round(f"{expr} / {div}.0", places, pg)
    return f"CASE WHEN {div} > 1 THEN {_round(f'{expr} * 1.0 / {div}', places, pg)} ELSE {expr} END"


def _flags(expr: str) -> str:
    """SQL: the status bits of `expr` by name, comma-separated (protocol.host.status_flags)."""
    parts = " || ".join(
        f"CASE WHEN ({expr} & {bit}) <> 0 THEN {_lit(name + ',')} ELSE '' END"
        for bit, name in units.status_bits()
    )
    return f"CASE WHEN {expr} IS NULL THEN NULL ELSE rtrim({parts}, ',') END"


# 10^scale_exp for a SNAPSHOT (SPEC.md section 5.6), literal: no pow() needed in SQLite.
_SCALE_EXPS = range(-12, 13)


def view_select(name: str, db: Database | None = None, dialect: str | None = None) -> str:
    """The SELECT behind view `name` for db's dialect (or `dialect`; default SQLite). With db:
    fitted to its tables' columns (a database written by an older gateway and opened
    read-only: query export runs this directly)."""
    pg = (dialect or (db.dialect if db is not None else "sqlite")) == "postgresql"

    def cols(table: str) -> list[str]:
        return [] if db is None else db.columns(table)

    if name == "telemetry_si":
        rules = units.telemetry_rules()
        scaled = ", ".join(
            f"{_scaled('t.' + col, div, pg=pg)} AS {view}" for col, view, _u, div in rules
        )
        return (
            f"SELECT t.id, t.device, t.rx, t.dev_time, t.seq, {scaled}, t.status, "
            f"{_flags('t.status')} AS flags, {_lit(units.dumps(units.telemetry_units()))} AS units "
            "FROM telemetry t"
        )
    if name in ("events_si", "alarm_state_si"):
        ev_rules = _values(units.event_rules())
        faults = _values(units.fault_names())
        if name == "events_si":
            a, kind, head = "e", "e.kind", "e.id, e.device, e.counter, e.seq, e.rx, e.dev_time, "
            head += "e.kind, e.channel"
            tail, src = "e.tag, e.gateway", "events e"
        else:
            has_kind = db is None or "kind" in cols("alarm_state")
            a = "a"
            stored = "a.kind" if has_kind else ("CAST(NULL AS TEXT)" if pg else "NULL")
            kind = f"COALESCE({stored}, CASE WHEN a.state = 'fault' THEN 'fault' ELSE 'alarm' END)"
            head = f"a.device, a.channel, a.state, a.since, {stored} AS kind"
            tail, src = "", "alarm_state a"
        # An unknown fault code: SQLite shows the number, PostgreSQL (one type per column)
        # its text.
        code = f"CAST({a}.value AS TEXT)" if pg else f"{a}.value"
        return (
            f"WITH u(kind, channel, unit, div, is_fault) AS ({ev_rules}), f(code, name) AS "
            f"({faults}) SELECT {head}, {_scaled(a + '.value', 'u.div', pg=pg)} AS value, "
            f"{_scaled(a + '.threshold', 'u.div', pg=pg)} AS threshold, u.unit AS units, "
            f"CASE WHEN u.is_fault <> 0 THEN COALESCE(f.name, {code}) END AS fault"
            + (", " + tail if tail else "")
            + f" FROM {src} LEFT JOIN u ON u.kind = {kind} AND u.channel = {a}.channel "
            f"LEFT JOIN f ON u.is_fault <> 0 AND f.code = {a}.value"
        )
    if name == "devices_si":
        have = cols("devices") or [
            "device", "name", "district", "category", "site", "first_seen", "last_seen",
            "transport", "address", "status", "fw", "boot_count", "auth_status", "auth_status_at",
        ]  # fmt: skip
        listed = ", ".join("d." + c for c in have)
        return f"SELECT {listed}, {_flags('d.status')} AS flags FROM devices d"
    if name == "snapshots_si":
        chans = _values((ch, *units.snapshot_rule(ch)) for ch in names.CHANNEL_NAMES)
        exps = _values((e, 10.0**e) for e in _SCALE_EXPS)
        head = (
            f"WITH u(channel, unit, div) AS ({chans}), x(exp, factor) AS ({exps}) "
            "SELECT s.id, s.device, s.rx, s.dev_time, s.snap_id, s.channel, s.chunk, s.chunks, "
            's.scale_exp, s.rate_hz, s.trigger, s."offset", '
        )
        val = "j.v::float8" if pg else "j.value"
        scale = _round(f"{val} * (x.factor / COALESCE(u.div, 1))", 6, pg)
        if pg:  # the JSON array as text, like SQLite's json_group_array
            samples = (
                f"COALESCE((SELECT json_agg({scale} ORDER BY j.n)::text FROM "
                "jsonb_array_elements_text(s.samples::jsonb) WITH ORDINALITY j(v, n)), '[]')"
            )
        else:
            samples = f"(SELECT json_group_array({scale}) FROM json_each(s.samples) j)"
        return (
            f"{head}{samples} AS samples, COALESCE(u.unit, '') AS units FROM snapshots s "
            "LEFT JOIN u ON u.channel = s.channel LEFT JOIN x ON x.exp = s.scale_exp"
        )
    if name == "config_params_si":
        us = _values(units.setting_units())
        head = (
            f"WITH u(param, unit) AS ({us}) SELECT c.id AS config_id, c.device, c.counter, "
            "c.rx, c.dev_time, c.config_hash, c.gateway, "
        )
        if pg:  # jsonb: position from 0 as json_each's key; the value keeps its JSON type
            return (
                f"{head}j.n - 1 AS position, j.v ->> 0 AS param, j.v -> 1 AS value, "
                "COALESCE(u.unit, '') AS units FROM configs c CROSS JOIN LATERAL "
                "jsonb_array_elements(c.params::jsonb) WITH ORDINALITY j(v, n) "
                "LEFT JOIN u ON u.param = j.v ->> 0"
            )
        return (
            f"{head}j.key AS position, "
            "json_extract(j.value, '$[0]') AS param, json_extract(j.value, '$[1]') AS value, "
            "COALESCE(u.unit, '') AS units FROM configs c JOIN json_each(c.params) j "
            "LEFT JOIN u ON u.param = json_extract(j.value, '$[0]')"
        )
    raise ValueError(f"no view {name!r}")


def _pg_views(db: Database) -> dict[str, str]:
    """{view: the hash its comment records} (PostgreSQL keeps a normalised text of a view,
    not ours, so create_views marks each with the hash of the SQL that made it)."""
    rows = db.execute(
        "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'v' AND n.nspname = current_schema()"
    ).fetchall()
    return {r[0]: r[1] or "" for r in rows}


def create_views(db: Database) -> None:
    """Create the physical-unit VIEWS, or replace one whose definition changed (a newer
    gateway: new names, a new unit). One transaction, under the schema lock; a sibling doing
    the same waits, then finds them current."""
    want = {v: f"CREATE VIEW {v} AS {view_select(v, db)}" for v in VIEWS}
    if db.dialect == "postgresql":
        marks = {v: "efd:" + hashlib.sha1(sql.encode()).hexdigest()[:16] for v, sql in want.items()}

        def have() -> dict[str, str]:
            return _pg_views(db)
    else:
        marks = want

        def have() -> dict[str, str]:
            return dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'view'"))

    if all(have().get(v) == m for v, m in marks.items()):
        return
    with db.tx():
        migrations.lock(db)
        now = have()
        for v, sql in want.items():
            if now.get(v) != marks[v]:
                db.execute(f"DROP VIEW IF EXISTS {v}")
                db.execute(sql)
                if db.dialect == "postgresql":
                    db.execute(f"COMMENT ON VIEW {v} IS {_lit(marks[v])}")


class Store:
    """Batched writer. The gateway appends rows to the lists, then flush() writes them in one
    transaction and reports which events were new (so ACKs go out only after the commit).

    ack_sync: the `synchronous` level of a batch that carries events (they are ACKed after its
    commit, so the commit must survive a power loss: FULL, which in WAL mode fsyncs the WAL at
    each COMMIT). base_sync: the level of every other transaction. Why not FULL for the whole
    connection: the event loop commits every 50 ms or 2000 rows, nearly all of it telemetry,
    and each FULL commit adds an fsync on the single writer thread (`make bench` measures both
    levels side by side). Events are rare (alarms, faults), so paying the fsync only for their
    batches costs nothing at steady state, and a FULL commit also makes every earlier NORMAL
    commit durable (one WAL, synced up to its end). The other values exist for the benchmark."""

    def __init__(
        self,
        path: str | Path,
        gateway: str = "gw",
        ack_sync: str = "FULL",
        base_sync: str = "NORMAL",
    ):
        self.path = db_mod.mask(path)  # printable: a URL's password masked
        self.gateway = gateway
        self.ack_sync = _sync_level(ack_sync)
        self.base_sync = _sync_level(base_sync)
        self.db: Database = connect(path, synchronous=self.base_sync)
        self.dialect = self.db.dialect
        self._sync = self.base_sync  # the level in effect on self.db
        # PostgreSQL: when to make sure the coming days' telemetry partitions exist again
        # (connect() just did; hourly keeps AHEAD_DAYS ahead for a gateway that runs for weeks).
        self._partitions_due = time.monotonic() + 3600

    def _set_sync(self, level: str) -> None:
        """SQLite: set PRAGMA synchronous (outside any transaction); it stays until the next
        change, so right after flush() the connection reports the level its last commit used.
        PostgreSQL: remembered, applied per transaction by flush (_pg_sync)."""
        if level != self._sync:
            if self.dialect == "sqlite":
                self.db.execute(f"PRAGMA synchronous={level}")
            self._sync = level

    def _pg_sync(self) -> None:
        """PostgreSQL, inside flush's transaction. The server's default synchronous_commit=on
        waits for the WAL flush at COMMIT: what a batch with events needs (they are ACKed right
        after). A batch without events (telemetry, counters, commands) may commit with
        `off`: the COMMIT returns before the WAL is flushed (the WAL writer does it within
        3 x wal_writer_delay, 600 ms by default),
        the database is never corrupted, and a server crash can only lose the last moments of
        telemetry, as SQLite's NORMAL. A later synchronous commit (an event batch) flushes the
        WAL up to its own record, so every earlier batch becomes durable with it. Only the
        levels below FULL relax it (base_sync NORMAL/OFF); FULL and EXTRA keep `on`."""
        if self._sync in ("OFF", "NORMAL"):
            self.db.execute("SET LOCAL synchronous_commit = off")

    def close(self) -> None:
        self.db.close()

    def register(self, devices: Iterable[Device]) -> None:
        rows = [(d.device, d.name, d.district, d.category, d.site) for d in devices]
        with self._tx():
            self.db.executemany(
                "INSERT INTO devices(device, name, district, category, site) VALUES (?,?,?,?,?) "
                "ON CONFLICT(device) DO UPDATE SET name=excluded.name, "
                "district=excluded.district, category=excluded.category, site=excluded.site",
                rows,
            )

    def last_events(self) -> dict[int, tuple[int, bytes]]:
        """device -> (highest stored event counter, its tag): the replay high-water marks."""
        cur = self.db.execute(
            "SELECT device, counter, tag FROM events e WHERE counter = "
            "(SELECT MAX(counter) FROM events WHERE device = e.device)"
        )
        return {d: (c, bytes(t)) for d, c, t in cur}

    def has_result(self, device: int, counter: int) -> bool:
        r = self.db.execute(
            "SELECT 1 FROM results WHERE device=? AND counter=?", (device, counter)
        ).fetchone()
        return r is not None

    def result_for(self, device: int, cmd_counter: int) -> tuple[str, int] | None:
        """(status, value) of a stored RESULT answering the command with this host counter."""
        r = self.db.execute(
            "SELECT status, value FROM results WHERE device=? AND cmd_counter=? ORDER BY id "
            "LIMIT 1",
            (device, cmd_counter),
        ).fetchone()
        return None if r is None else (r[0], r[1])

    def abandon_commands(self, gateway: str, when: float) -> int:
        """Commands this instance had queued or in flight when it stopped (or crashed): their
        retransmission state was in memory. A RESULT arriving later still completes them."""
        with self._tx():
            cur = self.db.execute(
                "UPDATE commands SET status='abandoned', done=? WHERE gateway=? AND "
                "status IN ('queued', 'sent')",
                (when, gateway),
            )
        return cur.rowcount

    def has_event(self, device: int, counter: int, tag: bytes) -> bool:
        r = self.db.execute(
            "SELECT tag FROM events WHERE device=? AND counter=?", (device, counter)
        ).fetchone()
        return r is not None and bytes(r[0]) == bytes(tag)

    def _tx(self):
        return self.db.tx()

    def flush(
        self,
        telemetry: list[tuple],
        events: list[tuple],
        results: list[tuple],
        seen: dict[int, tuple],
        counters: dict[str, int],
        commands: list[tuple] | None = None,
        configs: list[tuple] | None = None,
        snapshots: list[tuple] | None = None,
    ) -> list[bool]:
        """Write one batch. events rows follow _INS_EV's columns. seen: device ->
        (last_seen, transport, address, status or None, fw or None, boot_count or None[,
        (status, rx) of the batch's last authenticated TELEMETRY or None]);
        last_seen None (nothing authenticated in this batch) leaves the first three as they are.
        commands: rows for _UPS_CMD (requests created or changed since the last batch);
        configs, snapshots: rows for _INS_CFG, _INS_SNAP.
        Returns, per event row, True if it was new (inserted), False if already stored.

        Rows that lock existing rows (events' UNIQUE key and alarm state, results, command and
        device rows) are written in key order, so two instances sharing a PostgreSQL database
        lock in the same order and do not deadlock; a deadlock or serialization failure that
        happens anyway (the whole transaction rolled back) is retried, twice at most."""
        # Events in the batch are ACKed once this returns: their commit must be power-loss
        # durable before it does (issue 10, finding 7).
        self._set_sync(self.ack_sync if events else self.base_sync)
        if self.dialect == "postgresql" and time.monotonic() >= self._partitions_due:
            self._partitions_due = time.monotonic() + 3600
            retention.ensure_partitions(self.db)  # its own short transaction, before the batch
        for attempt in range(3):
            try:
                return self._write(telemetry, events, results, seen, counters, commands,
                                   configs, snapshots)  # fmt: skip
            except Exception as e:
                # 40P01 deadlock_detected, 40001 serialization_failure: nothing was committed
                if getattr(e, "sqlstate", None) not in ("40P01", "40001") or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _write(
        self,
        telemetry: list[tuple],
        events: list[tuple],
        results: list[tuple],
        seen: dict[int, tuple],
        counters: dict[str, int],
        commands: list[tuple] | None,
        configs: list[tuple] | None,
        snapshots: list[tuple] | None,
    ) -> list[bool]:
        db = self.db
        new = [False] * len(events)
        with self._tx():
            if self.dialect == "postgresql":
                self._pg_sync()
            if telemetry:
                db.executemany(_INS_TEL, telemetry)
            # (device, counter) order: a device's events keep their order (counters rise).
            for i in sorted(range(len(events)), key=lambda i: (events[i][0], events[i][1])):
                row = events[i]
                cur = db.execute(_INS_EV, row)
                new[i] = ok = cur.rowcount == 1
                if ok:
                    self._apply_event(row)
            if commands:
                cmds: list[tuple] = sorted(commands, key=lambda r: str(r[0]))  # by request id
                db.executemany(_UPS_CMD, cmds)
            if configs:
                db.executemany(_INS_CFG, configs)
            if snapshots:
                db.executemany(_INS_SNAP, snapshots)
            if results:
                results = sorted(results, key=lambda r: (r[0], r[1]))
                db.executemany(_INS_RES, results)
                db.executemany(_DONE_CMD, [(r[5], r[6], r[2], r[0], r[3]) for r in results])
            if seen:
                # last_seen None: only unauthenticated frames since the last batch (an untagged
                # TELEMETRY's status, SPEC.md section 5): when and where the device was last
                # seen stay as they are.
                # Positional `?` only (PostgreSQL has no ?NNN): each row repeats its values
                # where the SQL uses them (_SEEN_ROW). CASE instead of SQLite's scalar MAX().
                db.executemany(_UPD_SEEN, [_seen_row(d, seen[d]) for d in sorted(seen)])
            if counters:
                db.executemany(
                    "INSERT INTO counters(gateway, name, value) VALUES (?,?,?) ON CONFLICT "
                    "(gateway, name) DO UPDATE SET value = counters.value + excluded.value",
                    [(self.gateway, k, v) for k, v in sorted(counters.items()) if v],
                )
        return new

    def _apply_event(self, row: tuple) -> None:
        device, _c, _s, rx, _t, kind, channel, value, threshold = row[:9]
        state = _STATE_BY_KIND.get(kind)
        if kind == "clear":
            # The condition has gone: a pre-alarm ends, a latched alarm stays until reset.
            self.db.execute(
                "UPDATE alarm_state SET state='normal', since=?, value=?, kind=? "
                "WHERE device=? AND channel=? AND state='prealarm'",
                (rx, value, kind, device, channel),
            )
            return
        if state is None:
            return
        if state == "prealarm":
            # A pre-alarm never downgrades a latched alarm or an active fault.
            self.db.execute(
                _INS_STATE + " DO UPDATE SET state=excluded.state, since=excluded.since, "
                "value=excluded.value, threshold=excluded.threshold, kind=excluded.kind "
                "WHERE alarm_state.state NOT IN ('alarm', 'fault')",
                (device, channel, state, rx, value, threshold, kind),
            )
            return
        if state == "normal" and kind == "reset" and channel == "all":
            self.db.execute(
                "UPDATE alarm_state SET state='normal', since=? WHERE device=?", (rx, device)
            )
            return
        self.db.execute(
            _INS_STATE + " DO UPDATE SET state=excluded.state, since=excluded.since, "
            "value=excluded.value, threshold=excluded.threshold, kind=excluded.kind",
            (device, channel, state, rx, value, threshold, kind),
        )


def wire_to_unix(t: int) -> int | None:
    return None if not t else t + EPOCH_UNIX


def now() -> float:
    return time.time()
