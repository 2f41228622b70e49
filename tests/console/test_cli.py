"""`python -m tools.console` subcommands and the plan report's handling columns."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys

from tests.console.conftest import T0, add_event
from tests.gateway.conftest import ROOT
from tools.console.cases import CaseStore


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, input=stdin)  # fmt: skip


def test_adduser_hashes_and_refuses_mistakes(tmp_path):
    users = tmp_path / "users.json"
    pw = tmp_path / "pw"
    pw.write_text("s3cret-enough\n")
    r = cli("tools.console", "adduser", "alice", "--role", "operator", "--unit", "Meilie District",
            "--users", str(users), "--password-file", str(pw))  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(users.read_text())
    rec = doc["users"]["alice"]
    assert rec["role"] == "operator" and rec["hash"].startswith("$argon2id$")
    assert "s3cret" not in users.read_text()
    assert stat.S_IMODE(os.stat(users).st_mode) == 0o600
    for args, msg in [
        (["adduser", "bob", "--role", "operator", "--users", str(users)], "--password-file"),
        (["adduser", "b b", "--role", "operator", "--users", str(users), "--password-file",
          str(pw)], "bad user name"),
        (["adduser", "bob", "--role", "operator", "--users", str(tmp_path / "no/users.json"),
          "--password-file", str(pw)], "no such directory"),
        (["adduser", "bob", "--role", "operator", "--users", str(users), "--password-file",
          str(tmp_path / "nope")], "nope"),
        (["run", "--db", str(tmp_path / "no/x.db")], "no such directory"),
        (["report", "--db", str(tmp_path / "x.db"), "--since", "yesterday-ish"], "error"),
    ]:  # fmt: skip
        r = cli("tools.console", *args, stdin="")
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert msg in r.stderr and "Traceback" not in r.stderr, r.stderr
    short = tmp_path / "short"
    short.write_text("abc")
    r = cli("tools.console", "adduser", "bob", "--role", "supervisor", "--users", str(users),
            "--password-file", str(short))  # fmt: skip
    assert r.returncode == 2 and "too short" in r.stderr


def test_report_accuracy_escalation_and_the_plan_report(sqlite_db, tmp_path):
    db = sqlite_db
    dbp = str(tmp_path / "efd.db")
    st = CaseStore(db, clock=lambda: T0 + 120)
    add_event(db, 100001, "alarm", "residual", 320, 300, T0)
    add_event(db, 100003, "alarm", "temp0", 812, 700, T0)
    st.sync()
    for a in ("acknowledge", "dispatch", "verify", "remove", "close"):
        st.act(1, a, "alice", verdict="nuisance", cause="damp")
    r = cli("tools.console", "accuracy", "--db", dbp, "--by", "county", "--csv")
    assert r.returncode == 0, r.stderr
    rows = {x["county"]: x for x in csv.DictReader(io.StringIO(r.stdout))}
    assert rows["Meilie District"]["accuracy"] == "0 %"
    assert rows["Sanyuan District"]["accuracy"] == "-"
    r = cli("tools.console", "report", "--db", dbp, "--by", "industry")
    assert r.returncode == 0 and "7. hospitals" in r.stdout
    r = cli("tools.console", "escalation", "--db", dbp, "--unit", "Meilie District",
            "--minutes", "2")  # fmt: skip
    assert r.returncode == 0 and st.escalate_after("Meilie District") == 120
    r = cli("tools.console", "escalation", "--db", dbp, "--unit", "X", "--minutes", "-1")
    assert r.returncode == 2 and "between" in r.stderr
    # The gateway's plan report gains the handling columns.
    r = cli("tools.gateway", "report", "--db", dbp, "--csv")
    assert r.returncode == 0, r.stderr
    rep = {x["unit"]: x for x in csv.DictReader(io.StringIO(r.stdout))}
    m = rep["Meilie District"]
    assert (m["open_cases"], m["median_ack"], m["median_close"], m["accuracy"]) == (
        "0", "2.0 min", "2.0 min", "0 %")  # fmt: skip
    assert rep["Sanyuan District"]["open_cases"] == "1"
    assert rep["TOTAL"]["open_cases"] == "1" and rep["TOTAL"]["accuracy"] == "0 %"
