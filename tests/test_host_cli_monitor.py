"""tools.monitor against a scripted detector on a pty (no MicroPython needed): each event and
CONFIG printed once (also across runs), the detector's clock or the host's reception time on
every frame, `watch` saying it listens and polling at once, set-config refused on the host for
unknown settings and out-of-range values, a bad_argument RESULT naming its setting."""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import select
import threading
import time
import tty
from collections.abc import Callable

import pytest

from efd import events as ev
from protocol import auth, host
from protocol import frame as fr
from protocol import messages as M
from protocol.stream import StreamDecoder
from tools import monitor

DEVICE = 0x12345678
KEY = bytes(range(32))
T_SET = 200_000_000  # a detector time (seconds since 2020): 2026-05-03T19:33:20Z


class FakeDetector:
    """The detector's end of a pty. `on_command(fields, counter)` and `on_poll()` return the
    frames to answer with, as (delay_s, wire) pairs; every frame from the host is recorded."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        self._slave = slave
        self.enc = fr.Encoder(DEVICE, auth.Key(KEY), self._next)
        self.ctr = 1 << 16
        self.received: list[fr.Frame] = []
        self.on_command: Callable[[dict, int], list[tuple[float, bytes]]] = lambda f, c: []
        self.on_poll: Callable[[], list[tuple[float, bytes]]] = lambda: []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _next(self) -> int:
        self.ctr += 1
        return self.ctr

    def frame(self, typ: int, fields: dict, t: int = 0, tagged: bool = True) -> bytes:
        return b"\x00" + self.enc.message(typ, t, fields, auth=tagged)

    def event(self, kind: int = ev.ALARM, t: int = 0) -> bytes:
        n = self.enc.event(t, kind, ev.RESIDUAL, 400, 300)
        return b"\x00" + bytes(self.enc.wire[:n])

    def result(self, counter: int, cmd: str, status: str = "ok", value: int = 0) -> bytes:
        fields = {"cmd_counter": counter, "cmd": cmd, "status": status, "value": value}
        return self.frame(M.RESULT, fields)

    def config(self) -> bytes:
        return self.frame(M.CONFIG, {"config_hash": 1, "params": [["leak_set_ma", 300]]})

    def telemetry(self, t: int = 0) -> bytes:
        fields = {"residual_ma": 12, "temp_dc": [250] * 4, "line_ca": [100] * 3, "status": 0}
        return self.frame(M.TELEMETRY, fields, t, tagged=False)

    def _send(self, items: list[tuple[float, bytes]]) -> None:
        for delay, wire in items:
            time.sleep(delay)
            os.write(self.master, wire)

    def _run(self) -> None:
        dec = StreamDecoder()
        while not self._stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            for f in dec.feed(data):
                if not f.ok:
                    continue
                self.received.append(f)
                if f.type == M.COMMAND:
                    self._send(self.on_command(f.fields, f.counter))
                elif f.type == M.POLL:
                    self._send(self.on_poll())

    def types(self) -> list[str]:
        return [host.TYPE_NAMES[f.type] for f in self.received]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def det():
    d = FakeDetector()
    yield d
    d.close()


def run_monitor(capsys, det: FakeDetector, state, *args: str) -> tuple[int, list[dict], str]:
    argv = [det.port, "--device", hex(DEVICE), "--key", KEY.hex(), "--state", str(state), *args]
    rc = monitor.main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, [json.loads(x) for x in out.splitlines() if x.strip()], err


# -- item 9: each event and CONFIG printed once, with a time -------------------------------------
def test_command_mode_prints_each_event_and_config_once(det, capsys, tmp_path):
    alarm = det.event()

    def answer(fields, counter):
        # An event, its retransmission (the ACK was lost), the RESULT, then the CONFIG a
        # moment later (it arrives while the monitor reads on after the RESULT).
        return [(0, alarm), (0, alarm), (0, det.result(counter, "get_config")),
                (0.1, det.config())]  # fmt: skip

    det.on_command = answer
    rc, out, err = run_monitor(capsys, det, tmp_path / "m.json", "get-config")
    assert rc == 0, err
    assert [d["type"] for d in out] == ["event", "config", "result"], out
    assert out[0]["new"] is True and out[0]["kind"] == "alarm"
    assert det.types().count("ack") == 2  # the retransmission is ACKed, not shown again


def test_an_event_delivered_by_one_run_is_not_new_in_the_next(det, capsys, tmp_path):
    alarm = det.event()
    det.on_command = lambda fields, counter: [(0, alarm), (0, det.result(counter, "selftest"))]
    rc, out, _ = run_monitor(capsys, det, tmp_path / "m.json", "selftest")
    assert rc == 0 and [d["type"] for d in out] == ["event", "result"]
    # Its ACK was lost: the detector sends the same bytes to the next run.
    rc, out, _ = run_monitor(capsys, det, tmp_path / "m.json", "selftest")
    assert rc == 0 and [d["type"] for d in out] == ["result"], out
    assert det.types().count("ack") == 2


def test_watch_says_it_listens_and_polls_at_once(det, capsys, tmp_path):
    det.on_poll = lambda: [(0, det.telemetry())]
    t0 = time.monotonic()
    rc, out, err = run_monitor(capsys, det, tmp_path / "m.json", "--seconds", "1.5", "watch")
    assert rc == 0
    assert f"listening on {det.port} for device 0x{DEVICE:08x}" in err
    assert det.types()[0] == "poll"
    assert [d["type"] for d in out] == ["telemetry"]
    assert time.monotonic() - t0 < 3


def test_unset_clock_shows_the_reception_time_labelled(det, capsys, tmp_path):
    det.on_poll = lambda: [(0, det.telemetry(0)), (0, det.telemetry(T_SET))]
    before = time.time()
    rc, out, _ = run_monitor(capsys, det, tmp_path / "m.json", "--seconds", "1", "watch")
    assert rc == 0 and len(out) == 2
    unset, clocked = out
    assert unset["time"] == 0 and unset["clock"] == "unset" and "time_utc" not in unset
    rx = calendar.timegm(time.strptime(unset["rx_utc"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert before - 2 <= rx <= time.time() + 1
    assert clocked["time_utc"] == "2026-05-03T19:33:20Z" and "rx_utc" not in clocked


def test_watch_says_why_it_hears_nothing(det, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(monitor, "HINT_AFTER_S", 0.3)
    other = fr.Encoder(0x0BADBEEF)  # a detector with another id answers on this port
    det.on_poll = lambda: [(0, b"\x00" + other.message(M.TELEMETRY, 0, {
        "residual_ma": 1, "temp_dc": [1] * 4, "line_ca": [1] * 3, "status": 0}))]  # fmt: skip
    rc, out, err = run_monitor(capsys, det, tmp_path / "m.json", "--seconds", "1", "watch")
    assert rc == 0 and out == []
    assert "still nothing from device 0x12345678" in err and "0x0badbeef" in err
    assert "wrong --device" in err


def test_no_answer_says_the_detector_is_heard_so_the_key_is_wrong(
    det, capsys, tmp_path, monkeypatch
):
    monkeypatch.setattr(monitor, "COMMAND_TIMEOUT_S", 0.5)
    # A detector that does not share the key drops the command silently; its telemetry comes.
    det.on_command = lambda fields, counter: [(0, det.telemetry())]
    rc, out, err = run_monitor(capsys, det, tmp_path / "m.json", "reboot")
    assert rc == 1 and out == []
    assert err.startswith("error: no answer from the detector: the detector is heard")
    assert "wrong key?" in err and err.count("\n") == 1


# -- item 6: set-config checked on the host -------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "words"),
    [
        (
            "leak_set_ma=5000",
            ["'leak_set_ma=5000'", "out of range", "leak_set_ma must be 20..1000 mA"],
        ),
        ("temp_set_c=200", ["temp_set_c", "45..150 degC"]),
        ("fault_delay_s=0", ["fault_delay_s", "1..9 s"]),
        ("mains_hz=55", ["mains_hz", "Hz", "50 or 60"]),
        ("leak_set=300", ["unknown setting 'leak_set', did you mean leak_set_ma"]),
        ("tmp_set_c=70", ["did you mean temp_set_c"]),
        ("bogus=1", ["unknown setting 'bogus'", "leak_set_ma", "ct_bias_hi"]),
        ("leak_set_ma", ["NAME=VALUE"]),
        ("leak_set_ma=lots", ["must be an integer"]),
        ("p300=1", ["1..255"]),
    ],
)
def test_set_config_refuses_bad_settings_before_sending(det, capsys, tmp_path, setting, words):
    rc, out, err = run_monitor(capsys, det, tmp_path / "m.json", "set-config", setting)
    assert rc == 2 and out == []
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)
    time.sleep(0.1)
    assert det.received == []  # nothing went to the detector


def test_set_config_in_range_is_sent(det, capsys, tmp_path):
    sent: list[dict] = []

    def answer(fields, counter):
        sent.append(fields)
        return [(0, det.result(counter, fields["cmd"])), (0.05, det.config())]

    det.on_command = answer
    rc, out, err = run_monitor(
        capsys, det, tmp_path / "m.json", "set-config", "leak_set_ma=500", "fault_delay_s=9"
    )
    assert rc == 0, err
    # The detector's settings first (the cross-field rules are checked against them), then the
    # change itself; only the change's answer is printed.
    assert sent == [
        {"cmd": "get_config"},
        {"cmd": "set_config", "params": [["leak_set_ma", 500], ["fault_delay_s", 9]]},
    ]
    assert [d["type"] for d in out] == ["config", "result"]


def test_bad_argument_result_names_the_setting(det, capsys, tmp_path):
    # A raw id goes out unchecked (a setting newer than this host): the detector refuses it.
    det.on_command = lambda fields, counter: [
        (0, det.result(counter, "set_config", "bad_argument", 2))
    ]
    rc, out, err = run_monitor(capsys, det, tmp_path / "m.json", "set-config", "p2=5000")
    assert rc == 1
    assert out[-1]["status"] == "bad_argument" and out[-1]["value"] == 2
    assert out[-1]["param"] == "leak_set_ma"
    assert "refused leak_set_ma (parameter id 2)" in err


# -- item 10: options explained, keys checked -----------------------------------------------------
def test_every_option_has_help(capsys):
    with pytest.raises(SystemExit) as e:
        monitor.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    state = out[out.index("\n  --state FILE") :].split("\n  --seconds")[0]
    assert "counter" in state and "default" in state, state
    assert "rx_utc" in out and "clock" in out  # the time fields are explained


@pytest.mark.parametrize("key", ["12", "zz" * 32, "00" * 31])
def test_bad_key_exits_2(det, capsys, tmp_path, key):
    rc = monitor.main([det.port, "--device", "1", "--key", key, "watch"])
    err = capsys.readouterr().err
    assert rc == 2 and "64 hex digits" in err and "Traceback" not in err
    assert key not in err  # a key is a secret: never echoed


def test_bad_device_id_is_a_usage_error(det, capsys):
    with pytest.raises(SystemExit) as e:
        monitor.main([det.port, "--device", "0xZZ", "--key", KEY.hex(), "watch"])
    assert e.value.code == 2
    assert "a device id" in capsys.readouterr().err


def test_watch_prints_physical_units_and_raw_on_request(det, capsys, tmp_path):
    # Issue 12: people read degC and A; the wire's 0.1 degC / 0.01 A integers only with --raw.
    det.on_poll = lambda: [(0, det.telemetry())]
    rc, out, _ = run_monitor(capsys, det, tmp_path / "m.json", "--seconds", "1", "watch")
    assert rc == 0 and out
    d = out[0]
    assert "temp_dc" not in d and d["units"]["temp_c"] == "degC" and d["units"]["line_a"] == "A"
    # FakeDetector.telemetry(): 250 (0.1 degC) and 100 (0.01 A) on the wire.
    assert d["temp_c"] == [25.0] * 4 and d["line_a"] == [1.0] * 3 and d["residual_ma"] == 12
    rc, out, _ = run_monitor(capsys, det, tmp_path / "m.json", "--raw", "--seconds", "1", "watch")
    assert rc == 0 and out[0]["temp_dc"] == [250] * 4 and "temp_c" not in out[0]


# -- issue 11: the WiFi RSSI, by the link_status command -----------------------------------------
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (-61, {"link": "wifi", "rssi_dbm": -61}),
        (1, {"link": "wifi_disconnected", "rssi_dbm": None}),
        (0, {"link": "not_wifi", "rssi_dbm": None}),
    ],
)
def test_link_status_prints_the_rssi_in_dbm(det, capsys, tmp_path, value, shown):
    sent: list[dict] = []

    def answer(fields, counter):
        sent.append(fields)
        return [(0, det.result(counter, "link_status", value=value))]

    det.on_command = answer
    rc, out, err = run_monitor(capsys, det, tmp_path / "m.json", "link-status")
    assert rc == 0, err
    assert sent == [{"cmd": "link_status"}]
    assert out == [shown]
    rc, out, err = run_monitor(capsys, det, tmp_path / "m.json", "--raw", "link-status")
    assert rc == 0, err
    assert [(d["type"], d["cmd"], d["value"]) for d in out] == [("result", "link_status", value)]
