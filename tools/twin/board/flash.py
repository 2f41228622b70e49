# The board twin's SPI NOR flash: the block device under the firmware's LittleFS (VfsLfs2), as
# the ESP32 port's `esp32.Partition` is on the board.
#
# Why a model and not a RAM disk: the event log's cost on the board is erases (tens of ms each,
# hundreds worst case, with a watchdog running) and its safety is what is left on the chip when
# the power goes in the middle of an operation. So this device
#   * is NOR: erase sets a 4 KB sector to 0xFF, a program can only clear bits (programming a 0
#     back to 1 is a driver bug: counted in `violations`, an error when strict);
#   * writes through to a host file, one write per operation: the unix port's files are
#     unbuffered, so a process killed at any instant leaves exactly what had been programmed;
#   * counts what LittleFS does to it (operations, bytes, erases per block) and charges the
#     datasheet time of each operation to the twin's clock;
#   * cuts the power on request after the n-th program/erase, optionally half-way through it.
#
# It speaks MicroPython's extended block protocol (docs: library/vfs, "Block devices"):
# readblocks(n, buf, off), writeblocks(n, buf, off) without erasing, ioctl(6, n) erases.
# MicroPython only (readinto/write with a byte count, vfs); it allocates nothing per operation,
# since on the twin it shares the heap with the firmware.
import os

import vfs
from micropython import const

try:
    import twin
except ImportError:  # used on its own (tests): no clock unless a charge callable is given
    twin = None

BLOCK = const(4096)  # erase unit: the 4 KB sector; also LittleFS's block (ioctl 5)
PAGE = const(256)  # program unit of the chip: a program never crosses a page boundary

# Timing. Chip: Winbond W25Q32JV (32 Mbit, 3 V, 4 KB sectors, 256 B pages), one of the 4 MB
# quad SPI NOR flashes found on ESP32-WROOM-32 modules (GigaDevice GD25Q32 is another; their
# figures are close). Winbond W25Q32JV datasheet (rev. G, 2018-03-27), table "AC Electrical
# Characteristics", typical / maximum:
T_SE_US = const(45000)  # tSE, sector erase (4 KB): 45 ms typ
T_SE_MAX_US = const(400000)  # tSE max: 400 ms (worn or hot parts)
T_PP_US = const(700)  # tPP, page program (256 B): 0.7 ms typ
T_PP_MAX_US = const(3000)  # tPP max: 3 ms
T_BP1_US = const(30)  # tBP1, byte program, first byte: 30 us typ
T_BP1_MAX_US = const(50)  # tBP1 max
T_BP2_NS = const(2500)  # tBP2, each additional byte: 2.5 us typ
T_BP2_MAX_NS = const(12000)  # tBP2 max
# A program of n bytes within a page takes tBP1 + (n - 1) * tBP2, at most tPP (the datasheet's
# byte-program figures; a full page is tPP).
# The bus: ESP-IDF drives the flash through the SPI1 controller, whose data buffer is 64 bytes
# (ESP-IDF hal/spi_flash_hal.h, SPI_FLASH_HAL_MAX_WRITE_BYTES / _MAX_READ_BYTES = 64), so every
# read or page-program command moves at most 64 bytes. Clock 40 MHz (the ESP32's default
# flash frequency, esptool --flash_freq 40m).
CHUNK = const(64)
BUS_MHZ = const(40)
READ_LINES = const(4)  # QIO: 4 data bits per clock (Quad I/O Fast Read, EBh); DIO would be 2
READ_CMD_CLOCKS = const(20)  # EBh: 8 command + 6 address + 2 mode + 4 dummy clocks
PROG_CMD_CLOCKS = const(40)  # 02h Page Program on 1 line: 8 command + 24 address + WREN's 8
# Per call software cost (esp_partition_read/write/erase_range: argument checks, the flash
# lock, cache disable and enable around the operation): an estimate, not from a datasheet.
CALL_US = const(10)


class PowerCut(BaseException if twin is None else twin.Reset):
    """The power failed during a flash operation (Flash.cut_after). A BaseException (on the
    twin the twin's Reset, cause 1 = power on), so `except Exception` in the firmware cannot
    swallow it."""


# Made once: it may be raised from inside LittleFS, where the heap can be locked (no new objects).
_CUT = PowerCut(1)


class Flash:
    """A NOR flash of `blocks` 4 KB sectors stored in the host file `path` (created blank, all
    0xFF, if missing or shorter; 512 blocks = the 2 MB `vfs` partition of the ESP32 port's 4 MB
    partition table, ports/esp32/partitions-4MiB.csv). `charge(us)` is told the time of every
    operation (default: the twin's clock when `twin` imports, else nothing); worst=True charges
    every operation at its datasheet maximum instead of the typical figure."""

    def __init__(self, path, blocks=512, charge=None, worst=False, strict=True):
        self.blocks = blocks
        self.strict = strict
        if charge is None and twin is not None:
            charge = twin.charge
        self.charge = charge
        self.t_se = T_SE_MAX_US if worst else T_SE_US
        self.t_pp = T_PP_MAX_US if worst else T_PP_US
        self.t_bp1 = T_BP1_MAX_US if worst else T_BP1_US
        self.t_bp2 = T_BP2_MAX_NS if worst else T_BP2_NS
        self.ff = bytearray(b"\xff" * PAGE)
        self.old = bytearray(PAGE)
        size = blocks * BLOCK
        try:
            have = os.stat(path)[6]
        except OSError:
            have = 0
            open(path, "wb").close()
        f = open(path, "r+b")
        if have < size:
            f.seek(have)
            while have < size:
                n = size - have if size - have < PAGE else PAGE
                f.write(self.ff, n)
                have += n
        self.f = f
        self.dead = False  # the power is gone: writes are ignored until power_on()
        self._cut = 0  # program/erase operations left before the power fails (0: never)
        self._torn = -1
        self.reset_counters()

    def reset_counters(self):
        self.reads = 0  # readblocks calls
        self.read_bytes = 0
        self.progs = 0  # writeblocks calls that programmed
        self.prog_bytes = 0
        self.erases = 0  # sector erases
        self.us = 0  # time charged (microseconds)
        self.violations = 0  # bits a program wanted to raise from 0 to 1 (not strict)
        self.wear = [0] * self.blocks  # erases per block (a list: built once, not per operation)

    # -- power ------------------------------------------------------------------------------------
    def cut_after(self, n, torn=-1):
        """The n-th program/erase from now (n >= 1) is the last: it runs (if torn >= 0, only its
        first `torn` bytes land), then the power fails: `dead` is set, PowerCut is raised from
        that operation and later writes are ignored. n = 0 disarms."""
        self._cut = n
        self._torn = torn

    def power_on(self):
        """Power back (after a cut): writes work again, nothing is armed."""
        self.dead = False
        self._cut = 0
        self._torn = -1

    def _off(self):
        return self.dead or (twin is not None and twin.dead)

    def _last(self):
        # True when this program/erase is the last one before the cut.
        if self._cut:
            self._cut -= 1
            return self._cut == 0
        return False

    def _fail(self):
        self.dead = True
        if twin is not None and self.charge is twin.charge:
            twin.dead = True  # a reset is unwinding: the twin's other models stop acting too
        raise _CUT

    def _spend(self, us):
        self.us += us
        if self.charge is not None:
            self.charge(us)

    # -- block protocol ---------------------------------------------------------------------------
    def readblocks(self, n, buf, off=0):
        a = n * BLOCK + off
        size = len(buf)
        if a < 0 or a + size > self.blocks * BLOCK:
            raise OSError(22)
        f = self.f
        f.seek(a)
        f.readinto(buf)
        self.reads += 1
        self.read_bytes += size
        cmds = (size + CHUNK - 1) // CHUNK
        self._spend(CALL_US + (cmds * READ_CMD_CLOCKS + size * 8 // READ_LINES) // BUS_MHZ)

    def writeblocks(self, n, buf, off=None):
        if off is None:  # basic protocol (e.g. VfsFat): erase the blocks, then program them
            for b in range(len(buf) // BLOCK):
                self._erase(n + b)
            off = 0
        self._program(n * BLOCK + off, buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.blocks
        if op == 5:  # block size
            return BLOCK
        if op == 6:  # erase one block
            self._erase(arg)
        return 0  # 1 init, 2 deinit, 3 sync: nothing to do (written through)

    # -- the chip ---------------------------------------------------------------------------------
    def _erase(self, n):
        if n < 0 or n >= self.blocks:
            raise OSError(22)
        if self._off():
            return
        last = self._last()
        size = self._torn if last and 0 <= self._torn < BLOCK else BLOCK
        f = self.f
        f.seek(n * BLOCK)
        while size > 0:
            k = size if size < PAGE else PAGE
            f.write(self.ff, k)
            size -= k
        self.erases += 1
        self.wear[n] += 1
        self._spend(CALL_US + self.t_se)
        if last:
            self._fail()

    def _program(self, a, buf):
        size = len(buf)
        if a < 0 or a + size > self.blocks * BLOCK:
            raise OSError(22)
        if self._off():
            return
        last = self._last()
        if last and 0 <= self._torn < size:
            size = self._torn
        f = self.f
        old = self.old
        us = CALL_US
        i = 0
        while i < size:
            # One page-program command: up to CHUNK bytes, never across a page boundary.
            k = PAGE - (a + i) % PAGE
            if k > CHUNK:
                k = CHUNK
            if k > size - i:
                k = size - i
            f.seek(a + i)
            f.readinto(old, k)
            bad = 0
            for j in range(k):
                o = old[j]
                d = buf[i + j]
                bad |= d & ~o & 0xFF
                old[j] = o & d
            if bad:
                self.violations += 1
                if self.strict:
                    raise AssertionError("flash: program raises bits at %d" % (a + i))
            f.seek(a + i)
            f.write(old, k)
            t = self.t_bp1 + (k - 1) * self.t_bp2 // 1000
            us += (PROG_CMD_CLOCKS + 8 * k) // BUS_MHZ + (t if t < self.t_pp else self.t_pp)
            i += k
        self.progs += 1
        self.prog_bytes += size
        self._spend(us)
        if last:
            self._fail()

    def blank(self, n):
        """True if block n reads all 0xFF (never programmed since its last erase). A look at the
        chip for mount(), not a read by the firmware: not counted, no time charged."""
        f = self.f
        old = self.old
        for p in range(BLOCK // PAGE):
            f.seek(n * BLOCK + p * PAGE)
            f.readinto(old)
            for x in old:
                if x != 0xFF:
                    return False
        return True


def mount(flash, path="/flash"):
    """Mount the LittleFS on `flash` at `path`, creating it first if the flash is blank, as the
    ESP32 port's boot does (_boot.py, inisetup.py: mkfs only when the first block is erased; a
    filesystem that does not mount on a written flash is an error, not something to format)."""
    try:
        fs = vfs.VfsLfs2(flash)
    except OSError:
        if not flash.blank(0):
            raise
        vfs.VfsLfs2.mkfs(flash)
        fs = vfs.VfsLfs2(flash)
    vfs.mount(fs, path)
    return fs
