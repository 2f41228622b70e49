"""The store on SQLite and PostgreSQL (issue 16): db.py's shared SQL, the versioned migrations
(fresh, from a pre-versioning SQLite file, concurrent starts, a database newer than the code),
the same view rows on both engines, and PostgreSQL's uniqueness and durability split."""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.gateway.conftest import run_cli
from tools.gateway import migrations, retention
from tools.gateway import store as S
from tools.gateway.db import DbError, mask, open_db, translate
from tools.gateway.store import Store

PW = "s3cret-pw"


# -- db.py -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sql,want",
    [
        ("SELECT 1 WHERE a=? AND b=?", "SELECT 1 WHERE a=%s AND b=%s"),
        ("SELECT '?' , ?", "SELECT '?' , %s"),  # a quoted ? is text, not a placeholder
        ("SELECT 'it''s ?', ?", "SELECT 'it''s ?', %s"),
        ('SELECT "odd?col" FROM t WHERE x=?', 'SELECT "odd?col" FROM t WHERE x=%s'),
        ("SELECT 5 % 2, '50%', ?", "SELECT 5 %% 2, '50%%', %s"),  # psycopg reads every %
        ("SELECT 1", "SELECT 1"),
    ],
)
def test_placeholders_translate_for_psycopg(sql, want):
    assert translate(sql) == want


def test_numbered_placeholders_are_refused():
    with pytest.raises(ValueError, match="SQLite-only"):
        translate("UPDATE t SET a=?1 WHERE b=?2")


def test_every_store_statement_translates():
    """The store's SQL is written once: each statement is valid input for translate()."""
    for name in dir(S):
        v = getattr(S, name)
        if name.startswith(("_INS", "_UPS", "_DONE", "_UPD")) and isinstance(v, str):
            assert translate(v).count("%s") == v.count("?"), name


def test_password_is_masked():
    assert mask(f"postgresql://efd:{PW}@db:5432/efd") == "postgresql://efd:***@db:5432/efd"
    assert mask(f"postgres://u:{PW}@x@h/d") == "postgres://u:***@h/d"  # an unencoded @
    assert mask("postgresql://u@h/d") == "postgresql://u@h/d"
    assert mask(f"postgresql://u@h/d?sslmode=require&password={PW}") == (
        "postgresql://u@h/d?sslmode=require&password=***"
    )
    assert mask("efd.db") == "efd.db"


@pytest.mark.parametrize(
    "url,words",
    [
        (f"postgresql://efd:{PW}@127.0.0.1:1/efd", "cannot connect"),  # nobody listens
        (f"postgresql://efd:{PW}@127.0.0.1:port/efd", "bad port"),
        (f"postgresql://efd:{PW}@127.0.0.1:5432", "postgresql://user:password@host:port/dbname"),
        (f"postgresql:efd:{PW}@127.0.0.1/efd", "starts with postgresql://"),
    ],
)
def test_bad_urls_are_one_clear_error_without_the_password(url, words):
    with pytest.raises(DbError) as e:
        open_db(url, connect_timeout=2)
    assert words in str(e.value) and PW not in str(e.value)


def test_gateway_and_query_refuse_an_unreachable_server_in_one_line(fleet_files):
    url = f"postgresql://efd:{PW}@127.0.0.1:1/efd"
    r = run_cli("tools.gateway", "run", "--registry", str(fleet_files / "fleet.csv"),
                "--secret-file", str(fleet_files / "secret"), "--db", url,
                "--udp", "127.0.0.1:0", "--duration", "1")  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "cannot connect" in r.stderr and "Traceback" not in r.stderr
    assert PW not in r.stderr + r.stdout
    for args in (["query", "alarms"], ["migrate"]):
        r = run_cli("tools.gateway", *args, "--db", url)
        assert r.returncode == 2 and "cannot connect" in r.stderr, r.stderr
        assert PW not in r.stderr + r.stdout and "Traceback" not in r.stderr


def test_readonly_sqlite_is_readonly_and_missing_file_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_db(tmp_path / "none.db", readonly=True)
    Store(tmp_path / "a.db", "x").close()
    db = open_db(tmp_path / "a.db", readonly=True)
    with pytest.raises(sqlite3.OperationalError):
        db.execute("DELETE FROM devices")
    db.close()


# -- migrations -----------------------------------------------------------------------------
def empty_target(backend: str, tmp_path: Path, request) -> str:
    if backend == "sqlite":
        return str(tmp_path / "m.db")
    return request.getfixturevalue("pg_server").new_database(migrated=False)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_fresh_database_gets_every_migration_once(backend, tmp_path, request):
    target = empty_target(backend, tmp_path, request)
    known = [m.version for m in migrations.discover()]
    assert known[0] == 1 and known == sorted(set(known))
    db = open_db(target)
    assert migrations.current(db) == 0
    assert S.prepare(db) == known
    assert S.prepare(db) == []  # idempotent: nothing to do the second time
    assert migrations.current(db) == known[-1]
    rows = db.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == known and rows[0][1] == "baseline"
    assert set(S.VIEWS) <= set(_views(db))
    db.close()


def _views(db) -> list[str]:
    if db.dialect == "sqlite":
        return [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='view'")]
    return [r[0] for r in db.execute("SELECT viewname FROM pg_views WHERE schemaname='public'")]


# The schema of a gateway from before versioning and before the later columns (the text of
# store.SCHEMA at that time, trimmed to the tables that differ and one that does not).
OLD_SCHEMA = """
CREATE TABLE devices (device INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '',
    district TEXT NOT NULL DEFAULT '', category TEXT NOT NULL DEFAULT '',
    site TEXT NOT NULL DEFAULT '', first_seen REAL, last_seen REAL, transport TEXT,
    address TEXT, status INTEGER, fw TEXT, boot_count INTEGER);
CREATE TABLE events (id INTEGER PRIMARY KEY, device INTEGER NOT NULL, counter INTEGER NOT NULL,
    seq INTEGER NOT NULL, rx REAL NOT NULL, dev_time INTEGER, kind TEXT NOT NULL,
    channel TEXT NOT NULL, value INTEGER NOT NULL, threshold INTEGER NOT NULL,
    tag BLOB NOT NULL, gateway TEXT NOT NULL, UNIQUE(device, counter));
CREATE TABLE alarm_state (device INTEGER NOT NULL, channel TEXT NOT NULL, state TEXT NOT NULL,
    since REAL NOT NULL, value INTEGER, threshold INTEGER, PRIMARY KEY (device, channel))
    WITHOUT ROWID;
CREATE TABLE commands (request TEXT PRIMARY KEY, device INTEGER NOT NULL, gateway TEXT NOT NULL,
    cmd TEXT NOT NULL, args TEXT NOT NULL, requested REAL NOT NULL, cmd_counter INTEGER,
    first_sent REAL, last_sent REAL, tries INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL,
    result TEXT, value INTEGER, done REAL);
INSERT INTO devices(device, name, status) VALUES (7, 'd7', 1);
INSERT INTO events VALUES (1, 7, 5, 1, 100.0, NULL, 'alarm', 'temp0', 712, 700, x'00', 'old');
INSERT INTO alarm_state VALUES (7, 'temp0', 'alarm', 100.0, 712, 700);
"""


def test_pre_versioning_sqlite_file_is_adopted_by_the_baseline(tmp_path):
    db_path = tmp_path / "old.db"
    c = sqlite3.connect(db_path)
    c.executescript(OLD_SCHEMA)
    c.close()
    st = Store(db_path, "new")
    db = st.db
    assert migrations.applied(db)[1] == "baseline"
    assert {"auth_status", "auth_status_at"} <= set(db.columns("devices"))
    assert "requested_by" in db.columns("commands") and "kind" in db.columns("alarm_state")
    assert {"telemetry", "results", "configs", "snapshots", "counters"} <= {
        r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    # The old rows are kept, read through the views, and the old events still deduplicate.
    assert db.execute("SELECT name, status FROM devices").fetchall() == [("d7", 1)]
    assert db.execute("SELECT value, units FROM alarm_state_si").fetchall() == [(71.2, "degC")]
    row = (7, 5, 1, 200.0, None, "alarm", "temp0", 712, 700, b"\0", "new")
    assert st.flush([], [row], [], {}, {}) == [False]
    st.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_gateways_starting_together_do_not_race(backend, tmp_path, request):
    """Six stores open one empty database at once: each migration is applied once, nobody
    fails (PostgreSQL: advisory lock; SQLite: BEGIN IMMEDIATE), the views exist."""
    target = empty_target(backend, tmp_path, request)
    start = threading.Barrier(6)
    errors: list[BaseException] = []
    applied: list[list[int]] = []

    def one(i: int) -> None:
        try:
            start.wait()
            db = open_db(target)
            applied.append(S.prepare(db))
            db.close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    known = [m.version for m in migrations.discover()]
    assert sorted(v for a in applied for v in a) == known  # each applied by exactly one
    db = open_db(target)
    n = db.execute("SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations").fetchone()
    assert tuple(n) == (len(known), len(known))
    assert set(S.VIEWS) <= set(_views(db))
    db.close()


def test_a_database_newer_than_the_code_is_refused(store_url, fleet_files):
    Store(store_url, "x").close()
    db = open_db(store_url)
    db.execute(
        "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?,?,?)",
        (999, "from_the_future", 0.0),
    )
    db.close()
    with pytest.raises(migrations.SchemaError, match="999"):
        Store(store_url, "x")
    r = run_cli("tools.gateway", "run", "--registry", str(fleet_files / "fleet.csv"),
                "--secret-file", str(fleet_files / "secret"), "--db", store_url,
                "--udp", "127.0.0.1:0", "--duration", "1")  # fmt: skip
    assert r.returncode == 2 and "newer gateway" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "s3cret" not in r.stderr
    r = run_cli("tools.gateway", "migrate", "--db", store_url)
    assert r.returncode == 2 and "999" in r.stderr and "Traceback" not in r.stderr


def test_duplicate_versions_are_an_error(tmp_path, monkeypatch):
    pkg = tmp_path / "migpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    body = "VERSION = {v}\nNAME = '{n}'\ndef up(db):\n    pass\n"
    (pkg / "m0003_a.py").write_text(body.format(v=3, n="a"))
    (pkg / "m0004_b.py").write_text(body.format(v=4, n="b"))
    (pkg / "helpers.py").write_text("")  # not a migration: ignored
    monkeypatch.syspath_prepend(str(tmp_path))
    assert [m.version for m in migrations.discover("migpkg")] == [3, 4]
    (pkg / "m0004_c.py").write_text(body.format(v=4, n="c"))
    sys.modules.pop("migpkg", None)
    with pytest.raises(migrations.SchemaError, match="same VERSION 4"):
        migrations.discover("migpkg")
    (pkg / "m0004_c.py").unlink()
    (pkg / "m0005_d.py").write_text(body.format(v=6, n="d"))
    with pytest.raises(migrations.SchemaError, match="differs from its file name"):
        migrations.discover("migpkg")


def test_migrate_command(store_url):
    r = run_cli("tools.gateway", "migrate", "--help")
    assert r.returncode == 0 and "--db PATH|URL" in r.stdout and "--status" in r.stdout
    if store_url.endswith(".db"):
        r = run_cli("tools.gateway", "migrate", "--db", store_url, "--status")
        assert r.returncode == 2 and "no such database" in r.stderr
    r = run_cli("tools.gateway", "migrate", "--db", store_url)
    assert r.returncode == 0, r.stderr
    known = [m.version for m in migrations.discover()]
    assert f"current version: {known[-1]}" in r.stdout
    assert ("s3cret" not in r.stdout and ":***@" in r.stdout) or store_url.endswith(".db")
    r = run_cli("tools.gateway", "migrate", "--db", store_url)
    assert "applied now: none" in r.stdout, r.stdout


# -- the same data, the same views ---------------------------------------------------------------
def _feed(st: Store) -> None:
    tel = [(7, 10.5, 1000, 1, 12, 251, -32768, 0, 1, 3305, 65535, 0, 0x0402),
           (7, 11.5, None, 2, None, None, None, None, None, None, None, None, 0)]  # fmt: skip
    evs = [(7, n, n, 20.0 + n, 0, k, ch, v, t, b"tag" + bytes([n]), "g")
           for n, (k, ch, v, t) in enumerate([("alarm", "temp1", 712, 700),
                                              ("fault", "phase0", 2, 0),
                                              ("fault", "phase1", 99, 0),
                                              ("ror", "temp0", 85, 80),
                                              ("prealarm", "residual", 250, 240)], 1)]  # fmt: skip
    st.register([])
    st.db.execute("INSERT INTO devices(device, name, district) VALUES (7, 'd7', 'Sha')")
    snaps = [(7, 30.0, None, 3, "phase0", c, 2, -2, 1000, 5, 0, json.dumps([1, -2, 300 + c]))
             for c in range(2)]  # fmt: skip
    cfgs = [(7, 9, 31.0, None, 77, json.dumps([["alarm_ma", 300], ["temp_alarm_dc", 700]]), "g")]
    seen = {7: (21.0, "udp", "1.2.3.4:5", 0x0402, "1.0", 3, (0x0402, 21.0))}
    assert st.flush(tel, evs, [], seen, {"n": 1}, [], cfgs, snaps) == [True] * 5


def test_views_give_the_same_rows_on_both_backends(tmp_path, pg_server):
    got = {}
    for target in (str(tmp_path / "v.db"), pg_server.new_database()):
        st = Store(target, "g")
        _feed(st)
        got[st.dialect] = {
            v: [list(r) for r in st.db.execute(f"SELECT * FROM {v} ORDER BY 1, 2").fetchall()]
            for v in S.VIEWS
        }
        cols = {v: st.db.columns(v) for v in S.VIEWS}
        got[st.dialect + "_cols"] = cols
        st.close()
    assert got["sqlite_cols"] == got["postgresql_cols"]
    for v in S.VIEWS:
        a, b = got["sqlite"][v], got["postgresql"][v]
        assert len(a) == len(b) > 0, v
        for ra, rb in zip(a, b, strict=True):
            for col, x, y in zip(got["sqlite_cols"][v], ra, rb, strict=True):
                if col == "samples":  # JSON text: the same numbers, spacing may differ
                    x, y = json.loads(x), json.loads(y)
                if col == "fault" and v != "devices_si" and x is not None:
                    x = str(x)  # an unknown code: a number on SQLite, its text on PostgreSQL
                assert x == y, (v, col, x, y)


# -- PostgreSQL: several instances, durability ------------------------------------------------
def test_the_same_event_from_two_instances_is_stored_once(pg_server):
    """Two gateway instances (two connections) store the same EVENT at the same moment (an
    MQTT redelivery to the other instance): one insert wins, the other reports it as not new,
    the alarm state is applied once."""
    url = pg_server.new_database()
    a, b = Store(url, "gwA"), Store(url, "gwB")
    go = threading.Barrier(2)
    out: dict[str, list[bool]] = {}
    for n in range(1, 21):
        row = (7, n, n, float(n), None, "alarm", "temp0", 700 + n, 700, b"t%d" % n, "?")

        def flush(st: Store, row=row) -> None:
            go.wait()
            out[st.gateway] = st.flush([], [(*row[:10], st.gateway)], [], {}, {})

        ts = [threading.Thread(target=flush, args=(st,)) for st in (a, b)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        assert sorted(out["gwA"] + out["gwB"]) == [False, True], n
    assert a.db.execute("SELECT COUNT(*), COUNT(DISTINCT counter) FROM events").fetchone() == (
        20,
        20,
    )
    assert a.db.execute("SELECT state, value FROM alarm_state").fetchall() == [("alarm", 720)]
    a.close()
    b.close()


def test_event_batches_commit_synchronously_and_telemetry_batches_need_not(pg_server):
    url = pg_server.new_database()
    st = Store(url, "g")
    sent: list[str] = []
    real = st.db.execute

    def spy(sql, params=()):
        sent.append(sql)
        return real(sql, params)

    st.db.execute = spy  # type: ignore[method-assign]
    tel = [(7, 1.0, None, 1, None, None, None, None, None, None, None, None, 0)]
    st.flush(tel, [], [], {}, {})
    assert "SET LOCAL synchronous_commit = off" in sent
    # The event batch: the server's default (synchronous_commit=on) stays in force.
    sent.clear()
    row = (7, 1, 1, 1.0, None, "alarm", "temp0", 712, 700, b"t", "g")
    assert st.flush(tel, [row], [], {}, {}) == [True]
    assert not any("synchronous_commit" in s for s in sent)
    assert st.db.execute("SHOW synchronous_commit").fetchone()[0] == "on"
    st.close()
    # FULL for everything (the benchmark's other setting): no relaxed batch at all.
    st = Store(url, "g", base_sync="FULL")
    sent = []
    real = st.db.execute
    st.db.execute = spy  # type: ignore[method-assign]
    st.flush(tel, [], [], {}, {})
    assert not any("synchronous_commit" in s for s in sent)
    st.close()


def test_percent_and_quotes_reach_postgresql_intact(pg_server):
    """translate() escapes %; the escaped SQL must then be read back as one % by psycopg,
    with and without parameters (an unescaped % with parameters is a psycopg error)."""
    db = open_db(pg_server.url())
    assert db.execute("SELECT 7 % 4, '50%', '?'").fetchone() == (3, "50%", "?")
    assert db.execute("SELECT 7 % ?, '5%', ?", (4, "x")).fetchone() == (3, "5%", "x")
    db.close()


# -- telemetry retention (retention.py, migration 2) -----------------------------------------
def _tel(device: int, rx: float, seq: int) -> tuple:
    return (device, rx, None, seq, 5, 250, None, None, None, 100, None, None, 0)


def test_prune_keeps_recent_telemetry_and_every_event(store_url):
    r = run_cli("tools.gateway", "prune", "--help")
    assert r.returncode == 0 and "--keep-days DAYS" in r.stdout and "never pruned" in r.stdout
    now = time.time()
    st = Store(store_url, "g")
    old = [_tel(1, now - 40 * 86400 + k, k) for k in range(3)]  # 40 days ago
    new = [_tel(1, now - 86400, 10), _tel(1, now, 11)]
    if st.dialect == "postgresql":
        retention.ensure_partitions(st.db, now=now - 40 * 86400, ahead_days=0)
    ev = (1, 1, 1, now - 40 * 86400, None, "alarm", "temp0", 712, 700, b"t", "g")
    st.flush(old + new, [ev], [], {}, {})
    r = run_cli("tools.gateway", "prune", "--db", store_url, "--keep-days", "30")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["partitions"] == (1 if st.dialect == "postgresql" else 0)
    assert got["rows"] == (0 if st.dialect == "postgresql" else 3)
    assert [x[0] for x in st.db.execute("SELECT seq FROM telemetry ORDER BY seq")] == [10, 11]
    assert st.db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1  # the record stays
    # Nothing more to do the second time; a day is dropped only when all of it is older.
    assert retention.prune(st.db, 30, now=now) == {"partitions": 0, "rows": 0}
    # Yesterday's row (PostgreSQL: in the default partition, no day partition was made for
    # it) goes with a 12 h retention; today's stays.
    got = retention.prune(st.db, 0.5, now=now)
    assert got["rows"] + got["partitions"] >= 1
    assert [x[0] for x in st.db.execute("SELECT seq FROM telemetry ORDER BY seq")] == [11]
    st.close()
    r = run_cli("tools.gateway", "prune", "--db", store_url, "--keep-days", "-1")
    assert r.returncode == 2 and ">= 0" in r.stderr


def test_postgresql_telemetry_is_partitioned_by_day_and_old_rows_migrate(pg_server):
    """A database at version 1 (unpartitioned telemetry, rows in it) upgraded: the rows are
    kept in their day's partition, ids go on rising, the coming days' partitions exist, and
    the view reads the new table."""
    url = pg_server.new_database(migrated=False)
    db = open_db(url)
    known = migrations.discover()
    assert migrations.upgrade(db, [m for m in known if m.version == 1]) == [1]
    now = time.time()
    for k, rx in enumerate((now - 3 * 86400, now - 3 * 86400 + 60, now)):
        db.execute("INSERT INTO telemetry(device, rx, seq, status) VALUES (7, ?, ?, 0)", (rx, k))
    assert not retention.is_partitioned(db)
    S.prepare(db)
    assert retention.is_partitioned(db)
    days = set(retention.partitions(db).values())
    today = retention.day_start(now)
    assert {today - 3 * 86400} | {today + k * 86400 for k in range(8)} <= days
    assert today - 86400 not in days  # only days that had rows, and the coming ones
    rows = db.execute("SELECT id, tableoid::regclass::text FROM telemetry ORDER BY id").fetchall()
    assert [r[0] for r in rows] == [1, 2, 3]
    assert rows[0][1] == rows[1][1] != rows[2][1]
    db.close()
    st = Store(url, "g")
    st.flush([_tel(7, now, 9)], [], [], {}, {})
    assert st.db.execute("SELECT MAX(id) FROM telemetry").fetchone()[0] == 4
    assert st.db.execute("SELECT COUNT(*) FROM telemetry_si").fetchone()[0] == 4
    st.close()


def test_a_dropped_postgresql_connection_is_replaced(pg_server):
    """The server ends the gateway's connection (a restart, a failover): the batch that met it
    fails (nothing committed, so nothing ACKed), the next batch runs on a new connection."""
    import psycopg

    url = pg_server.new_database()
    st = Store(url, "g")
    row = (7, 1, 1, 1.0, None, "alarm", "temp0", 712, 700, b"t", "g")
    pid = st.db.execute("SELECT pg_backend_pid()").fetchone()[0]
    pg_server.admin(f"SELECT pg_terminate_backend({pid})")
    with pytest.raises(psycopg.OperationalError):
        st.flush([], [row], [], {}, {})
    assert st.flush([], [row], [], {}, {}) == [True]  # stored once, on the new connection
    assert st.db.execute("SELECT pg_backend_pid()").fetchone()[0] != pid
    assert st.db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1
    st.close()


def test_batch_written_in_key_order_answers_in_the_callers_order(store_url):
    """Events are inserted sorted by (device, counter) (the same lock order on every instance)
    but flush answers per row as given; a duplicate within the batch is not new."""
    st = Store(store_url, "g")

    def ev(dev: int, n: int) -> tuple:
        return (dev, n, n, 1.0, None, "alarm", "temp0", 712, 700, b"t", "g")

    assert st.flush([], [ev(9, 2), ev(3, 1), ev(9, 1), ev(9, 2)], [], {}, {}) == [
        True,
        True,
        True,
        False,
    ]
    st.close()


def test_a_deadlocked_batch_is_retried(store_url, monkeypatch):
    st = Store(store_url, "g")
    real = st._write
    calls = []

    class Deadlock(Exception):
        sqlstate = "40P01"

    def flaky(*a):
        calls.append(1)
        if len(calls) == 1:
            raise Deadlock("deadlock detected")
        return real(*a)

    monkeypatch.setattr(st, "_write", flaky)
    row = (7, 1, 1, 1.0, None, "alarm", "temp0", 712, 700, b"t", "g")
    assert st.flush([], [row], [], {}, {}) == [True] and len(calls) == 2
    calls.clear()

    def broken(*a):
        calls.append(1)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(st, "_write", broken)
    with pytest.raises(sqlite3.OperationalError):
        st.flush([], [row], [], {}, {})
    assert len(calls) == 1  # not retried: it may be anything
    st.close()
