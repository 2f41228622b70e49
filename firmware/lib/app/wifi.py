# WiFi station + UDP protocol link for the ESP32 HAL (app/hal_esp32.py loads it only when the
# flash holds wifi.json; the simulated HAL never does). The same framing as the simulated link
# (app/sim_io.UdpLink) and the gateway's UDP transport: each write() is one datagram of stuffed
# frames; read() hands out a received datagram as a byte stream (app/dgram.py, shared by both).
#
# Never blocks the sampling loop (checked against the ESP32 port's C source, by the board twin's
# models tools/twin/board/network.py and socket.py):
# * WLAN.connect() only starts the association (ports/esp32/network_wlan.c network_wlan_connect:
#   esp_wifi_connect() returns at once); status() and isconnected() read flags the WiFi event
#   task sets. The driver's own endless retry is turned off (config(reconnects=0):
#   network_wlan.c, "reconnects == -1 means retry forever", 0 = one attempt): this module
#   retries itself with a backoff of 1, 2, 4 ... 60 s, so a missing access point costs one
#   connect() call per backoff step, not a storm of driver retries.
# * The socket is non-blocking (modsocket.c socket_setblocking: timeout 0): readinto() returns
#   None when nothing is there (stream protocol, EAGAIN); sendto() raises OSError when the
#   station has no IP (lwip: EHOSTUNREACH) or lwIP is out of buffers (ENOMEM): the frame is
#   dropped here, the protocol's retransmission (SPEC.md §8) and the flash event log keep
#   every event until an ACK comes back, however long the outage.
# * Addresses are IP literals (wifi.json): sendto() takes ("a.b.c.d", port) without a lookup
#   (modsocket.c socket_sendto: netutils_parse_inet_addr). A host name would need
#   getaddrinfo(), which blocks in lwip_getaddrinfo for the DNS timeout: refused by
#   tools/provisioning.py.
# * NTP (optional "ntp" server): one SNTP request (RFC 4330, 48 bytes) on its own non-blocking
#   socket after each (re)connection and every 6 h, the answer taken when it comes. The
#   `ntptime` module of micropython-lib waits up to 1 s in a blocking recv: not in the loop.
#   The answer is checked (length, mode 4 server, stratum 1..15, a transmit time from 2020 to
#   2053) and sets the RTC only if it is sane: the network is hostile, and a wrong clock
#   never changes detection (times are only labels on events).
# Credentials come from wifi.json (tools/provisioning.py), never from the repository, and are
# never printed: repr/str of this object and every log line name the SSID masked (wifi_mask).
import socket
import struct
import time

import network
from micropython import const

from app.dgram import DgramStream

_BACKOFF_MIN_MS = const(1000)
_BACKOFF_MAX_MS = const(60000)
_CONNECT_TIMEOUT_MS = const(20000)  # an attempt still "connecting" after this is retried
_NTP_EVERY_MS = const(6 * 3600 * 1000)
_NTP_RETRY_MS = const(30000)
_NTP_DELTA = 3786825600  # 1900-01-01 -> 2020-01-01 (the wire's epoch, SPEC.md §2) in s: a long int
_STAT_GOT_IP = const(1010)  # ports/esp32/modnetwork.h STAT_GOT_IP
_STAT_CONNECTING = const(1001)  # ports/esp32/modnetwork.h STAT_CONNECTING
_WIRE = const(512)  # a datagram: SPEC.md's largest frame with stuffing, twice over

# Link states (the indicators' pattern, docs/firmware.md "WiFi"): 0 down (backing off),
# 1 connecting, 2 up (IP).
DOWN = const(0)
CONNECTING = const(1)
UP = const(2)


def wifi_mask(ssid):
    """An SSID for logs: its first 2 characters and its length, never the whole name."""
    return "%s***(%d)" % (ssid[:2], len(ssid))


class WifiLink(DgramStream):
    sending = False  # no driver-enable pin: the burst never waits for us
    in_burst = False

    def __init__(self, cfg, set_time=None):
        # cfg: wifi.json {"ssid", "psk", "gateway": "a.b.c.d:port", "port": local port,
        # "ntp": "a.b.c.d[:port]" or absent}. set_time(wire time): the HAL's RTC setter.
        self._ssid = cfg["ssid"]
        self._psk = cfg["psk"]
        h, p = cfg["gateway"].split(":")
        self.peer = (h, int(p))
        self.ntp = None
        n = cfg.get("ntp")
        if n:
            h, _, p = n.partition(":")
            self.ntp = (h, int(p or 123))
        self.set_time = set_time
        self.wlan = network.WLAN(network.STA_IF)
        self.wlan.active(True)  # waits for the STA_START event: at boot, once
        self.wlan.config(reconnects=0)  # one attempt per connect(): our backoff decides
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.bind(("0.0.0.0", int(cfg.get("port", 47101))))
        DgramStream.__init__(self, s, _WIRE)
        self.ntp_sock = None
        self.state = DOWN
        self.next_at = time.ticks_ms()  # the first attempt at once
        self.backoff = _BACKOFF_MIN_MS
        self.started = 0
        self.attempts = 0
        self.ups = 0  # connections made (a figure for the on-target test and logs)
        self.ntp_at = 0
        self.ntp_sent = -1
        self.ntp_ok = 0  # successful NTP syncs
        self.rssi = None  # dBm while up (WLAN.status('rssi')), None otherwise
        self.dropped = 0  # datagrams sendto() refused (outage, no buffers)

    def __repr__(self):
        return "<WifiLink %s state %d>" % (wifi_mask(self._ssid), self.state)

    # -- the station, once per window (the HAL's outputs() call) ------------------------------
    def tick(self, now):
        """Advance the connection state machine; never waits. Returns the state."""
        w = self.wlan
        st = self.state
        if w.isconnected():
            if st != UP:
                self.state = UP
                self.ups += 1
                self.backoff = _BACKOFF_MIN_MS
                self.ntp_at = now  # a fresh connection: ask the time now
                print("[wifi] up", wifi_mask(self._ssid))
            try:
                self.rssi = w.status("rssi")
            except OSError:  # esp_wifi_sta_get_ap_info: not connected after all
                self.rssi = None
            self._ntp(now)
            return UP
        self.rssi = None
        if st == UP:
            print("[wifi] down", w.status())
            st = self.state = DOWN
            self.next_at = now  # reconnect at once the first time, then back off
        if st == CONNECTING:
            s = w.status()
            if s == _STAT_CONNECTING and time.ticks_diff(now, self.started) < _CONNECT_TIMEOUT_MS:
                return CONNECTING
            # The attempt failed (no AP, wrong password, timeout): wait, then try again.
            self.state = DOWN
            self.next_at = time.ticks_add(now, self.backoff)
            b = self.backoff * 2
            self.backoff = b if b < _BACKOFF_MAX_MS else _BACKOFF_MAX_MS
            return DOWN
        if time.ticks_diff(now, self.next_at) >= 0:
            try:
                w.connect(self._ssid, self._psk)
                self.state = CONNECTING
                self.started = now
                self.attempts += 1
            except OSError:  # the driver refused (e.g. busy): the next step of the backoff
                self.next_at = time.ticks_add(now, self.backoff)
        return self.state

    # -- the protocol link (app.link.Link's io) -------------------------------------------------
    # read(): app/dgram.py (a datagram handed out as a byte stream)

    def write(self, data):
        try:
            self.sock.sendto(data, self.peer)
        except OSError:
            self.dropped += 1  # an outage: events stay pending in the flash log

    def busy(self):
        # "The transport cannot take a frame now" while the station has no IP: app.link then
        # sends nothing, so its retransmission timer does not back off into the outage, and
        # the first window after the reconnection sends the oldest pending event at once.
        return self.state != UP

    # -- NTP -----------------------------------------------------------------------------------
    def _ntp(self, now):
        if self.ntp is None or self.set_time is None:
            return
        s = self.ntp_sock
        if s is None:
            s = self.ntp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
        if self.ntp_sent >= 0:
            b = bytearray(48)
            try:
                n = s.readinto(b)
            except OSError:
                n = None
            if n:
                t = sntp_seconds(b, n)
                if t > 0:
                    self.set_time(t)
                    self.ntp_ok += 1
                    self.ntp_sent = -1
                    self.ntp_at = time.ticks_add(now, _NTP_EVERY_MS)
                    return
            if time.ticks_diff(now, self.ntp_sent) < 5000:
                return
            self.ntp_sent = -1  # no (sane) answer in 5 s: try again later
            self.ntp_at = time.ticks_add(now, _NTP_RETRY_MS)
        if time.ticks_diff(now, self.ntp_at) >= 0:
            req = bytearray(48)
            req[0] = 0x1B  # LI 0, version 3, mode 3 (client)
            try:
                s.sendto(req, self.ntp)
                self.ntp_sent = now
            except OSError:
                self.ntp_at = time.ticks_add(now, _NTP_RETRY_MS)


def sntp_seconds(b, n):
    """Wire time (seconds since 2020-01-01, SPEC.md §2) from an SNTP answer b[:n], or 0 if it
    is not a sane server answer (hostile input: checked, never trusted)."""
    if n < 48:
        return 0
    mode = b[0] & 7
    stratum = b[1]
    if mode != 4 or not 1 <= stratum <= 15:
        return 0
    t = struct.unpack_from("!I", b, 40)[0] - _NTP_DELTA  # transmit timestamp, since 1900
    # 2020 .. 2053 (the wire time's small-int range): anything else is bad or spoofed.
    if t <= 0 or t >= 0x3FFFFFFF:
        return 0
    return t
