"""Issue 10, finding 3 (detector side): a detector whose counter went backwards was silenced for
good. protocol/SPEC.md section 7.4 is the recovery: the authenticated `resync` command lifts the
uplink counter above the host's mark and logs pending events again under new counters; a
detector that lost its state file locks every other command (`locked`) until re-provisioned;
boot counts never wrap (rule W). The detector also tags HELLO, SNAPSHOT chunks and one
TELEMETRY a minute (SPEC.md section 5), so hosts act on authenticated frames only.

These run the real firmware (app.run, app.link, the flash event log) on the MicroPython unix
port, with the simulated clock and an in-memory link; the host side is protocol.frame in
CPython, so every frame checked here is decoded by the same codec an integrator uses.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from protocol import frame as fr
from protocol import messages as M
from protocol.auth import Key, make_counter
from protocol.session import Peer
from tests import mpy
from tools import provisioning

pytestmark = pytest.mark.micropython

DEVICE = 7
KEY = bytes(range(32))

# steps: {window: [action, ...]}; an action is ["cmd", hex] (bytes the host sends), ["res", mA]
# (the simulated leakage), ["ack"] (the host ACKs every event from now on), ["noack"].
SCRIPT = """
import json
from binascii import hexlify, unhexlify
from app.hal_sim import SimHal
from app import run
from protocol import cobs
from protocol import messages as M
from protocol.auth import Key
from protocol.frame import Encoder

STEPS = {steps}
host = Encoder({device}, Key(unhexlify({key!r})), None)
hctr = [{host_ctr}]


def next_ctr():
    hctr[0] += 1
    return hctr[0]


host.counter = next_ctr
W = [0]
ACK = [False]


class Wire:
    def __init__(self):
        self.rx = bytearray()
        self.sent = []  # (window, wire hex)

    def read(self, buf):
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n

    def write(self, data):
        data = bytes(data)
        self.sent.append((W[0], hexlify(data).decode()))
        raw = cobs.decode(data, len(data) - 1)
        if raw[0] & 31 == M.EVENT and ACK[0]:
            crc = raw[len(raw) - 2] | raw[len(raw) - 1] << 8
            a = {{"ack_type": M.EVENT, "ack_seq": raw[5], "ack_crc": crc}}
            self.rx += b"\\x00" + host.message(M.ACK, 0, a, auth=True)

    def busy(self):
        return False


wire = Wire()
hal = SimHal(clock="sim", link=wire)
app = run.App(hal)
for w in range({windows}):
    W[0] = w
    for a in STEPS.get(str(w), ()):
        if a[0] == "cmd":
            wire.rx += unhexlify(a[1])
        elif a[0] == "res":
            hal.res_ma = a[1]
            hal.dirty = True
        elif a[0] == "ack":
            ACK[0] = True
        elif a[0] == "noack":
            ACK[0] = False
    app.step()
log = app.log
recs = [log.read(i) for i in range(1, log.head + 1)]
print("RESULT " + json.dumps({{"sent": wire.sent, "boots": app.boots, "n": app.n,
    "problems": app.problems, "errors": app.errors, "acked": log.acked, "head": log.head,
    "recs": [list(r) if r else None for r in recs]}}))
"""


def host_command(fields: dict, counter: int) -> bytes:
    enc = fr.Encoder(DEVICE, Key(KEY), None)
    return b"\x00" + enc.message(M.COMMAND, 0, fields, auth=True, counter=counter)


def run_fw(flash: Path, windows: int, steps: dict | None = None, host_ctr: int = 1000) -> dict:
    script = SCRIPT.format(
        steps=json.dumps({str(k): v for k, v in (steps or {}).items()}),
        device=DEVICE,
        key=KEY.hex(),
        host_ctr=host_ctr,
        windows=windows,
    )
    stdout = mpy.run(script, heapsize="4m", timeout=300, cwd=flash)
    line = [x for x in stdout.splitlines() if x.startswith("RESULT ")][-1]
    out = json.loads(line[7:])
    out["frames"] = [(w, fr.decode(bytes.fromhex(h))) for w, h in out["sent"]]
    return out


def provisioned(tmp_path: Path, state: dict | None = None) -> Path:
    """A flash folder as provisioning leaves it (identity + fresh state), or with `state`
    written over it (None keeps provisioning's)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, text in provisioning.files(DEVICE, KEY.hex()).items():
        (tmp_path / name).write_text(text)
    if state is not None:
        (tmp_path / "state.json").write_text(json.dumps(state))
    return tmp_path


def of_type(out: dict, name: str) -> list:
    return [f for _, f in out["frames"] if f.ok and f.name == name]


def results(out: dict) -> list[dict]:
    return [f.fields for f in of_type(out, "result")]


def leak_events(tmp_path: Path, windows: int = 60) -> dict:
    """A run that logs a pre-alarm and an alarm the host never ACKs (they stay pending)."""
    return run_fw(tmp_path, windows, {5: [["res", 400]]})


# -- resync ----------------------------------------------------------------------------------


def test_resync_lifts_counter_and_relogs_pending_events_in_order(tmp_path):
    flash = provisioned(tmp_path)
    first = leak_events(flash)
    pending = [r for r in first["recs"][first["acked"] :] if r]
    assert len(pending) >= 2, first["recs"]  # pre-alarm and alarm, never ACKed
    # The host's mark is far above this detector's counters (its state was lost, say).
    mark = make_counter(40, 7)
    assert all(r[1] < mark for r in pending)
    out = run_fw(
        flash, 30, {2: [["cmd", host_command({"cmd": "resync", "mark": mark}, 2000).hex()]]}
    )
    res = [r for r in results(out) if r["cmd"] == "resync"]
    assert res == [{"cmd_counter": 2000, "cmd": "resync", "status": "ok", "value": 41}], res
    assert out["boots"] == 41  # (mark >> 16) + 1, persisted
    state = json.loads((flash / "state.json").read_text())
    assert state["boots"] == 41 and state["host_ctr"] == 2000
    # Every old copy acknowledged locally, every event logged again, same content, in order.
    recs = out["recs"]
    old, new = recs[: len(recs) - len(pending)], recs[len(recs) - len(pending) :]
    assert out["acked"] == len(old)
    key = lambda r: (r[0], r[2], r[3], r[4], r[5], r[6])  # noqa: E731 time seq kind ch value thr
    assert [key(r) for r in new] == [key(r) for r in pending]
    assert all(r[1] > mark for r in new)
    assert [r[1] for r in new] == sorted(r[1] for r in new)
    # On the wire: the RESULT first, then the first pending event under its new counter,
    # which a host holding `mark` accepts.
    events = of_type(out, "event")
    after = [e for e in events if e.counter > mark]
    assert after and (after[0].seq, after[0].fields["kind"]) == (pending[0][2], "prealarm")
    host = Peer(Key(KEY), mark, (), uplink=True)
    assert host.check(after[0]) is None
    assert all(e.counter <= mark for e in events[: events.index(after[0])])


def test_resync_below_counter_is_a_no_op(tmp_path):
    # The usual case for a replayed resync: the detector is already above the mark.
    flash = provisioned(tmp_path, {"boots": 9, "host_ctr": 0})
    before = leak_events(flash, 40)
    mark = make_counter(10, 3)  # this boot is 10: its counters are already above
    out = run_fw(flash, 20, {2: [["cmd", host_command({"cmd": "resync", "mark": mark}, 5).hex()]]})
    assert [r["status"] for r in results(out) if r["cmd"] == "resync"] == ["ok"]
    assert out["boots"] == 11  # the boot's own +1 only
    assert out["head"] == before["head"]  # nothing logged again


def test_resync_at_exactly_the_mark_does_not_relog(tmp_path):
    # An event whose counter equals the host's mark is the one the host accepted last (its ACK
    # lost): it comes through as a duplicate. Logging it again would deliver it twice.
    flash = provisioned(tmp_path, {"boots": 9, "host_ctr": 0})
    first = leak_events(flash)
    pending = [r for r in first["recs"][first["acked"] :] if r]
    mark = pending[0][1]  # boot 10's counters
    # The state goes back (a board given an old state file): this boot's counters are below.
    (flash / "state.json").write_text(json.dumps({"boots": 2, "host_ctr": 0}))
    out = run_fw(flash, 20, {2: [["cmd", host_command({"cmd": "resync", "mark": mark}, 9).hex()]]})
    assert out["boots"] == (mark >> 16) + 1  # lifted
    assert out["head"] == first["head"], "the event at the mark was logged again"


def test_resync_keeps_events_at_or_above_the_mark_and_restamps_from_the_first_below(tmp_path):
    # A board whose state went back while events of its earlier life are still pending: the
    # host accepted the first of those (its ACK lost), so the log holds, in order, one event at
    # the mark, one above it, then the new life's events below it. Found by the end-to-end
    # test: re-logging only when the *oldest* pending event was below the mark left the new
    # events stuck behind the duplicate for good.
    flash = provisioned(tmp_path, {"boots": 9, "host_ctr": 0})
    first = leak_events(flash)
    old = [r for r in first["recs"][first["acked"] :] if r]
    (flash / "state.json").write_text(json.dumps({"boots": 2, "host_ctr": 0}))
    second = leak_events(flash)
    pending = [r for r in second["recs"][second["acked"] :] if r]
    assert len(pending) == len(old) + 2 and pending[: len(old)] == old
    mark = old[0][1]
    assert old[1][1] > mark and all(r[1] < mark for r in pending[len(old) :])
    out = run_fw(flash, 30, {2: [["cmd", host_command({"cmd": "resync", "mark": mark}, 9).hex()]]})
    relogged = out["recs"][second["head"] :]
    assert len(relogged) == len(pending)
    key = lambda r: (r[0], r[2], r[3], r[4], r[5], r[6])  # noqa: E731 time seq kind ch value thr
    assert [key(r) for r in relogged] == [key(r) for r in pending]  # same events, same order
    assert [r[1] for r in relogged[: len(old)]] == [r[1] for r in old]  # kept: byte-identical
    assert all(r[1] > mark for r in relogged[len(old) :])
    counters = [r[1] for r in relogged]
    assert counters == sorted(counters)
    # The first frame out after the RESULT is the event at the mark, unchanged: a duplicate.
    ev_out = [f for w, f in out["frames"] if f.ok and f.name == "event" and w >= 2]
    assert ev_out[0].counter == mark


def test_resync_at_the_detectors_own_counter_is_a_no_op(tmp_path):
    # mark == the last counter the detector used: it is not behind, nothing changes.
    state = {"boots": 4, "host_ctr": 0}
    flash = provisioned(tmp_path, state)
    dry = run_fw(flash, 3)
    last = max(f.counter for w, f in dry["frames"] if f.ok and f.tag is not None and w <= 2)
    assert last >> 16 == 5
    (flash / "state.json").write_text(json.dumps(state))
    out = run_fw(flash, 3, {2: [["cmd", host_command({"cmd": "resync", "mark": last}, 9).hex()]]})
    assert [(r["status"], r["value"]) for r in results(out)] == [("ok", 5)]
    assert out["boots"] == 5
    # One above it: lifted to the next boot count.
    (flash / "state.json").write_text(json.dumps(state))
    out = run_fw(
        flash, 3, {2: [["cmd", host_command({"cmd": "resync", "mark": last + 1}, 9).hex()]]}
    )
    assert out["boots"] == 6


def test_resync_one_below_the_oldest_pending_relogs(tmp_path):
    # The boundary on the other side: mark = oldest pending counter + 1 -> it is below.
    flash = provisioned(tmp_path)
    first = leak_events(flash)
    pending = [r for r in first["recs"][first["acked"] :] if r]
    mark = make_counter(first["boots"] + 1, 0xFFFF)  # above everything the detector sent
    out = run_fw(flash, 20, {2: [["cmd", host_command({"cmd": "resync", "mark": mark}, 9).hex()]]})
    assert out["head"] == first["head"] + len(pending)


def test_resync_that_would_pass_the_boot_count_fails_and_changes_nothing(tmp_path):
    flash = provisioned(tmp_path)
    mark = make_counter(0xFFFF, 1)
    out = run_fw(flash, 20, {2: [["cmd", host_command({"cmd": "resync", "mark": mark}, 9).hex()]]})
    assert [(r["status"], r["value"]) for r in results(out) if r["cmd"] == "resync"] == [
        ("failed", 1)
    ]
    assert out["boots"] == 1
    assert json.loads((flash / "state.json").read_text())["boots"] == 1
    # The boundary: a mark in boot count 0xFFFE leaves exactly one boot count, 0xFFFF.
    mark = make_counter(0xFFFE, 5)
    out = run_fw(flash, 20, {2: [["cmd", host_command({"cmd": "resync", "mark": mark}, 10).hex()]]})
    assert [(r["status"], r["value"]) for r in results(out) if r["cmd"] == "resync"] == [
        ("ok", 0xFFFF)
    ]


def test_replayed_resync_is_refused_as_a_replay(tmp_path):
    # The command counter rule still holds for resync: a copy at or below the mark is a
    # duplicate (cached RESULT) or a replay (nothing), never a second execution.
    flash = provisioned(tmp_path)
    cmd = host_command({"cmd": "resync", "mark": make_counter(5, 1)}, 50).hex()
    out = run_fw(flash, 20, {2: [["cmd", cmd]], 8: [["cmd", cmd]]})
    assert [r["status"] for r in results(out)] == ["ok", "ok"]  # the cached RESULT, resent
    assert len({f.counter for f in of_type(out, "result")}) == 1  # byte-identical copy
    out2 = run_fw(flash, 10, {2: [["cmd", cmd]]})
    assert results(out2) == []  # the next boot: below its persisted mark, a replay


# -- lost state: commands locked -------------------------------------------------------------


def test_lost_state_locks_commands_but_not_resync(tmp_path):
    flash = provisioned(tmp_path)
    (flash / "state.json").unlink()  # lost: identity without state
    reset = host_command({"cmd": "reset", "channel": "all"}, 100).hex()
    resync = host_command({"cmd": "resync", "mark": make_counter(3, 3)}, 101).hex()
    out = run_fw(flash, 30, {2: [["cmd", reset]], 10: [["cmd", resync]]})
    got = [(r["cmd"], r["status"]) for r in results(out)]
    assert got == [("reset", "locked"), ("resync", "ok")], got
    assert out["problems"] & 4
    st = json.loads((flash / "state.json").read_text())
    assert st.get("locked") == 1 and st["boots"] == max(4, out["boots"])
    # The lock survives a reboot (it is in the new state file)...
    out2 = run_fw(flash, 10, {2: [["cmd", host_command({"cmd": "reboot"}, 102).hex()]]})
    assert [(r["cmd"], r["status"]) for r in results(out2)] == [("reboot", "locked")]
    # ...and ends with provisioning under a new key (a fresh state file).
    files = provisioning.files(DEVICE, "ab" * 32, (flash / "identity.json").read_text())
    assert json.loads(files["state.json"]) == {"boots": 0, "host_ctr": 0}


def test_lost_state_boot_count_is_random_and_high(tmp_path):
    # Counting from 1 again could repeat a counter sent before the loss: with the clock unset
    # an event could be byte-identical to a stored one, ACKed as its retransmission, never
    # stored (the end-to-end test found it). Two losses draw two boot counts in 0x8000..0xBFFF.
    seen = set()
    for i in range(2):
        flash = provisioned(tmp_path / str(i))
        (flash / "state.json").unlink()
        out = run_fw(flash, 5)
        assert 0x8000 <= out["boots"] <= 0xBFFF, out["boots"]
        assert of_type(out, "hello")[0].counter >> 16 == out["boots"]
        seen.add(out["boots"])
    assert len(seen) == 2


def test_corrupt_state_also_locks(tmp_path):
    flash = provisioned(tmp_path)
    (flash / "state.json").write_text("{not json")
    out = run_fw(flash, 10, {2: [["cmd", host_command({"cmd": "get_config"}, 7).hex()]]})
    assert [r["status"] for r in results(out)] == ["locked"]
    assert of_type(out, "config") == []


def test_provisioned_detector_is_not_locked(tmp_path):
    flash = provisioned(tmp_path)
    out = run_fw(flash, 10, {2: [["cmd", host_command({"cmd": "get_config"}, 7).hex()]]})
    assert [r["status"] for r in results(out)] == ["ok"]
    assert out["problems"] == 0


# -- rule W: the boot count never wraps ------------------------------------------------------


def test_boot_count_at_the_limit_is_exhausted_not_wrapped(tmp_path):
    flash = provisioned(tmp_path, {"boots": 0xFFFF, "host_ctr": 0})
    out = run_fw(flash, 15)
    assert out["problems"] & 8
    hello = of_type(out, "hello")
    assert hello and hello[0].counter == 0xFFFFFFFF  # never 0x0000xxxx (a wrap)
    assert all(f.counter == 0xFFFFFFFF for f in of_type(out, "telemetry") if f.tag)


def test_last_boot_count_still_works(tmp_path):
    flash = provisioned(tmp_path, {"boots": 0xFFFE, "host_ctr": 0})
    out = run_fw(flash, 15)
    assert out["boots"] == 0xFFFF and not out["problems"] & 8
    assert of_type(out, "hello")[0].counter == make_counter(0xFFFF, 1)


# -- what the detector tags (SPEC.md section 5) ----------------------------------------------


def test_hello_tagged_and_one_telemetry_a_minute(tmp_path):
    flash = provisioned(tmp_path)
    out = run_fw(flash, 1300)  # 130 s: telemetry every 10 s
    hello = of_type(out, "hello")
    assert len(hello) == 1 and hello[0].tag is not None
    tel = [(w, f.tag is not None) for w, f in out["frames"] if f.ok and f.name == "telemetry"]
    tagged = [w for w, t in tel if t]
    assert len(tel) >= 12
    assert len(tagged) == 3, tel  # at 0, 60 and 120 s
    assert all(b - a >= 600 for a, b in itertools.pairwise(tagged))
    # Each tagged one verifies under the key; untagged ones stay 32 bytes on the wire.
    host = Peer(Key(KEY), 0, (), uplink=True)
    for (_, h), (_, f) in zip(out["sent"], out["frames"], strict=True):
        if f.ok and f.name == "telemetry":
            if f.tag is not None:
                assert host.check(f) is None and len(h) // 2 == 44
            else:
                assert len(h) // 2 == 32


def test_snapshot_chunks_are_tagged(tmp_path):
    flash = provisioned(tmp_path)
    out = run_fw(
        flash, 20, {2: [["cmd", host_command({"cmd": "snapshot", "snap_id": 0}, 3).hex()]]}
    )
    chunks = of_type(out, "snapshot")
    assert chunks and all(c.tag is not None for c in chunks)
    host = Peer(Key(KEY), 0, (), uplink=True)
    assert all(host.check(c) is None for c in chunks)
