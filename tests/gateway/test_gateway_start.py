"""Issue 13, item 7 and parts of item 10: a gateway that cannot start says so in one line (no
traceback, exit 2, naming the address, port or file) and leaves no database behind; hex device
ids on `command` and `query`; help text on every option of every subcommand.

Each test failed before the change: `--db /nonexist/x.db` and a file that is not a database
ended in a traceback, a busy port printed "[Errno 98] Address already in use" without the
address and created the database anyway (so did a missing serial port and a foreign address),
`--device 0xBEEF` was refused, and several options had no help."""

from __future__ import annotations

import argparse
import socket
import sqlite3
from pathlib import Path

import pytest

from tests.gateway.conftest import SECRET, run_cli
from tools.fleet import cli as fleet_cli
from tools.gateway import cli as gw_cli
from tools.gateway.core import Gateway
from tools.gateway.registry import load_registry
from tools.gateway.store import Store


def gateway_run(fleet_files: Path, *args: str):
    return run_cli("tools.gateway", "run", "--registry", str(fleet_files / "fleet.csv"),
                   "--secret-file", str(fleet_files / "secret"), "--duration", "1", *args,
                   timeout=60)  # fmt: skip


def one_error_line(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("python -m tools.gateway run: error: "), lines
    return lines[0]


def no_database(db: Path) -> None:
    left = [p.name for p in db.parent.iterdir() if p.name.startswith(db.name)]
    assert left == [], f"created although the gateway did not start: {left}"


def test_db_in_a_missing_directory(fleet_files):
    r = gateway_run(fleet_files, "--db", "/nonexistent-dir/x.db", "--udp", "127.0.0.1:0")
    line = one_error_line(r)
    assert "--db /nonexistent-dir/x.db: directory /nonexistent-dir does not exist" in line


def test_db_that_is_not_a_database(fleet_files, tmp_path):
    db = tmp_path / "notes.txt"
    db.write_text("not a database\n" * 100)
    r = gateway_run(fleet_files, "--db", str(db), "--udp", "127.0.0.1:0")
    line = one_error_line(r)
    assert f"--db {db}: cannot open the database (file is not a database)" in line
    assert db.read_text() == "not a database\n" * 100  # untouched


def test_busy_udp_port_names_the_address_and_creates_no_database(fleet_files, tmp_path):
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    db = tmp_path / "gw.db"
    try:
        r = gateway_run(fleet_files, "--db", str(db), "--udp", f"127.0.0.1:{port}")
    finally:
        busy.close()
    line = one_error_line(r)
    assert f"cannot listen on UDP 127.0.0.1:{port}: address already in use" in line
    no_database(db)


def test_second_listener_busy_closes_the_first_and_creates_no_database(fleet_files, tmp_path):
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    db = tmp_path / "gw.db"
    try:
        r = gateway_run(fleet_files, "--db", str(db), "--udp", "127.0.0.1:0",
                        "--udp", f"127.0.0.1:{port}")  # fmt: skip
    finally:
        busy.close()
    assert f"UDP 127.0.0.1:{port}: address already in use" in one_error_line(r)
    no_database(db)


def test_foreign_address_says_so_and_creates_no_database(fleet_files, tmp_path):
    db = tmp_path / "gw.db"
    r = gateway_run(fleet_files, "--db", str(db), "--udp", "203.0.113.9:47000")
    line = one_error_line(r)
    assert "cannot listen on UDP 203.0.113.9:47000: not an address of this machine" in line
    no_database(db)


def test_missing_serial_port_creates_no_database(fleet_files, tmp_path):
    db = tmp_path / "gw.db"
    r = gateway_run(fleet_files, "--db", str(db), "--serial", "/dev/nonexistent-tty")
    line = one_error_line(r)
    assert "cannot open serial port /dev/nonexistent-tty: No such file or directory" in line
    no_database(db)


def test_device_ids_in_hex_like_every_tool(tmp_path, fleet_files):
    ap = gw_cli.build_parser()
    a = ap.parse_args(["command", "--mqtt", "127.0.0.1:1883", "--device", "0xBEEF", "reset"])
    assert a.device == 0xBEEF
    assert ap.parse_args(["query", "events", "--device", "0x186A1"]).device == 100001
    assert ap.parse_args(["query", "events", "--device", "100001"]).device == 100001
    # Through the CLI: a query by hex id finds the device's rows; a bad id is one clean line.
    db = tmp_path / "gw.db"
    devs = load_registry(fleet_files / "fleet.csv", SECRET)
    st = Store(db, "h")
    gw = Gateway(devs, st, name="h")
    gw.close()
    st.close()
    r = run_cli("tools.gateway", "query", "devices", "--db", str(db), "--csv")
    assert r.returncode == 0, r.stderr
    r = run_cli("tools.gateway", "query", "events", "--db", str(db), "--device", "0x186A1")
    assert r.returncode == 0, r.stderr
    r = run_cli("tools.gateway", "command", "--mqtt", "127.0.0.1:1", "--device", "0xZZ", "reset")
    assert r.returncode == 2 and "device id '0xZZ' is not a number" in r.stderr, r.stderr
    r = run_cli("tools.gateway", "command", "--mqtt", "127.0.0.1:1", "--device", "0xBEEF",
                "reset", "--timeout", "1")  # fmt: skip
    assert r.returncode == 2 and "cannot reach MQTT broker 127.0.0.1:1" in r.stderr, r.stderr


def _options(ap: argparse.ArgumentParser):
    for a in ap._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                for x in sp._actions:
                    if not isinstance(x, argparse._HelpAction):
                        yield name, "/".join(x.option_strings) or x.dest, x.help


@pytest.mark.parametrize("tool", [gw_cli, fleet_cli], ids=["gateway", "fleet"])
def test_every_option_has_help(tool):
    missing = [(sub, opt) for sub, opt, h in _options(tool.build_parser()) if not h]
    assert missing == []


@pytest.mark.parametrize(
    "module,sub,words",
    [
        ("tools.fleet", "run", ["--registry CSV", "--prefix PREFIX", "--seed SEED", "--progress"]),
        ("tools.fleet", "registry", ["--first-id"]),
        ("tools.gateway", "run", ["--db"]),
        ("tools.gateway", "query", ["--device ID", "source=telemetry"]),
        ("tools.gateway", "report", ["--offline-after"]),
        ("tools.gateway", "command", ["--device ID", "0xHEX"]),
    ],
)
def test_help_of_each_subcommand(module, sub, words):
    r = run_cli(module, sub, "--help")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    for w in words:
        assert w in text, (w, r.stdout)


def test_old_database_still_queries(tmp_path):
    """A database written before devices.auth_status existed: the gateway adds the columns
    when it opens it; read-only queries work on it as it is."""
    db = tmp_path / "old.db"
    c = sqlite3.connect(db)
    c.executescript(
        "CREATE TABLE devices (device INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '', "
        "district TEXT NOT NULL DEFAULT '', category TEXT NOT NULL DEFAULT '', site TEXT NOT "
        "NULL DEFAULT '', first_seen REAL, last_seen REAL, transport TEXT, address TEXT, "
        "status INTEGER, fw TEXT, boot_count INTEGER);"
        "INSERT INTO devices(device, status) VALUES (7, 1);"
        "CREATE TABLE alarm_state (device INTEGER NOT NULL, channel TEXT NOT NULL, state TEXT "
        "NOT NULL, since REAL NOT NULL, value INTEGER, threshold INTEGER, PRIMARY KEY (device, "
        "channel)) WITHOUT ROWID;"
    )
    c.close()
    r = run_cli("tools.gateway", "query", "alarms", "--db", str(db), "--csv")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "device,name,district,category,channel,state,since,value,threshold,units,fault,source"
    ]
    r = run_cli("tools.gateway", "query", "alarms", "--db", str(db), "--csv", "--raw")
    assert r.stdout.splitlines() == [
        "device,name,district,category,channel,state,since,value,threshold,source"
    ]
    r = run_cli("tools.gateway", "query", "export", "alarms", "--db", str(db), "--json")
    assert r.returncode == 0 and r.stdout.strip() == "", r.stderr  # no views yet: still exports
    Store(db, "x").close()
    con = sqlite3.connect(db)
    cols = {r[1] for r in con.execute("PRAGMA table_info(devices)")}
    assert {"auth_status", "auth_status_at"} <= cols
    assert "kind" in {r[1] for r in con.execute("PRAGMA table_info(alarm_state)")}
    views = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'view'")}
    assert {"telemetry_si", "events_si", "alarm_state_si"} <= views
