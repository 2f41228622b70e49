"""Services the tests share, one instance per test session whichever package uses them: a real
Mosquitto broker (scripts/broker.sh installs and starts it), a private PostgreSQL server
(scripts/postgres.sh), the database of a test on either backend (store_url / db_url), gateway
and fleet subprocesses that always stop, and a 1010-device registry.

Registered once as a plugin by tests/conftest.py (`pytest_plugins`): a fixture imported into
several conftest or test modules would be a separate fixture in each, and a session-scoped
server would then start once per importer."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tools.gateway.db import open_db

ROOT = Path(__file__).resolve().parents[1]
BROKER_SH = ROOT / "scripts" / "broker.sh"
POSTGRES_SH = ROOT / "scripts" / "postgres.sh"
SECRET = b"gateway-test-fleet-secret"
# Detector users the broker gets (user name = device id; scripts/broker.sh, $BROKER_DETECTORS).
BROKER_DETECTORS = (100001, 100002, 100003)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return int(p)


class Broker:
    def __init__(self, d: Path):
        self.dir = d
        self.port = 0

    def start(self) -> None:
        cmd = [str(BROKER_SH), "start", str(self.dir)] + ([str(self.port)] if self.port else [])
        env = dict(os.environ, BROKER_DETECTORS=" ".join(map(str, BROKER_DETECTORS)))
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        if r.returncode != 0:
            raise RuntimeError("broker did not start: " + r.stderr)
        self.port = int(r.stdout.strip().splitlines()[-1])

    def stop(self) -> None:
        subprocess.run([str(BROKER_SH), "stop", str(self.dir)], timeout=30, check=False)

    def restart(self, down_s: float = 1.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def password_file(self, user: str) -> Path:
        """The password broker.sh generated for `user` (gateway, operator, fleet, a device id)."""
        return self.dir / "users" / user

    def password(self, user: str) -> str:
        return self.password_file(user).read_text().strip()

    def auth(self, user: str) -> list[str]:
        """CLI options that log in as `user`."""
        return ["--mqtt-user", user, "--mqtt-password-file", str(self.password_file(user))]


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    if subprocess.run([str(BROKER_SH), "install"], timeout=600).returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("mosquitto could not be installed")
        pytest.skip("mosquitto not installed and cannot be installed here (not root)")
    b = Broker(tmp_path_factory.mktemp("broker"))
    b.start()
    yield b
    b.stop()


class PgServer:
    """One private PostgreSQL cluster (scripts/postgres.sh) for the test session. Each test
    gets its own database: CREATE DATABASE ... TEMPLATE efd_tmpl (already migrated: a file
    copy, ~0.1 s) or TEMPLATE template0 (empty, for the migration tests)."""

    TEMPLATE = "efd_tmpl"

    def __init__(self, d: Path):
        self.dir = d
        self.base = ""
        self._n = itertools.count(1)

    def start(self) -> None:
        # fsync off: the data is thrown away at the end, and fsync on a shared disk makes each
        # CREATE DATABASE take seconds. Durability is tested by what the store asks for
        # (synchronous_commit), which fsync=off does not change.
        env = dict(os.environ, POSTGRES_FSYNC="off")
        r = subprocess.run([str(POSTGRES_SH), "start", str(self.dir)], capture_output=True,
                           text=True, timeout=300, env=env)  # fmt: skip
        if r.returncode != 0:
            raise RuntimeError("postgres did not start: " + r.stderr)
        url = subprocess.run([str(POSTGRES_SH), "url", str(self.dir)], capture_output=True,
                             text=True, timeout=30, check=True).stdout.strip()  # fmt: skip
        self.base = url.rsplit("/", 1)[0]

    def stop(self) -> None:
        # immediate: no shutdown checkpoint, the cluster is deleted right after
        subprocess.run([str(POSTGRES_SH), "stop", str(self.dir), "immediate"], timeout=60,
                       check=False)  # fmt: skip

    def url(self, dbname: str = "efd") -> str:
        return f"{self.base}/{dbname}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(sql)

    def make_template(self) -> None:
        from tools.gateway.store import prepare

        self.admin(f"CREATE DATABASE {self.TEMPLATE}")
        db = open_db(self.url(self.TEMPLATE))
        prepare(db)
        db.close()

    def new_database(self, migrated: bool = True) -> str:
        """A fresh database's URL: the current schema (migrated) or nothing at all."""
        name = f"t{next(self._n)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {self.TEMPLATE if migrated else 'template0'}")
        return self.url(name)


@pytest.fixture(scope="session")
def pg_server():
    if subprocess.run([str(POSTGRES_SH), "install"], timeout=900).returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("postgresql could not be installed")
        pytest.skip("postgresql not installed and cannot be installed here (not root)")
    # Under /tmp, not pytest's tmp dir: as root the cluster runs as the `postgres` user, which
    # cannot enter pytest's mode-700 base directory.
    d = Path(tempfile.mkdtemp(prefix="efd-pg-", dir="/tmp"))
    s = PgServer(d)
    try:
        s.start()
        s.make_template()
    except Exception:
        s.stop()
        shutil.rmtree(d, ignore_errors=True)
        raise
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


# Both store backends; tests that take store_url (or db_url) run once on each.
BACKENDS = ["sqlite", "postgresql"]


def new_target(backend: str, tmp: Path, request) -> str:
    """A fresh gateway database for `backend`: a SQLite path in tmp, or a PostgreSQL URL (the
    session's server, started on first use)."""
    if backend == "sqlite":
        return str(tmp / "gw.db")
    return request.getfixturevalue("pg_server").new_database()


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path) -> str:
    """The --db of a test's gateway database: a SQLite file path, then a PostgreSQL URL."""
    return new_target(request.param, tmp_path, request)


@pytest.fixture
def db_url(store_url) -> str:
    """store_url under the name other test packages use (the console's)."""
    return store_url


@pytest.fixture(scope="session")
def fleet_files(tmp_path_factory):
    """secret file + the 2020 plan's 1010-device registry (keys derived from the secret)."""
    d = tmp_path_factory.mktemp("fleet")
    (d / "secret").write_bytes(SECRET)
    r = run_cli("tools.fleet", "registry", "--out", str(d / "fleet.csv"), "--secret-file",
                str(d / "secret"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    return d


def run_cli(module: str, *args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, **kw)  # fmt: skip


class Proc:
    """A gateway or fleet subprocess, killed at teardown if still running."""

    def __init__(self, module: str, args: list[str], log: Path):
        self.log = log
        self.f = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT,
                                  stdout=self.f, stderr=subprocess.STDOUT)  # fmt: skip

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.f.close()

    def wait(self, timeout: float) -> int:
        rc = self.p.wait(timeout)
        self.f.close()
        return rc

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def procs():
    started: list[Proc] = []

    def start(module: str, args: list[str], log: Path) -> Proc:
        p = Proc(module, args, log)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill(signal.SIGTERM)


def start_gateway(procs, tmp: Path, fleet: Path, name: str, db: Path | str, *extra: str) -> Proc:
    ready = tmp / f"{name}.ready"
    ready.unlink(missing_ok=True)
    p = procs("tools.gateway", ["run", "--registry", str(fleet / "fleet.csv"), "--secret-file",
                                str(fleet / "secret"), "--db", str(db), "--name", name,
                                "--ready-file", str(ready), "--flush-interval", "0.02",
                                "--no-republish-telemetry", *extra],
              tmp / f"{name}.log")  # fmt: skip
    t_end = time.monotonic() + 30
    while not ready.exists():
        if p.p.poll() is not None or time.monotonic() > t_end:
            raise AssertionError("gateway did not start:\n" + p.text())
        time.sleep(0.05)
    return p
