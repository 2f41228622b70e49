# The RS-485 transceiver on the twin's UART 2 (MAX3485, DE and /RE tied to one GPIO), shared by
# the offline bus with its polling master (bus.py) and a virtual device's outside bus
# (extbus.py). What it does (MAX3485 data sheet, function table): with DE high the driver puts
# our TX on the bus and the receiver is off (/RE high), so bytes from the far end are lost; with
# DE low our TX never reaches the bus. Every byte's fate is decided by the DE level during it.
# No protocol code here: a virtual device's flash may be blank, with no codec to import.
import twin
from machine import level_at


class Transceiver:
    """machine.UART's side: attach, transmit, pending, take. Subclasses fill `down` (bytes on
    their way to us, [arrival_end_us, byte]) and drain `up` ([start_us, byte_us, byte])."""

    def __init__(self, cfg):
        self.de = cfg["de_gpio"]
        self.rx = bytearray()  # bytes our UART has received, not yet read by the firmware
        self.rxbuf = 512
        self.down = []
        self.up = []
        self.uart = None

    def attach(self, uart):
        self.uart = uart
        self.rxbuf = uart.rxbuf

    def transmit(self, start, data, byte_us):
        for i in range(len(data)):
            self.up.append([start + i * byte_us, byte_us, data[i]])
        twin.stat("tx_bytes", len(data))

    def _arrive(self, now):
        d = self.down
        i = 0
        while i < len(d) and d[i][0] <= now:
            t, b = d[i]
            if level_at(self.de, t - 1):
                twin.stat("rx_lost_de_high")  # our receiver is off while we drive the bus
            elif len(self.rx) >= self.rxbuf:
                twin.stat("rx_overflow")
            else:
                self.rx.append(b)
            i += 1
        if i:
            del d[:i]

    def pending(self, now):
        self._arrive(now)
        return len(self.rx)

    def take(self, now, buf, n):
        self._arrive(now)
        n = min(n, len(self.rx))
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]  # (MicroPython's bytearray has no slice deletion)
        return n

    def driven(self, s, bt):
        """Whether DE drove the whole byte that started at s (else the far end saw idle)."""
        return level_at(self.de, s) and level_at(self.de, s + bt - 1)
