"""Query CLI, fleet report against the 2020 plan, and clean errors for user mistakes."""

from __future__ import annotations

import csv
import io
import json

import pytest

from efd import events as ev
from protocol import host
from tests.gateway.conftest import BACKENDS, SECRET, new_target, run_cli
from tools.fleet.detector import VirtualDetector
from tools.gateway.core import Gateway
from tools.gateway.registry import load_registry
from tools.gateway.store import Store


class Link:
    name = "test"

    def send(self, device, wire, addr):
        self.last = wire


@pytest.fixture(scope="module", params=BACKENDS)
def db(request, tmp_path_factory, fleet_files):
    """A database as a gateway leaves it: 1010 registered, 600 reporting, alarms in 3 units;
    a SQLite file, then a PostgreSQL database (its URL)."""
    return fill(new_target(request.param, tmp_path_factory.mktemp("q"), request), fleet_files)


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory, fleet_files):
    return fill(str(tmp_path_factory.mktemp("q") / "gw.db"), fleet_files)


def fill(path, fleet_files):
    devs = load_registry(fleet_files / "fleet.csv", SECRET)
    st = Store(path, "gwq")
    gw = Gateway(devs, st, name="gwq")
    link = Link()
    ids = sorted(devs)[:600]
    for i, d in enumerate(ids):
        v = VirtualDetector(d, devs[d].key or b"", retry_s=0)
        if i % 50 == 0:
            v.raise_event(ev.ALARM, ev.RESIDUAL, 320, 300)
        if i % 75 == 1:
            v.raise_event(ev.FAULT, ev.TEMP0 + 1, ev.FAULT_OPEN, 0)
        gw.handle(v.telemetry(host.now()), link)
        w = v.uplink(0.0, host.now())
        if w:
            gw.handle(w, link)
    gw.close()
    st.db.execute("UPDATE devices SET last_seen = last_seen - 3600 WHERE device % 7 = 0")
    st.close()
    return path


def test_query_alarms_events_devices(db, tmp_path):
    r = run_cli("tools.gateway", "query", "alarms", "--db", str(db), "--csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 12 + 8
    assert {x["state"] for x in rows} == {"alarm", "fault"}
    assert {x["channel"] for x in rows if x["state"] == "alarm"} == {"residual"}

    r = run_cli("tools.gateway", "query", "events", "--db", str(db), "--since", "1h", "--json",
                "--kind", "alarm")  # fmt: skip
    assert r.returncode == 0, r.stderr
    evs = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(evs) == 12 and all(e["value"] == 320 for e in evs)
    r = run_cli("tools.gateway", "query", "events", "--db", str(db), "--since", "2099-01-01")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2  # header + rule only

    r = run_cli("tools.gateway", "query", "offline", "--db", str(db), "--csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    never = 1010 - 600
    stale = sum(1 for d in range(100001, 100601) if d % 7 == 0)
    assert len(rows) == never + stale
    assert all(x["link"] == "offline" for x in rows)

    out = tmp_path / "ev.csv"
    r = run_cli("tools.gateway", "query", "export", "events", "--db", str(db), "-o", str(out))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 20 and {"device", "counter", "kind", "tag"} <= set(rows[0])
    r = run_cli("tools.gateway", "query", "export", "telemetry", "--db", str(db))
    assert len(r.stdout.splitlines()) == 601
    r = run_cli("tools.gateway", "query", "counters", "--db", str(db))
    assert "stored:event" in r.stdout


def test_report_against_the_2020_plan(db):
    r = run_cli("tools.gateway", "report", "--db", str(db), "--csv")
    assert r.returncode == 0, r.stderr
    rows = {x["unit"]: x for x in csv.DictReader(io.StringIO(r.stdout))}
    assert len(rows) == 17 + 1
    tot = rows["TOTAL"]
    assert tot["target"] == tot["installed"] == "1010"
    assert tot["reporting"] == "600"
    assert int(tot["online"]) == 600 - sum(1 for d in range(100001, 100601) if d % 7 == 0)
    assert tot["in_alarm"] == "12" and tot["in_fault"] == "8"
    assert rows["Meilie District"]["target"] == "80"
    assert rows["City Health Commission"]["kind"] == "bureau"
    # The human table prints too.
    r = run_cli("tools.gateway", "report", "--db", str(db))
    assert "Sha County" in r.stdout and "TOTAL" in r.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["tools.gateway", "query", "alarms", "--db", "/nonexistent/x.db"],
        ["tools.gateway", "query", "events", "--db", "{db}", "--since", "yesterday-ish"],
        ["tools.gateway", "query", "export", "--db", "{db}"],
        ["tools.gateway", "query", "export", "nosuch", "--db", "{db}"],
        ["tools.gateway", "query", "alarms", "--db", "{notdb}"],
        ["tools.gateway", "report", "--db", "{db}", "--plan", "/nonexistent.csv"],
        ["tools.gateway", "report", "--db", "{db}", "--plan", "{notdb}"],
        ["tools.gateway", "run", "--registry", "/nonexistent.csv", "--udp", "127.0.0.1:0"],
        ["tools.gateway", "run", "--registry", "{notdb}", "--udp", "127.0.0.1:0"],
        ["tools.gateway", "run", "--registry", "{reg}", "--udp", "nonsense"],
        ["tools.gateway", "run", "--registry", "{reg}"],
        [
            "tools.gateway",
            "run",
            "--registry",
            "{reg}",
            "--udp",
            "203.0.113.9:1",
            "--db",
            "{tmp}/x.db",
        ],
        ["tools.gateway", "run", "--registry", "{reg}", "--poll", "1-4", "--udp", "1"],
        [
            "tools.gateway",
            "run",
            "--registry",
            "{reg}",
            "--serial",
            "/dev/nonexistent-tty",
            "--db",
            "{tmp}/y.db",
            "--duration",
            "1",
        ],
        [
            "tools.gateway",
            "command",
            "--mqtt",
            "127.0.0.1:1",
            "--device",
            "1",
            "reset",
            "--timeout",
            "1",
        ],
        ["tools.gateway", "command", "--mqtt", "127.0.0.1:1", "--device", "1", "set_config"],
        [
            "tools.gateway",
            "command",
            "--mqtt",
            "127.0.0.1:1",
            "--mqtt-user",
            "operator",
            "--mqtt-password-file",
            "/nonexistent",
            "--device",
            "1",
            "reset",
        ],
        ["tools.gateway", "bogus"],
        ["tools.fleet", "run", "--registry", "/nonexistent.csv", "--udp", "127.0.0.1:9"],
        ["tools.fleet", "run", "--registry", "{reg}", "--udp", "127.0.0.1:9", "--interval", "0"],
        [
            "tools.fleet",
            "run",
            "--registry",
            "{reg}",
            "--udp",
            "127.0.0.1:9",
            "--scenario",
            "{notdb}",
        ],
        ["tools.fleet", "run", "--registry", "{reg}", "--mqtt", "127.0.0.1:1", "--duration", "1"],
        ["tools.fleet", "registry", "--out", "{tmp}/r.csv"],
        ["tools.fleet", "registry", "--out", "/nonexistent/r.csv", "--secret-file", "{secret}"],
        # gateway update: a missing or damaged image, registry, serial port, database
        [
            "tools.gateway",
            "update",
            "/nonexistent.efu",
            "--registry",
            "{reg}",
            "--devices",
            "100001",
            "--udp",
            "127.0.0.1:0",
            "--addr",
            "100001=127.0.0.1:9",
        ],
        [
            "tools.gateway",
            "update",
            "{notdb}",
            "--registry",
            "{reg}",
            "--devices",
            "100001",
            "--udp",
            "127.0.0.1:0",
            "--addr",
            "100001=127.0.0.1:9",
        ],
    ],
)
def test_user_mistakes_exit_cleanly(args, sqlite_db, fleet_files, tmp_path):
    db = sqlite_db
    notdb = tmp_path / "garbage.txt"
    notdb.write_text("this is not a database, a registry, a plan or a scenario\x00\x01")
    subst = {"{db}": str(db), "{notdb}": str(notdb), "{reg}": str(fleet_files / "fleet.csv"),
             "{tmp}": str(tmp_path), "{secret}": str(fleet_files / "secret")}  # fmt: skip
    argv = [subst.get(a, a) for a in args]
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    r = run_cli(*argv, timeout=60, env={"PATH": "/usr/bin:/bin", "EFD_FLEET_SECRET": ""})
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert "error" in r.stderr
