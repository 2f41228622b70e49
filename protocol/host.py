# The host's half of the message codec (SPEC.md §5), and the host's API to the protocol:
# decoding what detectors send, encoding what hosts send, names for display (TYPE_NAMES,
# CMD_NAMES, status_flags, ...), presentation of decode results (Error.name, .reason,
# to_dict(), repr; Frame.name, to_dict(), repr: added to protocol.frame's classes when this
# module loads), physical units, settings checks, wire time from a clock (now, efd_time,
# EPOCH_UNIX), the TELEMETRY fast path (only hosts receive uplink).
#
# Host code imports this module for all of that; the device-side modules (frame, messages,
# session, ...) hold numbers only and forward nothing (issue 12), so the detector, which only
# encodes uplink and decodes downlink, never imports this module nor spends heap on it.
# messages.pack / unpack reach this module's encoders and decoders for the host's types
# (one source for every layout: here or in messages.py, never both).
import struct
from binascii import unhexlify

from efd import config, names
from efd import events as ev
from efd.compat import const
from protocol import frame
from protocol.messages import (
    ACK,
    CMD_ALL,
    CMD_RESET,
    CMD_RESYNC,
    CMD_SET_CONFIG,
    CMD_SNAPSHOT,
    CMD_TIME_SYNC,
    COMMAND,
    CONFIG,
    EVENT,
    HELLO,
    MAX_SAMPLES,
    NA_I16,
    NA_U16,
    POLL,
    RESULT,
    SNAPSHOT,
    TELEMETRY,
    UPDATE,
    UPDATE_STATUS,
    _ack,
    _pack_params,
    _params,
    _poll,
    _unpack_command,
    _unpack_update,
)

# Hosts require tags on what they act on (SPEC.md §5, "Why each type is or is not tagged"):
# events and command results, and the stored records CONFIG and SNAPSHOT (a chunk received
# again replaces the stored one, so an untagged chunk could overwrite an alarm's waveform).
# HELLO and TELEMETRY may arrive untagged: information only, never a route or a sign of life.
# (protocol.session.Peer takes it as `requires`; the detector's own is DETECTOR_REQUIRES.)
HOST_REQUIRES = (EVENT, RESULT, CONFIG, SNAPSHOT, UPDATE_STATUS)

# Seconds between the Unix epoch and ours (2020-01-01T00:00:00Z). Our epoch keeps every
# timestamp below 2^30 until 2054, so on the ESP32 it stays a small int (no heap allocation).
EPOCH_UNIX = 1577836800
_EPOCH_2000 = const(631152000)  # 2000-01-01 -> 2020-01-01: the ESP32 port's time.time() epoch

# Names of the codes the detector sends and receives as numbers (messages.py).
TYPE_NAMES = {
    HELLO: "hello",
    TELEMETRY: "telemetry",
    EVENT: "event",
    RESULT: "result",
    CONFIG: "config",
    SNAPSHOT: "snapshot",
    UPDATE_STATUS: "update_status",
    POLL: "poll",
    ACK: "ack",
    COMMAND: "command",
    UPDATE: "update",
}
CMD_NAMES = (
    "", "reset", "selftest", "set_config", "time_sync", "snapshot", "reboot", "get_config",
    "resync", "link_status",
)  # fmt: skip
RESULT_NAMES = ("ok", "unknown_command", "bad_argument", "busy", "failed", "locked")
RESET_CAUSES = ("unknown", "power_on", "hard", "watchdog", "deepsleep", "soft")
CHANNEL_NAMES = names.CHANNEL_NAMES
# The signed update (SPEC.md §12): UPDATE ops, UPDATE_STATUS states and results (what the
# last op came to; not `error`, the key of a decode error in presentations).
UP_BEGIN = 1
UP_CHUNK = 2
UP_STATUS = 3
UP_INSTALL = 4
UP_ABORT = 5
UP_MAX_CHUNK = 200
UPDATE_OPS = ("", "begin", "chunk", "status", "install", "abort")
UPDATE_STATES = ("idle", "receiving", "checking", "ready", "trial")
UPDATE_RESULTS = (
    "ok", "bad_signature", "downgrade", "bad_image", "bad_hash", "too_large", "bad_offset",
    "wrong_image", "busy", "no_key", "rolled_back", "flash",
)  # fmt: skip
NAME_TABLES = (CMD_NAMES, RESULT_NAMES, RESET_CAUSES, CHANNEL_NAMES)  # messages._num's numbers
# frame.E_* codes.
ERROR_NAMES = (
    "",
    "cobs",
    "short",
    "crc",
    "version",
    "unknown_type",
    "length",
    "overflow",
    "no_tag",
    "bad_tag",
    "replay",
    "duplicate",
    "no_key",
    "direction",
)

# Setting names by wire parameter id (id 0 reserved): efd.config.NAMES order.
PARAMS = ("",) + config.NAMES  # noqa: RUF005 (MicroPython loads this module too)

TYPE_CODES = {}
for _k in TYPE_NAMES:
    TYPE_CODES[TYPE_NAMES[_k]] = _k

# Names of the TELEMETRY status bits from 0x200 up (messages.ST_*), in bit order.
STATUS_FLAGS = ("prealarm", "fault", "selftest", "clock_unset", "events_pending")


def status_flags(status):
    """Names of the status bits set: 'alarm:<channel>' for latched alarms, then flags."""
    out = []
    for ch in range(ev.N_CHANNELS):
        if status & (1 << ch):
            out.append("alarm:" + CHANNEL_NAMES[ch])
    for i in range(len(STATUS_FLAGS)):
        if status & (0x200 << i):
            out.append(STATUS_FLAGS[i])
    return out


def _name(table, i):
    if 0 <= i < len(table) and table[i]:
        return table[i]
    return i  # unknown codes stay numbers: decoders must not fail on new values


def _code(table, v):
    if isinstance(v, int):
        return v
    return table.index(v)


def _named_ack(b, s, e):
    d = _ack(b, s, e)
    d["ack_type"] = TYPE_NAMES.get(d["ack_type"], d["ack_type"])
    return d


def _named_command(b, s, e):
    d = _unpack_command(b, s, e)
    if d is not None:
        d["cmd"] = _name(CMD_NAMES, d["cmd"])
        if "channel" in d:
            ch = d["channel"]
            d["channel"] = "all" if ch == CMD_ALL else _name(CHANNEL_NAMES, ch)
    return d


def _named_update(b, s, e):
    if _unpack_update(b, s, e) is None:  # the detector's length checks
        return None
    op, image = struct.unpack_from("<BI", b, s)
    d = {"op": _name(UPDATE_OPS, op), "image": image}
    if op == UP_BEGIN:
        d["size"] = struct.unpack_from("<I", b, s + 5)[0]
    elif op == UP_CHUNK:
        d["offset"] = struct.unpack_from("<I", b, s + 5)[0]
        d["data"] = bytes(b[s + 9 : e]).hex()
    return d


def _update_status(b, s, e):
    st, err, image, have, size, a, b_, c = struct.unpack_from("<BBIIIBBB", b, s)
    return {
        "state": _name(UPDATE_STATES, st),
        "result": _name(UPDATE_RESULTS, err),
        "image": image,
        "have": have,
        "size": size,
        "fw": [a, b_, c],
    }


def _telemetry(b, s, e):
    return _telemetry_fields(*struct.unpack_from("<HhhhhHHHH", b, s))


def _telemetry_fields(r, t0, t1, t2, t3, p0, p1, p2, st):
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
        "kind": _name(names.KIND_NAMES, kind),
        "channel": _name(CHANNEL_NAMES, ch),
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
        "channel": _name(CHANNEL_NAMES, ch),
        "chunk": k,
        "chunks": n,
        "scale_exp": ex,
        "rate_hz": rate,
        "trigger": trig,
        "offset": off,
        "samples": list(struct.unpack_from("<" + str(ns) + "h", b, s + 12)),
    }


UNPACK = {  # a host's view of every type: codes named
    POLL: _poll,
    ACK: _named_ack,
    COMMAND: _named_command,
    HELLO: _hello,
    TELEMETRY: _telemetry,
    EVENT: _event,
    RESULT: _result,
    CONFIG: _config,
    SNAPSHOT: _snapshot,
    UPDATE_STATUS: _update_status,
    UPDATE: _named_update,
}


def pack(t, fields, buf, o):
    """messages.pack for the types the detector never encodes as dicts."""
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
            _code(names.KIND_NAMES, f["kind"]),
            _code(CHANNEL_NAMES, f["channel"]),
            f["value"],
            f["threshold"],
        )
        return o + 10
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
            buf[o] = CMD_ALL if ch == "all" else _code(CHANNEL_NAMES, ch)
            return o + 1
        if cmd == CMD_SET_CONFIG:
            return _pack_params(buf, o, f["params"])
        if cmd == CMD_TIME_SYNC:
            struct.pack_into("<I", buf, o, f["set_time"])
            return o + 4
        if cmd == CMD_SNAPSHOT:
            struct.pack_into("<H", buf, o, f["snap_id"])
            return o + 2
        if cmd == CMD_RESYNC:
            struct.pack_into("<I", buf, o, f["mark"])
            return o + 4
        args = unhexlify(f.get("args", ""))
        buf[o : o + len(args)] = args
        return o + len(args)
    if t == UPDATE_STATUS:
        fw = f["fw"]
        struct.pack_into(
            "<BBIIIBBB",
            buf,
            o,
            _code(UPDATE_STATES, f["state"]),
            _code(UPDATE_RESULTS, f["result"]),
            f["image"],
            f["have"],
            f["size"],
            fw[0],
            fw[1],
            fw[2],
        )
        return o + 17
    if t == UPDATE:
        op = _code(UPDATE_OPS, f["op"])
        struct.pack_into("<BI", buf, o, op, f["image"])
        o += 5
        if op == UP_BEGIN:
            struct.pack_into("<I", buf, o, f["size"])
            return o + 4
        if op == UP_CHUNK:
            struct.pack_into("<I", buf, o, f["offset"])
            data = f["data"]
            if isinstance(data, str):
                data = unhexlify(data)
            buf[o + 4 : o + 4 + len(data)] = data
            return o + 4 + len(data)
        return o
    raise ValueError("unknown type " + str(t))


def parse_settings(items):
    """["NAME=VALUE", ...] from a command line -> set_config params [[NAME, value], ...],
    each checked as check_settings does before anything is sent. NAME is a setting name
    (messages.PARAMS) or pN for a raw parameter id; VALUE an integer (decimal or 0x...).
    Raises ValueError naming the bad item and what is wrong with it."""
    out = []
    for it in items:
        name, sep, val = it.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"bad setting {it!r}: use NAME=VALUE, e.g. leak_set_ma=300")
        try:
            value = int(val.strip(), 0)
        except ValueError:
            raise ValueError(f"bad setting {it!r}: VALUE must be an integer") from None
        problem = setting_problem(name, value)
        if problem:
            raise ValueError(f"bad setting {it!r}: {problem}")
        out.append([name, value])
    return out


def check_settings(params):
    """The detector's own checks (efd.config: names, ranges, units), run on the host before a
    set_config is sent, so a mistake is refused with its reason instead of coming back as
    `bad_argument` with a parameter id. params: [[NAME, value], ...].
    Raises ValueError naming the setting, its unit and its allowed range."""
    for name, value in params:
        problem = setting_problem(name, value)
        if problem:
            raise ValueError(f"bad setting {name}={value!r}: {problem}")


def check_combination(params, current=None):
    """efd.fullscale's cross-field rules (a set value beyond its input's full scale at that
    input's gain: an alarm that can never come), on the host before a set_config is sent:
    params [[NAME, value], ...] applied over `current` (the detector's settings, {name: value}
    from its CONFIG; None: the defaults). Raises ValueError naming both settings. Raw ids
    (pN) are left to the detector."""
    cfg = dict(current) if current else {}
    for name, value in params:
        if isinstance(name, str) and name in config.DEFAULTS:
            cfg[name] = value
    from efd import fullscale  # host only here: the detector loads it in app.settings

    try:
        full = config.make({k: v for k, v in cfg.items() if k in config.DEFAULTS})
        fullscale.check(full)
    except config.ConfigError as e:
        if e.other is None:
            raise ValueError(f"bad setting {e.key}={cfg.get(e.key)!r}: {e.reason}") from None
        raise ValueError(
            f"bad combination {e.key}={full[e.key]} with {e.other}={full[e.other]}: {e.reason}"
        ) from None


def check_command(fields):
    """check_settings for a set_config command's params; other commands pass unchanged."""
    if fields.get("cmd") in ("set_config", CMD_SET_CONFIG):
        check_settings(fields["params"])


_I31 = 1 << 31  # a raw parameter's value is an i32 on the wire


def setting_problem(name, value):
    """What is wrong with setting NAME to VALUE, by efd.config's rules; None if nothing.
    A raw id (pN) is only checked for what the wire carries (id 1..255, a 32-bit value): it is
    the way to reach a setting newer than this host's efd.config, and to test the detector's
    own checks."""
    if isinstance(name, str) and name[:1] == "p" and name[1:].isdigit():
        if not 0 < int(name[1:]) < 256:
            return "a raw parameter id is 1..255"
        if isinstance(value, bool) or not isinstance(value, int) or not -_I31 <= value < _I31:
            return "a raw parameter's value is a 32-bit integer"
        return None
    if not isinstance(name, str) or name not in config.DEFAULTS:
        return _unknown_setting(name)
    try:
        config.check(name, value)
    except config.ConfigError as e:
        u = config.unit(name)
        if e.reason.startswith("must be in "):  # out of range: say the range and its unit
            lo, hi = config.limits(name)
            return f"out of range, {name} must be {lo}..{hi}" + (" " + u if u else "")
        return f"{name}" + (" (" + u + ")" if u else "") + " " + e.reason
    return None


def _unknown_setting(name):
    import difflib  # host only: CPython's difflib, loaded when a name is wrong

    known = PARAMS[1:]
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.6)
    if close:
        alts = close[0] if len(close) == 1 else ", ".join(close[:-1]) + " or " + close[-1]
        return f"unknown setting {name!r}, did you mean {alts}?"
    return f"unknown setting {name!r}; the settings are {', '.join(known)}"


def param_name(pid):
    """A set_config parameter id (a bad_argument RESULT's value) as its setting's name, or
    pN for an id this host does not know. A refused combination carries two ids (SPEC.md
    §5.4: first | second << 8): "first+second", e.g. "leak_set_ma+res_gain_q12"."""
    if isinstance(pid, int) and 0xFF < pid <= 0xFFFF:
        return param_name(pid & 0xFF) + "+" + param_name(pid >> 8)
    if isinstance(pid, int) and 0 < pid < len(PARAMS):
        return PARAMS[pid]
    return "p" + str(pid)


KEY_LEN = 32  # bytes: a device key (SPEC.md section 7.1; protocol.auth._KEY_LEN on the device)


def parse_key(text):
    """A device key as hex (64 digits; spaces, colons or a 0x prefix allowed) -> 32 bytes.
    Raises ValueError saying what is wrong."""
    t = text.strip().lower()
    if t.startswith("0x"):
        t = t[2:]
    t = t.replace(" ", "").replace(":", "").replace("-", "")
    want = f"the key must be {2 * KEY_LEN} hex digits ({KEY_LEN} bytes)"
    if len(t) != 2 * KEY_LEN:
        raise ValueError(f"{want}, got {len(t)}")
    try:
        key = bytes.fromhex(t)
    except ValueError:
        raise ValueError(f"{want}: not hex") from None  # never echo a secret
    return key


def _or(v, na):
    return na if v is None else v


def efd_time(unix_seconds):
    """Unix seconds -> wire time (0 for anything before our epoch: 'clock not set')."""
    t = unix_seconds - EPOCH_UNIX
    return t if t > 0 else 0


def now():
    """Wire time from the local clock, on the detector or the host. The ESP32 port counts
    from 2000-01-01, the unix port and CPython from 1970; an unset ESP32 clock starts at 2000,
    which maps to 0 (clock not set) here."""
    import time

    t = int(time.time())
    if time.gmtime(0)[0] == 2000:
        t -= _EPOCH_2000
        return t if t > 0 else 0
    return efd_time(t)


# -- frame.py's decode results: presentation ----------------------------------------------------
# Why each error code (frame.E_*) rejected a frame, for people and logs.
_REASONS = (
    "",
    "not valid COBS",
    "frame shorter than header + CRC",
    "CRC mismatch",
    "unsupported protocol version",
    "unknown message type",
    "payload length wrong for its type",
    "no delimiter within 256 bytes",
    "authentication required but frame has no tag",
    "authentication tag does not verify",
    "counter not above the last accepted one",
    "retransmission of the last accepted frame",
    "no key for this device",
    "message type not valid in this direction",
)


def _error_name(self):
    return ERROR_NAMES[self.code]


def _error_reason(self):
    return _REASONS[self.code]


def _error_to_dict(self):
    d = {"error": self.name, "reason": self.reason}
    if self.device is not None:
        d["device"] = self.device
        d["seq"] = self.seq
        d["type"] = self.type
    if self.raw is not None:
        d["len"] = len(self.raw)
    return d


def _frame_name(self):
    return TYPE_NAMES[self.type]


def _frame_to_dict(self):
    d = {
        "type": TYPE_NAMES[self.type],
        "device": self.device,
        "seq": self.seq,
        "time": self.time,
        "counter": self.counter,
    }
    d.update(self.fields)
    if self.type == RESULT and d["status"] == "bad_argument" and d["cmd"] == "set_config":
        d["param"] = param_name(d["value"])  # the value is the refused setting's id
    return d


# -- physical units (issue 12: people read °C, A, mA and names, not wire integers) ---------------
# Per channel: the unit of its readings and the divisor from the wire's integers (SPEC.md
# section 2: mA, 0.1 °C, 0.01 A, half-cycles/s). Unit names are ASCII, as efd.config.unit()'s.
CHANNEL_UNITS = {"residual": ("mA", 1), "arc": ("half-cycles/s", 1)}
CHANNEL_UNITS.update({"temp" + str(i): ("degC", 10) for i in range(4)})
CHANNEL_UNITS.update({"phase" + str(i): ("A", 100) for i in range(3)})
TELEMETRY_UNITS = {"residual_ma": "mA", "temp_c": "degC", "line_a": "A"}


def _scaled(v, div):
    if v is None or div == 1:
        return v
    return round(v / div, 3)


def physical(d):
    """A decoded frame's dict (Frame.to_dict()) as people read it: TELEMETRY readings in °C and
    A (`temp_c`, `line_a`, `residual_ma`) with its status flags by name, an EVENT's value and
    threshold in its channel's unit (a fault's as the fault's name), SNAPSHOT samples in the
    channel's unit, each with a `units` entry; a link_status RESULT's value as `link` and
    `rssi_dbm` (link_status()). Other fields as decoded. Frame.to_dict() itself
    keeps the wire's integers (every tool's --raw)."""
    t = d.get("type")
    if t == "telemetry":
        out = {k: v for k, v in d.items() if k not in ("temp_dc", "line_ca")}
        out["temp_c"] = [_scaled(x, 10) for x in d["temp_dc"]]
        out["line_a"] = [_scaled(x, 100) for x in d["line_ca"]]
        out["flags"] = status_flags(d["status"])
        out["units"] = dict(TELEMETRY_UNITS)
        return out
    out = dict(d)
    if t == "event":
        kind = d["kind"]
        if kind in ("fault", "fault_clear"):
            v = d["value"]
            out["fault"] = names.FAULT_NAMES[v] if 0 < v < len(names.FAULT_NAMES) else v
            return out
        unit, div = CHANNEL_UNITS.get(d["channel"], ("", 1))
        if kind == "ror":
            unit, div = "degC/min", 10
        if kind == "selftest":
            return out  # value: 1 pass, 0 fail
        out["value"] = _scaled(d["value"], div)
        out["threshold"] = _scaled(d["threshold"], div)
        out["units"] = unit
    elif t == "snapshot":
        unit, div = CHANNEL_UNITS.get(d["channel"], ("", 1))
        # sample x 10^scale_exp = the channel's wire unit (SPEC.md section 5.6); / div = unit.
        f = 10.0 ** d["scale_exp"] / div
        out["samples"] = [round(x * f, 6) for x in d["samples"]]
        out["units"] = unit
    elif t in ("config", "command") and d.get("params"):
        out["units"] = {n: _unit(n) for n, _v in d["params"]}
    elif t == "result" and d["cmd"] == "link_status" and d["status"] == "ok":
        out.update(link_status(d["value"]))
    return out


def link_status(value):
    """A link_status RESULT's value (SPEC.md section 5.9) as {"link", "rssi_dbm", "units"}:
    value < 0 is "wifi" with its RSSI in dBm; 1 is "wifi_disconnected" (the station is not
    associated) and 0 "not_wifi" (RS-485, or the simulator's link without an RSSI), both with
    rssi_dbm None; any other value "unknown"."""
    if value < 0:
        return {"link": "wifi", "rssi_dbm": value, "units": "dBm"}
    link = {0: "not_wifi", 1: "wifi_disconnected"}.get(value, "unknown")
    return {"link": link, "rssi_dbm": None, "units": "dBm"}


def _unit(name):
    try:
        return config.unit(name)
    except ValueError:
        return ""


def frame_repr(obj):
    """repr() of a frame.Error or frame.Frame."""
    if not obj.ok:
        return "Error(" + obj.name + ")"
    return "Frame(" + obj.name + " dev=" + str(obj.device) + " seq=" + str(obj.seq) + ")"


frame.Error.name = property(_error_name)
frame.Error.reason = property(_error_reason)
frame.Error.to_dict = _error_to_dict
frame.Frame.name = property(_frame_name)
frame.Frame.to_dict = _frame_to_dict
frame.Error.__repr__ = frame_repr
frame.Frame.__repr__ = frame_repr


# -- frame.parse's fast path ---------------------------------------------------------------------
try:  # CPython: a precompiled Struct halves the cost of the host's hottest call
    _unpack_tele = struct.Struct("<BIBIHhhhhHHHH").unpack_from
except AttributeError:  # MicroPython has no struct.Struct

    def _unpack_tele(raw):
        return struct.unpack_from("<BIBIHhhhhHHHH", raw, 0)


def telemetry_frame(raw, crc):
    """frame.parse of an untagged v1 TELEMETRY frame (30 bytes, CRC already checked)."""
    _, dev, seq, t, r, t0, t1, t2, t3, p0, p1, p2, st = _unpack_tele(raw)
    fields = _telemetry_fields(r, t0, t1, t2, t3, p0, p1, p2, st)
    return frame.Frame(2, dev, seq, t, fields, raw, None, None, crc)
