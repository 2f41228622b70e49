"""Versioned schema migrations for the gateway database, SQLite and PostgreSQL alike.

Each module `mNNNN_<name>.py` in this package is one migration:

    VERSION = 2                 # unique; applied in ascending order
    NAME = "telemetry_by_day"   # recorded with it
    def up(db: Database) -> None: ...   # db.dialect says which SQL to run

upgrade(db) applies the missing ones in order, each in its own transaction together with its
row in `schema_migrations(version, name, applied_at)`, so a migration is either wholly applied
and recorded or not at all. Several gateways starting at once on one database do not race:
each migration's transaction first takes a lock (PostgreSQL: pg_advisory_xact_lock on a fixed
key; SQLite: BEGIN IMMEDIATE, the file's write lock) and then re-reads what is applied, so the
second one finds the work done and skips it. A database that records a version this code does
not know (a newer gateway wrote it) is refused with SchemaError, never half-used.

Version ranges (one per area, so parallel work never collides): 1-9 the store, 10-19 the
supervision console (alarm cases), 20-29 OTA updates. Migrations are never edited once
released: a change is a new module. Views are not migrations: store.create_views rebuilds
them from code after upgrade (they follow units.py, not a version).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import time
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tools.gateway.db import Database

# pg_advisory_xact_lock key shared by every schema change of the gateway (migrations, views):
# an arbitrary constant ("efdS" in ASCII) that other applications on the server will not use.
PG_LOCK_KEY = 0x65666453

_MODULE = re.compile(r"m(\d{4})_\w+$")

_TABLE = {
    "sqlite": "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
    "name TEXT NOT NULL, applied_at REAL NOT NULL)",
    "postgresql": "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
    "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)",
}


class SchemaError(Exception):
    """The database's schema cannot be used by this code: one line for the user."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    module: ModuleType

    def up(self, db: Database) -> None:
        self.module.up(db)


def discover(package: str = __name__) -> list[Migration]:
    """Every m*.py module of the package, sorted by VERSION; a duplicate VERSION, or a module
    whose file number and VERSION disagree, is an error (two authors picked the same number)."""
    pkg = importlib.import_module(package)
    found: dict[int, Migration] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        m = _MODULE.match(info.name)
        if not m:
            continue
        mod = importlib.import_module(f"{package}.{info.name}")
        v = getattr(mod, "VERSION", None)
        if not isinstance(v, int) or not callable(getattr(mod, "up", None)):
            raise SchemaError(f"migration {info.name}: needs an int VERSION and up(db)")
        if v != int(m.group(1)):
            raise SchemaError(f"migration {info.name}: VERSION {v} differs from its file name")
        if v in found:
            raise SchemaError(
                f"migrations {found[v].module.__name__} and {mod.__name__}: same VERSION {v}"
            )
        found[v] = Migration(v, str(getattr(mod, "NAME", info.name)), mod)
    return [found[v] for v in sorted(found)]


def lock(db: Database) -> None:
    """Inside a transaction: wait for the schema lock (PostgreSQL; SQLite's BEGIN IMMEDIATE
    already holds the file's write lock)."""
    if db.dialect == "postgresql":
        db.execute("SELECT pg_advisory_xact_lock(?)", (PG_LOCK_KEY,))


def applied(db: Database) -> dict[int, str]:
    """{version: name} recorded in the database ({} when it has no schema_migrations)."""
    if not db.columns("schema_migrations"):
        return {}
    return {int(v): n for v, n in db.execute("SELECT version, name FROM schema_migrations")}


def current(db: Database) -> int:
    """The highest applied version (0: none, a new or pre-versioning database)."""
    return max(applied(db), default=0)


def _check(have: dict[int, str], known: list[Migration]) -> None:
    unknown = sorted(set(have) - {m.version for m in known})
    if unknown:
        newest = max(m.version for m in known) if known else 0
        raise SchemaError(
            f"the database has schema version(s) {', '.join(map(str, unknown))} that this "
            f"gateway does not know (it knows up to {newest}): a newer gateway wrote it; "
            "upgrade this one, or use another database"
        )


def upgrade(db: Database, migrations: list[Migration] | None = None) -> list[int]:
    """Apply the missing migrations in order; return the versions applied now ([] when the
    database was up to date). SchemaError if the database is newer than the code."""
    known = discover() if migrations is None else migrations
    have = applied(db)
    _check(have, known)
    todo = [m for m in known if m.version not in have]
    if not todo:  # the common start: one SELECT, no lock
        return []
    done: list[int] = []
    for m in todo:
        with db.tx():
            lock(db)
            db.execute(_TABLE[db.dialect])
            have = applied(db)  # a sibling may have applied it while we waited for the lock
            _check(have, known)
            if m.version in have:
                continue
            m.up(db)
            db.execute(
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?,?,?)",
                (m.version, m.name, time.time()),
            )
            done.append(m.version)
    return done


def status(db: Database) -> dict[str, Any]:
    """What `migrate` prints: the versions known, applied and pending."""
    known = discover()
    have = applied(db)
    return {
        "current": max(have, default=0),
        "applied": sorted(have),
        "pending": [m.version for m in known if m.version not in have],
        "unknown": sorted(set(have) - {m.version for m in known}),
    }
