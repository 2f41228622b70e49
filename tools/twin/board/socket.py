# The twin's `socket` module: the ESP32 port's lwIP sockets (ports/esp32/modsocket.c of the
# micropython snapshot) for UDP, on the unix port's real sockets (`usocket`) over loopback, so
# the firmware on the twin talks to the real gateway. Only what the detector uses is modelled.
#
# From the C source:
# * socket(af=AF_INET, type=SOCK_STREAM, proto=0): 0..3 args     modsocket.c:276-304
# * bind((host, port)): the address through getaddrinfo          modsocket.c:306-317
# * setblocking(flag): timeout 0 or forever                       modsocket.c:603-612
# * sendto(data, (ip, port)): the address parsed as an IP literal (netutils_parse_inet_addr,
#   no lookup); lwip_sendto's errno raised as OSError (no route without an IP: EHOSTUNREACH)
#                                                                 modsocket.c:755-779
# * readinto(buf) (stream): None when a non-blocking socket has nothing (EWOULDBLOCK through
#   mp_stream_rw); recvfrom(n) raises OSError(EAGAIN) then    modsocket.c:621-690, 696-710
# * getaddrinfo(host, port, ...): 2..6 args; blocks in lwip_getaddrinfo for a name (not
#   modelled: the firmware uses IP literals only)                modsocket.c:930-986
# Without a WiFi connection (network model) nothing is sent or received: datagrams that arrive
# meanwhile are dropped, as the AP would. Costs: sendto 150 us, a read 20 us (estimates).
import network
import twin
import usocket

AF_INET = 2
SOCK_STREAM = 1
SOCK_DGRAM = 2
IPPROTO_UDP = 17
SOL_SOCKET = usocket.SOL_SOCKET
SO_REUSEADDR = usocket.SO_REUSEADDR
_EHOSTUNREACH = 113
_EAGAIN = 11

# Sockets of earlier boots (a reset drops the firmware's modules, not the host's sockets).
_open = getattr(twin, "wifi_sockets", None)
if _open:
    for _s in _open:
        try:
            _s.close()
        except OSError:
            pass
twin.wifi_sockets = []


def _ip_literal(host):
    parts = host.split(".")
    if len(parts) != 4:
        raise OSError(-2)  # not an IP literal: the board would need a (blocking) lookup
    for p in parts:
        if not p.isdigit() or int(p) > 255:
            raise OSError(-2)
    return host


def getaddrinfo(host, port, *args):
    if len(args) > 4:
        raise TypeError("function takes at most 6 arguments")
    h = "0.0.0.0" if host == "" else _ip_literal(host)
    return [(AF_INET, SOCK_DGRAM, IPPROTO_UDP, "", (h, int(port)))]


class socket:
    def __init__(self, *args):
        if len(args) > 3:
            raise TypeError("function takes at most 3 arguments")
        af = args[0] if args else AF_INET
        typ = args[1] if len(args) > 1 else SOCK_STREAM
        if af != AF_INET or typ != SOCK_DGRAM:
            raise OSError("the twin models AF_INET / SOCK_DGRAM sockets only")
        self.s = usocket.socket(usocket.AF_INET, usocket.SOCK_DGRAM)
        self.blocking = True
        twin.wifi_sockets.append(self.s)

    def setblocking(self, flag):
        self.blocking = bool(flag)
        self.s.setblocking(self.blocking)

    def bind(self, addr):
        h = "127.0.0.1" if addr[0] in ("", "0.0.0.0") else _ip_literal(addr[0])
        self.s.bind(usocket.getaddrinfo(h, int(addr[1]))[0][-1])

    def sendto(self, data, addr):
        _ip_literal(addr[0])
        twin.charge(150)
        if not network.connected():
            twin.stat("udp_unreachable")
            raise OSError(_EHOSTUNREACH)
        twin.stat("udp_sent")
        return self.s.sendto(data, usocket.getaddrinfo(addr[0], int(addr[1]))[0][-1])

    def _drop_while_down(self):
        if network.connected():
            return False
        b = bytearray(64)
        while self.s.readinto(b):  # the AP is gone: what arrives now is lost
            twin.stat("udp_lost")
        return True

    def readinto(self, buf, *args):
        twin.charge(20)
        if self._drop_while_down():
            return None
        n = self.s.readinto(buf)
        if n:
            twin.stat("udp_received")
        return n

    def recvfrom(self, n):
        twin.charge(20)
        if self._drop_while_down():
            raise OSError(_EAGAIN)
        return self.s.recvfrom(n)

    def close(self):
        self.s.close()
