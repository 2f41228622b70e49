"""Issue 11 §1, the board's WiFi link (app/wifi.py) on CPython with a scripted `network` and
`socket` (the board twin runs it on the ESP32 port's models: tests/twin/test_twin_wifi.py): the
reconnect backoff and its limits, a connect never waited for, frames dropped (never raised) in
an outage, SNTP answers checked as hostile input, and the provisioning of wifi.json (IP
literals only, secrets never echoed)."""

from __future__ import annotations

import importlib
import struct
import sys
import types

import pytest

from tools import provisioning

STAT_CONNECTING, STAT_GOT_IP, NO_AP = 1001, 1010, 201


class FakeWlan:
    def __init__(self, clock):
        self.clock = clock
        self.ap = False  # is the access point there
        self.connects: list[int] = []
        self.connected = False
        self.until = -1

    def active(self, *a):
        return True

    def config(self, **kw):
        assert kw == {"reconnects": 0}  # the driver's own retry off: ours decides

    def connect(self, ssid, psk):
        self.connects.append(self.clock[0])
        self.until = self.clock[0] + 1500  # association takes 1.5 s, or fails after it

    def _advance(self):
        if self.until >= 0 and self.clock[0] >= self.until:
            self.until = -1
            self.connected = self.ap
        if not self.ap:
            self.connected = False

    def isconnected(self):
        self._advance()
        return self.connected

    def status(self, what=None):
        self._advance()
        if what == "rssi":
            if not self.connected:
                raise OSError("Wifi Not Connected")
            return -61
        if self.connected:
            return STAT_GOT_IP
        return STAT_CONNECTING if self.until >= 0 else NO_AP


class FakeSock:
    def __init__(self, net):
        self.net = net
        self.sent: list[bytes] = []

    def setblocking(self, b):
        assert b is False

    def bind(self, a):
        pass

    def sendto(self, data, addr):
        assert isinstance(addr, tuple) and addr[0].count(".") == 3  # an IP literal: no lookup
        if not self.net.connected:
            raise OSError(113)
        self.sent.append(bytes(data))

    def readinto(self, b):
        return None


@pytest.fixture
def wifi(monkeypatch):
    clock = [0]
    net = FakeWlan(clock)
    network = types.SimpleNamespace(STA_IF=0, WLAN=lambda i: net)
    socks: list[FakeSock] = []

    def mk(*a):
        s = FakeSock(net)
        socks.append(s)
        return s

    sock_mod = types.SimpleNamespace(AF_INET=2, SOCK_DGRAM=2, socket=mk)
    tmod = types.SimpleNamespace(
        ticks_ms=lambda: clock[0],
        ticks_diff=lambda a, b: a - b,
        ticks_add=lambda a, b: a + b,
    )
    micro = types.SimpleNamespace(const=lambda x: x)
    monkeypatch.setitem(sys.modules, "network", network)
    monkeypatch.setitem(sys.modules, "socket", sock_mod)
    monkeypatch.setitem(sys.modules, "micropython", micro)
    sys.modules.pop("app.wifi", None)
    mod = importlib.import_module("app.wifi")
    monkeypatch.setattr(mod, "time", tmod)
    sys.modules.pop("app.wifi", None)  # the fakes stay out of other tests
    cfg = {"ssid": "site-net", "psk": "correct horse", "gateway": "10.0.0.2:47100"}
    link = mod.WifiLink(cfg, lambda t: None)
    return mod, link, net, clock, socks


def run(link, clock, until, step=105):
    states = []
    while clock[0] < until:
        states.append(link.tick(clock[0]))
        clock[0] += step
    return states


def test_backoff_doubles_to_its_limit_and_connects_when_the_ap_returns(wifi):
    mod, link, net, clock, _ = wifi
    run(link, clock, 200_000)  # no access point for 200 s
    gaps = [b - a for a, b in zip(net.connects, net.connects[1:], strict=False)]
    # Each failed attempt (1.5 s) is followed by 1, 2, 4 ... s of backoff, capped at 60 s.
    waits = [g - 1500 for g in gaps]
    assert waits[:6] == pytest.approx([1000, 2000, 4000, 8000, 16000, 32000], abs=2 * 105)
    assert max(waits) == pytest.approx(60000, abs=2 * 105)  # the limit, reached ...
    assert all(w <= 60000 + 2 * 105 for w in waits)  # ... and never exceeded
    assert link.state == mod.DOWN and link.rssi is None
    net.ap = True
    t = clock[0]
    run(link, clock, t + 62_000 + 1600)  # at most one full backoff step plus an attempt
    assert link.state == mod.UP and link.ups == 1 and link.rssi == -61
    assert link.backoff == 1000  # reset by the connection


def test_outage_drops_frames_without_raising_and_reconnects_at_once(wifi):
    mod, link, net, clock, socks = wifi
    net.ap = True
    run(link, clock, 3000)
    assert link.state == mod.UP and not link.busy()
    link.write(b"\x01frame")
    assert socks[0].sent == [b"\x01frame"]
    net.ap = False
    t_down = clock[0]
    run(link, clock, clock[0] + 500)
    assert link.state != mod.UP and link.busy()  # app.link sends nothing while down
    # The first reconnection attempt is immediate (the next window), no backoff yet.
    assert t_down <= net.connects[-1] <= t_down + 105
    link.write(b"\x02lost")  # (it would not: and if it did, dropped, never raised)
    assert link.dropped == 1 and socks[0].sent == [b"\x01frame"]
    net.ap = True
    run(link, clock, clock[0] + 2000)
    assert link.state == mod.UP and link.ups == 2


def test_tick_never_waits(wifi):
    # Every call returns at once whatever the state: the fakes count no time inside tick(),
    # so a wait would loop for ever; 10 minutes of windows run here in one go.
    mod, link, _net, clock, _ = wifi
    states = run(link, clock, 600_000)
    assert set(states) <= {mod.DOWN, mod.CONNECTING}


def _sntp(secs_since_1900: int, mode: int = 4, stratum: int = 2) -> bytearray:
    b = bytearray(48)
    b[0] = (3 << 3) | mode
    b[1] = stratum
    struct.pack_into("!I", b, 40, secs_since_1900 & 0xFFFFFFFF)
    return b


def test_sntp_answers_are_checked(wifi):
    mod = wifi[0]
    t2026 = 3786825600 + 189_302_400  # 2026-01-01 in NTP seconds (2020 + 6 years)
    assert mod.sntp_seconds(_sntp(t2026), 48) == 189_302_400
    assert mod.sntp_seconds(_sntp(t2026), 47) == 0  # short
    assert mod.sntp_seconds(_sntp(t2026, mode=3), 48) == 0  # a client's request echoed
    assert mod.sntp_seconds(_sntp(t2026, stratum=0), 48) == 0  # kiss-of-death
    assert mod.sntp_seconds(_sntp(3786825600 - 1), 48) == 0  # before 2020
    assert mod.sntp_seconds(_sntp(3786825600 + 0x3FFFFFFF), 48) == 0  # past the wire's range
    assert mod.sntp_seconds(_sntp(3786825600 + 1), 48) == 1


def test_wifi_provisioning_checks_and_never_echoes_secrets():
    ok = {"ssid": "site-net", "psk": "correct horse", "gateway": "192.168.1.10:47100"}
    text = provisioning.wifi_text(ok)
    assert '"port": 47101' in text
    bad = [
        ({**ok, "gateway": "gw.example.org:47100"}, "no host names"),
        ({**ok, "gateway": "192.168.1.10"}, "IPv4 address and port"),
        ({**ok, "psk": "short"}, "8..63"),
        ({**ok, "ssid": ""}, "1..32 bytes"),
        ({**ok, "ntp": "pool.ntp.org"}, "IPv4 address[:port]"),
    ]
    for cfg, says in bad:
        with pytest.raises(provisioning.ProvisionError) as e:
            provisioning.wifi_text(cfg)
        assert says in str(e.value)
        assert "correct horse" not in str(e.value) and "short" not in str(e.value).split(":")[0]
    assert provisioning.mask("correct horse") == "co***(13)"
