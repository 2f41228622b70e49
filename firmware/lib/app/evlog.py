# Persistent event log, append-only, shaped for LittleFS on NOR flash.
#
# Store-and-forward: every detector event is appended here before it is sent, and stays
# "pending" until the host ACKs it, so alarms survive reboots, power cuts and link outages and
# are delivered in order once the link is back (protocol/SPEC.md §8).
#
# Why this shape (measured with the board twin's flash, docs/firmware.md "Event log on
# LittleFS"): LittleFS never overwrites data. Writing into the middle of a file copies the rest
# of the file to new blocks (the previous format, a 32 KB ring rewritten in place, cost ~9 block
# erases per append and per ack), and even appending to a file after flush() copies its partly
# filled last block to a new one (1 erase and ~2 KB each time). A file of <= 128 bytes is
# different: LittleFS keeps it inline in its directory's metadata log, so rewriting it is one
# small commit (~170 B programmed; an erase only when that log compacts). Hence two tiers:
#
#   events.bin      the tail, 124 B, inline: a header and the newest 1-4 records. Every append
#                   and every ack rewrites it whole: one commit, flushed before returning.
#   events.bin.0/1  segments: the tail's records moved out four at a time (one block copy per
#                   four events). Segment k holds ids k*CAP+1 .. (k+1)*CAP at fixed offsets in
#                   the file named by k's parity: starting segment k truncates segment k - 2.
#
# Tail header: acked u32 (every id <= acked has been acknowledged), seg u32 (every id <= seg is
# in a segment), crc16 of those 8 bytes, 2 zero bytes. Then 4 slots: id seg+1+i in slot i.
# Records (little-endian, 28 B): id u32, time u32 (2020-epoch s), counter u32, value i32,
# threshold i32, seq u8, kind u8, channel u8, 0 u8, crc16 of the first 24 bytes, 2 zero bytes.
# The wire seq and counter are fixed when the event is logged, so every transmission of an
# event, before or after a reboot, is byte-identical (SPEC.md §8) and the host's
# (device, seq, crc) dedup sees one event. ids start at 1; id 0 is an empty slot.
#
# Power cuts: LittleFS commits a file's new contents atomically at flush(), so after a cut each
# file is as of its last flush: an event whose append() returned is kept, an ack that returned
# holds (an ack cut short may be lost: that event is sent once more, the host dedups). Records
# are copied to their segment before the tail says so (seg) and before their slots are reused,
# at offsets fixed by id, so a move cut short is simply done again. On the unix port (VfsPosix)
# a record torn by a kill fails its CRC and is skipped.
#
# Capacity: the log holds the newest CAP + 5 to 2*CAP + 4 events (all of them until there are
# more). Starting segment k drops the events of segment k - 2, acknowledged or not: they count
# as acknowledged from then on. CAP 1024 x 28 B = 28 KB a segment; the generic-detector anchor
# keeps 100 records, the issue asks for >= 1000.
# A missing tail, or one of another size (the previous format's 32 KB ring was events.bin too),
# starts a new log; old segment files are truncated as they are reused. The previous format's
# unacknowledged events, if any, are not carried over: a one-off upgrade path would cost ~0.4 KB
# of resident code in a heap that has ~1 KB to spare on the x64 unix port.
import struct

from efd.compat import const
from protocol.crc import crc16

CAP = const(1024)  # records per segment
_REC = const(28)
_HDR = const(12)
_SLOTS = const(4)
_TAIL = const(_HDR + _SLOTS * _REC)  # 124 B: inline in LittleFS (<= its 128 B cache)
_FMT = "<IIIiiBBBB"  # 24 bytes, then crc16


class EventLog:
    def __init__(self, path="events.bin"):
        self.path = path
        self.buf = bytearray(_REC)  # a record read from a segment
        self.img = img = bytearray(_TAIL)  # the tail file's contents
        self.g = None  # the segment before the newest, opened when a record there is read
        try:
            f = open(path, "r+b")
            f.seek(0, 2)
            ok = f.tell() == _TAIL
            if ok:
                f.seek(0)
                f.readinto(img)
            else:
                f.close()
        except OSError:
            ok = False
        if not ok:
            f = open(path, "w+b")
            f.write(img)
            f.flush()
        self.f = f
        acked, seg, c = struct.unpack_from("<IIH", img, 0)
        if crc16(img, 0, 8) != c:
            acked = seg = 0
        self.seg = seg
        self.s = None  # the newest segment, open for reads and writes
        if seg:
            name = path + (".1" if (seg - 1) // CAP & 1 else ".0")
            try:
                self.s = open(name, "r+b")
            except OSError:  # deleted behind our back: its records read as gone
                self.s = open(name, "w+b")
        head = seg
        for i in range(_SLOTS):
            if self._id(img, _HDR + i * _REC) == seg + 1 + i:
                head = seg + 1 + i
        self.head = head
        self.acked = acked if acked < head else head

    def _id(self, b, o):
        # The id of the record at b[o:], 0 unless it is intact.
        rid = struct.unpack_from("<I", b, o)[0]
        if rid and crc16(b, o, o + 24) == (b[o + 24] | (b[o + 25] << 8)):
            return rid
        return 0

    def _save(self, acked):
        img = self.img
        struct.pack_into("<II", img, 0, acked, self.seg)
        c = crc16(img, 0, 8)
        img[8] = c & 0xFF
        img[9] = c >> 8
        f = self.f
        f.seek(0)
        f.write(img)
        f.flush()

    def append(self, t, counter, seq, kind, channel, value, threshold):
        """Persist one event; returns its id."""
        rid = self.head + 1
        i = (rid - 1) % _SLOTS
        img = self.img
        if i == 0 and self.seg < rid - 1:
            # The tail's four records (ids rid-4..rid-1) to their segment before _save lets go
            # of them. A new segment k truncates the file of segment k - 2.
            s = self.s
            o = (rid - 5) % CAP
            if s is None or o == 0:
                # Segment k's file holds segment k - 2, whose events are dropped now: count them
                # as acknowledged first, so that no cut can leave them pending in a reused file.
                a = rid - 5 - CAP
                if self.acked < a:
                    self.acked = a
                    self._save(a)
                if s is not None:
                    s.close()
                if self.g is not None:
                    self.g.close()
                    self.g = None
                self.s = s = open(self.path + (".1" if (rid - 5) // CAP & 1 else ".0"), "w+b")
            s.seek(o * _REC)
            s.write(memoryview(img)[_HDR:])
            s.flush()
            self.seg = rid - 1
        o = _HDR + i * _REC
        struct.pack_into(_FMT, img, o, rid, t, counter, value, threshold, seq, kind, channel, 0)
        c = crc16(img, o, o + 24)
        img[o + 24] = c & 0xFF
        img[o + 25] = c >> 8
        self._save(self.acked)
        self.head = rid
        return rid

    def first_pending(self):
        """Oldest unacknowledged id (dropped ones count as acknowledged), or 0."""
        rid = self.acked + 1
        return rid if rid <= self.head else 0

    def read(self, rid):
        """(t, counter, seq, kind, channel, value, threshold) of event rid, or None if the log no
        longer holds it (dropped or torn)."""
        seg = self.seg
        k = (seg - 1) // CAP  # the newest segment
        if rid > self.head or rid <= (k - 1) * CAP:
            return None
        if rid > seg:
            b = self.img
            o = _HDR + (rid - 1) % _SLOTS * _REC
        else:
            b = self.buf
            o = 0
            f = self.s
            if (rid - 1) // CAP != k:
                f = self.g
                if f is None:
                    try:
                        f = self.g = open(self.path + (".0" if k & 1 else ".1"), "rb")
                    except OSError:
                        return None
            f.seek((rid - 1) % CAP * _REC)
            f.readinto(b)
        if self._id(b, o) != rid:
            return None
        r = struct.unpack_from(_FMT, b, o)
        return (r[1], r[2], r[5], r[6], r[7], r[3], r[4])

    def ack(self, rid):
        """Mark every id <= rid delivered (persisted)."""
        if rid <= self.acked:
            return
        self._save(rid)
        self.acked = rid
