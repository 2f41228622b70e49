"""Telemetry retention: day partitions on PostgreSQL, and `prune` on both engines.

Telemetry is the bulk of the database (one row per frame: at 1,000,000 detectors and one frame
per 10 s, 8.6 billion rows a day) and is disposable after a while; events, alarm state,
commands, results, configs and snapshots are the record and are never pruned here.

PostgreSQL (migration m0002): `telemetry` is partitioned by UTC day on rx, one table
`telemetry_day_YYYYMMDD` per day plus `telemetry_default`. ensure_partitions() creates today's and
the next AHEAD_DAYS days' (Store calls it at start and every hour, under the schema lock, so
several instances do not race); prune() drops the partitions that ended before the cut-off, a
catalogue operation whatever their size. SQLite: prune() deletes old rows in slices (short
transactions beside a running gateway; the file keeps its size, freed pages are reused).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tools.gateway.db import Database

AHEAD_DAYS = 7
DAY = 86400
_PREFIX = "telemetry_day_"


def day_start(t: float) -> int:
    return int(t // DAY * DAY)


def _name(day: int) -> str:
    return _PREFIX + datetime.fromtimestamp(day, UTC).strftime("%Y%m%d")


def is_partitioned(db: Database) -> bool:
    if db.dialect != "postgresql":
        return False
    r = db.execute(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname = 'telemetry' AND n.nspname = current_schema()"
    ).fetchone()
    return r is not None and r[0] == "p"


def partitions(db: Database) -> dict[str, int]:
    """{partition name: its day (Unix s of 00:00 UTC)} of the day partitions that exist."""
    rows = db.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'telemetry'::regclass"
    ).fetchall()
    out = {}
    for (name,) in rows:
        if name.startswith(_PREFIX) and name[len(_PREFIX) :].isdigit():
            d = datetime.strptime(name[len(_PREFIX) :], "%Y%m%d").replace(tzinfo=UTC)
            out[name] = int(d.timestamp())
    return out


def create_partition(db: Database, day: int) -> None:
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {_name(day)} PARTITION OF telemetry "
        f"FOR VALUES FROM ({day}) TO ({day + DAY})"
    )


def ensure_partitions(
    db: Database, now: float | None = None, ahead_days: int = AHEAD_DAYS, locked: bool = False
) -> list[str]:
    """PostgreSQL with partitioned telemetry: create the partitions of today and the next
    ahead_days days that are missing; the names created. locked: the caller's transaction
    already holds the schema lock (a migration)."""
    if not is_partitioned(db):
        return []
    today = day_start(time.time() if now is None else now)
    want = [today + k * DAY for k in range(ahead_days + 1)]
    have = set(partitions(db).values())
    if all(d in have for d in want):
        return []
    from tools.gateway import migrations

    made = []

    def make() -> None:
        have = set(partitions(db).values())  # a sibling may have made them meanwhile
        for d in want:
            if d not in have:
                create_partition(db, d)
                made.append(_name(d))

    if locked:
        make()
    else:
        with db.tx():
            migrations.lock(db)
            make()
    return made


def prune(db: Database, keep_days: float, now: float | None = None) -> dict[str, int]:
    """Remove telemetry received more than keep_days ago. PostgreSQL (partitioned): drop
    every day partition that ended before the cut-off (whole days: a day is dropped once all
    of it is older than keep_days) and delete such rows from the default partition. SQLite
    (or an unpartitioned PostgreSQL table): delete the rows, 50,000 per transaction.
    Returns {"partitions": dropped, "rows": deleted (rows in dropped partitions not counted)}."""
    if keep_days < 0:
        raise ValueError("keep_days must be >= 0")
    cutoff = (time.time() if now is None else now) - keep_days * DAY
    dropped = 0
    deleted = 0
    if is_partitioned(db):
        from tools.gateway import migrations

        with db.tx():
            migrations.lock(db)
            for name, day in sorted(partitions(db).items(), key=lambda x: x[1]):
                if day + DAY <= cutoff:
                    db.execute(f"DROP TABLE {name}")
                    dropped += 1
            deleted = db.execute("DELETE FROM telemetry_default WHERE rx < ?", (cutoff,)).rowcount
        return {"partitions": dropped, "rows": max(deleted, 0)}
    while True:
        with db.tx():
            n = db.execute(
                "DELETE FROM telemetry WHERE id IN (SELECT id FROM telemetry WHERE rx < ? "
                "LIMIT 50000)",
                (cutoff,),
            ).rowcount
        deleted += max(n, 0)
        if n < 50000:
            break
    return {"partitions": 0, "rows": deleted}
