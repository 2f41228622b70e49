"""The board twin's NOR flash model (tools/twin/board/flash.py) under the MicroPython binary:
NOR semantics, counters and charged time, write-through to its host file, power cuts (clean and
torn), and LittleFS on top of it."""

from __future__ import annotations

import json

import pytest

from tests import mpy

pytestmark = pytest.mark.micropython
BOARD = mpy.ROOT / "tools" / "twin" / "board"
PRELUDE = """
import json, os
import flash
from flash import Flash, PowerCut, BLOCK
spent = []
def charge(us):
    spent.append(us)
"""


def run(script: str, **fmt) -> dict:
    """Run PRELUDE + script (str.format'ed with fmt) under MicroPython; its last stdout line is
    a JSON object."""
    out = mpy.run(PRELUDE + script.format(**fmt), extra_path=[BOARD])
    return json.loads(out.strip().splitlines()[-1])


def test_blank_chip_nor_program_and_erase(tmp_path):
    img = tmp_path / "chip.bin"
    r = run(
        """
fl = Flash({img!r}, blocks=8, charge=charge, strict=False)
b = bytearray(16)
fl.readblocks(1, b, 100)
blank = list(b)
fl.writeblocks(1, bytes([0xF0, 0x3C, 0x00, 0xFF]), 100)
fl.writeblocks(1, bytes([0x30, 0x0F, 0xFF, 0xFF]), 100)  # 0x0F over 0x3C raises bits
fl.readblocks(1, b, 100)
after = list(b[:4])
v = fl.violations
fl.ioctl(6, 1)
fl.readblocks(1, b, 100)
erased = list(b[:4])
strict = Flash({img!r}, blocks=8, charge=charge)
strict.writeblocks(2, b"\\x0f", 0)
try:
    strict.writeblocks(2, b"\\xf0", 0)
    raised = False
except AssertionError:
    raised = True
print(json.dumps(dict(blank=blank, after=after, v=v, erased=erased, raised=raised,
                      count=fl.ioctl(4, 0), size=fl.ioctl(5, 0))))
""",
        img=str(img),
    )
    assert r["blank"] == [0xFF] * 16
    assert r["after"] == [0x30, 0x0C, 0x00, 0xFF]  # stored AND written: bits only go down
    assert r["v"] == 1
    assert r["erased"] == [0xFF] * 4
    assert r["raised"], "strict: programming a 0 back to 1 is an error"
    assert (r["count"], r["size"]) == (8, 4096)
    data = img.read_bytes()
    assert len(data) == 8 * 4096
    assert data[2 * 4096] == 0x0F  # the strict chip kept what it had before the bad program


def test_counters_and_charged_time(tmp_path):
    img = tmp_path / "chip.bin"
    r = run(
        """
fl = Flash({img!r}, blocks=4, charge=charge)
fl.ioctl(6, 0)
t_erase = spent[-1]
fl.writeblocks(0, bytes(256), 0)  # one full page
t_page = spent[-1]
fl.writeblocks(0, bytes(32), 256)
t_small = spent[-1]
b = bytearray(4096)
fl.readblocks(0, b)
t_read = spent[-1]
worst = Flash({img!r}, blocks=4, charge=charge, worst=True)
worst.ioctl(6, 3)
t_erase_max = spent[-1]
print(json.dumps(dict(erases=fl.erases, progs=fl.progs, prog_bytes=fl.prog_bytes,
    reads=fl.reads, read_bytes=fl.read_bytes, us=fl.us, total=sum(spent[:4]), wear=fl.wear,
    t_erase=t_erase, t_page=t_page, t_small=t_small, t_read=t_read, t_erase_max=t_erase_max,
    T_SE=flash.T_SE_US, T_SE_MAX=flash.T_SE_MAX_US, T_PP=flash.T_PP_US)))
""",
        img=str(img),
    )
    assert (r["erases"], r["progs"], r["prog_bytes"]) == (1, 2, 288)
    assert (r["reads"], r["read_bytes"]) == (1, 4096)
    assert r["wear"] == [1, 0, 0, 0]
    assert r["us"] == r["total"]
    # Datasheet figures (W25Q32JV): 4 KB sector erase 45 ms typ, 400 ms max; a page ~0.7 ms.
    assert r["t_erase"] >= r["T_SE"] == 45_000
    assert r["t_erase_max"] >= r["T_SE_MAX"] == 400_000
    assert r["T_PP"] * 0.8 <= r["t_page"] <= r["T_PP"] * 1.3
    assert 30 <= r["t_small"] < r["t_page"] / 3  # a partial page costs less than a full one
    assert 150 <= r["t_read"] <= 400  # 4 KB at 40 MHz quad I/O: ~200 us


def test_write_through_to_the_host_file(tmp_path):
    # The process ends without closing anything (os._exit: like pulling the plug on the host):
    # the file holds every program and erase, and a new Flash on it sees them.
    img = tmp_path / "chip.bin"
    mpy.run(
        PRELUDE
        + f"""
fl = Flash({str(img)!r}, blocks=4, charge=charge)
fl.writeblocks(1, b"persist", 10)
fl.ioctl(6, 2)
fl.writeblocks(2, b"\\x00" * 4, 4092)
import sys
sys.stdout.write("ok\\n")
os._exit(0) if hasattr(os, "_exit") else None
""",
        extra_path=[BOARD],
    )
    data = img.read_bytes()
    assert data[4096 + 10 : 4096 + 17] == b"persist"
    assert data[2 * 4096 : 2 * 4096 + 4092] == b"\xff" * 4092
    assert data[3 * 4096 - 4 : 3 * 4096] == b"\x00" * 4
    r = run(
        """
fl = Flash({img!r}, blocks=4, charge=charge)
b = bytearray(7)
fl.readblocks(1, b, 10)
print(json.dumps(dict(b=bytes(b).decode())))
""",
        img=str(img),
    )
    assert r["b"] == "persist"


def test_power_cut_clean_and_torn(tmp_path):
    img = tmp_path / "chip.bin"
    r = run(
        """
fl = Flash({img!r}, blocks=4, charge=charge)
fl.cut_after(3)
fl.writeblocks(0, b"\\x01" * 8, 0)      # 1
fl.ioctl(6, 1)                          # 2
try:
    fl.writeblocks(0, b"\\x02" * 8, 8)  # 3: lands, then the power fails
    cut = None
except PowerCut as e:
    cut = e.args[0]
dead = fl.dead
counts = [fl.progs, fl.erases]
fl.writeblocks(0, b"\\x00" * 8, 16)     # ignored: no power
fl.ioctl(6, 0)                          # ignored
ignored = [fl.progs, fl.erases]
b = bytearray(24)
fl.readblocks(0, b)
after_cut = list(b)
fl.power_on()
fl.cut_after(1, torn=100)
try:
    fl.writeblocks(2, b"\\x00" * 256, 0)
except PowerCut:
    pass
fl.power_on()
fl.writeblocks(3, b"\\x00" * 4096, 0)
fl.cut_after(1, torn=1000)
try:
    fl.ioctl(6, 3)
except PowerCut:
    pass
print(json.dumps(dict(cut=cut, dead=dead, counts=counts, ignored=ignored, after_cut=after_cut,
    base=issubclass(PowerCut, BaseException), is_exc=issubclass(PowerCut, Exception),
    reset=issubclass(PowerCut, __import__("twin").Reset))))
""",
        img=str(img),
    )
    assert r["cut"] == 1 and r["dead"]  # args[0]: the reset cause, 1 = power on
    assert r["counts"] == [2, 1] and r["ignored"] == [2, 1]
    assert r["after_cut"] == [1] * 8 + [2] * 8 + [0xFF] * 8
    assert r["base"] and not r["is_exc"]  # `except Exception` in the firmware cannot eat it
    assert r["reset"]  # on the twin: a reset, which its launcher handles like any other
    data = img.read_bytes()
    torn = data[2 * 4096 : 2 * 4096 + 256]
    assert torn == b"\x00" * 100 + b"\xff" * 156  # only part of the page was programmed
    sector = data[3 * 4096 : 4 * 4096]
    assert sector == b"\xff" * 1000 + b"\x00" * 3096  # an erase cut short


def test_littlefs_mounts_formats_only_a_blank_chip(tmp_path):
    img = tmp_path / "chip.bin"
    r = run(
        """
import vfs
fl = Flash({img!r}, blocks=32, charge=charge)
flash.mount(fl, "/fl")
with open("/fl/a.txt", "w") as f:
    f.write("kept")
vfs.umount("/fl")
fl = Flash({img!r}, blocks=32, charge=charge)  # as after a reboot
flash.mount(fl, "/fl")
kept = open("/fl/a.txt").read()
vfs.umount("/fl")
bad = Flash({bad!r}, blocks=32, charge=charge)
bad.writeblocks(0, b"\\x00" * 64, 0)
try:
    flash.mount(bad, "/bad")
    refused = False
except OSError:
    refused = True
print(json.dumps(dict(kept=kept, refused=refused, v=fl.violations + bad.violations)))
""",
        img=str(img),
        bad=str(tmp_path / "bad.bin"),
    )
    assert r == {"kept": "kept", "refused": True, "v": 0}
