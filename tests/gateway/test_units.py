"""Physical units in everything the gateway gives platforms and people (issue 12): the MQTT JSON
(`efd/json/...`, `efd/state/<id>`), every `query` subcommand and export, and the SQL views of
the database, all by protocol.host.physical()'s rules, each value with its `units`; the wire's
integers stay available (`run --raw-json`, `query --raw`, the tables themselves)."""

from __future__ import annotations

import csv
import io
import json
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from efd import events as ev
from efd import names
from protocol import auth, host
from protocol import frame as fr
from protocol import messages as M
from tests.gateway.conftest import SECRET, DetectorLink, run_cli, start_gateway
from tools.fleet.detector import VirtualDetector
from tools.gateway import store as S
from tools.gateway.core import Gateway
from tools.gateway.registry import Device, derive_key
from tools.gateway.store import Store

DEV = 7
KEY = derive_key(b"units", DEV)


def feed(db: Path, raw_json: bool = False) -> tuple[list[tuple[str, dict]], Store]:
    """A gateway fed by a virtual detector: a telemetry, alarm / ror / fault events, a snapshot,
    a set_config refused and one accepted. -> (publications, the store)."""
    st = Store(db, "u")
    pubs: list[tuple[str, dict]] = []
    gw = Gateway(
        {DEV: Device(DEV, "d7", "Sha County", "hotel", "", KEY)},
        st,
        name="u",
        publish=lambda t, p, r: pubs.append((t, json.loads(p))),
        raw_json=raw_json,
    )
    det = VirtualDetector(DEV, KEY)
    link = DetectorLink(det)
    det.values[ev.TEMP0 + 1] = 234
    det.values[ev.PHASE0] = 1234
    det.latched = 1 << ev.TEMP0 + 1
    gw.handle(det.telemetry(host.now()), link)
    for e in [
        (ev.ALARM, ev.TEMP0 + 1, 712, 700),
        (ev.ROR, ev.TEMP0 + 2, 95, 80),
        (ev.FAULT, ev.PHASE0, ev.FAULT_SHORT, 0),
        (ev.PREALARM, ev.PHASE0 + 1, 3305, 3200),
        (ev.ALARM, ev.RESIDUAL, 320, 300),
    ]:
        det.raise_event(*e)
        w = det.uplink(time.monotonic(), host.now())
        assert w is not None
        gw.handle(w, link)
        gw.flush()  # ACKs the event
    gw.command(DEV, {"cmd": "snapshot", "snap_id": 0})
    gw.command(DEV, {"cmd": "set_config", "params": [["p99", 1]]})
    gw.command(DEV, {"cmd": "set_config", "params": [["leak_set_ma", 500]]})
    for _ in range(10):
        while link.up:
            gw.handle(link.up.pop(0), link)
        gw.flush()
    gw.close()
    return pubs, st


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    db = tmp_path_factory.mktemp("units") / "gw.db"
    pubs, st = feed(db)
    yield db, pubs, st
    st.close()


def pub(pubs: list[tuple[str, dict]], kind: str) -> list[dict]:
    return [p for t, p in pubs if t.split("/")[-1] == kind and t.startswith("efd/json/")]


def state_doc(pubs: list[tuple[str, dict]]) -> dict:
    return [p for t, p in pubs if t == f"efd/state/{DEV}"][-1]


# -- MQTT JSON ---------------------------------------------------------------------------------
def test_mqtt_json_in_physical_units(fed):
    _db, pubs, _st = fed
    (t,) = pub(pubs, "telemetry")
    assert "temp_dc" not in t and "line_ca" not in t
    assert t["temp_c"][1] == 23.4 and t["line_a"][0] == 12.34 and t["temp_c"][2] is None
    assert t["units"] == {"residual_ma": "mA", "temp_c": "degC", "line_a": "A"}
    assert t["flags"] == ["alarm:temp1"] and t["status"] == 1 << 2  # status kept too
    assert t["device"] == DEV and t["authenticated"] is True and t["district"] == "Sha County"

    evs = {e["channel"]: e for e in pub(pubs, "event")}
    e = evs["temp1"]
    assert (e["value"], e["threshold"], e["units"]) == (71.2, 70.0, "degC")
    assert (evs["temp2"]["value"], evs["temp2"]["units"]) == (9.5, "degC/min")  # ror
    assert evs["phase0"]["fault"] == "short" and evs["phase0"]["value"] == ev.FAULT_SHORT
    assert (evs["phase1"]["value"], evs["phase1"]["units"]) == (33.05, "A")
    assert (evs["residual"]["value"], evs["residual"]["units"]) == (320, "mA")

    snaps = pub(pubs, "snapshot")
    assert len(snaps) == 2 and all(s["units"] == "mA" for s in snaps)
    assert snaps[0]["samples"][:2] == [90.0, 91.0]  # 0.1 mA on the wire (scale_exp -1)
    (cfg,) = pub(pubs, "config")
    assert cfg["units"]["leak_set_ma"] == "mA" and cfg["units"]["temp_set_c"] == "degC"
    bad = [r for r in pub(pubs, "result") if r["status"] == "bad_argument"]
    assert bad and bad[0]["param"] == "p99"

    chans = state_doc(pubs)["channels"]
    assert chans["temp1"] == {
        "state": "alarm",
        "since": chans["temp1"]["since"],
        "value": 71.2,
        "threshold": 70.0,
        "units": "degC",
    }
    assert chans["temp2"]["units"] == "degC/min" and chans["temp2"]["state"] == "prealarm"
    assert chans["phase0"]["fault"] == "short" and chans["phase0"]["state"] == "fault"
    assert chans["phase1"]["value"] == 33.05 and chans["residual"]["value"] == 320


def test_raw_json_republishes_the_wire_integers(tmp_path):
    pubs, st = feed(tmp_path / "raw.db", raw_json=True)
    st.close()
    (t,) = pub(pubs, "telemetry")
    assert t["temp_dc"][1] == 234 and t["line_ca"][0] == 1234 and "units" not in t
    assert t["flags"] == ["alarm:temp1"] and "temp_c" not in t
    evs = {e["channel"]: e for e in pub(pubs, "event")}
    assert (evs["temp1"]["value"], evs["temp1"]["threshold"]) == (712, 700)
    assert "units" not in evs["temp1"] and "fault" not in evs["phase0"]
    assert pub(pubs, "snapshot")[0]["samples"][:2] == [900, 910]
    assert "units" not in pub(pubs, "config")[0]
    chans = state_doc(pubs)["channels"]
    assert (chans["temp1"]["value"], chans["temp1"]["threshold"]) == (712, 700)
    assert "units" not in chans["temp1"] and chans["phase0"]["value"] == ev.FAULT_SHORT


def test_raw_json_option_over_mqtt(tmp_path, fleet_files, procs, broker):
    """`gateway run` publishes physical units; with --raw-json the wire's integers."""
    import paho.mqtt.client as mqtt

    got: dict[str, list[dict]] = {}
    lock = threading.Lock()
    sub = threading.Event()

    def on_message(c, u, m):
        with lock:
            got.setdefault(m.topic, []).append(json.loads(m.payload))

    cl = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    cl.on_connect = lambda c, u, f, r, p: c.subscribe(
        [("up1/json/#", 1), ("up1/state/+", 1), ("up2/json/#", 1), ("up2/state/+", 1)]
    )
    cl.on_subscribe = lambda *a: sub.set()
    cl.on_message = on_message
    cl.username_pw_set("operator", broker.password("operator"))
    cl.connect("127.0.0.1", broker.port)
    cl.loop_start()
    try:
        assert sub.wait(10)
        ports = []
        for name, prefix, extra in (("gwu1", "up1", []), ("gwu2", "up2", ["--raw-json"])):
            start_gateway(
                procs,
                tmp_path,
                fleet_files,
                name,
                tmp_path / f"{name}.db",
                "--udp",
                "127.0.0.1:0",
                "--mqtt",
                broker.addr,
                "--prefix",
                prefix,
                *broker.auth("gateway"),
                *extra,
            )
            ports.append(json.loads((tmp_path / f"{name}.ready").read_text())["udp"][0])
        dev = 100001
        enc = fr.Encoder(dev, auth.Key(derive_key(SECRET, dev)), counter=lambda: 0x00010001)
        wire = bytes(enc.view(enc.event(host.now(), ev.ALARM, ev.PHASE0, 3305, 3200)))
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for host_, port in ports:
            s.sendto(wire, (host_, port))
        s.close()
        t_end = time.monotonic() + 10
        want = {f"{p}/{k}/{dev}" for p in ("up1", "up2") for k in ("json", "state")}
        while time.monotonic() < t_end:
            with lock:
                have = {t.replace("/event", "") for t in got}
            if want <= have:
                break
            time.sleep(0.05)
    finally:
        cl.disconnect()
        cl.loop_stop()
    e1, e2 = got[f"up1/json/{dev}/event"][0], got[f"up2/json/{dev}/event"][0]
    assert (e1["value"], e1["threshold"], e1["units"]) == (33.05, 32.0, "A")
    assert (e2["value"], e2["threshold"]) == (3305, 3200) and "units" not in e2
    s1, s2 = got[f"up1/state/{dev}"][0], got[f"up2/state/{dev}"][0]
    assert s1["channels"]["phase0"]["value"] == 33.05 and s1["channels"]["phase0"]["units"] == "A"
    assert s2["channels"]["phase0"]["value"] == 3305 and "units" not in s2["channels"]["phase0"]


# -- query -------------------------------------------------------------------------------------
def query(db: Path, *args: str) -> list[dict]:
    r = run_cli("tools.gateway", "query", *args, "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]


def test_query_alarms_and_events_show_units(fed):
    db = fed[0]
    rows = {r["channel"]: r for r in query(db, "alarms")}
    a = rows["temp1"]
    assert (a["value"], a["threshold"], a["units"]) == (71.2, 70.0, "degC")
    assert rows["temp2"]["units"] == "degC/min" and rows["temp2"]["value"] == 9.5
    assert rows["phase0"]["fault"] == "short" and rows["phase0"]["units"] == ""
    raw = {r["channel"]: r for r in query(db, "alarms", "--raw")}
    assert raw["temp1"]["value"] == 712 and "units" not in raw["temp1"]

    evs = {r["channel"]: r for r in query(db, "events")}
    assert (evs["phase1"]["value"], evs["phase1"]["units"]) == (33.05, "A")
    assert evs["phase0"]["fault"] == "short"
    assert evs["residual"]["value"] == 320 and evs["residual"]["units"] == "mA"
    raw = {r["channel"]: r for r in query(db, "events", "--raw")}
    assert raw["phase1"]["value"] == 3305 and "units" not in raw["phase1"]
    # The table and CSV show them too.
    r = run_cli("tools.gateway", "query", "events", "--db", str(db))
    assert "units" in r.stdout.splitlines()[0] and "degC/min" in r.stdout
    r = run_cli("tools.gateway", "query", "alarms", "--db", str(db), "--csv")
    got = {x["channel"]: x for x in csv.DictReader(io.StringIO(r.stdout))}
    assert got["temp1"]["value"] == "71.2" and got["temp1"]["units"] == "degC"


def test_query_devices_offline_and_commands_show_names_and_units(fed):
    db = fed[0]
    for what in ("devices", "offline"):
        rows = {r["device"]: r for r in query(db, what, "--offline-after", "0")}
        assert rows[DEV]["flags"] == "alarm:temp1" and rows[DEV]["status"] == 4
        assert "flags" not in query(db, what, "--offline-after", "0", "--raw")[0]
    cmds = query(db, "commands")
    sc = [c for c in cmds if c["cmd"] == "set_config"]
    assert json.loads(sc[1]["args"])["units"] == {"leak_set_ma": "mA"}
    assert sc[0]["result"] == "bad_argument" and sc[0]["param"] == "p99"
    raw = [c for c in query(db, "commands", "--raw") if c["cmd"] == "set_config"]
    assert "units" not in json.loads(raw[1]["args"]) and "param" not in raw[0]


def test_query_export_in_physical_units(fed):
    db = fed[0]
    tables = (
        "telemetry",
        "events",
        "alarms",
        "snapshots",
        "configs",
        "results",
        "commands",
        "devices",
    )
    ex = {t: query(db, "export", t) for t in tables}
    (t,) = ex["telemetry"]
    assert (t["temp1_c"], t["line0_a"], t["temp2_c"]) == (23.4, 12.34, None)
    assert t["flags"] == "alarm:temp1"
    assert json.loads(t["units"])["temp1_c"] == "degC" and "temp1_dc" not in t
    evs = {e["channel"]: e for e in ex["events"]}
    assert (evs["temp1"]["value"], evs["temp1"]["units"]) == (71.2, "degC")
    assert len(evs["temp1"]["tag"]) == 16  # hex
    al = {a["channel"]: a for a in ex["alarms"]}
    assert al["phase0"]["fault"] == "short" and al["temp2"]["units"] == "degC/min"
    assert json.loads(ex["snapshots"][0]["samples"])[:2] == [90.0, 91.0]
    assert ex["snapshots"][0]["units"] == "mA"
    assert json.loads(ex["configs"][0]["units"])["leak_set_ma"] == "mA"
    assert [r["param"] for r in ex["results"] if r["status"] == "bad_argument"] == ["p99"]
    assert any(json.loads(c["args"]).get("units") for c in ex["commands"])
    assert ex["devices"][0]["flags"] == "alarm:temp1"
    raw = query(db, "export", "telemetry", "--raw")[0]
    assert raw["temp1_dc"] == 234 and "units" not in raw
    raw = {e["channel"]: e for e in query(db, "export", "events", "--raw")}
    assert raw["temp1"]["value"] == 712 and "units" not in raw["temp1"]
    # CSV export: the same values
    r = run_cli("tools.gateway", "query", "export", "events", "--db", str(db))
    rows = {x["channel"]: x for x in csv.DictReader(io.StringIO(r.stdout))}
    assert rows["phase1"]["value"] == "33.05" and rows["phase1"]["units"] == "A"


# -- SQL views ---------------------------------------------------------------------------------
def test_sql_views_give_physical_units_for_rows_the_gateway_wrote(fed):
    """Each view row equals protocol.host.physical() of the same record, as MQTT publishes it."""
    _db, pubs, st = fed
    con = st.db
    con.row_factory = sqlite3.Row
    try:
        views = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='view'")}
        assert set(S.VIEWS) <= views
        (t,) = [dict(r) for r in con.execute("SELECT * FROM telemetry_si")]
        (p,) = pub(pubs, "telemetry")
        assert [t[f"temp{i}_c"] for i in range(4)] == p["temp_c"]
        assert [t[f"line{i}_a"] for i in range(3)] == p["line_a"]
        assert t["residual_ma"] == p["residual_ma"] and t["flags"].split(",") == p["flags"]
        want = {"residual_ma": "mA", **{f"temp{i}_c": "degC" for i in range(4)}}
        assert json.loads(t["units"]) == {**want, **{f"line{i}_a": "A" for i in range(3)}}

        evs = {r["counter"]: dict(r) for r in con.execute("SELECT * FROM events_si")}
        for e in pub(pubs, "event"):
            v = evs[e["counter"]]
            assert (v["value"], v["threshold"]) == (e["value"], e["threshold"]), e
            assert v["units"] == e.get("units") and v["fault"] == e.get("fault")
        raw = dict(con.execute("SELECT value FROM events WHERE channel='temp1'").fetchone())
        assert raw["value"] == 712  # the table keeps the record

        chans = state_doc(pubs)["channels"]
        for r in con.execute("SELECT * FROM alarm_state_si"):
            want = chans[r["channel"]]
            got = (r["state"], r["value"], r["threshold"])
            assert got == (want["state"], want["value"], want["threshold"])
            assert r["units"] == want.get("units") and r["fault"] == want.get("fault")

        snaps = [
            json.loads(r["samples"])
            for r in con.execute("SELECT samples FROM snapshots_si ORDER BY chunk")
        ]
        assert snaps == [s["samples"] for s in pub(pubs, "snapshot")]
        params = [
            (r["param"], r["value"], r["units"])
            for r in con.execute("SELECT * FROM config_params_si ORDER BY position")
        ]
        (cfg,) = pub(pubs, "config")
        assert params == [(n, v, cfg["units"][n]) for n, v in cfg["params"]]
        dev = dict(con.execute("SELECT * FROM devices_si").fetchone())
        assert dev["flags"] == "alarm:temp1"
    finally:
        con.row_factory = None


def test_views_follow_physical_for_every_kind_and_channel(tmp_path):
    """Every known kind on every channel: the view's value, threshold, units and fault are
    physical()'s, so the SQL and the JSON never disagree."""
    st = Store(tmp_path / "all.db", "a")
    rows = []
    n = 0
    for kind in (k for k in names.KIND_NAMES if k):
        for ch in host.CHANNEL_NAMES:
            n += 1
            rows.append((1, n, 0, 1.0, None, kind, ch, -1234 + n, 3 + n, b"t" * 8, "a"))
    st.flush([], rows, [], {}, {})
    got = st.db.execute(
        "SELECT kind, channel, value, threshold, units, fault FROM events_si ORDER BY counter"
    ).fetchall()
    assert len(got) == len(rows)
    for r, g in zip(rows, got, strict=True):
        p = host.physical(
            {"type": "event", "kind": r[5], "channel": r[6], "value": r[7], "threshold": r[8]}
        )
        assert g == (r[5], r[6], p["value"], p["threshold"], p.get("units"), p.get("fault")), g
    st.close()


def test_existing_database_gets_the_views(tmp_path):
    """A database written before the views (and alarm_state.kind) existed gets both when a
    gateway opens it; its old rows read in physical units (a fault's code by name)."""
    db = tmp_path / "old.db"
    c = sqlite3.connect(db)
    c.executescript(
        "CREATE TABLE alarm_state (device INTEGER NOT NULL, channel TEXT NOT NULL, state TEXT "
        "NOT NULL, since REAL NOT NULL, value INTEGER, threshold INTEGER, PRIMARY KEY (device, "
        "channel)) WITHOUT ROWID;"
        "INSERT INTO alarm_state VALUES (7, 'temp0', 'alarm', 1.0, 712, 700);"
        "INSERT INTO alarm_state VALUES (7, 'phase0', 'fault', 1.0, 2, 0);"
    )
    c.close()
    Store(db, "x").close()
    c = sqlite3.connect(db)
    got = c.execute(
        "SELECT channel, kind, value, threshold, units, fault FROM alarm_state_si ORDER BY channel"
    ).fetchall()
    assert got == [("phase0", None, 2, 0, None, "short"), ("temp0", None, 71.2, 70.0, "degC", None)]
    c.close()
    # Opening it again changes nothing (the views are replaced only when they differ).
    before = sqlite3.connect(db).execute("SELECT sql FROM sqlite_master").fetchall()
    Store(db, "x").close()
    assert sqlite3.connect(db).execute("SELECT sql FROM sqlite_master").fetchall() == before


def test_view_definitions_are_replaced_when_they_change(tmp_path):
    db = tmp_path / "v.db"
    Store(db, "x").close()
    c = sqlite3.connect(db)
    c.executescript("DROP VIEW events_si; CREATE VIEW events_si AS SELECT 1 AS stale;")
    c.close()
    Store(db, "x").close()
    c = sqlite3.connect(db)
    cols = [d[0] for d in c.execute("SELECT * FROM events_si").description]
    assert "units" in cols and "stale" not in cols
    c.close()


def test_mqtt_telemetry_of_a_keyless_untagged_frame_is_physical_too(tmp_path):
    """Telemetry republished for a device without a key (untagged): physical as well."""
    st = Store(tmp_path / "k.db", "k")
    pubs: list[tuple[str, dict]] = []
    gw = Gateway(
        {9: Device(9, "d9", "", "", "", None)},
        st,
        name="k",
        publish=lambda t, p, r: pubs.append((t, json.loads(p))),
    )
    enc = fr.Encoder(9)
    n = enc.telemetry(0, 12, [250, M.NA_I16, M.NA_I16, M.NA_I16], [100, M.NA_U16, M.NA_U16], 0)
    gw.handle(bytes(enc.view(n)), DetectorLink(VirtualDetector(9, KEY)))
    gw.close()
    st.close()
    (p,) = pub(pubs, "telemetry")
    assert p["temp_c"][0] == 25.0 and p["line_a"][0] == 1.0 and p["authenticated"] is False
