"""`python -m tools.gateway update` (issue 11): the real CLI rolls a signed image out over
loopback UDP to detectors running the real firmware (unix port), in waves, records each
device's result and version in the database, and stops after the first wave with a failure."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.firmware import otadev
from tests.firmware.udpdev import UdpDevice, free_port
from tools import fwimage
from tools.gateway.update import waves

pytestmark = pytest.mark.micropython
ROOT = Path(__file__).resolve().parents[2]


def test_waves_split():
    assert waves(list(range(7)), [1, 2]) == [[0], [1, 2], [3, 4], [5, 6]]
    assert waves([1, 2], [5]) == [[1, 2]]


UDP = ["--udp", "127.0.0.1:0", "--addr", "0x100=127.0.0.1:9"]


@pytest.mark.parametrize(
    "mistake, words",
    [
        (["--registry", "/nonexistent.csv", "--serial", "/dev/null"], "cannot read registry"),
        (["--serial", "/nonexistent-tty"], "/nonexistent-tty"),
        ([*UDP, "--db", "/nonexistent/dir/gw.db"], "/nonexistent/dir"),
        ([*UDP, "--db", "postgresql://u:secret@127.0.0.1:1/x"], "u:***@"),
        (["--udp", "127.0.0.1:0"], "no UDP address for 0x00000100"),
        (["--serial", "/dev/null", "--waves", "1,x"], "invalid literal"),
    ],
)
def test_update_user_mistakes_exit_cleanly(tmp_path, mistake, words):
    """A valid signed image, then one mistake in what goes with it: one line, exit 2, nothing
    sent, never a traceback (nor a password)."""
    image = fwimage.build(otadev.vendor_key(), (0, 2, 0), "x64", confirm=20)
    (tmp_path / "u.efu").write_bytes(image)
    reg = tmp_path / "fleet.csv"
    reg.write_text(f"device,name,key\n256,d,{otadev.KEY.hex()}\n")
    args = ["--registry", str(reg), "--devices", "0x100"]
    if "--registry" in mistake:
        args = ["--devices", "0x100"]
    cmd = [sys.executable, "-m", "tools.gateway", "update", str(tmp_path / "u.efu"), *args]
    r = subprocess.run(cmd + mistake, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "secret" not in r.stderr
    assert "error:" in r.stderr and words in r.stderr, r.stderr


def _device(tmp: Path, name: str, device: int, image: Path, host_port: int) -> UdpDevice:
    fl = otadev.make_flash(tmp / name, image)
    from tools import provisioning

    for fname, text in provisioning.files(device, otadev.KEY.hex()).items():
        (fl / fname).write_text(text)
    return UdpDevice(fl, host_port)


def test_rollout_in_waves_over_udp_stops_on_a_failure(tmp_path):
    with_key = otadev.build_image(tmp_path / "img")
    no_key = tmp_path / "img_nokey"  # a detector deployed without the vendor key refuses
    from tools import fwbuild

    fwbuild.build("x64", no_key)
    image = fwimage.build(otadev.vendor_key(), (0, 2, 0), "x64", confirm=20)
    (tmp_path / "u.efu").write_bytes(image)
    ids = [0x100, 0x101, 0x102, 0x103]
    reg = tmp_path / "fleet.csv"
    reg.write_text("device,name,key\n" + "".join(f"{d},d{d},{otadev.KEY.hex()}\n" for d in ids))
    host_port = free_port()
    devs = [
        _device(tmp_path, "d0", ids[0], with_key, host_port),
        _device(tmp_path, "d1", ids[1], with_key, host_port),
        _device(tmp_path, "d2", ids[2], no_key, host_port),
        _device(tmp_path, "d3", ids[3], with_key, host_port),
    ]
    db = tmp_path / "gw.db"
    try:
        cmd = [sys.executable, "-m", "tools.gateway", "update", str(tmp_path / "u.efu"),
               "--registry", str(reg), "--devices", ",".join(hex(d) for d in ids),
               "--udp", f"127.0.0.1:{host_port}", "--waves", "1,2", "--db", str(db), "--json",
               "--wait", "0.5", "--ahead", "3600"]  # fmt: skip
        for d, v in zip(ids, devs, strict=True):
            cmd += ["--addr", f"{hex(d)}=127.0.0.1:{v.dev_port}"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT)
    finally:
        for v in devs:
            v.close()
    assert r.returncode == 1 and r.stdout, r.stdout + r.stderr
    res = {int(x["device"], 16): x for x in json.loads(r.stdout)}
    # wave 1: 0x100 ok; wave 2: 0x101 ok, 0x102 refuses (no vendor key): stop; 0x103 never starts
    assert set(res) == {0x100, 0x101, 0x102}, r.stderr
    assert res[0x100]["ok"] and res[0x101]["ok"] and res[0x100]["fw_after"] == "0.2.0"
    assert (res[0x102]["ok"], res[0x102]["error"]) == (False, "no_key")
    assert "wave 1/3" in r.stderr and "stopped: 1 device(s) failed in wave 2" in r.stderr
    assert "1 device(s) not started" in r.stderr and "confirmed: runs 0.2.0" in r.stderr
    assert "sending 50 %" in r.stderr  # progress
    con = sqlite3.connect(db)
    rows = con.execute("SELECT device, ok, state, error, fw_after FROM updates ORDER BY device")
    assert [tuple(x) for x in rows] == [
        (0x100, 1, "confirmed", "", "0.2.0"),
        (0x101, 1, "confirmed", "", "0.2.0"),
        (0x102, 0, "failed", "no_key", None),
    ]
    assert json.loads((devs[0].flash / "fw.json").read_text())["run"] == "lib_b"
    assert not (devs[3].flash / "fw.json").exists()


def test_serial_link_exchange_over_a_pty():
    """The RS-485/UART link of the rollout: a frame out (after a 0x00), the answering frames
    read back until an UPDATE_STATUS; frames of other devices and noise are skipped."""
    import os
    import pty
    import threading
    import tty

    from protocol import frame as fr
    from protocol import messages as M
    from protocol.auth import Key
    from tools.gateway.update import SerialLink

    master, slave = pty.openpty()
    tty.setraw(slave)
    link = SerialLink(os.ttyname(slave), 9600)
    enc = fr.Encoder(0x100, Key(bytes(32)), iter(range(1, 100)).__next__)
    other = fr.Encoder(0x200, Key(bytes(32)), iter(range(1, 100)).__next__)
    status = {"state": "idle", "result": "ok", "image": 7, "have": 0, "size": 0, "fw": [0, 1, 0]}
    got_down: list[bytes] = []

    def detector() -> None:
        buf = b""
        while b"\x00" not in buf.lstrip(b"\x00"):
            buf += os.read(master, 512)
        got_down.append(buf)
        os.write(master, other.message(M.UPDATE_STATUS, 0, status, auth=True))  # not ours
        os.write(master, b"\x13\x37noise\x00")
        tele = {"residual_ma": 1, "temp_dc": [0] * 4, "line_ca": [0] * 3, "status": 0}
        os.write(master, enc.message(M.TELEMETRY, 0, tele))
        os.write(master, enc.message(M.UPDATE_STATUS, 0, status, auth=True))

    t = threading.Thread(target=detector, daemon=True)
    t.start()
    try:
        wire = enc.message(M.UPDATE, 0, {"op": "status", "image": 7}, auth=True)
        frames = link.exchange(0x100, wire, 2.0)
    finally:
        link.close()
        os.close(master)
        os.close(slave)
    t.join(2)
    assert got_down and got_down[0].lstrip(b"\x00") == wire
    assert [f.type for f in frames] == [M.TELEMETRY, M.UPDATE_STATUS]
    assert frames[-1].fields["image"] == 7
