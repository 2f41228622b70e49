"""Issue 10, finding 8: the virtual detector's UDP link truncated frames over 64 bytes.

sim_io.UdpLink read each datagram straight into the link's 64-byte buffer; the kernel drops
what does not fit, so a 9-parameter set_config (72 bytes on the wire) was never answered.
"""

from __future__ import annotations

import pytest

from protocol import messages as M
from protocol.auth import Key
from protocol.frame import MAX_WIRE, Encoder
from tests import mpy
from tests.firmware.conftest import DEVICE, KEY, vdev_factory  # noqa: F401 (fixture)
from tools.monitor import HostLink

pytestmark = pytest.mark.micropython

NINE = [
    ["leak_set_ma", 300],
    ["leak_delay_s", 1],
    ["leak_prealarm_pct", 70],
    ["leak_hyst_pct", 5],
    ["temp_set_c", 70],
    ["temp_delay_s", 5],
    ["temp_prealarm_pct", 90],
    ["temp_hyst_c", 2],
    ["line_set_a", 32],
]

SCRIPT = """
import socket, time
from binascii import unhexlify
from app.sim_io import UdpLink
from protocol.stream import StreamDecoder

def free():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(socket.getaddrinfo("127.0.0.1", 0)[0][-1])
    return s

hs = free()
port = 0
for p in range(47000, 47100):  # a free port for the detector's end
    try:
        link = UdpLink(p, 47999)
        port = p
        break
    except OSError:
        pass
for hexwire in {wires!r}:
    hs.sendto(unhexlify(hexwire), socket.getaddrinfo("127.0.0.1", port)[0][-1])
dec = StreamDecoder(uplink=False)
buf = bytearray(64)  # what app.link reads with
got = []
end = time.ticks_add(time.ticks_ms(), 3000)
while len(got) < {n} and time.ticks_diff(end, time.ticks_ms()) > 0:
    k = link.read(buf)
    for f in dec.feed(memoryview(buf)[:k]) if k else ():
        got.append((f.ok, len(f.raw) if f.raw else 0))
print("GOT", got)
"""


def test_udp_link_reads_frames_up_to_max_wire():
    enc = Encoder(DEVICE, Key(KEY), iter(range(1, 100)).__next__)
    nine = enc.message(M.COMMAND, 0, {"cmd": "set_config", "params": NINE}, auth=True)
    # The largest set_config: 45 parameters, 252 bytes on the wire (MAX_WIRE is 256).
    big = enc.message(M.COMMAND, 0, {"cmd": "set_config", "params": NINE * 5}, auth=True)
    assert len(nine) == 72 and MAX_WIRE - 4 <= len(big) <= MAX_WIRE
    two = enc.message(M.COMMAND, 0, {"cmd": "get_config"}, auth=True)
    wires = [nine.hex(), big.hex(), (two + nine).hex()]  # the last: two frames in one datagram
    out = mpy.run(SCRIPT.format(wires=wires, n=4))
    got = eval(out.split("GOT", 1)[1])
    assert got == [(True, 70), (True, len(big) - 2), (True, len(two) - 2), (True, 70)], got


def test_nine_parameter_set_config_answered(vdev_factory):  # noqa: F811
    v = vdev_factory()
    link = HostLink(v.state["link"], DEVICE, KEY)
    res = link.command({"cmd": "set_config", "params": NINE}, timeout=15)
    assert res is not None, "a 72-byte command was never answered (truncated datagram)"
    assert res["status"] == "ok", res
