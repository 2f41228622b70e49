"""Signed over-the-air update on the real firmware (x64 image, unix port, simulated clock):
transfer, signature and version rules, staging in the spare slot, trial, confirmation and
rollback, a power cut at the write points, and detection during an update. The rollout logic
(tools/gateway/update.DeviceUpdate) drives the detector through tests/firmware/otadev.py."""

from __future__ import annotations

import itertools
import json
import shutil
import struct
from pathlib import Path

import pytest

from protocol import host
from protocol import messages as M
from protocol.auth import Key
from protocol.frame import Encoder
from tests.firmware import otadev
from tools import fwimage
from tools.gateway.update import DeviceUpdate

pytestmark = pytest.mark.micropython

NEW = (0, 2, 0)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """The deployed image (0.1.0, vendor test key built in) and signed updates."""
    tmp = tmp_path_factory.mktemp("ota")
    old = otadev.build_image(tmp / "img010")
    sk = otadev.vendor_key()
    new = fwimage.build(sk, NEW, "x64", confirm=20)
    return {"old": old, "new": new, "tmp": tmp, "sk": sk}


def flash(tmp_path: Path, images) -> Path:
    return otadev.make_flash(tmp_path / "flash", images["old"])


# One host counter for every frame of these tests (the detector's marks only rise): the
# rollout's own pacing to the time floor (4 a second) is for real time, not for a simulated
# clock that runs a window per frame.
COUNTER = itertools.count(3 * 10**9).__next__


def update(dev, image, **kw):
    return DeviceUpdate(otadev.DEVICE, otadev.KEY, image, dev, wait=0, counter=COUNTER, **kw).run()


def fw_record(fl: Path) -> dict:
    return json.loads((fl / "fw.json").read_text())


def test_update_installs_confirms_and_reports_the_new_version(tmp_path, images):
    fl = flash(tmp_path, images)
    dev = otadev.Device(fl)
    dev.start()
    r = update(dev, images["new"])
    dev.stop()
    assert r.ok, r.log
    assert (r.fw_before, r.fw_after) == ([0, 1, 0], [0, 2, 0])
    assert dev.boots == [("0.1.0", "lib"), ("0.2.0", "lib_b")]
    assert fw_record(fl) == {"run": "lib_b", "image": fwimage.parse(images["new"]).id}
    assert not (fl / "upd" / "image").exists()
    # The new image's HELLO carries the new version (SPEC.md 5.1): the gateway records it.
    hellos = [f for f in dev.frames if f.type == M.HELLO]
    assert hellos and hellos[-1].fields["fw"] == [0, 2, 0]
    # The detector kept detecting: no error counted, and its longest window is reported.
    assert dev.errors == 0


def _status(dev, enc, fields, windows=2):
    dev.send(enc.message(M.UPDATE, 0, fields, auth=True))
    for f in dev.run(windows):
        if f.type == M.UPDATE_STATUS:
            return f.fields
    return None


def test_refusals_signature_downgrade_order_and_length(tmp_path, images):
    fl = flash(tmp_path, images)
    dev = otadev.Device(fl)
    dev.start()
    new = images["new"]
    img = fwimage.parse(new)
    # A flipped bit in the signature: refused once the header is in, nothing staged after it.
    bad = bytearray(new)
    bad[img.header_len - 64 + 5] ^= 0x10
    r = update(dev, bytes(bad))
    assert (r.ok, r.error) == (False, "bad_signature")
    assert not (fl / "upd" / "image").exists()
    assert r.sent <= img.header_len + host.UP_MAX_CHUNK  # never more than the header's chunks
    # Not newer: refused (the same version, an older one), unless the signed manifest allows it.
    same = fwimage.build(images["sk"], (0, 1, 0), "x64", confirm=20)
    assert update(dev, same).error == "downgrade"
    older = fwimage.build(images["sk"], (0, 0, 9), "x64", confirm=20)
    assert update(dev, older).error == "downgrade"
    # Another device's image: refused.
    other = fwimage.build(images["sk"], NEW, "x64", confirm=20, devices=[0x1111])
    assert update(dev, other).error == "bad_image"
    # Signed by another key: refused.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    forged = fwimage.build(Ed25519PrivateKey.generate(), NEW, "x64", confirm=20)
    assert update(dev, forged).error == "bad_signature"
    # A file changed after signing: its hash fails in the copy, the spare slot is wiped.
    tampered = bytearray(new)
    tampered[-3] ^= 0xFF
    assert update(dev, bytes(tampered)).error == "bad_hash"
    assert dev.boots == [("0.1.0", "lib")]  # never rebooted into any of the refused ones
    # Chunks out of order and over the declared size are refused with where to go on.
    enc = Encoder(otadev.DEVICE, Key(otadev.KEY), COUNTER)
    st = _status(dev, enc, {"op": "begin", "image": img.id, "size": len(new)})
    assert (st["state"], st["have"]) == ("receiving", 0)
    st = _status(dev, enc, {"op": "chunk", "image": img.id, "offset": 200, "data": new[200:400]})
    assert (st["result"], st["have"]) == ("bad_offset", 0)
    st = _status(dev, enc, {"op": "chunk", "image": img.id, "offset": 0, "data": new[:200]})
    assert (st["result"], st["have"]) == ("ok", 200)
    st = _status(dev, enc, {"op": "chunk", "image": img.id ^ 1, "offset": 200, "data": b"x"})
    assert (st["result"], st["have"]) == ("wrong_image", 200)
    # An untagged UPDATE is never answered nor acted on (SPEC.md 7.3).
    plain = Encoder(otadev.DEVICE)
    dev.send(plain.message(M.UPDATE, 0, {"op": "abort", "image": img.id}))
    assert not [f for f in dev.run(2) if f.type == M.UPDATE_STATUS]
    st = _status(dev, enc, {"op": "status", "image": img.id})
    assert st["have"] == 200
    # Over-length: a chunk past the declared size.
    tiny = fwimage.assemble(b"efd-update 1\n", bytes(64), [("lib/x", b"")])
    tid = fwimage.image_id(b"efd-update 1\n")
    st = _status(dev, enc, {"op": "begin", "image": tid, "size": len(tiny)})
    assert st["state"] == "receiving"
    st = _status(dev, enc, {"op": "chunk", "image": tid, "offset": 0, "data": tiny + b"xx"})
    assert st["result"] == "bad_offset" and st["have"] == 0
    # The frame decoder refuses more than 200 bytes of data in a chunk (a `length` error).
    big = enc.message(
        M.UPDATE, 0, {"op": "chunk", "image": tid, "offset": 0, "data": bytes(201)}, auth=True
    )
    dev.send(big)
    assert not [f for f in dev.run(2) if f.type == M.UPDATE_STATUS]
    # A rollout that finds another image's session (the tiny one above) takes over and ends.
    r = update(dev, new)
    assert r.ok, r.log
    dev.stop()
    assert dev.errors == 0


def test_authorised_downgrade_and_the_device_list(tmp_path, images):
    fl = flash(tmp_path, images)
    dev = otadev.Device(fl)
    dev.start()
    down = fwimage.build(
        images["sk"],
        (0, 0, 5),
        "x64",
        confirm=20,
        downgrade_from=(0, 1, 0),
        devices=[otadev.DEVICE],
    )
    r = update(dev, down)
    assert r.ok, r.log
    assert dev.boots[-1] == ("0.0.5", "lib_b")
    # The same signed downgrade does not apply to the version it produced (nor any other).
    again = fwimage.build(images["sk"], (0, 0, 4), "x64", confirm=20, downgrade_from=(0, 1, 0))
    assert update(dev, again).error == "downgrade"
    dev.stop()


def test_trial_with_errors_rolls_back(tmp_path, images):
    fl = flash(tmp_path, images)
    dev = otadev.Device(fl)
    dev.start()
    u = DeviceUpdate(otadev.DEVICE, otadev.KEY, images["new"], dev, wait=0, counter=COUNTER)
    orig = u.link.exchange
    counted = []

    def exchange(device, wire, wait):
        got = orig(device, wire, wait)
        if dev.boots[-1][0] == "0.2.0" and not counted:
            dev.add_error()  # the new image counts an error during its trial
            counted.append(1)
        return got

    u.link = type("L", (), {"exchange": staticmethod(exchange), "idle": dev.idle})()
    r = u.run()
    assert (r.ok, r.error) == (False, "rolled back to 0.1.0"), r.log
    assert dev.boots[-2:] == [("0.2.0", "lib_b"), ("0.1.0", "lib")]
    rec = fw_record(fl)
    assert rec["run"] == "lib" and rec["failed"] == "lib_b"
    dev.stop()


def test_image_that_cannot_boot_is_rolled_back_by_the_next_boot(tmp_path, images):
    """A new image whose app crashes at start: main.py reboots, boot.py rolls back."""
    tmp = images["tmp"]
    src = tmp / "broken"
    if not src.exists():
        otadev.build_image(src, NEW)
        # app/run.mpy replaced by a module that raises at import
        import subprocess

        from tools import fwbuild

        (tmp / "run.py").write_text("raise RuntimeError('broken build')\n")
        subprocess.run(
            [fwbuild.mpy_cross(), "-o", str(src / "lib/app/run.mpy"), str(tmp / "run.py")],
            check=True,
        )
    files = fwimage.lib_files(src)
    from tools.fwimage import manifest_text, mpy_code

    man = manifest_text(files, NEW, mpy_code(src / "lib"), confirm=20)
    broken = fwimage.assemble(man, fwimage.sign(images["sk"], man), files)
    fl = flash(tmp_path, images)
    dev = otadev.Device(fl)
    dev.start()
    r = update(dev, broken)
    assert not r.ok and "rolled back" in r.error, r.log
    assert dev.boots[-1] == ("0.1.0", "lib")  # the crash exited non-zero; the next boot rolled back
    assert fw_record(fl)["failed"] == "lib_b"
    dev.stop()


def test_alarm_raised_while_an_update_is_checked(tmp_path, images):
    """The detection loop runs every window during the transfer and the checks: a leakage
    alarm is reported in time and the update goes on."""
    fl = flash(tmp_path, images)
    dev = otadev.Device(fl)
    dev.start()
    new = images["new"]
    img = fwimage.parse(new)
    enc = Encoder(otadev.DEVICE, Key(otadev.KEY), COUNTER)
    st = _status(dev, enc, {"op": "begin", "image": img.id, "size": len(new)})
    have = 0
    while have < img.header_len:  # the header: the signature check starts
        st = _status(
            dev,
            enc,
            {"op": "chunk", "image": img.id, "offset": have, "data": new[have : have + 200]},
        )
        have = st["have"]
    assert st["state"] == "checking"
    dev.residual(400)  # leakage above the 300 mA set value, during the signature check
    alarm_at = None
    checking = 0
    for w in range(60):
        got = dev.run(1)
        st = _status(dev, enc, {"op": "status", "image": img.id}, windows=1)
        checking += st["state"] == "checking"
        for f in got + dev.frames[-3:]:
            if f.type == M.EVENT:  # the gateway ACKs each event (stop-and-wait, SPEC.md 8)
                ack = {"ack_type": "event", "ack_seq": f.seq, "ack_crc": f.crc}
                dev.send(enc.message(M.ACK, 0, ack, auth=True))
                if f.fields["kind"] == "alarm":
                    alarm_at = w
        if alarm_at is not None:
            break
    assert alarm_at is not None, "no alarm during the update"
    assert checking > 0  # the check was still running when the alarm went out
    # leak_delay_s is 1 s by default: the alarm is out within ~2 s (a loop here is 2 windows)
    assert alarm_at * 2 <= 24, alarm_at
    dev.stop()
    assert dev.errors == 0


def _cut_points(images, tmp_path) -> tuple[list[int], list[str]]:
    fl = otadev.make_flash(tmp_path / "count", images["old"])
    dev = otadev.Device(fl)
    dev.start()
    assert update(dev, images["new"]).ok
    dev.stop()
    steps = dev.all_steps
    # The write points: the first and the last of each of app/ota.py's steps (the first and
    # last chunk flush, file copy, ...) and, of every atomic file write (store.write_atomic:
    # open, write1, write2, flush, close, rename), a cut mid-file (write1) and the rename
    # itself. Every flash operation of a whole update is cut on LittleFS, clean and torn, in
    # tests/twin/test_ota_lfs.py.
    ota = {"session", "chunk", "verified", "rmtree", "file", "ready", "trial", "wipe"}
    pts: set[int] = set()
    for name in ota:
        idx = [i for i, x in enumerate(steps) if x == name]
        if idx:
            pts |= {idx[0] + 1, idx[-1] + 1}
    pts |= {i + 1 for i, x in enumerate(steps) if x in ("write1", "rename")}
    return sorted(pts), steps


def test_power_cut_at_every_write_point_leaves_a_bootable_detector(tmp_path, images):
    points, steps = _cut_points(images, tmp_path)
    assert len(steps) > 60 and len(points) >= 25
    for k in points:
        fl = otadev.make_flash(tmp_path / f"cut{k}", images["old"])
        dev = otadev.Device(fl)
        dev.cut_at = k
        dev.start()
        for _ in range(3):  # a cut during the trial rolls back: the next rollout succeeds
            r = update(dev, images["new"])
            if r.ok:
                break
        dev.stop()
        where = (k, steps[k - 1], dev.boots, r.log[-3:])
        assert r.ok, where
        assert 7 in dev.exits, where  # the cut happened
        # Bootable after the cut and whatever followed: every boot came up with a version
        # we built, and the detector ends on the new image, confirmed.
        assert all(v in ("0.1.0", "0.2.0") for v, _ in dev.boots), where
        assert dev.boots[-1] == ("0.2.0", "lib_b"), where
        assert fw_record(fl)["run"] == "lib_b", where
        shutil.rmtree(fl)
    seen = {steps[k - 1] for k in points}
    assert {"session", "chunk", "verified", "rmtree", "file", "ready", "trial", "wipe"} <= seen
    assert {"write1", "rename"} <= seen


def test_resume_after_losing_the_unflushed_tail(tmp_path, images):
    """LittleFS keeps a file's size only up to its last sync: cut mid-transfer, truncate the
    staging file to its last 4 KB boundary, and the rollout resumes from what is there."""
    fl = flash(tmp_path, images)
    dev = otadev.Device(fl)
    dev.start()
    new = images["new"]
    img = fwimage.parse(new)
    enc = Encoder(otadev.DEVICE, Key(otadev.KEY), COUNTER)
    st = _status(dev, enc, {"op": "begin", "image": img.id, "size": len(new)})
    have = 0
    while have < 20000:
        st = _status(
            dev,
            enc,
            {"op": "chunk", "image": img.id, "offset": have, "data": new[have : have + 200]},
        )
        if st["state"] == "checking":
            st = _status(dev, enc, {"op": "status", "image": img.id}, windows=40)
        have = st["have"]
    dev.stop()  # power cut
    p = fl / "upd" / "image"
    size = p.stat().st_size
    with open(p, "r+b") as f:
        f.truncate(size // 4096 * 4096)
    dev = otadev.Device(fl)
    dev.start()
    st = _status(dev, enc, {"op": "begin", "image": img.id, "size": len(new)})
    assert st["have"] == size // 4096 * 4096 and st["state"] == "receiving"
    r = update(dev, new)
    assert r.ok and r.sent < len(new) - 16000, r.log
    dev.stop()


@pytest.mark.parametrize(
    ("record", "tmp", "slot", "after"),
    [
        (None, None, "lib", None),
        ({"run": "lib"}, None, "lib", {"run": "lib"}),
        ({"run": "lib", "try": "lib_b", "image": 7, "confirm": 20}, None, "lib_b", "tried"),
        ({"run": "lib", "try": "lib_b", "image": 7, "confirm": 20}, "junk{", "lib_b", "tried"),
        (
            {"run": "lib", "try": "lib_b", "image": 7, "confirm": 20, "tried": 1},
            None,
            "lib",
            {"run": "lib", "failed": "lib_b", "image": 7},
        ),
        ({"run": "lib_b", "image": 7}, None, "lib_b", {"run": "lib_b", "image": 7}),
        ({"run": "lib_c"}, None, "lib", {"run": "lib_c"}),  # a slot that is not there
    ],
)
def test_boot_py_picks_the_slot_for_every_record(tmp_path, images, record, tmp, slot, after):
    """boot.py's decision for each fw.json a power cut can leave (the record is replaced
    atomically; a leftover fw.json.tmp from a cut before the rename is ignored)."""
    fl = flash(tmp_path, images)
    shutil.copytree(fl / "lib", fl / "lib_b")
    if record is not None:
        (fl / "fw.json").write_text(json.dumps(record))
    if tmp is not None:
        (fl / "fw.json.tmp").write_text(tmp)
    dev = otadev.Device(fl)
    dev.start()
    dev.run(1)
    dev.stop()
    assert dev.boots == [("0.1.0", slot)]
    if after == "tried":
        assert fw_record(fl) == dict(record, tried=1)
    elif after is not None:
        assert fw_record(fl) == after


def test_update_status_layout():
    """UPDATE_STATUS is 17 bytes: state, error, image, have, size, fw (SPEC.md 12)."""
    enc = Encoder(1, Key(bytes(32)), lambda: 1)
    w = enc.message(
        M.UPDATE_STATUS,
        0,
        {"state": "ready", "result": "ok", "image": 1, "have": 2, "size": 3, "fw": [4, 5, 6]},
        auth=True,
    )
    from protocol import frame as fr

    f = fr.decode(w)
    assert f.ok and len(f.raw) == 12 + 17 + 12
    assert struct.unpack_from("<BBIIIBBB", f.raw, 10) == (3, 0, 1, 2, 3, 4, 5, 6)
