# The twin's `network` module: the ESP32 port's WLAN station (ports/esp32/network_wlan.c and
# modnetwork.h of the micropython snapshot), on the virtual clock, with an access point whose
# presence the run controls (an outage: the file twin.P["wifi"]["down_file"] exists).
#
# Modelled from the C source (file:line of the snapshot in tools/twin's README, docs/hardware.md):
# * WLAN(id=STA_IF): 0..1 positional args, id 0 STA / 1 AP, else ValueError("invalid WLAN
#   interface identifier")                                    network_wlan.c:265-278
# * active([bool]): 1..2 args; setting it waits for STA_START (MICROPY_EVENT_POLL_HOOK loop)
#                                                              network_wlan.c:280-316
# * connect(ssid=None, key=None, *, bssid=None): returns at once (esp_wifi_connect); sets
#   "connect requested" and clears the reconnect count        network_wlan.c:318-366
# * disconnect(): requested off; status() then STAT_IDLE (reason ASSOC_LEAVE)
#                                                              network_wlan.c:368-373, 394-396
# * status(): STAT_GOT_IP if connected; the reasons NO_AP_FOUND (201) and AUTH_FAIL (202) as
#   such; STAT_CONNECTING while requested and retries remain; STAT_IDLE if nothing happened;
#   else the raw reason (e.g. 200 BEACON_TIMEOUT)             network_wlan.c:375-405
# * status('rssi'): the AP's RSSI; OSError("Wifi Not Connected") without a connection
#   (esp_wifi_sta_get_ap_info -> esp_exceptions)     network_wlan.c:446-453, network_common.c:48
# * isconnected(): the GOT_IP flag                            network_wlan.c:505-514
# * config(reconnects=n): n = -1 retry for ever (conf 0), else conf n + 1 attempts; one query at
#   a time ("can query only one param")          network_wlan.c:517-520, 632-637, 671-673, 740-744
# * the driver's own retry after a disconnection while requested, until conf attempts
#                                                              network_wlan.c:156-175
# Timings (estimates, no measurement on this project's hardware; launch.py documents the
# parameters): association + DHCP 1.5 s, a scan that finds no AP 2.5 s, a beacon timeout
# (the AP gone while connected) 3 s after it went.
import os

import twin

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000  # modnetwork.h
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200  # esp_wifi_types.h WIFI_REASON_*
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
_ASSOC_LEAVE = 8
_CHECK_US = 200000  # how often the model looks at the outage file (virtual time)


class _Sta:
    def __init__(self):
        self.active = False
        self.requested = False
        self.connected = False
        self.reason = 0
        self.conf_reconnects = 0  # 0: retry for ever (the port's default)
        self.reconnects = 0
        self.ssid = None
        self.key = None
        self.event_at = -1  # when the pending association attempt resolves
        self.down_at = -1  # when the AP went away (a beacon timeout follows)
        self.checked = -1
        self.ap_down = False


_sta = _Sta()


def _cfg():
    return twin.P.get("wifi") or {}


def _ap_down():
    s = _sta
    if s.checked < 0 or twin.now_us - s.checked >= _CHECK_US:
        s.checked = twin.now_us
        f = _cfg().get("down_file")
        down = False
        if f:
            try:
                os.stat(f)
                down = True
            except OSError:
                pass
        if down and not s.ap_down:
            s.down_at = twin.now_us
        s.ap_down = down
    return s.ap_down


def _advance():
    """Resolve what happened up to now (the WiFi event task's work on the board)."""
    s = _sta
    now = twin.now_us
    down = _ap_down()
    c = _cfg()
    if s.connected and down and now - s.down_at >= int(c.get("beacon_timeout_us", 3000000)):
        s.connected = False
        _disconnected(STAT_BEACON_TIMEOUT, now)
    if s.event_at >= 0 and now >= s.event_at:
        s.event_at = -1
        if down or s.ssid != c.get("ssid"):
            _disconnected(STAT_NO_AP_FOUND, now)
        elif s.key != c.get("psk"):
            _disconnected(STAT_WRONG_PASSWORD, now)
        else:
            s.connected = True
            s.reason = 0
            twin.stat("wifi_connects")


def _disconnected(reason, now):
    # network_wlan.c:121-175: remember the reason; retry while requested and attempts remain.
    s = _sta
    s.reason = reason
    twin.stat("wifi_disconnects")
    if s.requested:
        if s.conf_reconnects:
            s.reconnects += 1
            if s.reconnects >= s.conf_reconnects:
                return
        _attempt(now)


def _attempt(now):
    c = _cfg()
    fail = _ap_down() or _sta.ssid != c.get("ssid")
    key = "scan_fail_us" if fail else "assoc_us"
    _sta.event_at = now + int(c.get(key, 2500000 if fail else 1500000))


class WLAN:
    def __init__(self, *args):
        if len(args) > 1:
            raise TypeError("function takes at most 1 positional argument")
        idx = args[0] if args else STA_IF
        if idx not in (STA_IF, AP_IF):
            raise ValueError("invalid WLAN interface identifier")
        if idx == AP_IF:
            raise OSError("AP mode is not modelled by the twin")
        self.idx = idx

    def active(self, *args):
        if len(args) > 1:
            raise TypeError("function takes at most 2 arguments")
        if args:
            on = bool(args[0])
            if on and not _sta.active:
                twin.charge(int(_cfg().get("start_us", 80000)))  # esp_wifi_start -> STA_START
            _sta.active = on
            if not on:
                _sta.connected = False
                _sta.requested = False
                _sta.event_at = -1
        return _sta.active

    def connect(self, ssid=None, key=None, *, bssid=None):
        if not _sta.active:
            raise OSError("Wifi Not Started")  # esp_wifi_connect before esp_wifi_start
        if ssid is not None:
            _sta.ssid = ssid
        if key is not None:
            _sta.key = key
        _sta.reconnects = 0
        _sta.requested = True
        _sta.connected = False
        twin.charge(300)  # esp_wifi_connect: queues the request (estimate)
        _attempt(twin.now_us)

    def disconnect(self):
        _sta.requested = False
        _sta.connected = False
        _sta.event_at = -1
        _sta.reason = _ASSOC_LEAVE

    def isconnected(self):
        _advance()
        return _sta.connected

    def status(self, *args):
        if len(args) > 1:
            raise TypeError("function takes at most 2 arguments")
        _advance()
        s = _sta
        if args:
            if args[0] == "rssi":
                if not s.connected:
                    raise OSError("Wifi Not Connected")
                return int(_cfg().get("rssi", -61))
            raise ValueError("unknown status param")
        if s.connected:
            return STAT_GOT_IP
        if s.reason in (STAT_NO_AP_FOUND, STAT_WRONG_PASSWORD):
            return s.reason
        if s.reason == _ASSOC_LEAVE:
            return STAT_IDLE
        if s.requested and (s.conf_reconnects == 0 or s.reconnects < s.conf_reconnects):
            return STAT_CONNECTING
        if s.reason == 0:
            return STAT_IDLE
        return s.reason

    def config(self, *args, **kw):
        if args and kw:
            raise TypeError("either pos or kw args are allowed")
        if kw:
            for k in kw:
                if k == "reconnects":
                    n = int(kw[k])
                    _sta.conf_reconnects = 0 if n == -1 else n + 1
                elif k not in ("pm", "txpower", "hostname", "dhcp_hostname"):
                    raise ValueError("unknown config param")
            return None
        if len(args) != 1:
            raise TypeError("can query only one param")
        if args[0] == "reconnects":
            return _sta.conf_reconnects - 1
        if args[0] in ("ssid", "essid"):
            return _sta.ssid or ""
        raise ValueError("unknown config param")


def connected():
    """For the twin's socket model: the station has an IP now."""
    _advance()
    return _sta.connected
