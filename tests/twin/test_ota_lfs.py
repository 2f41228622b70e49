"""The signed update's staging, slot switch, trial and confirmation (firmware/lib/app/ota.py,
fwslot.py, boot.py) on LittleFS on the board twin's NOR flash model, under the MicroPython
binary, with the power cut at every flash program and erase of a whole update (once cleanly,
once torn): LittleFS loses what was not synced and renames atomically, which the unix port's
files (tests/firmware/test_ota.py) do not show. After every cut boot.py must choose a slot
whose files are all there and intact (the old image's or the new one's), and the update,
resumed by the host, must end on the new image, confirmed."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest

from tests import mpy
from tools import fwimage

pytestmark = pytest.mark.micropython
BOARD = mpy.ROOT / "tools" / "twin" / "board"
BOOT_PY = (mpy.ROOT / "firmware" / "boot.py").read_text()

SCRIPT = """
import json, os, struct, sys, vfs
import flash
from flash import Flash, PowerCut
from protocol import frame as fr
from protocol.auth import Key
import app

class VK:
    KEY = {pub!r}

app.vendor_key = VK  # what fwbuild builds into the image (app/vendor_key.py)
# Everything imported before the LittleFS is mounted and made the cwd (the modules come from
# the host's filesystem); app.ota lets go of its module when idle: put back before each use.
from app import ed25519, fwslot, ota, store
from protocol import host

OTA = ota

IMAGE = {image!r}
ID = {img_id}
OLD = {old!r}
NEW = {new!r}
BOOT = {boot!r}
BASE = {base!r}
WORK = {work!r}
clock = [0]


def charge(us):
    clock[0] += us


class Hal:
    def time(self):
        return 0

    def ticks_ms(self):
        return 0


class Link:
    pass


class App:
    def __init__(self, upd=None):
        self.upd = upd
        self.errors = 0
        self.reboot_at = -1
        self.hal = Hal()
        self.link = Link()
        self.link.enc = fr.Encoder(0x12345678, Key(bytes(32)), lambda: 1)


FL = [None]


def mount(path):
    fl = Flash(path, blocks=48, charge=charge)
    flash.mount(fl, "/fl")
    os.chdir("/fl")
    FL[0] = fl
    return fl


def powered():
    # The power is gone once the cut operation ran; LittleFS may report that operation as an
    # error (OSError 28 after a torn program) which the firmware handles and goes on: the
    # real CPU stops with the power, so does this one.
    if FL[0].dead:
        raise PowerCut(1)


def unmount():
    os.chdir("/")
    vfs.umount("/fl")


def boot():
    # boot.py as the board runs it (it records a trial, rolls back, picks the slot)
    g = {{}}
    exec(BOOT, g)
    return g["_slot"]() if "_s" not in g else g["_s"]


def intact(slot):
    files = OLD if slot == "lib" else NEW
    for name, data in files.items():
        try:
            with open(slot + name[3:], "rb") as f:
                if f.read() != data:
                    return name + " differs"
        except OSError:
            return name + " missing"
    return None


def send(a, p):
    u = a.upd
    sys.modules["app.ota"] = OTA
    app.ota = OTA
    if u is None or type(u) is int:
        w = OTA.handle(a, p, 0)
    else:
        w = u.answer(p, 0)
    powered()
    f = fr.decode(w, True)
    u = a.upd
    if u is not None and type(u) is not int:
        u.tick()  # the window's slice
        powered()
    return f.fields


def life():
    # One boot and what the host and the detector do until the next reboot. -> "done" when
    # the new image runs confirmed.
    slot = boot()
    bad = intact(slot)
    if bad:
        return "slot " + slot + ": " + bad
    st = fwslot.state()
    if st.get("run") == "lib_b" and not st.get("try"):
        return "done"
    a = App(fwslot.trial_windows() or None)
    if type(a.upd) is int:
        fwslot.confirm(a)  # its windows ran without error
        return "reboot"
    p = struct.pack("<BII", 1, ID, len(IMAGE))
    for _ in range(3000):
        f = send(a, p)
        s = f["state"]
        if f["result"] in ("bad_signature", "downgrade", "bad_image", "bad_hash", "no_key"):
            return "refused " + f["result"]
        if s == "receiving":
            h = f["have"]
            p = struct.pack("<BII", 2, ID, h) + IMAGE[h : h + 200]
        elif s == "checking":
            p = struct.pack("<BI", 3, ID)
        elif s == "ready":
            p = struct.pack("<BI", 4, ID)
        elif s == "trial":
            return "reboot"
        else:
            p = struct.pack("<BII", 1, ID, len(IMAGE))
    return "stuck " + str(f)


def copy(src, dst):
    with open(src, "rb") as a, open(dst, "wb") as b:
        while True:
            d = a.read(4096)
            if not d:
                break
            b.write(d)


# The base: a LittleFS with the deployed image in lib/.
try:
    os.remove(BASE)
except OSError:
    pass
mount(BASE)
for name, data in OLD.items():
    p = ""
    for part in name.split("/")[:-1]:
        p = p + "/" + part if p else part
        try:
            os.mkdir(p)
        except OSError:
            pass
    with open(name, "wb") as f:
        f.write(data)
unmount()

results = []
for torn in (-1, 13):
    n = 0
    while True:
        n += 1
        copy(BASE, WORK)
        fl = mount(WORK)
        fl.cut_after(n, torn)
        cut = False
        path = []
        for _ in range(8):  # boots until done
            try:
                r = life()
                powered()
            except PowerCut:
                cut = True
                r = "cut"
            except OSError:
                if not fl.dead:
                    raise
                cut = True
                r = "cut"
            path.append(r)
            fl.cut_after(0)
            unmount()
            fl = mount(WORK)  # power back on (or a reboot): what the chip holds
            if r == "done":
                break
            if r not in ("cut", "reboot"):
                break
        unmount()
        if path[-1] != "done" or fl.violations:
            results.append((torn, n, path))
        if not cut:
            break
    results.append(("ops", torn, n - 1))
print(json.dumps(dict(results=results)))
"""


def test_power_cut_at_every_flash_operation_of_an_update(tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tools import keys

    sk = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
    old = {f"lib/app/m{i}.mpy": bytes([i]) * 300 for i in range(3)}
    new = {f"lib/app/m{i}.mpy": bytes([0x80 + i]) * (250 + 200 * i) for i in range(3)}
    new["lib/efd/x.mpy"] = hashlib.sha256(b"x").digest() * 20
    files = sorted(new.items())
    man = fwimage.manifest_text(files, (0, 2, 0), 2822, confirm=10)
    image = fwimage.assemble(man, fwimage.sign(sk, man), files)
    out = mpy.run(
        SCRIPT.format(
            pub=keys.public_bytes(sk),
            image=image,
            img_id=fwimage.image_id(man),
            old=old,
            new=new,
            boot=BOOT_PY,
            base=str(tmp_path / "base.bin"),
            work=str(tmp_path / "work.bin"),
        ),
        extra_path=[BOARD],
        timeout=600,
    )
    res = json.loads(out.strip().splitlines()[-1])["results"]
    ops = {x[1]: x[2] for x in res if x[0] == "ops"}
    failures = [x for x in res if x[0] != "ops"]
    print(f"\ncut points: {ops} (clean, torn)")
    assert not failures, failures[:5]
    assert ops[-1] >= 50 and ops[13] == ops[-1]
    assert struct.calcsize("<BII") == 9
