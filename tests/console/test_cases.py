"""Cases from stored events: the workflow, escalation on a controlled clock, alarm accuracy
and handling figures on constructed data (docs/console.md)."""

from __future__ import annotations

import json

import pytest

from tests.console.conftest import T0, add_event
from tools.console.cases import CaseStore, NotFound, WorkflowError
from tools.gateway import registry


def walk(
    store: CaseStore,
    case_id: int,
    verdict: str = "real_hazard",
    cause: str = "loose_joint",
    actor: str = "alice",
) -> None:
    store.act(case_id, "acknowledge", actor)
    store.act(case_id, "dispatch", actor, notes="team 3 sent")
    store.act(case_id, "verify", actor, verdict=verdict, cause=cause)
    store.act(case_id, "remove", actor)
    store.act(case_id, "close", actor, notes="done")


def test_alarm_and_fault_events_open_cases_once(db, store, clock):
    add_event(db, 100001, "alarm", "residual", 320, 300, T0)
    add_event(db, 100001, "prealarm", "temp0", 600, 700, T0)  # no case for a pre-alarm
    add_event(db, 100002, "fault", "temp1", 1, 0, T0 + 1)
    assert store.sync() == 2
    assert store.sync() == 0  # idempotent
    cases = store.open_cases()
    assert [(c.device, c.channel, c.kind, c.state) for c in cases] == [
        (100001, "residual", "alarm", "new"),
        (100002, "temp1", "fault", "new"),
    ]
    c = cases[0]
    assert (c.unit, c.category, c.site) == ("Meilie District", "hospital", "Meilie hospital 1")
    assert c.reading() == "320 mA (threshold 300 mA)"
    assert cases[1].reading() == "sensor fault: open"
    # A second alarm on the same channel joins the open case's timeline.
    add_event(db, 100001, "alarm", "residual", 350, 300, T0 + 5)
    assert store.sync() == 0
    assert [e["value"] for e in store.events(c.id)] == [320, 350]


def test_event_committed_below_the_mark_is_not_missed(db, store):
    """PostgreSQL may commit ids out of order: an event whose id is below the mark is still
    read (LOOKBACK) and never opens a second case on a re-read."""
    e2 = add_event(db, 100001, "alarm", "residual", 320, 300, T0)
    store.sync()
    with db.tx():  # an id below the mark, committed later
        db.execute(
            "INSERT INTO events(id, device, counter, seq, rx, dev_time, kind, channel, value, "
            "threshold, tag, gateway) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                e2 - 1 if e2 > 1 else e2 + 100,
                100003,
                999,
                1,
                T0,
                None,
                "alarm",
                "temp0",
                800,
                700,
                b"\0" * 8,
                "gw",
            ),
        )
    assert store.sync() == 1
    assert store.sync() == 0
    assert len(store.open_cases()) == 2


def test_workflow_to_closed_records_who_when_notes(db, store, clock):
    add_event(db, 100001, "alarm", "temp0", 812, 700, T0)
    store.sync()
    (c,) = store.open_cases()
    clock.t = T0 + 60
    store.act(c.id, "acknowledge", "alice", notes="on it")
    clock.t = T0 + 120
    store.act(c.id, "dispatch", "alice")
    clock.t = T0 + 1800
    store.act(c.id, "verify", "bob", verdict="real_hazard", cause="loose_joint", notes="hot lug")
    clock.t = T0 + 3600
    store.act(c.id, "remove", "bob", notes="re-torqued")
    clock.t = T0 + 3700
    done = store.act(c.id, "close", "alice")
    assert done.state == "closed" and done.acked == T0 + 60 and done.closed == T0 + 3700
    assert (done.verdict, done.cause, done.acked_by) == ("real_hazard", "loose_joint", "alice")
    steps = store.steps(c.id)
    assert [s["step"] for s in steps] == [
        "new",
        "acknowledged",
        "dispatched",
        "verified",
        "hazard_removed",
        "closed",
    ]
    assert [s["actor"] for s in steps] == ["gateway", "alice", "alice", "bob", "bob", "alice"]
    assert steps[1]["notes"] == "on it" and steps[1]["at"] == T0 + 60
    assert steps[3]["notes"] == "real hazard; cause: loose joint; hot lug"
    assert store.open_cases() == []
    assert c.reading() == "81.2 °C (threshold 70 °C)"


def test_illegal_transitions_are_refused(db, store):
    add_event(db, 100001, "alarm", "residual", 320, 300, T0)
    store.sync()
    (c,) = store.open_cases()
    with pytest.raises(WorkflowError, match="needs it acknowledged"):
        store.act(c.id, "dispatch", "alice")
    with pytest.raises(WorkflowError, match="unknown action"):
        store.act(c.id, "explode", "alice")
    store.act(c.id, "acknowledge", "alice")
    with pytest.raises(WorkflowError, match="is acknowledged"):
        store.act(c.id, "acknowledge", "alice")
    store.act(c.id, "dispatch", "alice")
    with pytest.raises(WorkflowError, match="verdict"):
        store.act(c.id, "verify", "alice", verdict="maybe", cause="damp")
    with pytest.raises(WorkflowError, match="cause"):
        store.act(c.id, "verify", "alice", verdict="nuisance", cause="ghosts")
    with pytest.raises(WorkflowError, match="limited"):
        store.act(c.id, "verify", "alice", verdict="nuisance", cause="damp", notes="x" * 3000)
    with pytest.raises(NotFound):
        store.act(c.id + 99, "acknowledge", "alice")
    assert store.get(c.id).state == "dispatched"
    assert [s["step"] for s in store.steps(c.id)] == ["new", "acknowledged", "dispatched"]


def test_escalation_after_the_units_delay_republishes_once(db, clock):
    sent: list[tuple[str, dict]] = []
    store = CaseStore(db, clock=clock, publish=lambda t, p: sent.append((t, json.loads(p))))
    store.set_escalate_after("Sanyuan District", 120)  # 2 min there, default 5 min elsewhere
    add_event(db, 100001, "alarm", "residual", 320, 300, T0)  # Meilie: 5 min
    add_event(db, 100003, "alarm", "temp0", 812, 700, T0)  # Sanyuan: 2 min
    add_event(db, 100002, "alarm", "temp0", 812, 700, T0)  # Meilie, acknowledged in time
    store.sync()
    ids = {c.device: c.id for c in store.open_cases()}
    clock.t = T0 + 100
    store.act(ids[100002], "acknowledge", "alice")
    assert store.escalate() == []
    assert store.escalation(store.get(ids[100003]))[0] == "due"
    assert store.escalation(store.get(ids[100003]))[1] == pytest.approx(20)
    clock.t = T0 + 120
    assert [c.device for c in store.escalate()] == [100003]
    assert sent[0][0] == "efd/case/100003"
    msg = sent[0][1]
    assert msg["case"] == ids[100003] and msg["escalated"] is True and msg["waited_s"] == 120
    assert (msg["value"], msg["threshold"], msg["units"]) == (81.2, 70, "degC")
    clock.t = T0 + 299
    assert store.escalate() == []
    clock.t = T0 + 300
    assert [c.device for c in store.escalate()] == [100001]
    clock.t = T0 + 9999
    assert store.escalate() == []  # once each
    assert len(sent) == 2
    assert store.escalation(store.get(ids[100001])) == ("escalated", T0 + 300)
    assert store.escalation(store.get(ids[100002]))[0] == "-"
    assert "escalated" in [s["step"] for s in store.steps(ids[100003])]
    with pytest.raises(WorkflowError):
        store.set_escalate_after("Meilie District", 0)


def test_accuracy_per_detector_site_industry_county(db, store, clock):
    # 100001 (hospital, Meilie): 3 alarms: real, real, nuisance -> 2/3
    # 100002 (school, Meilie): 1 alarm: sensor fault -> 0/1
    # 100003 (hotel, Sanyuan): 1 alarm, not verified -> no figure
    # 100004 (kindergarten, Education bureau): 1 fault case verified (faults do not count)
    plan = [
        (100001, "real_hazard"),
        (100001, "real_hazard"),
        (100001, "nuisance"),
        (100002, "sensor_fault"),
    ]
    for dev, verdict in plan:
        add_event(db, dev, "alarm", "residual", 320, 300, T0)
        store.sync()
        (c,) = [c for c in store.open_cases() if c.device == dev]
        walk(store, c.id, verdict=verdict)
    add_event(db, 100003, "alarm", "temp0", 812, 700, T0)
    add_event(db, 100004, "fault", "temp1", 1, 0, T0)
    store.sync()
    (f,) = [c for c in store.open_cases() if c.device == 100004]
    walk(store, f.id, verdict="sensor_fault", cause="other")

    det = {d["key"]: d for d in store.accuracy("detector")}
    assert det[100001]["accuracy"] == pytest.approx(2 / 3)
    assert (det[100001]["verified"], det[100001]["real"], det[100001]["nuisance"]) == (3, 2, 1)
    assert det[100002]["accuracy"] == 0.0 and det[100002]["sensor_fault"] == 1
    assert det[100003]["accuracy"] is None and det[100003]["verified"] == 0
    assert 100004 not in det  # a fault case is not an alarm
    county = {d["key"]: d for d in store.accuracy("county")}
    assert county["Meilie District"]["accuracy"] == pytest.approx(2 / 4)
    assert county["Sanyuan District"]["accuracy"] is None
    ind = {d["key"]: d for d in store.accuracy("industry")}
    # hospital and school are both category 7 (hospitals; schools and kindergartens; heritage)
    assert ind[7]["accuracy"] == pytest.approx(2 / 4) and ind[7]["verified"] == 4
    assert ind[6]["accuracy"] is None  # hotel
    assert ind[7]["label"].startswith("7. hospitals") and "医院" in ind[7]["label"]
    site = {d["key"]: d for d in store.accuracy("site")}
    assert site["Meilie hospital 1"]["accuracy"] == pytest.approx(2 / 3)
    # The period: cases opened in [since, until).
    assert store.accuracy("detector", since=T0 + 1) == []
    assert len(store.accuracy("detector", since=T0, until=T0 + 1)) == 3
    with pytest.raises(WorkflowError):
        store.accuracy("planet")


def test_handling_figures_medians(db, store, clock):
    for k, dev in enumerate((100001, 100002, 100003)):
        add_event(db, dev, "alarm", "residual", 320, 300, T0 + k)
    store.sync()
    ids = {c.device: c.id for c in store.open_cases()}
    clock.t = T0 + 60
    store.act(ids[100001], "acknowledge", "a")
    clock.t = T0 + 181
    store.act(ids[100002], "acknowledge", "a")
    for step in ("dispatch", "verify", "remove", "close"):
        clock.t += 100
        store.act(ids[100001], step, "a", verdict="nuisance", cause="damp")
    h = {d["key"]: d for d in store.handling("unit")}
    m = h["Meilie District"]
    assert m["cases"] == 2 and m["open"] == 1
    assert m["median_ack_s"] == pytest.approx((60 + 180) / 2)
    assert m["median_close_s"] == pytest.approx(181 + 400)
    assert m["accuracy"] == 0.0 and m["verified"] == 1
    s = h["Sanyuan District"]
    assert (s["open"], s["median_ack_s"], s["median_close_s"], s["accuracy"]) == (
        1,
        None,
        None,
        None,
    )
    ind = {d["key"]: d for d in store.handling("industry")}
    assert ind[7]["cases"] == 2 and ind[6]["cases"] == 1


def test_industry_categories_from_the_city_list(db):
    names = registry.load_industries()
    assert len(names) == 10 and names[10] == ("其他行业领域", "other industries")
    assert set(registry.INDUSTRY_OF) == set(registry.CATEGORIES)
    assert registry.industry_of("wood_mill") == 3 and registry.industry_of("") == 10
    rows = db.execute("SELECT code, zh, en FROM industry_categories ORDER BY code").fetchall()
    assert [r[0] for r in rows] == list(range(1, 11))
    assert rows[0][1].startswith("危险化学品")


def test_consoles_syncing_at_once_open_each_case_once(db):
    """Two consoles (two connections) sync the same events concurrently: every event lands in
    exactly one case and no channel gets two open cases."""
    import threading

    from tools.gateway.db import open_db

    for k in range(60):
        add_event(db, 100001 + k % 4, "alarm" if k % 3 else "fault",
                  ("residual", "temp0", "temp1")[k % 3], 320, 300, T0 + k)  # fmt: skip
    errors: list[BaseException] = []

    def run(target: str) -> None:
        conn = open_db(target)  # on this thread (SQLite connections stay on theirs)
        try:
            st = CaseStore(conn)
            for _ in range(5):
                st.sync()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            conn.close()

    # the same database, two more connections
    target = db.test_target
    ts = [threading.Thread(target=run, args=(target,)) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors
    per = db.execute("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM case_events").fetchone()
    assert tuple(per) == (60, 60)
    opened = db.execute(
        "SELECT device, channel, COUNT(*) FROM cases WHERE state != 'closed' "
        "GROUP BY device, channel"
    ).fetchall()
    assert opened and all(n == 1 for _, _, n in opened)
