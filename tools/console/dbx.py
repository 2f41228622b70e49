"""The database the console works on: the gateway's store (tools.gateway.db, SQLite file or
PostgreSQL URL) with every migration applied, the case tables (m0010) among them.

The console writes its SQL in the subset both dialects share (`?` placeholders, ON CONFLICT ...
DO NOTHING / DO UPDATE, RETURNING), so the same statements run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

from tools.gateway import migrations
from tools.gateway.db import Database, DbError, db_errors, is_url, mask
from tools.gateway.db import open_db as _open_db

__all__ = ["Database", "DatabaseError", "db_errors", "open_db"]


class DatabaseError(Exception):
    """The database cannot be opened or used (a user mistake: printed as one line)."""


def open_db(target: str, upgrade: bool = True) -> Database:
    """Open the gateway's database and bring its schema up to date (the gateway does the same
    at its start; whichever comes first creates the tables)."""
    if not is_url(target) and not Path(target).parent.is_dir():
        raise DatabaseError(f"{target}: no such directory")
    try:
        db = _open_db(target)
    except (DbError, OSError) as e:
        raise DatabaseError(str(e)) from None
    except db_errors() as e:
        raise DatabaseError(f"{mask(target)}: {e}") from None
    if upgrade:
        try:
            migrations.upgrade(db)
        except migrations.SchemaError as e:
            db.close()
            raise DatabaseError(str(e)) from None
        except db_errors() as e:
            db.close()
            raise DatabaseError(f"{mask(target)}: not a usable database ({e})") from None
    return db
