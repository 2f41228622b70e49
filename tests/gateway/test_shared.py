"""Two gateway instances in one MQTT 5 shared-subscription group split the uplink topic: each
stores a share, nothing is stored twice, nothing is lost. Commands on request reach a device
through whichever instance takes the request, and its tagged RESULT is stored. Both share one
database: a SQLite WAL file (one host), then a PostgreSQL database (instances on several
hosts would share it the same way)."""

from __future__ import annotations

import json
import time
from collections import Counter

from tests.gateway.conftest import db_counters, db_events, fleet_report, run_cli, start_gateway
from tools.gateway.db import open_db


def test_two_instances_split_the_load(tmp_path, fleet_files, procs, broker, store_url):
    db = store_url  # one database for both instances
    mq = ["--mqtt", broker.addr, "--prefix", "t2", "--share", "efd-gw", *broker.auth("gateway")]
    start_gateway(procs, tmp_path, fleet_files, "gwA", db, *mq)
    start_gateway(procs, tmp_path, fleet_files, "gwB", db, *mq)
    fleet = procs("tools.fleet", ["run", "--registry", str(fleet_files / "fleet.csv"),
                                  "--mqtt", broker.addr, "--prefix", "t2", "--duration", "8",
                                  *broker.auth("fleet"),
                                  "--interval", "2", "--alarm-share", "0.4", "--speed", "8",
                                  "--retry", "1", "--drain", "20",
                                  "--report", str(tmp_path / "rep.json")],
                  tmp_path / "fleet.log")  # fmt: skip
    time.sleep(4)
    # A platform asks for a reset: one instance takes the request (shared cmd topic too).
    dev = 100001
    r = run_cli("tools.gateway", "command", "--mqtt", broker.addr, "--prefix", "t2",
                *broker.auth("operator"),
                "--device", str(dev), "reset", "--channel", "all")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["ok"] is True
    assert fleet.wait(60) == 0, fleet.text()
    time.sleep(0.3)
    rep = fleet_report(tmp_path / "rep.json")

    stored = db_events(db)
    assert not [k for k, n in Counter(stored).items() if n > 1]
    assert set(stored) == {(d, c) for d, c, *_ in rep["event_log"]}

    c = db_counters(db)
    a, b = c["gwA"], c["gwB"]
    tel = rep["telemetry"]
    # Every telemetry frame stored once in total (no duplicate deliveries, no loss) ...
    assert a["stored:telemetry"] + b["stored:telemetry"] == tel > 1010 * 3
    # ... and both instances did real work (Mosquitto round-robins the group).
    assert min(a["stored:telemetry"], b["stored:telemetry"]) > tel * 0.25
    assert a.get("stored:event", 0) > 0 and b.get("stored:event", 0) > 0
    con = open_db(db)
    rows = con.execute("SELECT COUNT(*), COUNT(DISTINCT device || ':' || seq || ':' || "
                       "dev_time) FROM telemetry").fetchone()  # fmt: skip
    assert rows[0] == rows[1] == tel
    res = con.execute("SELECT cmd, status FROM results WHERE device=?", (dev,)).fetchall()
    con.close()
    assert res == [("reset", "ok")]
    assert rep["results"] == 1
