"""Issue 13, item 1: the gateway quick start run twice. Virtual detectors always boot with boot
count 1, so a second `python -m tools.fleet run` against the same database had every event
refused as a `replay` (0 ACKed, rc 1, and nothing said why). The fleet's VirtualDetector now
obeys the gateway's `resync` (protocol/SPEC.md 7.4) like the firmware does, and a run that
still ends with unacknowledged events says why.

Each test here failed before the change: the detector answered `resync` with
`unknown_command` and kept its counter, the second run ended rc 1 with nothing stored, and a
run against no gateway exited 1 with no reason."""

from __future__ import annotations

import json
from collections import Counter

from efd import events as ev
from protocol import frame as fr
from protocol import messages as M
from protocol.auth import Key, make_counter
from tests.gateway.conftest import db_events, free_port, run_cli, start_gateway
from tools.fleet.detector import VirtualDetector

DEV = 100001
KEY = bytes(range(32))
T = 1000  # wire time


class Host:
    """The gateway's side, as far as commands go: tagged COMMANDs with rising counters."""

    def __init__(self) -> None:
        self.n = 5000
        self.enc = fr.Encoder(DEV, Key(KEY), self._counter)

    def _counter(self) -> int:
        self.n += 1
        return self.n

    def resync(self, mark: int) -> bytes:
        return self.enc.message(M.COMMAND, T, {"cmd": "resync", "mark": mark}, auth=True)

    def ack(self, event: bytes) -> bytes:
        f = fr.decode(event)
        fields = {"ack_type": f.type, "ack_seq": f.seq, "ack_crc": f.crc}
        return self.enc.message(M.ACK, T, fields, auth=True)


def result(wire: bytes) -> dict:
    f = fr.decode(wire)
    assert f.ok and f.type == M.RESULT, f
    return f.fields


def test_resync_raises_the_counter_above_the_mark():
    det = VirtualDetector(DEV, KEY, retry_s=0.0)
    det.telemetry(T)  # one tagged frame: counter 1 << 16 | 1
    mark = make_counter(41, 7)
    out = det.downlink(Host().resync(mark), 0.0, T)
    r = result(out[0])
    assert (r["cmd"], r["status"], r["value"]) == ("resync", "ok", 42)
    assert fr.decode(out[0]).counter == make_counter(42, 1) > mark  # the RESULT is above it
    det.raise_event(ev.ALARM, ev.RESIDUAL, 320, 300)
    assert fr.decode(det.uplink(1.0, T) or b"").counter == make_counter(42, 2)


def test_resync_below_the_counter_changes_nothing():
    det = VirtualDetector(DEV, KEY, boot_count=50, retry_s=10.0)
    det.raise_event(ev.ALARM, ev.RESIDUAL, 320, 300)
    e1 = det.uplink(0.0, T) or b""
    host = Host()
    # The mark is the in-flight event's own counter (accepted by the host, its ACK lost).
    out = det.downlink(host.resync(fr.decode(e1).counter), 0.5, T)
    assert len(out) == 1 and result(out[0])["status"] == "ok" and result(out[0])["value"] == 50
    assert det.boot == 50 and det.inflight is not None and det.inflight.wire == e1
    assert det.uplink(20.0, T) == e1  # retransmitted byte-identical: a duplicate to the host
    assert det.stats.restamped == 0


def test_resync_fails_past_boot_count_0xffff_and_changes_nothing():
    det = VirtualDetector(DEV, KEY, retry_s=10.0)
    det.raise_event(ev.ALARM, ev.RESIDUAL, 320, 300)
    e1 = det.uplink(0.0, T) or b""
    host = Host()
    out = det.downlink(host.resync(make_counter(0xFFFF, 3)), 0.5, T)
    r = result(out[0])
    assert (r["status"], r["value"]) == ("failed", 1)
    assert det.boot == 1 and det.inflight is not None and det.inflight.wire == e1
    assert det.stats.resync_failed == 1
    # Just below the limit it still works: boot count 0xFFFF.
    out = det.downlink(host.resync(make_counter(0xFFFE, 3)), 0.6, T)
    assert (result(out[0])["status"], result(out[0])["value"]) == ("ok", 0xFFFF)


def test_resync_resends_the_pending_event_under_a_new_counter():
    det = VirtualDetector(DEV, KEY, retry_s=10.0)
    det.raise_event(ev.PREALARM, ev.RESIDUAL, 150, 150)
    det.raise_event(ev.ALARM, ev.RESIDUAL, 320, 300)
    old = det.uplink(0.0, T) or b""
    f_old = fr.decode(old)
    mark = make_counter(7, 99)  # the host holds this detector's events up to here
    host = Host()
    out = det.downlink(host.resync(mark), 0.5, T + 5)
    # UDP/MQTT: the RESULT, then at once the in-flight event as a new frame above the mark.
    assert len(out) == 2 and result(out[0])["value"] == 8
    new = fr.decode(out[1])
    # Re-logged before the RESULT is encoded, as the firmware does: both above the mark.
    assert new.type == M.EVENT and new.counter == make_counter(8, 1) > mark
    assert fr.decode(out[0]).counter == make_counter(8, 2)
    assert (new.seq, new.time, new.fields) == (f_old.seq, f_old.time, f_old.fields)
    assert det.stats.restamped == 1 and det.stats.retransmits == 0
    # The report's event log names the copy the host can store, not the refused one.
    assert [c for _d, c, *_ in det.stats.log] == [new.counter]
    # Retransmissions are the new bytes; its ACK clears it; the queued event comes next, above.
    assert det.uplink(20.0, T) == out[1]
    assert det.downlink(host.ack(out[1]), 20.1, T) != []
    assert det.stats.acked == 1
    nxt = fr.decode(det.inflight.wire if det.inflight else b"")
    assert nxt.counter > new.counter and nxt.fields["kind"] == "alarm"
    # A replayed (old) resync changes nothing more.
    again = det.downlink(host.resync(mark), 21.0, T)
    assert len(again) == 1 and det.boot == 8 and det.stats.restamped == 1


def test_resync_on_a_polled_bus_sends_the_event_at_the_next_poll():
    det = VirtualDetector(DEV, KEY, retry_s=10.0, polled=True)
    det.raise_event(ev.ALARM, ev.RESIDUAL, 320, 300)
    det.uplink(0.0, T)
    host = Host()
    out = det.downlink(host.resync(make_counter(3, 0)), 0.5, T)
    assert len(out) == 1 and result(out[0])["value"] == 4  # one frame per slot
    poll = fr.Encoder(DEV).message(M.POLL, T, {})
    nxt = fr.decode(det.downlink(poll, 0.6, T)[0])
    assert nxt.type == M.EVENT and nxt.counter > make_counter(3, 0)


FLEET = ["--devices", "30", "--alarm-share", "0.6", "--speed", "12", "--interval", "1",
         "--duration", "6", "--retry", "0.5", "--drain", "20"]  # fmt: skip


def test_fleet_run_twice_against_the_same_database(tmp_path, fleet_files, procs):
    """The quick start again, same gateway, same database: the second run's detectors are
    resynced, every event of both runs is stored exactly once, rc 0 both times."""
    port = free_port(2)
    db = tmp_path / "gw.db"
    gw = start_gateway(procs, tmp_path, fleet_files, "gwr", db, "--udp", f"127.0.0.1:{port}")
    reports = []
    for run in (1, 2):
        rep = tmp_path / f"rep{run}.json"
        r = run_cli("tools.fleet", "run", "--registry", str(fleet_files / "fleet.csv"),
                    "--secret-file", str(fleet_files / "secret"), "--udp", f"127.0.0.1:{port}",
                    "--report", str(rep), *FLEET, timeout=90)  # fmt: skip
        assert r.returncode == 0, (run, r.stdout, r.stderr[-3000:])
        reports.append(json.loads(rep.read_text()))
    gw.kill(15)
    first, second = reports
    assert first["resyncs"] == 0 and second["resyncs"] > 0
    assert second["unacked"] == 0 and second["acked"] == second["events"] > 10
    stored = db_events(db)
    assert not [k for k, n in Counter(stored).items() if n > 1]
    sent = [(d, c) for rep in reports for d, c, *_ in rep["event_log"]]
    assert len(set(sent)) == len(sent) == first["events"] + second["events"]
    assert set(stored) == set(sent)


def test_fleet_says_why_events_stayed_unacknowledged(tmp_path, fleet_files):
    port = free_port(2)  # nobody listens there
    r = run_cli("tools.fleet", "run", "--registry", str(fleet_files / "fleet.csv"),
                "--secret-file", str(fleet_files / "secret"), "--udp", f"127.0.0.1:{port}",
                "--devices", "4", "--alarm-share", "1", "--speed", "100", "--interval", "1",
                "--duration", "2", "--retry", "0.5", "--drain", "1", timeout=60)  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert "events not acknowledged" in r.stderr
    assert f"nothing came back from the gateway at UDP 127.0.0.1:{port}" in r.stderr
    assert "is the gateway running there" in r.stderr
    # The run was not silent meanwhile: a start line and progress on stderr.
    assert "4 detectors (4 playing scenarios)" in r.stderr
