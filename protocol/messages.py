# Message types and payload layouts (SPEC.md §5). All fields little-endian.
#
# Event kinds and channel numbers are the detector's own codes from efd.events: one set of
# numbers from the ADC to the monitoring platform. Values stay in the detector's integer units
# (residual mA, temperature 0.1 degC, line current 0.01 A), so nothing is rounded on the way.
import struct
from binascii import hexlify, unhexlify

from efd import events as ev
from efd.compat import const

# Uplink (detector -> host). Type 0 is reserved so an all-zero header is never valid.
HELLO = const(1)
TELEMETRY = const(2)
EVENT = const(3)
RESULT = const(4)
CONFIG = const(5)
SNAPSHOT = const(6)
# Downlink (host -> detector).
POLL = const(16)
ACK = const(17)
COMMAND = const(18)

TYPE_NAMES = {
    HELLO: "hello",
    TELEMETRY: "telemetry",
    EVENT: "event",
    RESULT: "result",
    CONFIG: "config",
    SNAPSHOT: "snapshot",
    POLL: "poll",
    ACK: "ack",
    COMMAND: "command",
}
TYPE_CODES = {}
for _k in TYPE_NAMES:
    TYPE_CODES[TYPE_NAMES[_k]] = _k


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
CMD_NAMES = ("", "reset", "selftest", "set_config", "time_sync", "snapshot", "reboot", "get_config")

# RESULT status codes.
RESULT_NAMES = ("ok", "unknown_command", "bad_argument", "busy", "failed")

# HELLO reset cause: the ESP32 port's machine.reset_cause() numbers (PWRON_RESET=1 ...).
RESET_CAUSES = ("unknown", "power_on", "hard", "watchdog", "deepsleep", "soft")

# Configuration parameter ids for CONFIG and SET_CONFIG. The names are efd/config.py's keys.
# A wire id is never reused or renumbered; new settings get new ids at the end.
PARAMS = (
    "",
    "mains_hz",
    "leak_set_ma",
    "leak_delay_s",
    "leak_prealarm_pct",
    "leak_hyst_pct",
    "temp_set_c",
    "temp_delay_s",
    "temp_prealarm_pct",
    "temp_hyst_c",
    "temp_ror_c_per_min",
    "temp_channels",
    "line_set_a",
    "line_delay_s",
    "line_prealarm_pct",
    "line_hyst_pct",
    "phase_channels",
    "arc_enabled",
    "fault_delay_s",
    "res_gain_q12",
    "phase_gain_q12",
    "ct_bias_lo",
    "ct_bias_hi",
)

# TELEMETRY status bits. Bits 0-8: alarm latched on channel n (efd.events channel numbers).
ST_PREALARM = const(0x0200)  # some channel is in pre-alarm
ST_FAULT = const(0x0400)  # some sensor fault is active
ST_SELFTEST = const(0x0800)  # a self-test is running
ST_CLOCK_UNSET = const(0x1000)  # no time sync since boot: header time is 0
ST_PENDING = const(0x2000)  # unacknowledged events queued: poll again soon
STATUS_FLAGS = ("prealarm", "fault", "selftest", "clock_unset", "events_pending")

# "No reading" sentinels: a channel not fitted, or a sensor in fault.
NA_U16 = const(0xFFFF)
NA_I16 = const(-32768)

MAX_SAMPLES = const(96)  # per SNAPSHOT chunk: keeps the frame under 254 bytes


def _name(table, i):
    if 0 <= i < len(table) and table[i]:
        return table[i]
    return i  # unknown codes stay numbers: decoders must not fail on new values


def _code(table, v):
    if isinstance(v, int):
        return v
    return table.index(v)


def status_flags(status):
    """Names of the status bits set: 'alarm:<channel>' for latched alarms, then flags."""
    out = []
    for ch in range(ev.N_CHANNELS):
        if status & (1 << ch):
            out.append("alarm:" + ev.CHANNEL_NAMES[ch])
    for i in range(len(STATUS_FLAGS)):
        if status & (0x200 << i):
            out.append(STATUS_FLAGS[i])
    return out


def _params(b, s, e):
    if (e - s) % 5:
        return None
    # A list of [name, value] pairs, not a dict: wire order survives (MicroPython dicts do
    # not keep insertion order) and the host sees exactly what was sent.
    out = []
    for o in range(s, e, 5):
        pid, val = struct.unpack_from("<Bi", b, o)
        name = _name(PARAMS, pid)
        if not isinstance(name, str):
            name = "p" + str(pid)
        out.append([name, val])
    return out


def _pack_params(buf, o, params):
    for name, value in params:
        if name[0] == "p" and name[1:].isdigit():
            pid = int(name[1:])
        else:
            pid = PARAMS.index(name)
        struct.pack_into("<Bi", buf, o, pid, value)
        o += 5
    return o


# Minimum payload length per type; fixed-layout types ignore bytes beyond it (SPEC.md §6:
# later minor revisions append fields at the end).
MIN_LEN = {
    HELLO: 16,
    TELEMETRY: 18,
    EVENT: 10,
    RESULT: 10,
    CONFIG: 4,
    SNAPSHOT: 12,
    POLL: 0,
    ACK: 4,
    COMMAND: 1,
}


def _telemetry(b, s, e):
    r, t0, t1, t2, t3, p0, p1, p2, st = struct.unpack_from("<HhhhhHHHH", b, s)
    # Sentinels inline, not via a helper: this is the host's hottest path.
    return {
        "residual_ma": None if r == 0xFFFF else r,
        "temp_dc": [
            None if t0 == -32768 else t0,
            None if t1 == -32768 else t1,
            None if t2 == -32768 else t2,
            None if t3 == -32768 else t3,
        ],
        "line_ca": [
            None if p0 == 0xFFFF else p0,
            None if p1 == 0xFFFF else p1,
            None if p2 == 0xFFFF else p2,
        ],
        "status": st,
    }


def _event(b, s, e):
    kind, ch, val, thr = struct.unpack_from("<BBii", b, s)
    return {
        "kind": _name(ev.KIND_NAMES, kind),
        "channel": _name(ev.CHANNEL_NAMES, ch),
        "value": val,
        "threshold": thr,
    }


def _hello(b, s, e):
    ma, mi, pa, rc, boots, ch, hc = struct.unpack_from("<BBBBIII", b, s)
    return {
        "fw": [ma, mi, pa],
        "reset_cause": _name(RESET_CAUSES, rc),
        "boot_count": boots,
        "config_hash": ch,
        "host_counter": hc,
    }


def _result(b, s, e):
    ctr, cmd, st, val = struct.unpack_from("<IBBi", b, s)
    return {
        "cmd_counter": ctr,
        "cmd": _name(CMD_NAMES, cmd),
        "status": _name(RESULT_NAMES, st),
        "value": val,
    }


def _config(b, s, e):
    params = _params(b, s + 4, e)
    if params is None:
        return None
    return {"config_hash": struct.unpack_from("<I", b, s)[0], "params": params}


def _snapshot(b, s, e):
    if (e - s - 12) % 2 or (e - s - 12) > 2 * MAX_SAMPLES:
        return None
    sid, ch, k, n, ex, rate, trig, off = struct.unpack_from("<HBBBbHHH", b, s)
    ns = (e - s - 12) // 2
    return {
        "snap_id": sid,
        "channel": _name(ev.CHANNEL_NAMES, ch),
        "chunk": k,
        "chunks": n,
        "scale_exp": ex,
        "rate_hz": rate,
        "trigger": trig,
        "offset": off,
        "samples": list(struct.unpack_from("<" + str(ns) + "h", b, s + 12)),
    }


def _poll(b, s, e):
    return {}


def _ack(b, s, e):
    at, aseq, acrc = struct.unpack_from("<BBH", b, s)
    return {"ack_type": TYPE_NAMES.get(at, at), "ack_seq": aseq, "ack_crc": acrc}


def unpack(t, b, s, e):
    """Fields of a type-t payload at b[s:e] as a dict, or None if the payload is malformed
    (shorter than the type's layout, or a list of the wrong length)."""
    if e - s < MIN_LEN[t]:
        return None
    return _UNPACK[t](b, s, e)


def _unpack_command(b, s, e):
    cmd = b[s]
    d = {"cmd": _name(CMD_NAMES, cmd)}
    s += 1
    n = e - s
    if cmd == CMD_RESET:
        if n < 1:
            return None
        d["channel"] = _name(ev.CHANNEL_NAMES, b[s]) if b[s] != 0xFF else "all"
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
    elif cmd not in (CMD_SELFTEST, CMD_REBOOT, CMD_GET_CONFIG):
        # Unknown command: args kept as hex; the detector answers RESULT unknown_command.
        d["args"] = hexlify(bytes(b[s:e])).decode()
    return d


_UNPACK = {
    HELLO: _hello,
    TELEMETRY: _telemetry,
    EVENT: _event,
    RESULT: _result,
    CONFIG: _config,
    SNAPSHOT: _snapshot,
    POLL: _poll,
    ACK: _ack,
    COMMAND: _unpack_command,
}


def pack(t, fields, buf, o):
    """Write a type-t payload from a fields dict (the inverse of unpack) at buf[o:]; returns
    the end offset. Host and test side: the detector's hot paths call Encoder methods."""
    f = fields
    if t == TELEMETRY:
        tt = f["temp_dc"]
        lc = f["line_ca"]
        struct.pack_into(
            "<HhhhhHHHH",
            buf,
            o,
            _or(f["residual_ma"], NA_U16),
            _or(tt[0], NA_I16),
            _or(tt[1], NA_I16),
            _or(tt[2], NA_I16),
            _or(tt[3], NA_I16),
            _or(lc[0], NA_U16),
            _or(lc[1], NA_U16),
            _or(lc[2], NA_U16),
            f["status"],
        )
        return o + 18
    if t == EVENT:
        struct.pack_into(
            "<BBii",
            buf,
            o,
            _code(ev.KIND_NAMES, f["kind"]),
            _code(ev.CHANNEL_NAMES, f["channel"]),
            f["value"],
            f["threshold"],
        )
        return o + 10
    if t == HELLO:
        fw = f["fw"]
        struct.pack_into(
            "<BBBBIII",
            buf,
            o,
            fw[0],
            fw[1],
            fw[2],
            _code(RESET_CAUSES, f["reset_cause"]),
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
            _code(CMD_NAMES, f["cmd"]),
            _code(RESULT_NAMES, f["status"]),
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
            _code(ev.CHANNEL_NAMES, f["channel"]),
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
    if t == POLL:
        return o
    if t == ACK:
        at = f["ack_type"]
        if not isinstance(at, int):
            at = TYPE_CODES[at]
        struct.pack_into("<BBH", buf, o, at, f["ack_seq"], f["ack_crc"])
        return o + 4
    if t == COMMAND:
        cmd = _code(CMD_NAMES, f["cmd"])
        buf[o] = cmd
        o += 1
        if cmd == CMD_RESET:
            ch = f["channel"]
            buf[o] = 0xFF if ch == "all" else _code(ev.CHANNEL_NAMES, ch)
            return o + 1
        if cmd == CMD_SET_CONFIG:
            return _pack_params(buf, o, f["params"])
        if cmd == CMD_TIME_SYNC:
            struct.pack_into("<I", buf, o, f["set_time"])
            return o + 4
        if cmd == CMD_SNAPSHOT:
            struct.pack_into("<H", buf, o, f["snap_id"])
            return o + 2
        args = unhexlify(f.get("args", ""))
        buf[o : o + len(args)] = args
        return o + len(args)
    raise ValueError("unknown type " + str(t))


def _or(v, na):
    return na if v is None else v
