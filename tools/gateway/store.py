"""SQLite storage: WAL journal, one transaction per batch.

Tables (docs/gateway.md has the full description):
  devices      one row per registered device: registry tags, last seen, last status (any
               TELEMETRY), and the status of the last authenticated TELEMETRY with its time
               (auth_status, auth_status_at: query.py's alarms "from telemetry")
  telemetry    one row per TELEMETRY frame (values in the detector's integer units)
  events       one row per EVENT, UNIQUE(device, counter): the authenticated counter is the
               natural key, so a retransmission can never be stored twice, whichever gateway
               instance (sharing this file) receives it
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
writer, and busy_timeout serialises the writers' short batch transactions.

Durability: a batch that carries EVENT rows commits with `PRAGMA synchronous=FULL` (the WAL is
fsynced before COMMIT returns), because the gateway ACKs those events right after the commit and
an ACKed detector forgets the event: with NORMAL, a power loss after the ACK could lose an alarm
nobody will ever send again. Batches without events (telemetry, counters, commands) stay NORMAL:
never corrupt, and losing the last moments of telemetry is harmless. Store.flush picks the level.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from efd import names
from tools.gateway import units
from tools.gateway.registry import Device

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device      INTEGER PRIMARY KEY,
    name        TEXT NOT NULL DEFAULT '',
    district    TEXT NOT NULL DEFAULT '',
    category    TEXT NOT NULL DEFAULT '',
    site        TEXT NOT NULL DEFAULT '',
    first_seen  REAL,
    last_seen   REAL,
    transport   TEXT,
    address     TEXT,
    status      INTEGER,
    fw          TEXT,
    boot_count  INTEGER,
    auth_status INTEGER,  -- status bits of the latest authenticated TELEMETRY
    auth_status_at REAL   -- when it was received (Unix s)
);
CREATE TABLE IF NOT EXISTS telemetry (
    id          INTEGER PRIMARY KEY,
    device      INTEGER NOT NULL,
    rx          REAL NOT NULL,
    dev_time    INTEGER,
    seq         INTEGER NOT NULL,
    residual_ma INTEGER,
    temp0_dc    INTEGER, temp1_dc INTEGER, temp2_dc INTEGER, temp3_dc INTEGER,
    line0_ca    INTEGER, line1_ca INTEGER, line2_ca INTEGER,
    status      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS telemetry_device_rx ON telemetry(device, rx);
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY,
    device      INTEGER NOT NULL,
    counter     INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    rx          REAL NOT NULL,
    dev_time    INTEGER,
    kind        TEXT NOT NULL,
    channel     TEXT NOT NULL,
    value       INTEGER NOT NULL,
    threshold   INTEGER NOT NULL,
    tag         BLOB NOT NULL,
    gateway     TEXT NOT NULL,
    UNIQUE(device, counter)
);
CREATE INDEX IF NOT EXISTS events_rx ON events(rx);
CREATE TABLE IF NOT EXISTS alarm_state (
    device      INTEGER NOT NULL,
    channel     TEXT NOT NULL,
    state       TEXT NOT NULL,
    since       REAL NOT NULL,
    value       INTEGER,
    threshold   INTEGER,
    kind        TEXT,  -- the kind of the event that set value/threshold (their unit)
    PRIMARY KEY (device, channel)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS results (
    id          INTEGER PRIMARY KEY,
    device      INTEGER NOT NULL,
    counter     INTEGER NOT NULL,
    rx          REAL NOT NULL,
    cmd_counter INTEGER NOT NULL,
    cmd         TEXT NOT NULL,
    status      TEXT NOT NULL,
    value       INTEGER NOT NULL,
    UNIQUE(device, counter)
);
CREATE INDEX IF NOT EXISTS results_device_cmd ON results(device, cmd_counter);
CREATE TABLE IF NOT EXISTS commands (
    request     TEXT PRIMARY KEY,
    device      INTEGER NOT NULL,
    gateway     TEXT NOT NULL,
    cmd         TEXT NOT NULL,
    args        TEXT NOT NULL,
    requested   REAL NOT NULL,
    cmd_counter INTEGER,
    first_sent  REAL,
    last_sent   REAL,
    tries       INTEGER NOT NULL DEFAULT 0,
    status      TEXT NOT NULL,
    result      TEXT,
    value       INTEGER,
    done        REAL,
    requested_by TEXT  -- the MQTT user who asked (topic <prefix>/cmd/<user>/<device>, ACL-bound)
);
CREATE INDEX IF NOT EXISTS commands_device_counter ON commands(device, cmd_counter);
CREATE INDEX IF NOT EXISTS commands_requested ON commands(requested);
CREATE TABLE IF NOT EXISTS configs (
    id          INTEGER PRIMARY KEY,
    device      INTEGER NOT NULL,
    counter     INTEGER,
    rx          REAL NOT NULL,
    dev_time    INTEGER,
    config_hash INTEGER NOT NULL,
    params      TEXT NOT NULL,
    gateway     TEXT NOT NULL,
    UNIQUE(device, counter)
);
CREATE INDEX IF NOT EXISTS configs_device_rx ON configs(device, rx);
CREATE TABLE IF NOT EXISTS snapshots (
    id          INTEGER PRIMARY KEY,
    device      INTEGER NOT NULL,
    rx          REAL NOT NULL,
    dev_time    INTEGER,
    snap_id     INTEGER NOT NULL,
    channel     TEXT NOT NULL,
    chunk       INTEGER NOT NULL,
    chunks      INTEGER NOT NULL,
    scale_exp   INTEGER NOT NULL,
    rate_hz     INTEGER NOT NULL,
    trigger     INTEGER NOT NULL,
    offset      INTEGER NOT NULL,
    samples     TEXT NOT NULL,
    UNIQUE(device, snap_id, chunk)
);
CREATE TABLE IF NOT EXISTS counters (
    gateway     TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       INTEGER NOT NULL,
    PRIMARY KEY (gateway, name)
) WITHOUT ROWID;
"""

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
_INS_EV = "INSERT OR IGNORE INTO events(device, counter, seq, rx, dev_time, kind, channel, value, \
threshold, tag, gateway) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
_INS_STATE = "INSERT INTO alarm_state(device, channel, state, since, value, threshold, kind) \
VALUES (?,?,?,?,?,?,?) ON CONFLICT(device, channel)"
_INS_RES = "INSERT OR IGNORE INTO results(device, counter, rx, cmd_counter, cmd, status, value) \
VALUES (?,?,?,?,?,?,?)"
_INS_CFG = "INSERT OR IGNORE INTO configs(device, counter, rx, dev_time, config_hash, params, \
gateway) VALUES (?,?,?,?,?,?,?)"
# A snapshot chunk received again (the host re-requests missing chunks by repeating the command,
# SPEC 5.6) replaces the earlier copy: the latest snapshot with that id wins.
_INS_SNAP = "INSERT OR REPLACE INTO snapshots(device, rx, dev_time, snap_id, channel, chunk, \
chunks, scale_exp, rate_hz, trigger, offset, samples) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
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


# PRAGMA synchronous levels accepted by connect() and Store (no other text reaches the SQL).
SYNC_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")


def _sync_level(level: str) -> str:
    if level.upper() not in SYNC_LEVELS:
        raise ValueError(f"synchronous must be one of {SYNC_LEVELS}, not {level!r}")
    return level.upper()


def connect(
    path: str | Path, readonly: bool = False, synchronous: str = "NORMAL"
) -> sqlite3.Connection:
    if readonly:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(str(path))
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=30)
    else:
        db = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: never corrupt, durable at checkpoints; Store raises it to FULL for the
        # transactions whose events are ACKed (see Store.flush).
        db.execute(f"PRAGMA synchronous={_sync_level(synchronous)}")
        db.executescript(SCHEMA)
        _add_requested_by(db)
        _add_auth_status(db)
        _add_alarm_kind(db)
        create_views(db)
    db.execute("PRAGMA busy_timeout=30000")
    return db


def _add_alarm_kind(db: sqlite3.Connection) -> None:
    """A database made before alarm_state.kind existed gets the column (NULL: the row was set
    before; alarm_state_si then takes a fault's value as its code, any other as a reading)."""
    if "kind" not in {r[1] for r in db.execute("PRAGMA table_info(alarm_state)")}:
        with contextlib.suppress(sqlite3.OperationalError):  # a sibling added it meanwhile
            db.execute("ALTER TABLE alarm_state ADD COLUMN kind TEXT")


# -- views in physical units (docs/gateway.md, "SQLite schema") ----------------------------------
# The tables keep the wire's integers (the record); these views present them as people and
# platforms read them, by the rules of protocol.host.physical() (tools/gateway/units.py reads
# them off it): degC, A, mA, degC/min, fault and status-bit names, each with its unit. Made by
# connect() for new and existing databases, and replaced when their definition changes.
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


def _scaled(expr: str, div: str | int, places: int = 3) -> str:
    """SQL for physical()'s _scaled: the integer as it is when div is 1, else rounded."""
    if isinstance(div, int):
        return expr if div == 1 else f"round({expr} / {div}.0, {places})"
    return f"CASE WHEN {div} > 1 THEN round({expr} * 1.0 / {div}, {places}) ELSE {expr} END"


def _flags(expr: str) -> str:
    """SQL: the status bits of `expr` by name, comma-separated (protocol.host.status_flags)."""
    parts = " || ".join(
        f"CASE WHEN {expr} & {bit} THEN {_lit(name + ',')} ELSE '' END"
        for bit, name in units.status_bits()
    )
    return f"CASE WHEN {expr} IS NULL THEN NULL ELSE rtrim({parts}, ',') END"


# 10^scale_exp for a SNAPSHOT (SPEC.md section 5.6), literal: no pow() needed in SQLite.
_SCALE_EXPS = range(-12, 13)


def view_select(name: str, db: sqlite3.Connection | None = None) -> str:
    """The SELECT behind view `name`. With db: fitted to its tables' columns (a database
    written by an older gateway and opened read-only: query export runs this directly)."""

    def cols(table: str) -> list[str]:
        if db is None:
            return []
        return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]

    if name == "telemetry_si":
        rules = units.telemetry_rules()
        scaled = ", ".join(f"{_scaled('t.' + col, div)} AS {view}" for col, view, _u, div in rules)
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
            stored = "a.kind" if has_kind else "NULL"
            kind = f"COALESCE({stored}, CASE WHEN a.state = 'fault' THEN 'fault' ELSE 'alarm' END)"
            head = f"a.device, a.channel, a.state, a.since, {stored} AS kind"
            tail, src = "", "alarm_state a"
        return (
            f"WITH u(kind, channel, unit, div, is_fault) AS ({ev_rules}), f(code, name) AS "
            f"({faults}) SELECT {head}, {_scaled(a + '.value', 'u.div')} AS value, "
            f"{_scaled(a + '.threshold', 'u.div')} AS threshold, u.unit AS units, "
            f"CASE WHEN u.is_fault THEN COALESCE(f.name, {a}.value) END AS fault"
            + (", " + tail if tail else "")
            + f" FROM {src} LEFT JOIN u ON u.kind = {kind} AND u.channel = {a}.channel "
            f"LEFT JOIN f ON u.is_fault AND f.code = {a}.value"
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
        return (
            f"WITH u(channel, unit, div) AS ({chans}), x(exp, factor) AS ({exps}) "
            "SELECT s.id, s.device, s.rx, s.dev_time, s.snap_id, s.channel, s.chunk, s.chunks, "
            "s.scale_exp, s.rate_hz, s.trigger, s.offset, (SELECT json_group_array(round("
            "j.value * (x.factor / COALESCE(u.div, 1)), 6)) FROM json_each(s.samples) j) "
            "AS samples, COALESCE(u.unit, '') AS units FROM snapshots s "
            "LEFT JOIN u ON u.channel = s.channel LEFT JOIN x ON x.exp = s.scale_exp"
        )
    if name == "config_params_si":
        us = _values(units.setting_units())
        return (
            f"WITH u(param, unit) AS ({us}) SELECT c.id AS config_id, c.device, c.counter, "
            "c.rx, c.dev_time, c.config_hash, c.gateway, j.key AS position, "
            "json_extract(j.value, '$[0]') AS param, json_extract(j.value, '$[1]') AS value, "
            "COALESCE(u.unit, '') AS units FROM configs c JOIN json_each(c.params) j "
            "LEFT JOIN u ON u.param = json_extract(j.value, '$[0]')"
        )
    raise ValueError(f"no view {name!r}")


def create_views(db: sqlite3.Connection) -> None:
    """Create the physical-unit VIEWS, or replace one whose definition changed (a newer
    gateway: new names, a new unit). One transaction; a sibling doing the same waits."""
    want = {v: f"CREATE VIEW {v} AS {view_select(v, db)}" for v in VIEWS}
    have = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'view'").fetchall())
    if all(have.get(v) == sql for v, sql in want.items()):
        return
    with _Tx(db):
        have = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'view'"))
        for v, sql in want.items():
            if have.get(v) != sql:
                db.execute(f"DROP VIEW IF EXISTS {v}")
                db.execute(sql)


def _add_auth_status(db: sqlite3.Connection) -> None:
    """A database made before devices.auth_status existed gets the columns (NULL: no
    authenticated TELEMETRY stored since)."""
    have = {r[1] for r in db.execute("PRAGMA table_info(devices)")}
    for col, typ in (("auth_status", "INTEGER"), ("auth_status_at", "REAL")):
        if col not in have:
            with contextlib.suppress(sqlite3.OperationalError):  # a sibling added it meanwhile
                db.execute(f"ALTER TABLE devices ADD COLUMN {col} {typ}")


def _add_requested_by(db: sqlite3.Connection) -> None:
    """A database made before commands.requested_by existed gets the column (NULL: unknown)."""
    if "requested_by" not in {r[1] for r in db.execute("PRAGMA table_info(commands)")}:
        with contextlib.suppress(sqlite3.OperationalError):  # a sibling added it meanwhile
            db.execute("ALTER TABLE commands ADD COLUMN requested_by TEXT")


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
        self.path = str(path)
        self.gateway = gateway
        self.ack_sync = _sync_level(ack_sync)
        self.base_sync = _sync_level(base_sync)
        self.db = connect(path, synchronous=self.base_sync)
        self._sync = self.base_sync  # the level in effect on self.db

    def _set_sync(self, level: str) -> None:
        """Set PRAGMA synchronous (outside any transaction); it stays until the next change, so
        right after flush() the connection reports the level its last commit used."""
        if level != self._sync:
            self.db.execute(f"PRAGMA synchronous={level}")
            self._sync = level

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
        return _Tx(self.db)

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
        Returns, per event row, True if it was new (inserted), False if already stored."""
        new: list[bool] = []
        db = self.db
        # Events in the batch are ACKed once this returns: their commit must be power-loss
        # durable before it does (issue 10, finding 7).
        self._set_sync(self.ack_sync if events else self.base_sync)
        with self._tx():
            if telemetry:
                db.executemany(_INS_TEL, telemetry)
            for row in events:
                cur = db.execute(_INS_EV, row)
                ok = cur.rowcount == 1
                new.append(ok)
                if ok:
                    self._apply_event(row)
            if commands:
                db.executemany(_UPS_CMD, commands)
            if configs:
                db.executemany(_INS_CFG, configs)
            if snapshots:
                db.executemany(_INS_SNAP, snapshots)
            if results:
                db.executemany(_INS_RES, results)
                db.executemany(_DONE_CMD, [(r[5], r[6], r[2], r[0], r[3]) for r in results])
            if seen:
                # last_seen None: only unauthenticated frames since the last batch (an untagged
                # TELEMETRY's status, SPEC.md section 5): when and where the device was last
                # seen stay as they are.
                db.executemany(
                    "UPDATE devices SET "
                    "last_seen=CASE WHEN ?1 IS NULL THEN last_seen "
                    "ELSE MAX(COALESCE(last_seen, 0), ?1) END, "
                    "first_seen=COALESCE(first_seen, ?1), "
                    "transport=CASE WHEN ?1 IS NULL THEN transport ELSE ?2 END, "
                    "address=CASE WHEN ?1 IS NULL THEN address ELSE ?3 END, "
                    "status=COALESCE(?4, status), fw=COALESCE(?5, fw), "
                    "boot_count=COALESCE(?6, boot_count), "
                    # The latest authenticated status only moves forward in time (a sibling
                    # instance sharing the file may commit an older one after a newer one).
                    "auth_status=CASE WHEN ?9 > COALESCE(auth_status_at, 0) THEN ?8 "
                    "ELSE auth_status END, "
                    "auth_status_at=CASE WHEN ?9 > COALESCE(auth_status_at, 0) THEN ?9 "
                    "ELSE auth_status_at END "
                    "WHERE device=?7",
                    [
                        (*s[:6], d, *(s[6] if len(s) > 6 and s[6] else (None, None)))
                        for d, s in seen.items()
                    ],
                )
            if counters:
                db.executemany(
                    "INSERT INTO counters(gateway, name, value) VALUES (?,?,?) ON CONFLICT "
                    "(gateway, name) DO UPDATE SET value = value + excluded.value",
                    [(self.gateway, k, v) for k, v in counters.items() if v],
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
                "WHERE state NOT IN ('alarm', 'fault')",
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


class _Tx:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, et, e, tb) -> None:
        self.db.execute("COMMIT" if et is None else "ROLLBACK")


def wire_to_unix(t: int) -> int | None:
    return None if not t else t + EPOCH_UNIX


def now() -> float:
    return time.time()
