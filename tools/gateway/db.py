"""One database interface over SQLite (embedded, the default) and PostgreSQL (a server several
gateway instances on several hosts share).

    db = open_db("efd-gateway.db")                                  # SQLite file
    db = open_db("postgresql://efd:secret@db.example:5432/efd")     # PostgreSQL (psycopg 3)

Both give a Database: `.dialect` ("sqlite" | "postgresql"), `.execute(sql, params)` (a cursor:
fetchone / fetchall / iteration / rowcount / description), `.executemany(sql, rows)`, `.tx()`
(one write transaction), `.columns(table)`, `.close()`. SQL is written once, with `?`
placeholders, in the subset both engines run (ON CONFLICT ... DO NOTHING / DO UPDATE with
excluded.x; CASE rather than the scalar MAX(a, b); `(x & bit) <> 0` as a boolean). The few
statements that cannot be shared (DDL types, the views' JSON functions) are written twice,
side by side, where they live (migrations/, store.view_select).

SQLite's Database *is* the sqlite3.Connection (a subclass, made by sqlite3.connect(factory=)):
execute and executemany are the C methods themselves, so the hot path (~50,000 frames/s) pays
nothing for the abstraction, and code holding a connection (row_factory, PRAGMAs) still works.
PostgreSQL's wraps a psycopg connection in autocommit mode (each statement outside tx() is its
own transaction, as with SQLite's isolation_level=None) and translates `?` to psycopg's `%s`
once per distinct statement text (cached).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# PRAGMA synchronous levels accepted for SQLite (no other text reaches the SQL).
SYNC_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
PG_SCHEMES = ("postgresql://", "postgres://")


class DbError(Exception):
    """The database cannot be used (unreachable server, bad URL, no driver): one line for the
    user, never carrying a password."""


def sync_level(level: str) -> str:
    if level.upper() not in SYNC_LEVELS:
        raise ValueError(f"synchronous must be one of {SYNC_LEVELS}, not {level!r}")
    return level.upper()


def is_url(target: str | Path) -> bool:
    return str(target).startswith(PG_SCHEMES)


def mask(target: str | Path) -> str:
    """The target as it may be printed or logged: a URL's password replaced by ***."""
    t = str(target)
    if not is_url(t):
        return t
    # scheme://user:password@host... -> scheme://user:***@host... (the last @ ends userinfo:
    # a password may itself contain @ when it is not percent-encoded).
    # libpq also takes ?password=... in the query.
    t = re.sub(r"([?&]password=)[^&]*", r"\1***", t)
    scheme, rest = t.split("://", 1)
    if "@" not in rest:
        return t
    userinfo, host = rest.rsplit("@", 1)
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{scheme}://{userinfo}@{host}"


# -- SQLite ----------------------------------------------------------------------------------
class SqliteDatabase(sqlite3.Connection):
    """sqlite3.Connection plus the Database methods (see the module docstring for why a
    subclass). Made by open_db; autocommit (isolation_level=None) outside tx()."""

    dialect = "sqlite"

    @contextlib.contextmanager
    def tx(self) -> Iterator[None]:
        # IMMEDIATE: take the write lock at BEGIN, so two writers queue on busy_timeout
        # instead of one failing with SQLITE_BUSY when it upgrades a read lock.
        self.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.execute("ROLLBACK")
            raise
        self.execute("COMMIT")

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.execute(f"PRAGMA table_info({table})")]


def _open_sqlite(path: str | Path, readonly: bool, synchronous: str) -> SqliteDatabase:
    if readonly:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(str(path))
        db = sqlite3.connect(
            f"file:{p}?mode=ro", uri=True, timeout=30, isolation_level=None,
            factory=SqliteDatabase,
        )  # fmt: skip
    else:
        db = sqlite3.connect(str(path), timeout=30, isolation_level=None, factory=SqliteDatabase)
        db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: never corrupt, durable at checkpoints; Store raises it to FULL for the
        # transactions whose events are ACKed (see Store.flush).
        db.execute(f"PRAGMA synchronous={sync_level(synchronous)}")
    db.execute("PRAGMA busy_timeout=30000")
    assert isinstance(db, SqliteDatabase)
    return db


# -- PostgreSQL ------------------------------------------------------------------------------
# `?` outside quotes -> %s; a literal % -> %% (psycopg's own placeholder syntax). Quoted text
# ('...', "...") passes unchanged, except its % which psycopg would still read as a
# placeholder.
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|\?|%")


def translate(sql: str) -> str:
    """SQL with `?` placeholders -> psycopg's format (%s), % escaped. Raises ValueError on
    SQLite-only placeholders (?1, :name) so they cannot slip through to a confusing error."""

    def sub(m: re.Match[str]) -> str:
        t = m.group(0)
        if t == "?":
            return "%s"
        if t == "%":
            return "%%"
        return t.replace("%", "%%")

    out = _TOKENS.sub(sub, sql)
    if re.search(r"%s\d", out):
        raise ValueError(f"numbered placeholders (?1) are SQLite-only: {sql[:80]!r}")
    return out


class PgDatabase:
    """A psycopg 3 connection behind the Database interface. A connection the server dropped
    (a restart, a failover, a network cut) is replaced at the next use: the statement that
    met the break fails (a batch not stored: its events are not ACKed and come again), the
    next one runs on a new connection, so a gateway outlives a database restart."""

    dialect = "postgresql"

    def __init__(self, url: str, readonly: bool = False, connect_timeout: float = 10):
        self._url = url  # with its password: kept for reconnecting, never printed
        self.target = mask(url)
        self.readonly = readonly
        self.connect_timeout = connect_timeout
        self._sql: dict[str, str] = {}
        self.conn: Any = None
        self._connect()

    def _connect(self) -> None:
        import psycopg

        try:
            conn = psycopg.connect(
                self._url, autocommit=True, connect_timeout=max(1, int(self.connect_timeout))
            )
        except psycopg.Error as e:
            # psycopg's message names host and port, not the password; mask it anyway.
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DbError(
                f"{self.target}: cannot connect ({first.replace(self._url, self.target)})"
            ) from None
        if self.readonly:
            # Queries cannot write by accident, like SQLite's mode=ro.
            conn.execute("SET default_transaction_read_only = on")
        self.conn = conn

    def _live(self) -> Any:
        c = self.conn
        if c.broken or c.closed:
            self._connect()
        return self.conn

    def _q(self, sql: str) -> str:
        q = self._sql.get(sql)
        if q is None:
            q = self._sql[sql] = translate(sql)
        return q

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Any:
        # Always with a params sequence (even empty): psycopg then reads %% as %, which
        # translate() wrote; with None it would send the SQL as it is.
        return self._live().execute(self._q(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any:
        # psycopg 3 pipelines executemany: one round trip for the whole batch.
        cur = self._live().cursor()
        rows = list(rows)
        if rows:
            cur.executemany(self._q(sql), rows)
        return cur

    @contextlib.contextmanager
    def tx(self) -> Iterator[None]:
        with self._live().transaction():
            yield

    def columns(self, table: str) -> list[str]:
        rows = self.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = ? ORDER BY ordinal_position",
            (table,),
        ).fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def _open_pg(url: str, readonly: bool, connect_timeout: float) -> PgDatabase:
    try:
        import psycopg  # noqa: F401 - only whether it is there
    except ImportError:
        raise DbError(
            "PostgreSQL needs the psycopg package (pip install psycopg[binary]; `make venv` "
            "installs the pinned version)"
        ) from None
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise DbError(f"{mask(url)}: bad port in the database URL") from None
    # No host is libpq's default (PGHOST, or the local unix socket); the database is required:
    # libpq's default (the user's name) would silently put the tables somewhere unexpected.
    if not parts.path.strip("/"):
        raise DbError(
            f"{mask(url)}: a PostgreSQL URL is postgresql://user:password@host:port/dbname"
        )
    return PgDatabase(url, readonly, connect_timeout)


def open_db(
    target: str | Path,
    readonly: bool = False,
    synchronous: str = "NORMAL",
    connect_timeout: float = 10,
) -> Database:
    """A Database for a SQLite path or a postgresql:// URL. SQLite: WAL, busy_timeout 30 s,
    `synchronous` as given; readonly opens an existing file with mode=ro (FileNotFoundError if
    there is none). PostgreSQL: DbError (masked URL) when it cannot connect. Neither creates
    the schema: migrations.upgrade(db) does (Store calls it)."""
    if is_url(target):
        return _open_pg(str(target), readonly, connect_timeout)
    if str(target).startswith(("postgresql:", "postgres:", "pgsql:")):
        # Not echoed: without the // nothing marks where a password would be.
        raise DbError("a PostgreSQL URL starts with postgresql:// (then user:password@host...)")
    return _open_sqlite(target, readonly, synchronous)


# What open_db returns: both classes have dialect, execute, executemany, tx, columns, close.
Database = SqliteDatabase | PgDatabase


def db_errors() -> tuple[type[BaseException], ...]:
    """The exception classes a database operation may raise, for `except` clauses that turn
    them into one line for the user (psycopg's only when it is installed)."""
    errs: list[type[BaseException]] = [sqlite3.DatabaseError, DbError]
    try:
        import psycopg

        errs.append(psycopg.Error)
    except ImportError:
        pass
    return tuple(errs)
