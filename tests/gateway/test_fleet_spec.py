"""The fleet simulator's virtual detector follows SPEC.md where issue 12 found it did not: a HELLO
after every (simulated) reboot (§5.1, §5.9 `reboot`), the self-test EVENT (§2: kind selftest,
channel residual, value 1 pass / 0 fail, threshold 0; §5.9 `selftest`), and a `config_hash`
that is the hash of its CONFIG's canonical config (§5.1), the firmware's for the same settings."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from app import settings as fw_settings
from efd import config
from efd import events as ev
from protocol import frame as fr
from protocol import host
from protocol import messages as M
from protocol.auth import make_counter
from tests.gateway.conftest import DetectorLink
from tools.fleet.detector import VirtualDetector
from tools.gateway.core import Gateway
from tools.gateway.registry import Device, derive_key
from tools.gateway.store import Store

DEV = 11
KEY = derive_key(b"spec", DEV)


def gateway(tmp_path, det: VirtualDetector):
    st = Store(tmp_path / "gw.db", "s")
    pubs: list[tuple[str, dict]] = []
    gw = Gateway({DEV: Device(DEV, "d", "", "", "", KEY)}, st, name="s", cmd_retry=0.05,
                 publish=lambda t, p, r: pubs.append((t, json.loads(p))))  # fmt: skip
    link = DetectorLink(det)
    gw.handle(det.hello(host.now()), link)  # the first boot's HELLO: the gateway has a route
    return gw, st, link, pubs


def run(gw: Gateway, link: DetectorLink, until, timeout: float = 5.0) -> list[fr.Frame]:
    """Carry frames both ways until `until()`; -> every frame the detector sent."""
    seen = []
    t_end = time.monotonic() + timeout
    while True:
        while link.up:
            w = link.up.pop(0)
            seen.append(fr.decode(w))
            gw.handle(w, link)
        gw.tick()
        gw.flush()
        if until():
            return seen
        assert time.monotonic() < t_end, "timed out"
        time.sleep(0.005)


def canonical_hash(f: fr.Frame) -> int:
    """SPEC.md 5.1 from a CONFIG frame's own bytes: its (u8 id, i32 value) parameters, sorted by
    id, SHA-256, the first 4 bytes little-endian."""
    payload = f.raw[10 : len(f.raw) - 2 - (12 if f.tag is not None else 0)]
    pairs = sorted(payload[i : i + 5] for i in range(4, len(payload), 5))
    assert all(len(p) == 5 for p in pairs)
    return int.from_bytes(hashlib.sha256(b"".join(pairs)).digest()[:4], "little")


# -- a HELLO after every reboot ----------------------------------------------------------------
def test_reboot_command_is_answered_then_a_hello_of_the_new_boot(tmp_path):
    det = VirtualDetector(DEV, KEY)
    gw, st, link, pubs = gateway(tmp_path, det)
    c = gw.command(DEV, {"cmd": "reboot"})
    seen = run(gw, link, lambda: c.status == "done" and not link.up)
    assert [f.name for f in seen] == ["result", "hello"]  # SPEC 5.9: RESULT, reboot, HELLO
    res, hello = seen
    assert (res.fields["cmd"], res.fields["status"]) == ("reboot", "ok")
    assert res.counter >> 16 == 1 and hello.counter == make_counter(2, 1)  # a new boot count
    h = hello.fields
    assert h["boot_count"] == 2 and h["reset_cause"] == "soft" and hello.tag is not None
    assert h["config_hash"] == det.config_hash() and h["host_counter"] == c.counter
    assert det.stats.reboots == 1
    # The gateway took it: authenticated, boot count stored, republished.
    row = st.db.execute("SELECT boot_count FROM devices WHERE device=?", (DEV,)).fetchone()
    assert row == (2,)
    hellos = [p for t, p in pubs if t.endswith("/hello")]
    assert hellos[-1]["boot_count"] == 2 and hellos[-1]["authenticated"] is True
    # A second reboot: the third boot, its own HELLO.
    c = gw.command(DEV, {"cmd": "reboot"})
    seen = run(gw, link, lambda: c.status == "done" and not link.up)
    got = [(f.name, f.fields.get("boot_count")) for f in seen]
    assert got == [("result", None), ("hello", 3)]
    st.close()


def test_a_retransmitted_reboot_gets_the_cached_result_and_no_second_reboot():
    det = VirtualDetector(DEV, KEY)
    enc = fr.Encoder(DEV, det.key, None)
    cmd = enc.message(M.COMMAND, host.now(), {"cmd": "reboot"}, auth=True, counter=500)
    out = det.downlink(cmd, 0.0, host.now())
    assert [fr.decode(w).name for w in out] == ["result", "hello"]
    again = det.downlink(cmd, 0.0, host.now())  # the RESULT was lost: the host sends it again
    assert again == [out[0]] and det.boot == 2 and det.stats.reboots == 1


def test_polled_detector_sends_its_hello_at_the_next_poll():
    """On RS-485 one frame per frame addressed to it (SPEC 9): the RESULT answers the COMMAND,
    the new boot's HELLO the next POLL."""
    det = VirtualDetector(DEV, KEY, polled=True)
    enc = fr.Encoder(DEV, det.key, None)
    cmd = enc.message(M.COMMAND, host.now(), {"cmd": "reboot"}, auth=True, counter=600)
    assert [fr.decode(w).name for w in det.downlink(cmd, 0.0, host.now())] == ["result"]
    poll = enc.message(M.POLL, host.now(), {})
    (w,) = det.downlink(poll, 0.0, host.now())
    f = fr.decode(w)
    assert f.name == "hello" and f.fields["boot_count"] == 2


def test_reboot_keeps_the_event_in_flight_and_the_boot_count_never_wraps():
    det = VirtualDetector(DEV, KEY, boot_count=0xFFFF)
    det.raise_event(ev.ALARM, ev.RESIDUAL, 320, 300)  # not yet acknowledged
    ev_wire = det.uplink(0.0, host.now())
    hello = fr.decode(det.reboot(host.now()))
    assert hello.fields["boot_count"] == 0xFFFF  # rule W: at the last boot count it stays
    assert det.inflight is not None and det.inflight.wire == ev_wire  # same bytes (SPEC 8)
    assert det.uplink(10.0, host.now()) == ev_wire


# -- the self-test EVENT -----------------------------------------------------------------------
def test_selftest_command_sends_the_selftest_event(tmp_path):
    det = VirtualDetector(DEV, KEY)
    residual = det.values[0]
    gw, st, link, pubs = gateway(tmp_path, det)
    c = gw.command(DEV, {"cmd": "selftest"})
    seen = run(gw, link, lambda: c.status == "done" and not link.up)
    res = next(f for f in seen if f.name == "result")
    assert (res.fields["cmd"], res.fields["status"], res.fields["value"]) == ("selftest", "ok", 1)
    # The EVENT goes out with the detector's next uplink (stop-and-wait, SPEC 8).
    gw.handle(det.uplink(time.monotonic(), host.now()) or b"", link)
    gw.flush()
    rows = st.db.execute("SELECT kind, channel, value, threshold FROM events").fetchall()
    assert rows == [("selftest", "residual", 1, 0)]  # SPEC 2: channel 0, 1 pass, threshold 0
    assert det.inflight is None and det.stats.acked == 1  # ACKed by the gateway
    evs = [p for t, p in pubs if t.endswith("/event")]
    assert evs and evs[0]["kind"] == "selftest" and evs[0]["value"] == 1
    assert det.values[0] == residual  # the self-test does not change the readings
    st.close()


# -- config_hash -------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [{}, {"leak_set_ma": 500, "temp_delay_s": 10}])
def test_config_hash_is_the_canonical_configs_and_the_firmwares(overrides):
    det = VirtualDetector(DEV, KEY, settings=overrides)
    hello = fr.decode(det.hello(host.now()))
    cfg = fr.decode(det.config_frame(host.now()))
    # The CONFIG carries every parameter the detector knows (SPEC 5.1), in id order.
    assert [n for n, _v in cfg.fields["params"]] == list(config.NAMES)
    assert [host.PARAMS.index(n) for n, _v in cfg.fields["params"]] == list(
        range(1, len(config.NAMES) + 1)
    )
    want = canonical_hash(cfg)
    assert hello.fields["config_hash"] == cfg.fields["config_hash"] == want
    assert want == fw_settings.config_hash(config.make(overrides))  # the firmware's function
    assert want != 0


def test_config_hash_follows_set_config_and_the_next_hello(tmp_path):
    det = VirtualDetector(DEV, KEY)
    gw, st, link, _pubs = gateway(tmp_path, det)
    before = det.config_hash()
    c = gw.command(DEV, {"cmd": "set_config", "params": [["leak_set_ma", 450]]})
    seen = run(gw, link, lambda: c.status == "done" and not link.up)
    cfg = next(f for f in seen if f.name == "config")
    assert cfg.fields["config_hash"] == canonical_hash(cfg) != before
    assert cfg.fields["config_hash"] == fw_settings.config_hash(config.make({"leak_set_ma": 450}))
    stored = st.db.execute("SELECT config_hash FROM configs").fetchone()[0]
    assert stored == cfg.fields["config_hash"]
    c = gw.command(DEV, {"cmd": "reboot"})
    seen = run(gw, link, lambda: c.status == "done" and not link.up)
    hello = next(f for f in seen if f.name == "hello")
    assert hello.fields["config_hash"] == cfg.fields["config_hash"]
    st.close()


def test_set_config_is_checked_all_or_none_like_the_firmware():
    det = VirtualDetector(DEV, KEY)
    enc = fr.Encoder(DEV, det.key, None)
    before = dict(det.config)
    args = {"cmd": "set_config", "params": [["leak_set_ma", 400], ["temp_set_c", 9999]]}
    cmd = enc.message(M.COMMAND, host.now(), args, auth=True, counter=700)
    (res,) = [fr.decode(w) for w in det.downlink(cmd, 0.0, host.now())]
    # bad_argument, value = the offending parameter id (SPEC 5.9); nothing applied.
    assert (res.fields["status"], res.fields["value"]) == (
        "bad_argument",
        host.PARAMS.index("temp_set_c"),
    )
    assert det.config == before
