"""Events from simulated detectors arrive exactly once in the database (SQLite, then
PostgreSQL: store_url) across a gateway crash (SIGKILL: the in-memory batch is lost, nothing of
it was ACKed) and a broker restart."""

from __future__ import annotations

import time
from collections import Counter

from tests.gateway.conftest import (
    db_counters,
    db_events,
    fleet_report,
    free_port,
    start_gateway,
)

FLEET = ["--devices", "400", "--alarm-share", "0.6", "--speed", "8", "--interval", "1",
         "--retry", "0.5", "--drain", "25"]  # fmt: skip


def check_exactly_once(db, report) -> None:
    sent = {(d, c) for d, c, *_ in report["event_log"]}
    stored = db_events(db)
    dup = [k for k, n in Counter(stored).items() if n > 1]
    assert not dup, f"stored twice: {dup[:5]}"
    assert report["unacked"] == 0
    assert set(stored) == sent, (len(sent - set(stored)), len(set(stored) - sent))
    assert len(sent) == report["events"] > 50


def test_udp_gateway_crash_and_restart(tmp_path, fleet_files, procs, store_url):
    port = free_port(2)
    db = store_url
    udp = ["--udp", f"127.0.0.1:{port}"]
    gw = start_gateway(procs, tmp_path, fleet_files, "gw1", db, *udp)
    fleet = procs("tools.fleet", ["run", "--registry", str(fleet_files / "fleet.csv"),
                                  "--udp", f"127.0.0.1:{port}", "--duration", "9",
                                  "--report", str(tmp_path / "rep.json"), *FLEET],
                  tmp_path / "fleet.log")  # fmt: skip
    time.sleep(3)
    gw.kill()  # SIGKILL: no flush, no goodbye
    time.sleep(2)
    gw = start_gateway(procs, tmp_path, fleet_files, "gw1", db, *udp)
    assert fleet.wait(60) == 0, fleet.text()
    gw.kill(15)
    rep = fleet_report(tmp_path / "rep.json")
    check_exactly_once(db, rep)
    assert rep["retransmits"] > 0  # the crash really cost ACKs
    c = db_counters(db)["gw1"]
    assert c.get("internal_error", 0) == 0
    assert c.get("duplicate:event", 0) + c.get("duplicate:event_db", 0) >= 0


def test_mqtt_gateway_restart_and_broker_restart(tmp_path, fleet_files, procs, broker, store_url):
    db = store_url
    mq = ["--mqtt", broker.addr, "--prefix", "t1", *broker.auth("gateway")]
    gw = start_gateway(procs, tmp_path, fleet_files, "gwm", db, *mq)
    fleet = procs("tools.fleet", ["run", "--registry", str(fleet_files / "fleet.csv"),
                                  "--mqtt", broker.addr, "--prefix", "t1", "--duration", "12",
                                  *broker.auth("fleet"),
                                  "--report", str(tmp_path / "rep.json"), *FLEET],
                  tmp_path / "fleet.log")  # fmt: skip
    time.sleep(3)
    gw.kill()
    time.sleep(1.5)
    gw = start_gateway(procs, tmp_path, fleet_files, "gwm", db, *mq)
    time.sleep(2)
    broker.restart(down_s=1.5)  # both clients lose the connection and must come back
    assert fleet.wait(90) == 0, fleet.text()
    gw.kill(15)
    rep = fleet_report(tmp_path / "rep.json")
    check_exactly_once(db, rep)
    assert "disconnected" in gw.text()  # the restarted gateway did see the broker go
