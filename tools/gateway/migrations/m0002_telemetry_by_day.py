"""PostgreSQL: `telemetry` becomes a table partitioned by day (range on rx, UTC days), so that
retention drops whole partitions (`python -m tools.gateway prune`: no DELETE, no VACUUM, no
bloat) and the (device, rx) index stays per day. SQLite: nothing (no partitions there;
prune deletes old rows).

Existing rows are copied into the new table (one partition per day they cover) inside this
migration's transaction: on a large database run `python -m tools.gateway migrate` in a
quiet hour, it holds the schema lock (the gateways' start waits) for the copy.

No primary key on the partitioned table: PostgreSQL would require it to include rx, and
nothing looks a telemetry row up by id; the ids still come from one sequence (unique, rising),
and the index (device, rx) serves every query. Saves an index entry (~20 bytes) per row.
A DEFAULT partition takes any row whose day has no partition yet (a gateway whose clock is far
off), so an insert never fails; retention.ensure_partitions creates the days ahead.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tools.gateway.db import Database

VERSION = 2
NAME = "telemetry_partitioned_by_day"

# The columns as m0001 made them (PostgreSQL types), id from a plain sequence (identity
# columns are not allowed on partitioned tables before PostgreSQL 17).
PG_TABLE = """CREATE TABLE telemetry (
    id          BIGINT NOT NULL DEFAULT nextval('telemetry_row_id'),
    device      BIGINT NOT NULL,
    rx          DOUBLE PRECISION NOT NULL,
    dev_time    BIGINT,
    seq         BIGINT NOT NULL,
    residual_ma INTEGER,
    temp0_dc    INTEGER, temp1_dc INTEGER, temp2_dc INTEGER, temp3_dc INTEGER,
    line0_ca    INTEGER, line1_ca INTEGER, line2_ca INTEGER,
    status      INTEGER NOT NULL
) PARTITION BY RANGE (rx)"""


def up(db: Database) -> None:
    if db.dialect != "postgresql":
        return
    from tools.gateway import retention

    if retention.is_partitioned(db):  # made so by hand, or a re-run: nothing to do
        return
    # Views on the table follow it when it is renamed: drop them, store.create_views makes
    # them again on the new table after the migrations.
    db.execute("DROP VIEW IF EXISTS telemetry_si")
    db.execute("ALTER TABLE telemetry RENAME TO telemetry_old")
    db.execute("ALTER INDEX IF EXISTS telemetry_device_rx RENAME TO telemetry_old_device_rx")
    db.execute("CREATE SEQUENCE IF NOT EXISTS telemetry_row_id")
    db.execute(PG_TABLE)
    db.execute("ALTER SEQUENCE telemetry_row_id OWNED BY telemetry.id")
    db.execute("CREATE INDEX telemetry_device_rx ON telemetry(device, rx)")
    db.execute("CREATE TABLE telemetry_default PARTITION OF telemetry DEFAULT")
    retention.ensure_partitions(db, now=time.time(), ahead_days=retention.AHEAD_DAYS, locked=True)
    # One partition per day that has rows (not every day between the first and the last).
    days = db.execute(
        "SELECT DISTINCT CAST(floor(rx / 86400) AS BIGINT) * 86400 FROM telemetry_old"
    ).fetchall()
    for (day,) in days:
        retention.create_partition(db, int(day))
    if days:
        db.execute(
            "INSERT INTO telemetry(id, device, rx, dev_time, seq, residual_ma, temp0_dc, "
            "temp1_dc, temp2_dc, temp3_dc, line0_ca, line1_ca, line2_ca, status) SELECT id, "
            "device, rx, dev_time, seq, residual_ma, temp0_dc, temp1_dc, temp2_dc, temp3_dc, "
            "line0_ca, line1_ca, line2_ca, status FROM telemetry_old"
        )
    # New ids continue above the copied ones.
    db.execute(
        "SELECT setval('telemetry_row_id', COALESCE((SELECT MAX(id) FROM telemetry_old), 0) + 1,"
        " false)"
    )
    db.execute("DROP TABLE telemetry_old")
