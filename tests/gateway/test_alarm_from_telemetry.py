"""Issue 13, item 10: `query alarms` and `report` missed an alarm that latched before the gateway
saw it (no ALARM event was ever stored) although the telemetry status bits showed it. Now the
latest *authenticated* TELEMETRY's bits count where no event explains them, labelled source
"telemetry"; an untagged TELEMETRY (anyone can send one) never raises an alarm, and an event
received after the telemetry overrules it.

test_latched_before_the_gateway_saw_it failed before the change (no row, in_alarm 0)."""

from __future__ import annotations

import csv
import io

from efd import events as ev
from protocol import host
from tests.gateway.conftest import run_cli
from tools.fleet.detector import VirtualDetector
from tools.gateway import query as Q
from tools.gateway.core import Gateway
from tools.gateway.registry import Device, PlanUnit, derive_key
from tools.gateway.store import Store

SECRET = b"alarm-from-telemetry"
IDS = range(1, 7)
PLAN = [PlanUnit("Sha County", "沙县", "district", "", 10)]


class Link:
    name = "test"

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, device, wire, addr):
        self.sent.append(wire)


def setup(target):
    devs = {d: Device(d, f"d{d}", "Sha County", "hotel", "", derive_key(SECRET, d)) for d in IDS}
    st = Store(target, "t")
    gw = Gateway(devs, st, name="t")
    dets = {d: VirtualDetector(d, derive_key(SECRET, d), retry_s=0.0) for d in IDS}
    return gw, st, dets


def deliver(gw: Gateway, det: VirtualDetector, link: Link) -> None:
    """The in-flight event to the gateway, committed, and its ACK back to the detector."""
    w = det.uplink(0.0, host.now())
    assert w is not None
    gw.handle(w, link)
    gw.flush()
    for a in link.sent:
        det.downlink(a, 0.0, host.now())
    link.sent.clear()


def rows(st: Store) -> dict[tuple[int, str], tuple]:
    cols, out = Q.alarms(st.db)
    assert cols[-1] == "source"
    return {(r[0], r[4]): (r[5], r[-1]) for r in out}


def test_latched_before_the_gateway_saw_it(store_url):
    gw, st, dets = setup(store_url)
    link = Link()
    # 1: latched on residual before the gateway ever heard it (the event went nowhere).
    dets[1].latched |= 1 << ev.RESIDUAL
    gw.handle(dets[1].telemetry(host.now()), link)  # the first telemetry is tagged
    # 2: the same bits, but only in untagged telemetry: information only, no alarm.
    dets[2].latched |= 1 << ev.RESIDUAL
    dets[2].auth_at = host.now()  # its tagged one a minute is not due
    gw.handle(dets[2].telemetry(host.now()), link)
    # 3: an alarm with its event stored: one row, from the event.
    dets[3].raise_event(ev.ALARM, ev.TEMP0, 900, 700)
    gw.handle(dets[3].telemetry(host.now()), link)
    deliver(gw, dets[3], link)
    # 4: telemetry showed an alarm, then the reset event arrived: the event is newer.
    dets[4].latched |= 1 << ev.PHASE0
    gw.handle(dets[4].telemetry(host.now()), link)
    gw.flush()
    dets[4].raise_event(ev.RESET, ev.PHASE0, 0, 0)
    deliver(gw, dets[4], link)
    # 5: a sensor fault shown by the status flag, no FAULT event stored: channel unknown.
    dets[5].fault |= 1 << ev.TEMP0 + 1
    gw.handle(dets[5].telemetry(host.now()), link)
    # 6: nothing.
    gw.handle(dets[6].telemetry(host.now()), link)
    gw.close()

    assert rows(st) == {
        (1, "residual"): ("alarm", "telemetry"),
        (3, "temp0"): ("alarm", "event"),
        (5, ""): ("fault", "telemetry"),
    }
    _cols, rep = Q.report(st.db, PLAN)
    total = rep[-1]
    assert total[0] == "TOTAL" and total[6:8] == (2, 1)  # in_alarm: 1 and 3; in_fault: 5

    # The event arrives later (the detector's log, a resync...): the row is the event's now.
    dets[1].raise_event(ev.ALARM, ev.RESIDUAL, 350, 300)
    gw = Gateway({d: Device(d, f"d{d}", "Sha County", "hotel", "", derive_key(SECRET, d))
                  for d in IDS}, st, name="t")  # fmt: skip
    deliver(gw, dets[1], link)
    gw.close()
    assert rows(st)[(1, "residual")] == ("alarm", "event")
    st.close()

    # On the command line: the source column says where each row comes from.
    r = run_cli("tools.gateway", "query", "alarms", "--db", store_url, "--csv")
    assert r.returncode == 0, r.stderr
    got = {(x["device"], x["channel"], x["state"], x["source"])
           for x in csv.DictReader(io.StringIO(r.stdout))}  # fmt: skip
    assert got == {("1", "residual", "alarm", "event"), ("3", "temp0", "alarm", "event"),
                   ("5", "", "fault", "telemetry")}  # fmt: skip
    r = run_cli("tools.gateway", "report", "--db", store_url, "--csv")
    assert r.returncode == 0, r.stderr


def test_a_later_alarm_in_telemetry_overrules_an_older_normal_state(store_url):
    """Reset (event), then the channel latches again while the new event is still on its way:
    the newer telemetry shows it, and `--all` lists the channel once."""
    gw, st, dets = setup(store_url)
    link = Link()
    d = dets[1]
    d.raise_event(ev.ALARM, ev.RESIDUAL, 320, 300)
    deliver(gw, d, link)
    d.raise_event(ev.RESET, ev.RESIDUAL, 0, 0)
    deliver(gw, d, link)
    assert rows(st) == {}
    d.latched |= 1 << ev.RESIDUAL
    gw.handle(d.telemetry(host.now()), link)
    gw.close()
    assert rows(st) == {(1, "residual"): ("alarm", "telemetry")}
    _cols, out = Q.alarms(st.db, include_normal=True)
    assert [(r[0], r[4], r[5], r[-1]) for r in out] == [(1, "residual", "alarm", "telemetry")]
    st.close()
