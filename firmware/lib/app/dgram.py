# A datagram socket read as a byte stream: the UDP protocol links of both HALs (the board's
# WiFi link, app/wifi.py; the simulated HAL's, app/sim_io.py) hand app.link.Link what a UART
# would, bytes in pieces of the size it asks for (64).
#
# A datagram is received whole into a buffer of its own and handed out from there: reading it
# straight into the caller's 64-byte buffer truncated every frame over 64 bytes on the wire (a
# set_config of 9 parameters was never answered), since the kernel (and lwIP) drops what does
# not fit. What a datagram has beyond the buffer is lost the same way: the buffer holds a frame
# of the protocol's maximum wire size, or several frames back to back (SPEC.md §3), and more.


class DgramStream:
    def __init__(self, sock, size):
        # sock: a bound, non-blocking UDP socket. readinto() returns None (MicroPython's stream
        # protocol, EAGAIN) or raises OSError when nothing is there: both read as 0 bytes.
        self.sock = sock
        self.dgram = bytearray(size)
        self.pos = 0
        self.end = 0

    def read(self, buf):
        if self.pos >= self.end:
            try:
                n = self.sock.readinto(self.dgram)
            except OSError:
                return 0
            if not n:
                return 0
            self.pos = 0
            self.end = n
        p = self.pos
        k = self.end - p
        if k > len(buf):
            k = len(buf)
        buf[:k] = memoryview(self.dgram)[p : p + k]
        self.pos = p + k
        return k
