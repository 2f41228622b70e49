"""End to end with the real tools: virtual detector, mpremote deploy, leakage, pyserial link."""

from __future__ import annotations

import json
import time

import pytest

from tests.firmware.conftest import DEVICE, KEY
from tools import deploy, monitor
from tools.monitor import HostLink

pytestmark = pytest.mark.micropython


def wait_for(link: HostLink, pred, timeout: float, poll: bool = False):
    end = time.monotonic() + timeout
    next_poll = 0.0
    while time.monotonic() < end:
        if poll and time.monotonic() >= next_poll:
            link.poll()
            next_poll = time.monotonic() + 1.0
        for d in link.pump(0.1):
            if pred(d):
                return d
    raise AssertionError(f"timed out; frames seen: {link.frames[-5:]}")


def test_deploy_alarm_reset_and_unauthenticated_refusal(vdev_factory):
    v = vdev_factory(blank=True)  # empty flash: nothing but identity.json
    st = v.state
    # The link is open before the reboot, as a gateway's is: the HELLO the firmware sends as
    # it boots waits in the port's buffer. (Opened after the reboot, a HELLO sent before was
    # lost now and then: issue 17's flaky run.)
    link = HostLink(st["link"], DEVICE, KEY)
    sizes = deploy.deploy(st["console"])  # real mpremote: auto arch (x64), cp, soft reset
    assert "main.py" in sizes and any(k.endswith(".mpy") for k in sizes)
    v.wait_boots(2)
    assert (v.flash / "lib" / "app" / "run.mpy").exists()

    hello = wait_for(link, lambda d: d["type"] == "hello", 20)
    assert hello["reset_cause"] == "soft"

    v.ctl("res", "400")  # leakage above the 300 mA set value
    alarm = wait_for(link, lambda d: d["type"] == "event" and d["kind"] == "alarm" and d["new"], 15)
    assert alarm["channel"] == "residual" and alarm["value"] >= 300
    v.ctl("res", "50")  # the leakage is gone; the alarm stays latched (GB 14287)
    tele = wait_for(link, lambda d: d["type"] == "telemetry" and d["residual_ma"] < 100, 10, True)
    assert tele["status"] & 1, "alarm must stay latched until reset"

    # Unauthenticated reset: the detector answers nothing (SPEC.md §7.3) and stays latched.
    assert link.command({"cmd": "reset", "channel": "all"}, timeout=3, auth=False) is None
    tele = wait_for(link, lambda d: d["type"] == "telemetry", 5, True)
    assert tele["status"] & 1

    res = link.command({"cmd": "reset", "channel": "all"})
    assert res is not None and res["status"] == "ok"
    wait_for(link, lambda d: d["type"] == "event" and d["kind"] == "reset", 10)
    tele = wait_for(link, lambda d: d["type"] == "telemetry", 5, True)
    assert not tele["status"] & 1, "authenticated reset clears the latch"
    # The simulator's link is not WiFi (no --rssi): link_status says so, value 0 (SPEC.md §5.9).
    res = link.command({"cmd": "link_status"})
    assert res is not None and (res["status"], res["value"]) == ("ok", 0)


def test_mip_install_from_package_json(vdev_factory):
    v = vdev_factory(blank=True)

    pkg = deploy.ROOT / "firmware" / "package.json"
    out = deploy.run_mp(v.state["console"], "mip", "install", "--target", "lib", str(pkg))
    assert "Installing" in out
    for rel in ("lib/efd/detector.py", "lib/app/run.py", "lib/protocol/frame.py"):
        assert (v.flash / rel).exists(), rel
    # The installed sources import and run on the device.
    out = deploy.run_mp(
        v.state["console"],
        "exec",
        "import sys; sys.path.append('lib'); "
        "from efd.detector import Detector; from app import settings; print('ok')",
    )
    assert "ok" in out


def test_commands_selftest_set_config_snapshot_reboot(vdev_factory, tmp_path, capsys):
    # Flash preinstalled with the x64 image; the link presented as WiFi at -58 dBm.
    v = vdev_factory("--rssi", "-58")
    state = tmp_path / "monitor.json"  # the host counter, shared with tools.monitor below
    link = HostLink(v.state["link"], DEVICE, KEY, state)
    # (Its boot HELLO went out before the port was opened: wait for the firmware via a POLL.)
    wait_for(link, lambda d: d["type"] == "telemetry", 20, poll=True)
    res = link.command({"cmd": "selftest"}, timeout=10)
    assert res is not None and res["status"] == "ok" and res["value"] == 1
    wait_for(link, lambda d: d["type"] == "event" and d["kind"] == "selftest", 10)
    bad = link.command({"cmd": "set_config", "params": [["leak_set_ma", 5000]]})
    assert bad is not None and bad["status"] == "bad_argument" and bad["value"] == 2
    ok = link.command({"cmd": "set_config", "params": [["leak_set_ma", 500]]})
    assert ok is not None and ok["status"] == "ok"
    cfg = wait_for(link, lambda d: d["type"] == "config", 5)
    assert ["leak_set_ma", 500] in cfg["params"]
    snap = link.command({"cmd": "snapshot", "snap_id": 0})
    assert snap is not None and snap["status"] == "ok"
    chunk = wait_for(link, lambda d: d["type"] == "snapshot", 5)
    assert chunk["chunks"] == 3 and len(chunk["samples"]) == 96
    assert link.command({"cmd": "time_sync", "set_time": 200_000_000})["status"] == "ok"
    assert link.command({"cmd": "reboot"})["status"] == "ok"
    v.wait_boots(2)
    hello = wait_for(link, lambda d: d["type"] == "hello", 20)
    assert hello["reset_cause"] == "soft"
    # The new setting survived the reboot (persisted atomically).
    cfg = link.command({"cmd": "get_config"})
    assert cfg is not None
    cfg = wait_for(link, lambda d: d["type"] == "config", 5)
    assert ["leak_set_ma", 500] in cfg["params"]
    # The WiFi RSSI (issue 11) through the monitor's link-status, in dBm.
    link.ser.close()
    rc = monitor.main(
        [v.state["link"], "--device", hex(DEVICE), "--key", KEY.hex(), "--state", str(state),
         "link-status"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0 and json.loads(out.splitlines()[-1]) == {"link": "wifi", "rssi_dbm": -58}, out


def test_watchdog_resets_a_hung_loop(vdev_factory):
    v = vdev_factory("--wdt-s", "2")
    link = HostLink(v.state["link"], DEVICE, KEY)
    wait_for(link, lambda d: d["type"] == "telemetry", 20, poll=True)
    v.ctl("hang")  # the main loop stops feeding the watchdog
    v.wait_boots(2, timeout=15)
    hello = wait_for(link, lambda d: d["type"] == "hello", 20)
    assert hello["reset_cause"] == "watchdog"
