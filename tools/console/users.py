"""Console accounts: a JSON file of users with argon2id password hashes (argon2-cffi).

    {"users": {"alice": {"role": "operator", "unit": "Meilie District",
                         "hash": "$argon2id$v=19$m=65536,t=3,p=4$..."}}}

Roles:
  operator    handles cases (workflow actions, reset and set_config from a case), of its unit
              when `unit` is set, of every unit otherwise; takes training too
  supervisor  reads everything across units (board, cases, fleet, accuracy, training records);
              every POST that changes a case or a detector is refused (403)
  trainee     training mode only (installing units' staff learning triage)

The file is written with mode 600 and replaced atomically; nothing but hashes is stored.
Passwords never come from the command line (a prompt, or a file with --password-file).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ROLES = ("operator", "supervisor", "trainee")
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
MIN_PASSWORD = 8

_ph = PasswordHasher()
# Verified against when the user does not exist, so a wrong name costs the same time.
_DUMMY = _ph.hash("no-such-user-dummy-password")


class UserError(Exception):
    """A user mistake (bad name, role, password, unreadable file): one line, no traceback."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    unit: str = ""


def load(path: str | Path) -> dict[str, dict]:
    p = Path(path)
    if not p.exists():
        return {}
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read users file: {e}") from None
    users = doc.get("users") if isinstance(doc, dict) else None
    if not isinstance(users, dict):
        raise UserError(f'{path}: not a users file (expected {{"users": {{...}}}})')
    return users


def save(path: str | Path, users: dict[str, dict]) -> None:
    p = Path(path)
    if not p.parent.is_dir():
        raise UserError(f"{path}: no such directory")
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".users-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"users": users}, f, indent=2, ensure_ascii=False)
        os.chmod(tmp, 0o600)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_user(path: str | Path, name: str, role: str, password: str, unit: str = "") -> User:
    if not NAME_RE.match(name):
        raise UserError(f"bad user name {name!r}: 1-32 of A-Z a-z 0-9 _ . -")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password too short (at least {MIN_PASSWORD} characters)")
    users = load(path)
    users[name] = {"role": role, "unit": unit, "hash": _ph.hash(password)}
    save(path, users)
    return User(name, role, unit)


def authenticate(path: str | Path, name: str, password: str) -> User | None:
    """The user if name and password match, else None (same work either way)."""
    users = load(path)
    rec = users.get(name) if isinstance(name, str) else None
    h = rec.get("hash") if isinstance(rec, dict) else None
    try:
        _ph.verify(h if isinstance(h, str) else _DUMMY, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if not isinstance(rec, dict) or rec.get("role") not in ROLES:
        return None
    return User(name, str(rec["role"]), str(rec.get("unit") or ""))
