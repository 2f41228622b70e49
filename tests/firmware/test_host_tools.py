"""Issue 13, host side without a device: the key tool, the virtual device's ctl checks (the
firmware's own app/sim_io.check, run on the host), and deploy's first contact with a port
that is not a MicroPython REPL."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
import time

import pytest

from app import sim_io
from tests.firmware.conftest import DEVICE, KEY, ROOT
from tools import deploy, keys, provisioning, virtual_device


# -- the key tool ----------------------------------------------------------------------------
def test_keys_new_makes_a_private_key_file(tmp_path, capsys, monkeypatch):
    calls = []
    real = provisioning.new_key
    monkeypatch.setattr(provisioning, "new_key", lambda: calls.append(1) or real())
    path = tmp_path / "key.hex"
    assert keys.main(["new", str(path)]) == 0
    assert calls == [1]  # the one generator (secrets), shared with deploy --new-key
    text = path.read_text()
    assert text.endswith("\n") and len(bytes.fromhex(text.strip())) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "make provision" in capsys.readouterr().out
    provisioning.check(DEVICE, text)  # what provisioning accepts


def test_keys_new_never_overwrites(tmp_path, capsys):
    path = tmp_path / "key.hex"
    path.write_text("old\n")
    assert keys.main(["new", str(path)]) == 2
    assert path.read_text() == "old\n"
    assert "exists" in capsys.readouterr().err
    assert keys.main(["new", str(tmp_path / "no" / "such" / "dir.hex")]) == 2


def test_keys_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        keys.write_new(tmp_path / "k.hex", "ab" * 32)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k.hex").stat().st_mode) == 0o600


def test_make_key(tmp_path):
    path = tmp_path / "made.hex"
    p = subprocess.run(
        ["make", "--no-print-directory", "key", f"KEY_FILE={path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    assert len(bytes.fromhex(path.read_text().strip())) == 32
    p = subprocess.run(
        ["make", "--no-print-directory", "key"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert p.returncode == 2 and "usage: make key KEY_FILE=" in p.stdout


# -- ctl: the firmware's checks, on the host --------------------------------------------------
CFG = {"res_gain_q12": 4096, "phase_gain_q12": 40960, "mains_hz": 50}


@pytest.mark.parametrize(
    ("words", "says"),
    [
        (["res", "abc"], "res: abc is not a level in mA"),
        (["res", "-5"], "res: -5 is not a level"),
        (["res", "nan"], "res: nan is not a level"),
        (["res", "inf"], "res: inf is not a level"),
        (["res"], "wrong arguments"),
        (["res", "1", "2"], "wrong arguments"),
        (["foo", "1"], "unknown command foo"),
        ([], "unknown command (none)"),
        (["temp", "9", "50"], "temp: no channel 9 (0..3)"),
        (["temp", "1.5", "50"], "temp: no channel 1.5"),
        (["temp", "0", "x"], "temp: x is not a temperature"),
        (["phase", "3", "10"], "phase: no channel 3 (0..2)"),
        (["arc", "2.5"], "arc: 2.5 is not a count"),
        (["button", "twice"], "wrong arguments"),
        (["hang", "now"], "wrong arguments"),
    ],
)
def test_ctl_check_refuses(words, says):
    for cfg in (None, CFG):
        with pytest.raises(ValueError) as e:
            sim_io.check(words, cfg)
        assert says in str(e.value)


def test_ctl_check_full_scale_needs_the_device_settings():
    # Without the device's gains (the host) a level is not refused for its size...
    assert sim_io.check(["res", "99999"]) == ("res", 0, 99999)
    # ...the device refuses it with its own full scale, at its own gain.
    with pytest.raises(ValueError, match="above the residual input's full scale, 1447 mA"):
        sim_io.check(["res", "99999"], CFG)
    assert sim_io.check(["res", "1447"], CFG) == ("res", 0, 1447)
    big = dict(CFG, res_gain_q12=8192)
    assert sim_io.check(["res", "2000"], big) == ("res", 0, 2000)
    assert sim_io.check(["phase", "2", "144.74"], CFG) == ("phase", 2, 14474)
    with pytest.raises(ValueError, match=r"144\.74 A"):
        sim_io.check(["phase", "2", "144.75"], CFG)
    assert sim_io.check(["arc", "120"]) == ("arc", 0, 120)
    with pytest.raises(ValueError, match=r"\(0\.\.100\)"):
        sim_io.check(["arc", "120"], CFG)  # two a mains cycle at 50 Hz
    assert sim_io.check(["temp", "3", "-2.5"], CFG) == ("temp", 3, -25)
    assert sim_io.check(["button", "long"], CFG) == ("button", 0, 2)


def test_ctl_cli_refuses_before_contacting_anyone(tmp_path, capsys):
    missing = str(tmp_path / "none.json")
    for words in (["res", "abc"], ["foo", "1"], ["temp", "9", "50"]):
        assert virtual_device.main(["ctl", "--state", missing, *words]) == 2
        assert "error:" in capsys.readouterr().err
    assert virtual_device.main(["ctl", "--state", missing, "res", "400"]) == 1
    assert "no virtual device" in capsys.readouterr().err


def test_ctl_default_state_is_the_supervisors(monkeypatch):
    got = []
    monkeypatch.setattr(virtual_device, "ctl", lambda state, words, timeout: got.append(state))
    virtual_device.main(["ctl", "res", "400"])
    assert got == [str(virtual_device.state_path(virtual_device.DEFAULT_FLASH))]


def test_key_and_key_file_exclusive(tmp_path, capsys):
    kf = tmp_path / "k.hex"
    kf.write_text(KEY.hex())
    with pytest.raises(SystemExit) as e:
        virtual_device.main(["--device", "1", "--key", KEY.hex(), "--key-file", str(kf)])
    assert e.value.code == 2 and "not both" in capsys.readouterr().err
    kf.write_text("12")
    with pytest.raises(SystemExit) as e:
        virtual_device.main(["--device", "1", "--key-file", str(kf)])
    assert e.value.code == 2 and "64 hex digits" in capsys.readouterr().err


# -- deploy's first contact ------------------------------------------------------------------
def test_missing_port_is_not_in_use(capsys):
    t0 = time.monotonic()
    with pytest.raises(SystemExit) as e:
        deploy.main(["/dev/ttyUSB-efd-none"])
    assert time.monotonic() - t0 < 2
    msg = str(e.value.code)
    assert "does not exist" in msg and "in use" not in msg and "console" in msg


def _fake_port(answer: bytes | None):
    """A pty standing for a serial device: answers `answer` once it hears Ctrl-A (None:
    never answers)."""
    m, s = os.openpty()
    os.set_blocking(m, False)
    stop = threading.Event()

    def serve():
        got = b""
        while not stop.is_set():
            try:
                got += os.read(m, 256)
            except (BlockingIOError, OSError):
                time.sleep(0.02)
                continue
            if answer is not None and b"\x01" in got:
                os.write(m, answer)
                got = b""

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return os.ttyname(s), (m, s, stop, t)


def _close(h):
    m, s, stop, t = h
    stop.set()
    t.join()
    os.close(m)
    os.close(s)


def test_silent_port_fails_fast_with_a_hint():
    name, h = _fake_port(None)
    try:
        t0 = time.monotonic()
        with pytest.raises(SystemExit) as e:
            deploy.first_contact(name, timeout=1.0)
        assert time.monotonic() - t0 < 3
    finally:
        _close(h)
    msg = str(e.value.code)
    assert "no MicroPython REPL answered" in msg and "nothing came back" in msg
    assert "console" in msg


def test_port_sending_frames_is_called_the_link():
    from tools.monitor import HostLink

    class _Sink:  # HostLink's serial port: keeps what it writes
        data = b""

        def write(self, b: bytes) -> None:
            self.data += b

        def read(self, n: int) -> bytes:
            return b""

    sink = _Sink()
    HostLink(sink, DEVICE, KEY).poll()  # a real frame (any valid one will do)
    name, h = _fake_port(sink.data * 2)
    try:
        with pytest.raises(SystemExit) as e:
            deploy.first_contact(name, timeout=1.0)
    finally:
        _close(h)
    assert "protocol frames" in str(e.value.code) and "link" in str(e.value.code)


def test_repl_port_passes():
    name, h = _fake_port(b"\r\nraw REPL; CTRL-B to exit\r\n>")
    try:
        deploy.first_contact(name, timeout=2.0)  # no SystemExit
    finally:
        _close(h)
