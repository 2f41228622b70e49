"""Fixtures for the console tests: a gateway database (every migration applied) with a few
registered detectors, a clock the test moves, and helpers that store events and telemetry the
way the gateway does (same tables, same integer units)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import BACKENDS
from tools.console import dbx
from tools.console.cases import CaseStore

# device, name, unit (district), category, site
DEVICES = [
    (100001, "Meilie-001", "Meilie District", "hospital", "Meilie hospital 1"),
    (100002, "Meilie-002", "Meilie District", "school", "Meilie school 2"),
    (100003, "Sanyuan-001", "Sanyuan District", "hotel", "Sanyuan hotel 1"),
    (100004, "Education-001", "City Education Bureau", "kindergarten", "Kindergarten 4"),
]
T0 = 1_780_000_000.0


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_db(kind: str, tmp: Path, request) -> dbx.Database:
    """A fresh gateway database with every migration applied: a SQLite file, or a database on
    the session's private PostgreSQL server (tests/gateway/conftest.py, scripts/postgres.sh)."""
    target = (
        request.getfixturevalue("pg_server").new_database()
        if kind == "postgresql"
        else str(tmp / "efd.db")
    )
    d = dbx.open_db(target)
    d.test_target = target  # type: ignore[union-attr]  # for tests that open more connections
    return d


def register(db: dbx.Database) -> None:
    with db.tx():
        for d in DEVICES:
            db.execute(
                "INSERT INTO devices(device, name, district, category, site) VALUES (?,?,?,?,?)",
                d,
            )


_ctr = itertools.count(1)


def add_event(
    db, device: int, kind: str, channel: str, value: int, threshold: int, rx: float
) -> int:
    c = next(_ctr)
    with db.tx():
        r = db.execute(
            "INSERT INTO events(device, counter, seq, rx, dev_time, kind, channel, value, "
            "threshold, tag, gateway) VALUES (?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
            (device, c, c, rx, None, kind, channel, value, threshold, b"\0" * 8, "gw"),
        ).fetchone()
    return int(r[0])


def add_telemetry(db, device: int, rx: float, residual_ma: int, temp0_dc: int = 250) -> None:
    with db.tx():
        db.execute(
            "INSERT INTO telemetry(device, rx, dev_time, seq, residual_ma, temp0_dc, temp1_dc, "
            "temp2_dc, temp3_dc, line0_ca, line1_ca, line2_ca, status) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (device, rx, None, 1, residual_ma, temp0_dc, 240, 230, 220, 1250, 1300, 0, 0),
        )


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path) -> Iterator[dbx.Database]:
    """A registered gateway database on each backend: the store and page tests run on both."""
    d = make_db(request.param, tmp_path, request)
    register(d)
    yield d
    d.close()


@pytest.fixture
def sqlite_db(tmp_path) -> Iterator[dbx.Database]:
    d = make_db("sqlite", tmp_path, None)
    register(d)
    yield d
    d.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(db, clock) -> CaseStore:
    return CaseStore(db, clock=clock)
