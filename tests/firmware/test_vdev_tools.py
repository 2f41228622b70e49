"""Issue 13's first-hour frictions with the virtual detector and the deploy tools, on the real
firmware (unix port, ptys, real mpremote): provisioning takes effect without a manual reboot,
`ctl` works without --state and refuses bad input, a scenario's last window is held, a deploy
to the wrong port says so at once, `--key-file`, and mpremote's `fs ls` and `reset`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.firmware.conftest import DEVICE, KEY, ROOT
from tests.firmware.test_e2e import wait_for
from tools import deploy, keys, virtual_device
from tools.monitor import HostLink

pytestmark = pytest.mark.micropython

NEW_KEY = bytes(range(200, 232))


def run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_provision_then_command_without_a_manual_reboot(vdev_factory, tmp_path):
    v = vdev_factory()
    key_file = tmp_path / "new.hex"
    keys.write_new(key_file, NEW_KEY.hex())
    p = run(
        "-m", "tools.deploy", v.state["console"], "--provision", "--device", hex(DEVICE),
        "--key-file", str(key_file),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "restarted" in p.stdout
    # Right away, as `monitor get-config` would: the firmware runs under the new key.
    link = HostLink(v.state["link"], DEVICE, NEW_KEY)
    res = link.command({"cmd": "get_config"})
    assert res is not None and res["status"] == "ok", "no answer under the new key"
    assert v.state["boots"] == 2  # one restart, by the provisioning


def test_ctl_with_the_default_state_file(vdev_factory, tmp_path):
    # No --state: the supervisor writes FLASH.state.json, where ctl looks by default.
    v = vdev_factory(state=False)
    assert v.state_path == tmp_path / "flash.state.json"
    p = run("-m", "tools.virtual_device", "ctl", "--flash", str(v.flash), "res", "400")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "virtual device: residual 400 mA"
    # Plain `make virtual-device` and plain `ctl` agree: both default to the same flash folder.
    ap_flash = virtual_device.DEFAULT_FLASH
    assert virtual_device.state_path(ap_flash) == ap_flash.parent / "vdev-flash.state.json"
    # Gone with the device: ctl then says so instead of waiting.
    v.close()
    assert not v.state_path.exists()
    p = run("-m", "tools.virtual_device", "ctl", "--flash", str(v.flash), "res", "400")
    assert p.returncode == 1 and "no virtual device" in p.stderr


@pytest.mark.parametrize(
    ("words", "says"),
    [
        (["res", "abc"], "res: abc is not a level in mA"),
        (["foo", "1"], "unknown command foo"),
        (["temp", "9", "50"], "temp: no channel 9 (0..3)"),
        (["res", "99999"], "above the residual input's full scale, 1447 mA"),  # the device's
        (["phase", "1", "200"], "above the phase input's full scale, 144.74 A"),
        (["temp", "0", "500"], "not a temperature in -10..179.5 degC"),
        (["arc", "101"], "(0..100)"),  # two a mains cycle at the device's 50 Hz
        (["button", "twice"], "wrong arguments"),
        (["feed", "/nonexistent.feed"], "does not exist"),
    ],
)
def test_ctl_rejects_bad_input(vdev_factory, words, says):
    v = vdev_factory()
    p = run("-m", "tools.virtual_device", "ctl", "--state", str(v.state_path), *words)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert says in p.stderr and p.stdout == ""
    assert "Traceback" not in p.stderr


def test_ctl_reports_what_it_did(vdev_factory):
    v = vdev_factory()
    link = HostLink(v.state["link"], DEVICE, KEY)
    p = run("-m", "tools.virtual_device", "ctl", "--state", str(v.state_path), "res", "420")
    assert p.returncode == 0 and p.stdout == "virtual device: residual 420 mA\n", p.stderr
    alarm = wait_for(link, lambda d: d["type"] == "event" and d["kind"] == "alarm", 15)
    assert alarm["channel"] == "residual" and 400 <= alarm["value"] <= 440
    assert v.ctl_wait("temp", "2", "36.5") == "temp2 36.5 degC"
    assert v.ctl_wait("phase", "0", "12.5") == "phase0 12.5 A"


SCENARIO = (
    """
[scenario]
name = "hold"
duration_s = 4

[[residual]]
t0 = 0
t1 = 4
rms_ma = 250
noise_ma = 1
"""
    + "".join(f"\n[[phase]]\nchannel = {ch}\nt0 = 0\nt1 = 4\nrms_a = 20\n" for ch in range(3))
    + "".join(
        f"\n[[temperature]]\nchannel = {ch}\nt0 = 0\nt1 = 4\nstart_c = 40\n" for ch in range(4)
    )
)


def test_feed_end_holds_the_last_window(vdev_factory, tmp_path):
    """250 mA (a pre-alarm: 70 % of the 300 mA set value) for the 4 s of the scenario; after it
    the detector must keep seeing 250 mA, 20 A, 40 degC, not the built-in generator's 50 mA,
    10 A, 25 degC (which raised a spurious `clear`)."""
    scn = tmp_path / "hold.toml"
    scn.write_text(SCENARIO)
    v = vdev_factory("--scenario", str(scn))
    link = HostLink(v.state["link"], DEVICE, KEY)
    pre = wait_for(link, lambda d: d["type"] == "event" and d["kind"] == "prealarm", 20)
    assert pre["channel"] == "residual"
    # Well past the scenario's end (4 s after boot): a POLL a second, every frame kept.
    tele = []
    end = time.monotonic() + 9
    while time.monotonic() < end:
        link.poll()
        tele += [d for d in link.pump(1.0) if d["type"] == "telemetry"]
    assert not [e for e in link.events if e["kind"] == "clear"], link.events
    last = tele[-1]
    assert 240 <= last["residual_ma"] <= 260, last
    assert all(1900 <= a <= 2100 for a in last["line_ca"]), last  # 0.01 A
    assert all(390 <= t <= 410 for t in last["temp_dc"]), last  # 0.1 degC


def test_deploy_to_the_link_pty_says_which_port_to_use(vdev_factory):
    v = vdev_factory()
    st = v.state
    t0 = time.monotonic()
    p = run("-m", "tools.deploy", st["link"], timeout=30)
    took = time.monotonic() - t0
    assert p.returncode != 0
    assert took < 10, took  # was: 120 s of silence, then "mpremote timed out"
    assert "LINK port" in p.stderr and f"PORT={st['console']}" in p.stderr, p.stderr
    # The link keeps working for the protocol afterwards.
    link = HostLink(st["link"], DEVICE, KEY)
    res = link.command({"cmd": "get_config"})
    assert res is not None and res["status"] == "ok"


def test_key_file_instead_of_key(vdev_factory, tmp_path):
    key_file = tmp_path / "k.hex"
    keys.write_new(key_file, KEY.hex())
    v = vdev_factory(key_file=key_file)
    ident = json.loads((v.flash / "identity.json").read_text())
    assert ident == {"device": DEVICE, "key": KEY.hex()}
    ps = Path(f"/proc/{v.proc.pid}/cmdline").read_bytes().split(b"\0")
    assert KEY.hex().encode() not in ps  # the key is not on the command line


def test_mpremote_fs_ls_sizes_and_reset(vdev_factory):
    v = vdev_factory()
    con = v.state["console"]
    out = deploy.run_mp(con, "fs", "ls")
    sizes = {ln.split()[1]: int(ln.split()[0]) for ln in out.splitlines()[1:] if ln.strip()}
    assert sizes["identity.json"] == (v.flash / "identity.json").stat().st_size > 0
    assert sizes["main.py"] == (v.flash / "main.py").stat().st_size
    assert sizes["lib/"] == 0
    # `mpremote reset` (machine.reset(), as on a board): a hard reset. (The link is opened
    # first: opening a pty flushes what it holds, a HELLO sent before included.)
    link = HostLink(v.state["link"], DEVICE, KEY)
    deploy.run_mp(con, "reset", timeout=30)
    v.wait_boots(2)
    hello = wait_for(link, lambda d: d["type"] == "hello", 20)
    assert hello["reset_cause"] == "hard"
