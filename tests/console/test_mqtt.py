"""Commands from a case over the real path: console (MQTT user `operator`) -> Mosquitto ->
gateway -> UDP -> fleet simulator's virtual detector, and back. The waveform is requested as
soon as the alarm's case opens (auto snapshot), stored by the gateway and plotted on the case
page; a reset issued from the case is linked to it and completes (`commands` row done)."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.gateway.conftest import ROOT, free_port, start_gateway
from tools.console import users as U

PW = "mqtt test password"


def poll(fn, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_snapshot_and_reset_from_a_case(tmp_path, procs, fleet_files, broker):
    db = tmp_path / "efd.db"
    udp = free_port(2)
    mqtt = ["--mqtt", broker.addr, *broker.auth("gateway"), "--command-retry", "0.5"]
    start_gateway(procs, tmp_path, fleet_files, "gw-m", db, "--udp", f"127.0.0.1:{udp}", *mqtt)
    users = tmp_path / "users.json"
    U.add_user(users, "alice", "operator", PW)
    port = free_port()
    con = procs("tools.console", ["run", "--db", str(db), "--users", str(users), "--port",
                                  str(port), "--sync-interval", "0.2", "--mqtt", broker.addr,
                                  *broker.auth("operator")], tmp_path / "console.log")  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    c = httpx.Client(base_url=base, timeout=10)
    poll(lambda: con.p.poll() is None and _up(c), 30, "the console")
    tok = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text)
    assert tok
    c.post("/login", data={"username": "alice", "password": PW, "csrf": tok.group(1)})
    procs("tools.fleet", ["run", "--registry", str(fleet_files / "fleet.csv"), "--secret-file",
                          str(fleet_files / "secret"), "--udp", f"127.0.0.1:{udp}", "--devices",
                          "1", "--alarm-share", "1", "--scenario",
                          str(ROOT / "tools/fleet/scenarios/leak_alarm.toml"), "--speed", "6",
                          "--interval", "1", "--duration", "25", "--progress", "0"],
          tmp_path / "fleet.log")  # fmt: skip
    rows = poll(lambda: c.get("/board.json").json(), 40, "the alarm's case")
    case = rows[0]["case"]
    # The waveform request is linked to the case and completes; the chunks are plotted (the
    # gateway's answer with the request id may reach the console after the chunks are stored).
    done = re.compile(r"<td>console</td><td>snapshot</td><td>done</td><td>ok</td>")

    def ready() -> str:
        t = c.get(f"/cases/{case}").text
        return t if "SNAPSHOT waveform: residual" in t and done.search(t) else ""

    page = poll(ready, 30, "the waveform and its completed request on the case page")
    tok2 = re.search(r'name="csrf" value="([^"]+)"', page)
    assert tok2
    r = c.post(f"/cases/{case}/command", data={"cmd": "reset", "csrf": tok2.group(1)})
    assert r.status_code == 303, r.text  # sent: back to the case page
    poll(lambda: re.search(r"<td>alice</td><td>reset residual</td><td>done</td><td>ok</td>",
                           c.get(f"/cases/{case}").text), 30, "the reset's RESULT")  # fmt: skip


def _up(c: httpx.Client) -> bool:
    try:
        return c.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False
