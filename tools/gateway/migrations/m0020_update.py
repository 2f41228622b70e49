"""Signed over-the-air updates (issue 11, docs/gateway.md "Rolling out an update"): one row per
device and rollout attempt, written by `python -m tools.gateway update --db ...`; the version a
device runs stays `devices.fw` (HELLO, and the rollout when a new image confirms itself).

Portable SQL: device ids BIGINT, times DOUBLE PRECISION (Unix s), `ok` 0/1.
"""

from __future__ import annotations

from typing import Any

VERSION = 20
NAME = "updates"

_ID = {
    "sqlite": "INTEGER PRIMARY KEY",
    "postgresql": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
}

_SQL = """
CREATE TABLE IF NOT EXISTS updates (
    id          {ID},
    device      BIGINT NOT NULL,
    image       TEXT NOT NULL,
    version     TEXT NOT NULL,
    ok          INTEGER NOT NULL,
    state       TEXT NOT NULL,
    error       TEXT NOT NULL DEFAULT '',
    fw_before   TEXT,
    fw_after    TEXT,
    bytes_sent  BIGINT NOT NULL DEFAULT 0,
    started     DOUBLE PRECISION NOT NULL,
    finished    DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS updates_device ON updates(device, finished)
"""


def up(db: Any) -> None:
    for stmt in _SQL.format(ID=_ID[db.dialect]).split(";"):
        if stmt.strip():
            db.execute(stmt)
