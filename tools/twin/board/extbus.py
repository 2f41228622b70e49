# The RS-485 bus of a virtual device (tools/twin/vdev.py): bus.Bus's transceiver (MAX3485, DE and
# /RE tied), but the far end of the bus is outside this process. The supervisor bridges UDP
# datagrams on 127.0.0.1 to the link pty, where the real gateway's polling master (or any serial
# program) sits; the twin's clock keeps pace with the wall clock (twin.realtime), so bytes keep
# their timing:
#   * bytes from outside arrive at the virtual time they were received (never later than the
#     twin's clock), one byte time each at the baud rate after the line's previous byte; a byte
#     that arrives while our DE is high is lost (our receiver is off), one that arrives before
#     the firmware has opened its UART (at boot) is lost too;
#   * bytes we transmit go out once their stop bit has passed (on the virtual clock and on the
#     wall clock: a UART.flush() charges a frame's time at once), and only if DE was high for
#     the whole byte (otherwise the far end saw an idle line: the byte is left
#     out, counted in twin.stats["tx_undriven_bytes"]).
# The transceiver (transceiver.py) as bus.Bus has it, but without the master: bus.py loads the
# firmware's protocol codec from the flash, and a virtual device's flash may be blank (until
# `make deploy`). send_due() and
# recv() run from twin.io (vdevice.py), never inside a flash operation (where LittleFS may lock
# the heap).
import machine
import twin
import usocket as socket  # the host's: board/socket.py is the ESP32 model
from transceiver import Transceiver


class ExtBus(Transceiver):
    def __init__(self, cfg):
        Transceiver.__init__(self, cfg)
        self.byte_us = 10000000 // cfg["baud"]
        dev_port, host_port = cfg["udp"]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(socket.getaddrinfo("127.0.0.1", dev_port)[0][-1])
        s.setblocking(False)
        self.sock = s
        self.peer = socket.getaddrinfo("127.0.0.1", host_port)[0][-1]
        self.buf = bytearray(2048)
        self.down_end = 0  # when the line's last byte from outside has arrived
        for _ in ("rx_bytes", "rx_before_uart", "tx_sent_bytes", "tx_undriven_bytes"):
            twin.stats.setdefault(_, 0)
        machine._set_level(self.de, 0)

    # -- the outside -------------------------------------------------------------------------------

    def reboot(self):
        """The chip resets: the UART driver and what it held are gone until the firmware opens
        it again, and DE floats low (the board's pull-down, docs/hardware.md)."""
        self.uart = None
        self.rx = bytearray()
        self.down = []
        self.up = []
        machine._set_level(self.de, 0)

    def send_due(self, wait_us):
        """Send what has gone out on the line; returns wait_us, cut to the time until the next
        byte is due (the caller waits on self.sock, then calls recv() if it is readable)."""
        u = self.up
        if u:
            # A byte goes out once its stop bit has passed on the virtual clock and on the wall
            # clock: a UART.flush() charges a whole frame's time at once, and the far end must
            # not have the frame (and answer it, into our DE) before the line could carry it.
            w = twin.wall_us()
            t = w if w < twin.now_us else twin.now_us
            if u[0][0] + u[0][1] <= t:
                self._send(t)
            if u and wait_us > 0:
                due = u[0][0] + u[0][1] - w  # the next byte's stop bit, on the wall clock
                if due < wait_us:
                    wait_us = due if due > 1 else 1
        return wait_us

    def _send(self, now):
        # Bytes whose stop bit has passed by `now`; one that DE did not drive for its whole time
        # is left out (the far end saw an idle line).
        out = bytearray()
        u = self.up
        i = 0
        while i < len(u) and u[i][0] + u[i][1] <= now:
            s, bt, b = u[i]
            if self.driven(s, bt):
                out.append(b)
            else:
                twin.stats["tx_undriven_bytes"] += 1
            i += 1
        del u[:i]
        if out:
            twin.stats["tx_sent_bytes"] += len(out)
            try:
                self.sock.sendto(out, self.peer)
            except OSError:
                pass  # the supervisor is gone: the bytes are lost, as on an open line

    def recv(self):
        """One datagram from outside (self.sock is readable)."""
        try:
            n = self.sock.readinto(self.buf)
        except OSError:
            return
        if not n:
            return
        if self.uart is None:
            twin.stats["rx_before_uart"] += n
            return
        twin.stats["rx_bytes"] += n
        # Received now on the wall clock; the twin's clock is at most a few ms ahead of it (and
        # when it lags, the bytes are there now for the firmware, as they are on the line).
        t = twin.wall_us()
        if t > twin.now_us:
            t = twin.now_us
        if t < self.down_end:
            t = self.down_end
        bt = self.byte_us
        d = self.down
        b = self.buf
        for i in range(n):
            d.append([t + (i + 1) * bt, b[i]])
        self.down_end = t + n * bt
