# Message types and payload layouts (SPEC.md §5). All fields little-endian.
#
# Event kinds and channel numbers are the detector's own codes from efd.events: one set of
# numbers from the ADC to the monitoring platform. Values stay in the detector's integer units
# (residual mA, temperature 0.1 degC, line current 0.01 A), so nothing is rounded on the way.
#
# This module holds the detector's half of the codec, in numbers only: encoding the uplink
# messages it sends as dicts (HELLO, RESULT, CONFIG, SNAPSHOT; TELEMETRY and EVENT go through
# frame.Encoder) and decoding the downlink (POLL, ACK, COMMAND). The host's half is
# protocol/host.py: decoding uplink, encoding downlink, and every name (types, commands,
# results, reset causes, channels): a host's decode says cmd "reset", the detector's says
# CMD_RESET. host.py is loaded on first use by pack(), unpack() or an attribute lookup here, so
# the detector never spends heap on it. One source for every layout: nothing is written twice.
import struct
from binascii import hexlify

from efd.compat import const

# Uplink (detector -> host). Type 0 is reserved so an all-zero header is never valid.
HELLO = const(1)
TELEMETRY = const(2)
EVENT = const(3)
RESULT = const(4)
CONFIG = const(5)
SNAPSHOT = const(6)
UPDATE_STATUS = const(7)  # signed update: the detector's progress (SPEC.md §12; app/ota.py)
# Downlink (host -> detector).
POLL = const(16)
ACK = const(17)
COMMAND = const(18)
UPDATE = const(19)  # signed update: begin, chunk, status, install, abort (SPEC.md §12)

# Their names: host.TYPE_NAMES.


def uplink(t):
    """Types below 16 travel detector -> host; 16..31 host -> detector (SPEC.md §5)."""
    return t < 16


# Commands (COMMAND payload byte 0).
CMD_RESET = const(1)  # reset latched alarms: arg channel u8 (0xFF = all)
CMD_SELFTEST = const(2)
CMD_SET_CONFIG = const(3)  # args: (param u8, value i32) * n
CMD_TIME_SYNC = const(4)  # arg time u32 (seconds since 2020-01-01T00:00:00Z)
CMD_SNAPSHOT = const(5)  # arg snap_id u16 (0 = the latest)
CMD_REBOOT = const(6)
CMD_GET_CONFIG = const(7)
# Raise the detector's uplink counter above arg mark u32 (the host's highest mark for it), and
# re-send its pending events under new counters: recovery for a counter that went backwards
# (SPEC.md §7.4). Only ever raises, so a replayed copy changes nothing.
CMD_RESYNC = const(8)
# The link's state (SPEC.md §5.9): RESULT value = WiFi RSSI in dBm (< 0) while associated, 1 if
# the WiFi station is not associated, 0 on a link that is not WiFi (RS-485, the simulator's).
# Private (folded by the compiler): one more module global grows this resident module's dict by
# 160 bytes; app/commands.py, loaded per command, compares with the number itself.
_CMD_LINK_STATUS = const(9)
CMD_ALL = const(0xFF)  # CMD_RESET channel: every channel
# Their names, and those of the RESULT status codes and the HELLO reset causes (the ESP32
# port's machine.reset_cause() numbers): host.CMD_NAMES, RESULT_NAMES, RESET_CAUSES.

# Configuration parameter ids for CONFIG and SET_CONFIG: a setting's id is its position in
# efd.config.NAMES + 1 (NAMES[id - 1]); ids beyond it travel as "p<id>". The
# host's list with id 0 reserved is host.PARAMS.

# TELEMETRY status bits. Bits 0-8: alarm latched on channel n (efd.events channel numbers).
ST_PREALARM = const(0x0200)  # some channel is in pre-alarm
ST_FAULT = const(0x0400)  # some sensor fault is active
ST_SELFTEST = const(0x0800)  # a self-test is running
ST_CLOCK_UNSET = const(0x1000)  # no time sync since boot: header time is 0
ST_PENDING = const(0x2000)  # unacknowledged events queued: poll again soon
# Their names, in bit order: host.STATUS_FLAGS.

# "No reading" sentinels: a channel not fitted, or a sensor in fault.
NA_U16 = const(0xFFFF)
NA_I16 = const(-32768)

MAX_SAMPLES = const(96)  # per SNAPSHOT chunk: keeps the frame under 254 bytes

# UPDATE ops (payload byte 0, SPEC.md §12): 1 begin (u32 image, u32 size), 2 chunk (u32 image,
# u32 offset, data), 3 status, 4 install, 5 abort (u32 image). Private here (a public const is
# a dict slot and a qstr on the detector's heap): the host's are host.UP_*, the detector's
# app/ota.py's.
_UP_BEGIN = const(1)
_UP_CHUNK = const(2)
_UP_MAX_CHUNK = const(200)  # image bytes a chunk carries at most


def _num(v, table):
    # A field the detector passes as a number; a host may pass its name, found in
    # host.NAME_TABLES[table] (0 commands, 1 result status, 2 reset causes, 3 channels).
    if isinstance(v, int):
        return v
    return _host().NAME_TABLES[table].index(v)


def _params(b, s, e):
    from efd import config  # only SET_CONFIG has params: the detector loads it for that

    if (e - s) % 5:
        return None
    # A list of [name, value] pairs, not a dict: wire order survives (MicroPython dicts do
    # not keep insertion order) and the host sees exactly what was sent.
    out = []
    for o in range(s, e, 5):
        pid, val = struct.unpack_from("<Bi", b, o)
        if 0 < pid <= len(config.NAMES):
            name = config.NAMES[pid - 1]
        else:
            name = "p" + str(pid)
        out.append([name, val])
    return out


def _pack_params(buf, o, params):
    from efd import config

    for name, value in params:
        if name[0] == "p" and name[1:].isdigit():
            pid = int(name[1:])
        else:
            pid = config.NAMES.index(name) + 1
        struct.pack_into("<Bi", buf, o, pid, value)
        o += 5
    return o


# Minimum payload length per type, indexed by the type (5 bits); 0xFF: no such type. Fixed-layout
# types ignore bytes beyond it (SPEC.md §6: later minor revisions append fields at the end).
# A 32-byte table rather than a dict: 64 bytes of heap on the detector instead of 224.
MIN_LEN = bytearray(b"\xff" * 32)
MIN_LEN[HELLO] = 16
MIN_LEN[TELEMETRY] = 18
MIN_LEN[EVENT] = 10
MIN_LEN[RESULT] = 10
MIN_LEN[CONFIG] = 4
MIN_LEN[SNAPSHOT] = 12
MIN_LEN[UPDATE_STATUS] = 17
MIN_LEN[POLL] = 0
MIN_LEN[ACK] = 4
MIN_LEN[COMMAND] = 1
MIN_LEN[UPDATE] = 5


def _poll(b, s, e):
    return {}


def _ack(b, s, e):
    at, aseq, acrc = struct.unpack_from("<BBH", b, s)
    return {"ack_type": at, "ack_seq": aseq, "ack_crc": acrc}


def _unpack_command(b, s, e):
    cmd = b[s]
    d = {"cmd": cmd}
    s += 1
    n = e - s
    if cmd == CMD_RESET:
        if n < 1:
            return None
        d["channel"] = b[s]  # CMD_ALL: every channel
    elif cmd == CMD_SET_CONFIG:
        params = _params(b, s, e)
        if params is None:
            return None
        d["params"] = params
    elif cmd == CMD_TIME_SYNC:
        if n < 4:
            return None
        d["set_time"] = struct.unpack_from("<I", b, s)[0]
    elif cmd == CMD_SNAPSHOT:
        if n < 2:
            return None
        d["snap_id"] = struct.unpack_from("<H", b, s)[0]
    elif cmd == CMD_RESYNC:
        if n < 4:
            return None
        d["mark"] = struct.unpack_from("<I", b, s)[0]
    elif cmd not in (CMD_SELFTEST, CMD_REBOOT, CMD_GET_CONFIG, _CMD_LINK_STATUS):
        # Unknown command: args kept as hex; the detector answers RESULT unknown_command.
        d["args"] = hexlify(bytes(b[s:e])).decode()
    return d


def _unpack_update(b, s, e):
    # The detector's view of UPDATE: the payload itself (app/ota.py, loaded only for an update,
    # reads its fields; the host's view is host.py's); here only its length is checked.
    n = e - s
    op = b[s]
    if (op == _UP_BEGIN and n < 9) or (op == _UP_CHUNK and not 10 <= n <= 9 + _UP_MAX_CHUNK):
        return None
    return memoryview(b)[s:e]


_UNPACK = {POLL: _poll, ACK: _ack, COMMAND: _unpack_command, UPDATE: _unpack_update}


def unpack(t, b, s, e, names=True):
    """Fields of a type-t payload at b[s:e] as a dict, or None if the payload is malformed
    (shorter than the type's layout, or a list of the wrong length). names=False is the
    detector's view of the downlink: codes as numbers, and host.py never loaded."""
    if e - s < MIN_LEN[t]:
        return None
    f = None if names else _UNPACK.get(t)
    if f is None:
        f = _host().UNPACK[t]
    return f(b, s, e)


def pack(t, fields, buf, o):
    """Write a type-t payload from a fields dict (the inverse of unpack) at buf[o:]; returns
    the end offset. The detector's rare frames come here (Encoder.message); its hot paths call
    Encoder methods. Other types are host.pack's."""
    f = fields
    if t == HELLO:
        fw = f["fw"]
        struct.pack_into(
            "<BBBBIII",
            buf,
            o,
            fw[0],
            fw[1],
            fw[2],
            _num(f["reset_cause"], 2),
            f["boot_count"],
            f["config_hash"],
            f["host_counter"],
        )
        return o + 16
    if t == RESULT:
        struct.pack_into(
            "<IBBi",
            buf,
            o,
            f["cmd_counter"],
            _num(f["cmd"], 0),
            _num(f["status"], 1),
            f["value"],
        )
        return o + 10
    if t == CONFIG:
        struct.pack_into("<I", buf, o, f["config_hash"])
        return _pack_params(buf, o + 4, f["params"])
    if t == SNAPSHOT:
        sm = f["samples"]
        struct.pack_into(
            "<HBBBbHHH",
            buf,
            o,
            f["snap_id"],
            _num(f["channel"], 3),
            f["chunk"],
            f["chunks"],
            f["scale_exp"],
            f["rate_hz"],
            f["trigger"],
            f["offset"],
        )
        o += 12
        for v in sm:
            struct.pack_into("<h", buf, o, v)
            o += 2
        return o
    return _host().pack(t, f, buf, o)


_hostmod = None


def _host():
    """protocol.host, imported once."""
    global _hostmod
    if _hostmod is None:
        from protocol import host

        _hostmod = host
    return _hostmod
