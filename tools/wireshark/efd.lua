-- Wireshark / tshark dissector for the EFD wire protocol (protocol/SPEC.md, version 1).
--
-- Load it with one step (docs/protocol.md, "Wireshark and tshark"):
--     tshark -X lua_script:tools/wireshark/efd.lua -r capture.pcap
--     wireshark -X lua_script:tools/wireshark/efd.lua capture.pcap
-- or copy this file into Wireshark's personal plugin folder (~/.local/lib/wireshark/plugins/).
--
-- What it dissects:
--   * UDP datagrams on port 47000 (the gateway's documented port; preference "efd.udp_port"),
--     and any other UDP port through "Decode As... -> EFD". A datagram may carry several
--     COBS frames back to back, each ending in 0x00 (SPEC.md section 3).
--   * Serial captures: pcap files with link type USER0 (DLT 147) whose packets are the bytes
--     read from (or written to) a serial port, in order (tools/wireshark/capture.py writes
--     them). Frames split across packets are reassembled and shown in the packet holding
--     their 0x00 delimiter.
--
-- Every header and payload field is shown under the reference codec's names (protocol/frame.py
-- decode(), names from protocol/host.py): `efd.kind`, `efd.channel`, `efd.residual_ma`, ... The
-- CRC is checked (efd.crc_good). With a key file (preference "efd.key_file": a CSV
-- `device,key` such as the gateway's registry, or lines `DEVICE KEY`, or a single key for
-- every device) the 8-byte HMAC-SHA256 tag is checked: efd.tag_status is `verified`, `bad_tag`
-- (a key is known and the tag does not match it) or `no_key`; efd.tag_verified is the boolean.
--
-- HMAC: Wireshark 4.0 (Debian 12) exposes no hash functions to Lua (the Gcrypt bindings came
-- with later versions), so SHA-256 (FIPS 180-4) and HMAC (RFC 2104) are written out below in
-- plain Lua 5.2 with the bit32 library. tests/protocol/test_wireshark.py checks them against
-- the codec on the golden vectors and live captures.
--
-- Keep the name tables below equal to protocol/host.py's (a test compares them).

set_plugin_info({
    version = "1.0.0",
    description = "EFD wire protocol version 1 (protocol/SPEC.md): UDP and serial captures",
    repository = "tools/wireshark/efd.lua of the electrical-fire detector project",
})

local efd = Proto("efd", "EFD electrical-fire detector protocol")

-- Names (protocol/host.py, firmware/lib/efd/names.py, firmware/lib/efd/config.py) ------------
-- Each table maps a wire code to the name the codec presents; codes not in a table are shown
-- as numbers, as the codec does.
local TYPE_NAMES = {[1] = "hello", [2] = "telemetry", [3] = "event", [4] = "result", [5] = "config", [6] = "snapshot", [7] = "update_status", [16] = "poll", [17] = "ack", [18] = "command", [19] = "update"}
local KIND_NAMES = {[1] = "prealarm", [2] = "alarm", [3] = "clear", [4] = "fault", [5] = "fault_clear", [6] = "reset", [7] = "selftest", [8] = "ror"}
local CHANNEL_NAMES = {[0] = "residual", [1] = "temp0", [2] = "temp1", [3] = "temp2", [4] = "temp3", [5] = "phase0", [6] = "phase1", [7] = "phase2", [8] = "arc"}
local CMD_NAMES = {[1] = "reset", [2] = "selftest", [3] = "set_config", [4] = "time_sync", [5] = "snapshot", [6] = "reboot", [7] = "get_config", [8] = "resync", [9] = "link_status"}
local RESULT_NAMES = {[0] = "ok", [1] = "unknown_command", [2] = "bad_argument", [3] = "busy", [4] = "failed", [5] = "locked"}
-- The signed update (SPEC.md section 12): UPDATE ops, UPDATE_STATUS states and results.
local UPDATE_OPS = {[1] = "begin", [2] = "chunk", [3] = "status", [4] = "install", [5] = "abort"}
local UPDATE_STATES = {[0] = "idle", [1] = "receiving", [2] = "checking", [3] = "ready", [4] = "trial"}
local UPDATE_RESULTS = {[0] = "ok", [1] = "bad_signature", [2] = "downgrade", [3] = "bad_image", [4] = "bad_hash", [5] = "too_large", [6] = "bad_offset", [7] = "wrong_image", [8] = "busy", [9] = "no_key", [10] = "rolled_back", [11] = "flash"}
local UP_MAX_CHUNK = 200
local RESET_CAUSES = {[0] = "unknown", [1] = "power_on", [2] = "hard", [3] = "watchdog", [4] = "deepsleep", [5] = "soft"}
local PARAMS = {[1] = "mains_hz", [2] = "leak_set_ma", [3] = "leak_delay_s", [4] = "leak_prealarm_pct", [5] = "leak_hyst_pct", [6] = "temp_set_c", [7] = "temp_delay_s", [8] = "temp_prealarm_pct", [9] = "temp_hyst_c", [10] = "temp_ror_c_per_min", [11] = "temp_channels", [12] = "line_set_a", [13] = "line_delay_s", [14] = "line_prealarm_pct", [15] = "line_hyst_pct", [16] = "phase_channels", [17] = "arc_enabled", [18] = "fault_delay_s", [19] = "res_gain_q12", [20] = "phase_gain_q12", [21] = "ct_bias_lo", [22] = "ct_bias_hi"}
-- Sensor fault codes (the value of a fault EVENT) and each channel's unit (SPEC.md section 2).
local FAULT_NAMES = {[1] = "open", [2] = "short", [3] = "overrange", [4] = "bias", [5] = "sampling"}
local UNITS = {[0] = "mA", [1] = "x 0.1 °C", [2] = "x 0.1 °C", [3] = "x 0.1 °C", [4] = "x 0.1 °C", [5] = "x 0.01 A", [6] = "x 0.01 A", [7] = "x 0.01 A", [8] = "half-cycles/s"}
-- TELEMETRY status bits from 0x200 up, in bit order (host.STATUS_FLAGS).
local STATUS_FLAGS = {[9] = "prealarm", [10] = "fault", [11] = "selftest", [12] = "clock_unset", [13] = "events_pending"}
-- Error names of frame.E_* (host.ERROR_NAMES) and their reasons (host._REASONS).
local ERROR_REASONS = {
    cobs = "not valid COBS",
    short = "frame shorter than header + CRC",
    crc = "CRC mismatch",
    version = "unsupported protocol version",
    unknown_type = "unknown message type",
    length = "payload length wrong for its type",
    overflow = "no delimiter within 256 bytes",
}

-- Layout constants (SPEC.md sections 3-5).
local HEADER_LEN = 10
local AUTH_LEN = 12 -- u32 counter + 8-byte tag
local MIN_FRAME = 12
local MAX_FRAME = 254
local MAX_WIRE = 256 -- MAX_FRAME + COBS code byte + delimiter
local CMD_ALL = 0xFF
local MAX_SAMPLES = 96
local EPOCH_UNIX = 1577836800 -- 2020-01-01T00:00:00Z
-- Types a receiver requires tagged: hosts EVENT, RESULT, CONFIG, SNAPSHOT (host.HOST_REQUIRES),
-- and UPDATE_STATUS, detectors ACK, COMMAND and UPDATE (session.DETECTOR_REQUIRES).
local REQUIRES_TAG = {[3] = true, [4] = true, [5] = true, [6] = true, [7] = true, [17] = true, [18] = true, [19] = true}
-- Minimum payload length per type (messages.MIN_LEN); types not listed do not exist.
local MIN_LEN = {[1] = 16, [2] = 18, [3] = 10, [4] = 10, [5] = 4, [6] = 12, [7] = 17, [16] = 0, [17] = 4, [18] = 1, [19] = 5}

local function vs(t) -- a value_string table for a ProtoField (codes -> names)
    local out = {}
    for k, v in pairs(t) do out[k] = v end
    return out
end

-- Fields ----------------------------------------------------------------------------------
local F = {
    wire_len = ProtoField.uint16("efd.wire_len", "wire length", base.DEC, nil, nil, "COBS segment length, delimiter included"),
    reassembled = ProtoField.framenum("efd.reassembled_from", "segment starts in frame", base.NONE),
    error = ProtoField.string("efd.error", "error", base.ASCII, "the codec's error name (SPEC.md section 10)"),
    reason = ProtoField.string("efd.reason", "reason"),
    hdr = ProtoField.uint8("efd.hdr", "hdr", base.HEX),
    auth = ProtoField.bool("efd.auth", "A (authenticated)", 8, nil, 0x80),
    version = ProtoField.uint8("efd.version", "version", base.DEC, nil, 0x60),
    type = ProtoField.uint8("efd.type", "type", base.DEC, vs(TYPE_NAMES), 0x1F),
    device = ProtoField.uint32("efd.device", "device", base.HEX),
    seq = ProtoField.uint8("efd.seq", "seq", base.DEC),
    time = ProtoField.uint32("efd.time", "time", base.DEC, nil, nil, "seconds since 2020-01-01T00:00:00Z, 0 = clock not set"),
    time_utc = ProtoField.absolute_time("efd.time_utc", "time (UTC)", base.UTC),
    payload = ProtoField.bytes("efd.payload", "payload"),
    extra = ProtoField.bytes("efd.extra", "extra payload bytes", base.NONE, "appended fields of a later revision (SPEC.md section 6)"),
    counter = ProtoField.uint32("efd.counter", "counter", base.DEC),
    tag = ProtoField.bytes("efd.tag", "tag"),
    tag_status = ProtoField.string("efd.tag_status", "tag status", base.ASCII, "verified, bad_tag (a key is known, the tag does not match) or no_key"),
    tag_verified = ProtoField.bool("efd.tag_verified", "tag verified"),
    crc = ProtoField.uint16("efd.crc", "crc", base.HEX),
    crc_calc = ProtoField.uint16("efd.crc_calc", "crc computed", base.HEX),
    crc_good = ProtoField.bool("efd.crc_good", "crc good"),
    -- HELLO
    fw = ProtoField.string("efd.fw", "fw"),
    reset_cause = ProtoField.uint8("efd.reset_cause", "reset_cause", base.DEC, vs(RESET_CAUSES)),
    boot_count = ProtoField.uint32("efd.boot_count", "boot_count", base.DEC),
    config_hash = ProtoField.uint32("efd.config_hash", "config_hash", base.HEX),
    host_counter = ProtoField.uint32("efd.host_counter", "host_counter", base.DEC),
    -- TELEMETRY
    residual_ma = ProtoField.uint16("efd.residual_ma", "residual_ma", base.DEC, nil, nil, "mA, 0xffff = n/a"),
    temp_dc = ProtoField.int16("efd.temp_dc", "temp_dc", base.DEC, nil, nil, "0.1 degC, -32768 = n/a"),
    line_ca = ProtoField.uint16("efd.line_ca", "line_ca", base.DEC, nil, nil, "0.01 A, 0xffff = n/a"),
    status = ProtoField.uint16("efd.status", "status", base.HEX),
    status_flags = ProtoField.string("efd.status_flags", "status_flags"),
    -- EVENT
    kind = ProtoField.uint8("efd.kind", "kind", base.DEC, vs(KIND_NAMES)),
    channel = ProtoField.uint8("efd.channel", "channel", base.DEC, vs(CHANNEL_NAMES)),
    value = ProtoField.int32("efd.value", "value", base.DEC),
    threshold = ProtoField.int32("efd.threshold", "threshold", base.DEC),
    -- RESULT
    cmd_counter = ProtoField.uint32("efd.cmd_counter", "cmd_counter", base.DEC),
    cmd = ProtoField.uint8("efd.cmd", "cmd", base.DEC, vs(CMD_NAMES)),
    result_status = ProtoField.uint8("efd.status", "status", base.DEC, vs(RESULT_NAMES)),
    -- CONFIG and set_config
    params = ProtoField.none("efd.params", "params"),
    param = ProtoField.string("efd.param", "param"),
    param_id = ProtoField.uint8("efd.param_id", "param_id", base.DEC),
    param_value = ProtoField.int32("efd.param_value", "param_value", base.DEC),
    -- SNAPSHOT
    snap_id = ProtoField.uint16("efd.snap_id", "snap_id", base.DEC),
    chunk = ProtoField.uint8("efd.chunk", "chunk", base.DEC),
    chunks = ProtoField.uint8("efd.chunks", "chunks", base.DEC),
    scale_exp = ProtoField.int8("efd.scale_exp", "scale_exp", base.DEC),
    rate_hz = ProtoField.uint16("efd.rate_hz", "rate_hz", base.DEC),
    trigger = ProtoField.uint16("efd.trigger", "trigger", base.DEC),
    offset = ProtoField.uint16("efd.offset", "offset", base.DEC),
    samples_list = ProtoField.none("efd.samples_list", "samples"),
    samples = ProtoField.int16("efd.samples", "samples", base.DEC),
    -- ACK
    ack_type = ProtoField.uint8("efd.ack_type", "ack_type", base.DEC, vs(TYPE_NAMES)),
    ack_seq = ProtoField.uint8("efd.ack_seq", "ack_seq", base.DEC),
    ack_crc = ProtoField.uint16("efd.ack_crc", "ack_crc", base.HEX),
    -- COMMAND arguments
    set_time = ProtoField.uint32("efd.set_time", "set_time", base.DEC),
    mark = ProtoField.uint32("efd.mark", "mark", base.DEC),
    args = ProtoField.bytes("efd.args", "args"),
    -- UPDATE, UPDATE_STATUS (SPEC.md section 12)
    op = ProtoField.uint8("efd.op", "op", base.DEC, vs(UPDATE_OPS)),
    image = ProtoField.uint32("efd.image", "image", base.HEX, nil, nil, "SHA-256(manifest)[0:4], little-endian"),
    size = ProtoField.uint32("efd.size", "size", base.DEC, nil, nil, "image bytes"),
    update_offset = ProtoField.uint32("efd.update_offset", "offset", base.DEC),
    data = ProtoField.bytes("efd.data", "data"),
    state = ProtoField.uint8("efd.state", "state", base.DEC, vs(UPDATE_STATES)),
    result = ProtoField.uint8("efd.result", "result", base.DEC, vs(UPDATE_RESULTS)),
    have = ProtoField.uint32("efd.have", "have", base.DEC, nil, nil, "image bytes on flash, in order from 0"),
}
-- One boolean per TELEMETRY status bit: efd.status.alarm_<channel> (bits 0-8) and the flags.
local STATUS_BITS = {}
for bit = 0, 8 do
    local name = "alarm_" .. CHANNEL_NAMES[bit]
    STATUS_BITS[bit] = {name = "alarm:" .. CHANNEL_NAMES[bit], field = ProtoField.bool("efd.status." .. name, "alarm:" .. CHANNEL_NAMES[bit], 16, nil, bit32.lshift(1, bit))}
end
for bit = 9, 13 do
    STATUS_BITS[bit] = {name = STATUS_FLAGS[bit], field = ProtoField.bool("efd.status." .. STATUS_FLAGS[bit], STATUS_FLAGS[bit], 16, nil, bit32.lshift(1, bit))}
end

local fields = {}
for _, f in pairs(F) do fields[#fields + 1] = f end
for bit = 0, 13 do fields[#fields + 1] = STATUS_BITS[bit].field end
efd.fields = fields

local E = {
    crc = ProtoExpert.new("efd.crc_bad", "CRC mismatch", expert.group.CHECKSUM, expert.severity.ERROR),
    malformed = ProtoExpert.new("efd.malformed", "Malformed EFD frame", expert.group.MALFORMED, expert.severity.ERROR),
    bad_tag = ProtoExpert.new("efd.bad_tag", "Authentication tag does not verify", expert.group.SECURITY, expert.severity.WARN),
    no_delim = ProtoExpert.new("efd.no_delimiter", "Datagram does not end with the 0x00 delimiter", expert.group.PROTOCOL, expert.severity.NOTE),
    no_tag = ProtoExpert.new("efd.no_tag", "Untagged, but receivers require a tag on this type (no_tag, SPEC.md section 5)", expert.group.SECURITY, expert.severity.WARN),
    counter_zero = ProtoExpert.new("efd.counter_zero", "Counter 0 is never valid: receivers refuse it as a replay (SPEC.md section 7.3)", expert.group.SECURITY, expert.severity.WARN),
}
efd.experts = {E.crc, E.malformed, E.bad_tag, E.no_delim, E.no_tag, E.counter_zero}

-- Preferences -----------------------------------------------------------------------------
local DEFAULT_UDP_PORT = 47000
efd.prefs.udp_port = Pref.uint("UDP port", DEFAULT_UDP_PORT, "UDP port of EFD datagrams (the gateway's --udp port); others: Decode As")
efd.prefs.key_file = Pref.string("Key file", "", "Device keys for checking tags: CSV with columns device and key (the gateway registry works), lines 'DEVICE KEY', or one key for every device; KEY = 64 hex digits")

-- SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104) in Lua 5.2 + bit32 -------------------------
local band, bor, bxor, bnot = bit32.band, bit32.bor, bit32.bxor, bit32.bnot
local rrotate, rshift, lshift = bit32.rrotate, bit32.rshift, bit32.lshift
local K256 = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}
local TWO32 = 4294967296

local function sha256(msg)
    local len = #msg
    local bits = len * 8
    local tail = {}
    for i = 7, 0, -1 do tail[#tail + 1] = string.char(math.floor(bits / 2 ^ (8 * i)) % 256) end
    msg = msg .. "\128" .. string.rep("\0", (55 - len) % 64) .. table.concat(tail)
    local h0, h1, h2, h3 = 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a
    local h4, h5, h6, h7 = 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
    local w = {}
    for blk = 1, #msg, 64 do
        for i = 0, 15 do
            local b1, b2, b3, b4 = msg:byte(blk + 4 * i, blk + 4 * i + 3)
            w[i] = bor(lshift(b1, 24), lshift(b2, 16), lshift(b3, 8), b4)
        end
        for i = 16, 63 do
            local v15, v2 = w[i - 15], w[i - 2]
            local s0 = bxor(rrotate(v15, 7), rrotate(v15, 18), rshift(v15, 3))
            local s1 = bxor(rrotate(v2, 17), rrotate(v2, 19), rshift(v2, 10))
            w[i] = (w[i - 16] + s0 + w[i - 7] + s1) % TWO32
        end
        local a, b, c, d, e, f, g, h = h0, h1, h2, h3, h4, h5, h6, h7
        for i = 0, 63 do
            local S1 = bxor(rrotate(e, 6), rrotate(e, 11), rrotate(e, 25))
            local ch = bxor(band(e, f), band(bnot(e), g))
            local t1 = h + S1 + ch + K256[i + 1] + w[i]
            local S0 = bxor(rrotate(a, 2), rrotate(a, 13), rrotate(a, 22))
            local maj = bxor(band(a, b), band(a, c), band(b, c))
            h, g, f, e = g, f, e, (d + t1) % TWO32
            d, c, b, a = c, b, a, (t1 + S0 + maj) % TWO32
        end
        h0, h1, h2, h3 = (h0 + a) % TWO32, (h1 + b) % TWO32, (h2 + c) % TWO32, (h3 + d) % TWO32
        h4, h5, h6, h7 = (h4 + e) % TWO32, (h5 + f) % TWO32, (h6 + g) % TWO32, (h7 + h) % TWO32
    end
    local out = {}
    for _, v in ipairs({h0, h1, h2, h3, h4, h5, h6, h7}) do
        out[#out + 1] = string.char(rshift(v, 24), band(rshift(v, 16), 0xFF), band(rshift(v, 8), 0xFF), band(v, 0xFF))
    end
    return table.concat(out)
end

-- A key's inner and outer pads (RFC 2104), computed once per key.
local function hmac_pads(key)
    if #key > 64 then key = sha256(key) end
    key = key .. string.rep("\0", 64 - #key)
    local ipad, opad = {}, {}
    for i = 1, 64 do
        local b = key:byte(i)
        ipad[i] = string.char(bxor(b, 0x36))
        opad[i] = string.char(bxor(b, 0x5C))
    end
    return {table.concat(ipad), table.concat(opad)}
end

local function hmac_sha256(pads, data)
    return sha256(pads[2] .. sha256(pads[1] .. data))
end

-- Key file ------------------------------------------------------------------------------------
local keys = {} -- device id (number) -> pads; keys["*"]: a key for every device not listed
local keys_loaded_from = nil
local keys_error = nil

local function parse_key(text)
    local t = text:lower():gsub("^%s*0x", ""):gsub("[%s:%-]", "")
    if #t ~= 64 or t:find("[^0-9a-f]") then return nil end
    return (t:gsub("..", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse_device(text)
    local t = text:gsub("^%s+", ""):gsub("%s+$", "")
    local v
    if t:lower():sub(1, 2) == "0x" then
        if t:sub(3):find("^%x+$") then v = tonumber(t:sub(3), 16) end
    elseif t:find("^%d+$") then
        v = tonumber(t, 10)
    end
    if v and v >= 0 and v <= 0xFFFFFFFF then return v end
    return nil
end

local function csv_split(line) -- one CSV record (RFC 4180 quotes), no newlines inside fields
    local out, i, n = {}, 1, #line
    while true do
        local field
        if line:sub(i, i) == '"' then
            local buf, j = {}, i + 1
            while j <= n do
                local c = line:sub(j, j)
                if c == '"' then
                    if line:sub(j + 1, j + 1) == '"' then buf[#buf + 1] = '"'; j = j + 2
                    else j = j + 1; break end
                else buf[#buf + 1] = c; j = j + 1 end
            end
            field = table.concat(buf)
            local comma = line:find(",", j, true)
            i = comma and comma + 1 or n + 2
        else
            local comma = line:find(",", i, true)
            field = line:sub(i, comma and comma - 1 or n)
            i = comma and comma + 1 or n + 2
        end
        out[#out + 1] = field
        if i > n + 1 then return out end
    end
end

local function load_keys(path)
    keys, keys_error = {}, nil
    keys_loaded_from = path
    if path == nil or path == "" then return end
    local fh, err = io.open(path, "r")
    if not fh then
        keys_error = "key file: " .. tostring(err)
        return
    end
    local text = fh:read("*a")
    fh:close()
    local count = 0
    if text:find("^%s*{") then -- tools.decode --keys JSON: {"0x12345678": "<64 hex>"}
        for dev, key in text:gmatch('"([^"]+)"%s*:%s*"([^"]+)"') do
            local d, k = parse_device(dev), parse_key(key)
            if d and k then keys[d] = hmac_pads(k); count = count + 1 end
        end
    else
        local dev_col, key_col = nil, nil
        for raw in text:gmatch("[^\r\n]+") do
            local line = raw:gsub("^%s+", "")
            if line ~= "" and line:sub(1, 1) ~= "#" then
                local cols = line:find(",", 1, true) and csv_split(line) or {}
                if #cols == 0 then
                    for w in line:gmatch("%S+") do cols[#cols + 1] = w end
                end
                local header = false
                if dev_col == nil and count == 0 then
                    local dc, kc = nil, nil
                    for i, c in ipairs(cols) do -- a header row names the columns
                        local name = c:lower():gsub("^%s+", ""):gsub("%s+$", "")
                        if name == "device" then dc = i elseif name == "key" then kc = i end
                    end
                    if dc and kc then dev_col, key_col, header = dc, kc, true end
                end
                if header then
                    -- the column names: nothing to load
                elseif dev_col and key_col then
                    local d, k = parse_device(cols[dev_col] or ""), parse_key(cols[key_col] or "")
                    if d and k then keys[d] = hmac_pads(k); count = count + 1 end
                elseif #cols == 1 then -- a lone key: every device
                    local k = parse_key(cols[1])
                    if k then keys["*"] = hmac_pads(k); count = count + 1 end
                elseif #cols >= 2 then
                    local d, k = parse_device(cols[1]), parse_key(cols[2])
                    if d and k then keys[d] = hmac_pads(k); count = count + 1 end
                end
            end
        end
    end
    if count == 0 then keys_error = "key file " .. path .. ": no usable keys" end
end

local function key_for(device)
    if keys_loaded_from ~= efd.prefs.key_file then load_keys(efd.prefs.key_file) end
    return keys[device] or keys["*"]
end

-- CRC-16/IBM-3740 and COBS --------------------------------------------------------------------
local function crc16(s, n)
    local crc = 0xFFFF
    for i = 1, n do
        local x = band(bxor(rshift(crc, 8), s:byte(i)), 0xFF)
        x = bxor(x, rshift(x, 4))
        crc = band(bxor(lshift(crc, 8), lshift(x, 12), lshift(x, 5), x), 0xFFFF)
    end
    return crc
end

-- COBS-decode a segment without its delimiter (protocol/cobs.py): nil if invalid.
local function cobs_decode(s)
    local n, out, i = #s, {}, 1
    while i <= n do
        local code = s:byte(i)
        if code == 0 then return nil end
        local j = i + code
        if j > n + 1 then return nil end
        out[#out + 1] = s:sub(i + 1, j - 1)
        i = j
        if code ~= 0xFF and i <= n then out[#out + 1] = "\0" end
    end
    return table.concat(out)
end

-- Presentation helpers ------------------------------------------------------------------------
local function hex32(v) return string.format("0x%08x", v) end

local function named(names, v) -- the codec's presentation: the name, or the number if unknown
    local n = names[v]
    if n ~= nil then return n end
    return tostring(v)
end

-- An enum field shown as the codec presents it: "kind: alarm (2)"; an unknown code stays a
-- number, "kind: 42 (unknown)".
local function add_enum(tree, field, label, range, v, names, override)
    local item = tree:add(field, range, v)
    local name = override or names[v]
    if name ~= nil then item:set_text(label .. ": " .. name .. " (" .. v .. ")")
    else item:set_text(label .. ": " .. v .. " (unknown)") end
    return item
end

-- A reading: "label: 238 (23.8 °C)", or "label: n/a (-32768)" for the "no value" sentinel.
local function add_na(tree, field, label, range, v, na, scale, unit)
    local item = tree:add(field, range, v)
    if v == na then
        item:set_text(label .. ": n/a (" .. v .. ")")
    elseif scale == 1 then
        item:set_text(label .. ": " .. v .. " " .. unit)
    else
        item:set_text(label .. ": " .. v .. " (" .. string.format(scale == 10 and "%.1f" or "%.2f", v / scale) .. " " .. unit .. ")")
    end
    return item
end

-- Payloads (SPEC.md section 5; protocol/host.py UNPACK). Each returns nil when the payload is
-- malformed (the codec's `length` error), else a short summary for the Info column.
local function params_fields(tree, tvb, s, e)
    if (e - s) % 5 ~= 0 then return nil end
    local parts = {}
    for o = s, e - 1, 5 do
        local pid = tvb(o, 1):uint()
        local val = tvb(o + 1, 4):le_int()
        local name = PARAMS[pid] or ("p" .. pid)
        local st = tree:add(F.params, tvb(o, 5))
        st:set_text("params[" .. math.floor((o - s) / 5) .. "]: " .. name .. " = " .. val)
        st:add(F.param, tvb(o, 1), name)
        st:add(F.param_id, tvb(o, 1), pid)
        st:add(F.param_value, tvb(o + 1, 4), val)
        parts[#parts + 1] = name .. "=" .. val
    end
    return table.concat(parts, " ")
end

local PAYLOAD = {}

PAYLOAD[1] = function(tree, tvb, s, e) -- HELLO
    local ma, mi, pa = tvb(s, 1):uint(), tvb(s + 1, 1):uint(), tvb(s + 2, 1):uint()
    tree:add(F.fw, tvb(s, 3), ma .. "." .. mi .. "." .. pa)
    local rc = tvb(s + 3, 1):uint()
    add_enum(tree, F.reset_cause, "reset_cause", tvb(s + 3, 1), rc, RESET_CAUSES)
    local boots = tvb(s + 4, 4):le_uint()
    tree:add(F.boot_count, tvb(s + 4, 4), boots)
    tree:add(F.config_hash, tvb(s + 8, 4), tvb(s + 8, 4):le_uint())
    tree:add(F.host_counter, tvb(s + 12, 4), tvb(s + 12, 4):le_uint())
    return "fw " .. ma .. "." .. mi .. "." .. pa .. " " .. named(RESET_CAUSES, rc) .. " boot " .. boots
end

PAYLOAD[2] = function(tree, tvb, s, e) -- TELEMETRY
    local r = tvb(s, 2):le_uint()
    add_na(tree, F.residual_ma, "residual_ma", tvb(s, 2), r, 0xFFFF, 1, "mA")
    for i = 0, 3 do
        add_na(tree, F.temp_dc, "temp_dc[" .. i .. "] temp" .. i, tvb(s + 2 + 2 * i, 2), tvb(s + 2 + 2 * i, 2):le_int(), -32768, 10, "°C")
    end
    for i = 0, 2 do
        add_na(tree, F.line_ca, "line_ca[" .. i .. "] phase" .. i, tvb(s + 10 + 2 * i, 2), tvb(s + 10 + 2 * i, 2):le_uint(), 0xFFFF, 100, "A")
    end
    local st = tvb(s + 16, 2):le_uint()
    local item = tree:add(F.status, tvb(s + 16, 2), st)
    local flags = {}
    for bit = 0, 13 do
        item:add(STATUS_BITS[bit].field, tvb(s + 16, 2), st)
        if band(st, lshift(1, bit)) ~= 0 then flags[#flags + 1] = STATUS_BITS[bit].name end
    end
    local fl = table.concat(flags, ",")
    item:add(F.status_flags, tvb(s + 16, 2), fl):set_generated()
    if fl ~= "" then item:append_text(" (" .. fl .. ")") end
    return "residual " .. (r == 0xFFFF and "n/a" or r .. " mA") .. (fl ~= "" and " [" .. fl .. "]" or "")
end

PAYLOAD[3] = function(tree, tvb, s, e) -- EVENT
    local kind, ch = tvb(s, 1):uint(), tvb(s + 1, 1):uint()
    add_enum(tree, F.kind, "kind", tvb(s, 1), kind, KIND_NAMES)
    add_enum(tree, F.channel, "channel", tvb(s + 1, 1), ch, CHANNEL_NAMES)
    local v, t = tvb(s + 2, 4):le_int(), tvb(s + 6, 4):le_int()
    local vi = tree:add(F.value, tvb(s + 2, 4), v)
    local ti = tree:add(F.threshold, tvb(s + 6, 4), t)
    if kind == 4 then -- fault: the value is the fault code
        if FAULT_NAMES[v] then vi:append_text(" (fault " .. FAULT_NAMES[v] .. ")") end
    elseif kind == 1 or kind == 2 or kind == 3 then
        if UNITS[ch] then vi:append_text(" " .. UNITS[ch]); ti:append_text(" " .. UNITS[ch]) end
    elseif kind == 8 then
        vi:append_text(" x 0.1 °C/min"); ti:append_text(" x 0.1 °C/min")
    end
    return named(KIND_NAMES, kind) .. " " .. named(CHANNEL_NAMES, ch) .. " " .. v .. "/" .. t
end

PAYLOAD[4] = function(tree, tvb, s, e) -- RESULT
    tree:add(F.cmd_counter, tvb(s, 4), tvb(s, 4):le_uint())
    local cmd, st = tvb(s + 4, 1):uint(), tvb(s + 5, 1):uint()
    add_enum(tree, F.cmd, "cmd", tvb(s + 4, 1), cmd, CMD_NAMES)
    add_enum(tree, F.result_status, "status", tvb(s + 5, 1), st, RESULT_NAMES)
    local v = tvb(s + 6, 4):le_int()
    tree:add(F.value, tvb(s + 6, 4), v)
    local info = named(CMD_NAMES, cmd) .. " " .. named(RESULT_NAMES, st) .. " " .. v
    if cmd == 3 and st == 2 then -- set_config bad_argument: the value is the refused setting's id
        local p = PARAMS[v] or ("p" .. v)
        tree:add(F.param, tvb(s + 6, 4), p):set_generated()
        info = info .. " (" .. p .. ")"
    elseif cmd == 9 and st == 0 then -- link_status: WiFi RSSI in dBm (< 0), 1 not associated, 0 not WiFi
        info = info .. (v < 0 and (" (rssi " .. v .. " dBm)") or (v == 1 and " (wifi not associated)") or (v == 0 and " (not wifi)") or "")
    end
    return info
end

PAYLOAD[5] = function(tree, tvb, s, e) -- CONFIG
    if (e - s - 4) % 5 ~= 0 then return nil end
    tree:add(F.config_hash, tvb(s, 4), tvb(s, 4):le_uint())
    local info = params_fields(tree, tvb, s + 4, e)
    return "hash " .. hex32(tvb(s, 4):le_uint()) .. " " .. info
end

PAYLOAD[6] = function(tree, tvb, s, e) -- SNAPSHOT
    local ns2 = e - s - 12
    if ns2 % 2 ~= 0 or ns2 > 2 * MAX_SAMPLES then return nil end
    local sid, ch = tvb(s, 2):le_uint(), tvb(s + 2, 1):uint()
    tree:add(F.snap_id, tvb(s, 2), sid)
    add_enum(tree, F.channel, "channel", tvb(s + 2, 1), ch, CHANNEL_NAMES)
    local k, n = tvb(s + 3, 1):uint(), tvb(s + 4, 1):uint()
    tree:add(F.chunk, tvb(s + 3, 1), k)
    tree:add(F.chunks, tvb(s + 4, 1), n)
    tree:add(F.scale_exp, tvb(s + 5, 1), tvb(s + 5, 1):int())
    tree:add(F.rate_hz, tvb(s + 6, 2), tvb(s + 6, 2):le_uint())
    tree:add(F.trigger, tvb(s + 8, 2), tvb(s + 8, 2):le_uint())
    tree:add(F.offset, tvb(s + 10, 2), tvb(s + 10, 2):le_uint())
    local ns = math.floor(ns2 / 2)
    if ns > 0 then
        local st = tree:add(F.samples_list, tvb(s + 12, ns2))
        st:set_text("samples (" .. ns .. ", x 10^" .. tvb(s + 5, 1):int() .. " " .. (UNITS[ch] or "") .. ")")
        for i = 0, ns - 1 do st:add(F.samples, tvb(s + 12 + 2 * i, 2), tvb(s + 12 + 2 * i, 2):le_int()) end
    end
    return "snap " .. sid .. " " .. named(CHANNEL_NAMES, ch) .. " chunk " .. k .. "/" .. n .. " (" .. ns .. " samples)"
end

PAYLOAD[16] = function(tree, tvb, s, e) return "" end -- POLL

PAYLOAD[17] = function(tree, tvb, s, e) -- ACK
    local at, aseq, acrc = tvb(s, 1):uint(), tvb(s + 1, 1):uint(), tvb(s + 2, 2):le_uint()
    add_enum(tree, F.ack_type, "ack_type", tvb(s, 1), at, TYPE_NAMES)
    tree:add(F.ack_seq, tvb(s + 1, 1), aseq)
    tree:add(F.ack_crc, tvb(s + 2, 2), acrc)
    return named(TYPE_NAMES, at) .. " seq=" .. aseq .. " crc=" .. string.format("0x%04x", acrc)
end

PAYLOAD[18] = function(tree, tvb, s, e) -- COMMAND
    local cmd = tvb(s, 1):uint()
    local a, n = s + 1, e - s - 1
    local info = named(CMD_NAMES, cmd)
    if cmd == 1 then -- reset: u8 channel, 0xFF = all
        if n < 1 then return nil end
        local ch = tvb(a, 1):uint()
        add_enum(tree, F.cmd, "cmd", tvb(s, 1), cmd, CMD_NAMES)
        add_enum(tree, F.channel, "channel", tvb(a, 1), ch, CHANNEL_NAMES, ch == CMD_ALL and "all" or nil)
        return info .. " " .. (ch == CMD_ALL and "all" or named(CHANNEL_NAMES, ch))
    elseif cmd == 3 then -- set_config
        if n % 5 ~= 0 then return nil end
        add_enum(tree, F.cmd, "cmd", tvb(s, 1), cmd, CMD_NAMES)
        if n > 0 then info = info .. " " .. params_fields(tree, tvb, a, e) end
        return info
    elseif cmd == 4 or cmd == 8 then -- time_sync: u32 set_time; resync: u32 mark
        if n < 4 then return nil end
        add_enum(tree, F.cmd, "cmd", tvb(s, 1), cmd, CMD_NAMES)
        local v = tvb(a, 4):le_uint()
        tree:add(cmd == 4 and F.set_time or F.mark, tvb(a, 4), v)
        return info .. " " .. v
    elseif cmd == 5 then -- snapshot: u16 snap_id
        if n < 2 then return nil end
        add_enum(tree, F.cmd, "cmd", tvb(s, 1), cmd, CMD_NAMES)
        tree:add(F.snap_id, tvb(a, 2), tvb(a, 2):le_uint())
        return info .. " " .. tvb(a, 2):le_uint()
    end
    add_enum(tree, F.cmd, "cmd", tvb(s, 1), cmd, CMD_NAMES)
    if cmd ~= 2 and cmd ~= 6 and cmd ~= 7 and cmd ~= 9 then -- unknown command: its arguments as bytes
        local ai = tree:add(F.args, tvb(a, n))
        if n == 0 then ai:set_text("args: (none)") end
    end
    return info
end

PAYLOAD[7] = function(tree, tvb, s, e) -- UPDATE_STATUS
    local st, res = tvb(s, 1):uint(), tvb(s + 1, 1):uint()
    add_enum(tree, F.state, "state", tvb(s, 1), st, UPDATE_STATES)
    add_enum(tree, F.result, "result", tvb(s + 1, 1), res, UPDATE_RESULTS)
    local image = tvb(s + 2, 4):le_uint()
    tree:add(F.image, tvb(s + 2, 4), image)
    local have, size = tvb(s + 6, 4):le_uint(), tvb(s + 10, 4):le_uint()
    tree:add(F.have, tvb(s + 6, 4), have)
    tree:add(F.size, tvb(s + 10, 4), size)
    local ma, mi, pa = tvb(s + 14, 1):uint(), tvb(s + 15, 1):uint(), tvb(s + 16, 1):uint()
    tree:add(F.fw, tvb(s + 14, 3), ma .. "." .. mi .. "." .. pa)
    return named(UPDATE_STATES, st) .. " " .. named(UPDATE_RESULTS, res) .. " " .. hex32(image) .. " " .. have .. "/" .. size .. " fw " .. ma .. "." .. mi .. "." .. pa
end

PAYLOAD[19] = function(tree, tvb, s, e) -- UPDATE
    local op, n = tvb(s, 1):uint(), e - s
    if op == 1 and n < 9 then return nil end
    if op == 2 and (n < 10 or n > 9 + UP_MAX_CHUNK) then return nil end
    add_enum(tree, F.op, "op", tvb(s, 1), op, UPDATE_OPS)
    local image = tvb(s + 1, 4):le_uint()
    tree:add(F.image, tvb(s + 1, 4), image)
    local info = named(UPDATE_OPS, op) .. " " .. hex32(image)
    if op == 1 then
        local size = tvb(s + 5, 4):le_uint()
        tree:add(F.size, tvb(s + 5, 4), size)
        info = info .. " size " .. size
    elseif op == 2 then
        local off = tvb(s + 5, 4):le_uint()
        tree:add(F.update_offset, tvb(s + 5, 4), off)
        tree:add(F.data, tvb(s + 9, n - 9))
        info = info .. " @" .. off .. " +" .. (n - 9)
    end
    return info
end

-- Fixed-layout payload sizes: bytes beyond them are a later revision's fields (SPEC.md section 6).
local FIXED_LEN = {[1] = 16, [2] = 18, [3] = 10, [4] = 10, [16] = 0, [17] = 4}

-- One frame ---------------------------------------------------------------------------------
-- seg: the segment's wire bytes (Lua string, no delimiter); segtvb/range: where they are shown.
-- Returns the Info text.
local function error_item(tree, name, range)
    local it = tree:add(F.error, range, name)
    it:set_generated()
    tree:add(F.reason, range, ERROR_REASONS[name] or name):set_generated()
    return it
end

local function dissect_frame(seg, segrange, pinfo, root)
    local n = #seg
    if n > MAX_WIRE - 1 then
        error_item(root, "overflow", segrange):add_proto_expert_info(E.malformed)
        root:append_text(": overflow")
        return "overflow"
    end
    local raw = cobs_decode(seg)
    if raw == nil then
        error_item(root, "cobs", segrange):add_proto_expert_info(E.malformed)
        root:append_text(": not valid COBS")
        return "cobs error"
    end
    local N = #raw
    local ftvb = ByteArray.new(raw, true):tvb("EFD frame (COBS-decoded)")
    if N < MIN_FRAME then
        error_item(root, "short", ftvb()):add_proto_expert_info(E.malformed)
        root:append_text(": short frame")
        return "short frame"
    end
    if N > MAX_FRAME then
        error_item(root, "overflow", ftvb()):add_proto_expert_info(E.malformed)
        root:append_text(": overflow")
        return "overflow"
    end
    -- The codec's order of checks (protocol/frame.py parse): CRC, version, A length, type,
    -- payload. Header fields are shown even for a frame it rejects (its error says why).
    local crc = ftvb(N - 2, 2):le_uint()
    local calc = crc16(raw, N - 2)
    local err = nil
    if crc ~= calc then err = "crc" end

    local hdr = ftvb(0, 1):uint()
    local ver = band(rshift(hdr, 5), 3)
    local typ = band(hdr, 0x1F)
    local A = band(hdr, 0x80) ~= 0
    local h = root:add(F.hdr, ftvb(0, 1), hdr)
    h:add(F.auth, ftvb(0, 1))
    h:add(F.version, ftvb(0, 1))
    local ti = h:add(F.type, ftvb(0, 1))
    if TYPE_NAMES[typ] then ti:set_text("type: " .. TYPE_NAMES[typ] .. " (" .. typ .. ")")
    else ti:set_text("type: " .. typ .. " (unknown)") end
    ti:append_text(typ < 16 and ", uplink" or ", downlink")
    local dev = ftvb(1, 4):le_uint()
    root:add(F.device, ftvb(1, 4), dev)
    local seq = ftvb(5, 1):uint()
    root:add(F.seq, ftvb(5, 1), seq)
    local t = ftvb(6, 4):le_uint()
    local tit = root:add(F.time, ftvb(6, 4), t)
    if t == 0 then tit:append_text(" (clock not set)")
    else tit:add(F.time_utc, ftvb(6, 4), NSTime.new(t + EPOCH_UNIX, 0)):set_generated() end

    local stop = N - 2
    if err == nil and ver ~= 1 then err = "version" end
    if A then
        stop = stop - AUTH_LEN
        if err == nil and stop < HEADER_LEN then err = "length" end
    end
    if err == nil and MIN_LEN[typ] == nil then err = "unknown_type" end

    local info = named(TYPE_NAMES, typ) .. " " .. hex32(dev) .. " seq=" .. seq
    local summary = nil
    if stop >= HEADER_LEN and MIN_LEN[typ] ~= nil and ver == 1 then
        local P = stop - HEADER_LEN
        local pt = root:add(F.payload, ftvb(HEADER_LEN, P > 0 and P or 0))
        pt:set_text(named(TYPE_NAMES, typ) .. " payload (" .. P .. " bytes)")
        if P >= MIN_LEN[typ] then
            summary = PAYLOAD[typ](pt, ftvb, HEADER_LEN, stop)
            local fixed = FIXED_LEN[typ]
            if summary ~= nil and fixed ~= nil and P > fixed then
                pt:add(F.extra, ftvb(HEADER_LEN + fixed, P - fixed))
            end
        end
        if summary == nil and err == nil then err = "length" end
    end

    local tag_status = nil
    if A and stop >= HEADER_LEN then
        local counter = ftvb(stop, 4):le_uint()
        local cti = root:add(F.counter, ftvb(stop, 4), counter)
        if counter == 0 then cti:add_proto_expert_info(E.counter_zero) end
        local tag = raw:sub(stop + 5, stop + 12)
        local tgi = root:add(F.tag, ftvb(stop + 4, 8))
        local pads = key_for(dev)
        if pads == nil then
            tag_status = "no_key"
        elseif hmac_sha256(pads, raw:sub(1, stop + 4)):sub(1, 8) == tag then
            tag_status = "verified"
        else
            tag_status = "bad_tag"
        end
        local sti = tgi:add(F.tag_status, ftvb(stop + 4, 8), tag_status)
        sti:set_generated()
        tgi:add(F.tag_verified, ftvb(stop + 4, 8), tag_status == "verified"):set_generated()
        if tag_status == "verified" then
            tgi:append_text(" [verified]")
        elseif tag_status == "bad_tag" then
            tgi:append_text(" [unverified: does not match the device key]")
            sti:add_proto_expert_info(E.bad_tag)
        else
            tgi:append_text(" [unverified: no key for " .. hex32(dev) .. (keys_error and "; " .. keys_error or "") .. "]")
        end
        info = info .. " ctr=" .. counter
    end

    if not A and err == nil and REQUIRES_TAG[typ] then
        root:add_proto_expert_info(E.no_tag)
        info = info .. " [untagged]"
    end

    local ci = root:add(F.crc, ftvb(N - 2, 2), crc)
    ci:add(F.crc_calc, ftvb(N - 2, 2), calc):set_generated()
    local cg = ci:add(F.crc_good, ftvb(N - 2, 2), crc == calc)
    cg:set_generated()
    if crc == calc then ci:append_text(" [good]")
    else
        ci:append_text(string.format(" [BAD: computed 0x%04x]", calc))
        cg:add_proto_expert_info(E.crc)
    end

    if err ~= nil then
        local ei = error_item(root, err, ftvb())
        if err ~= "crc" then ei:add_proto_expert_info(E.malformed) end
        info = info .. " [" .. err .. "]"
        root:append_text(", " .. named(TYPE_NAMES, typ) .. " " .. hex32(dev) .. " seq " .. seq .. ": " .. err)
    else
        if summary ~= nil and summary ~= "" then info = info .. " " .. summary end
        root:append_text(", " .. named(TYPE_NAMES, typ) .. " " .. hex32(dev) .. " seq " .. seq)
    end
    if tag_status == "verified" then info = info .. " [verified]"
    elseif tag_status == "bad_tag" then info = info .. " [BAD TAG]" end
    return info
end

-- Segments: datagrams and serial streams ----------------------------------------------------
local function set_info(pinfo, infos)
    if #infos == 0 then return end
    pinfo.cols.protocol = "EFD"
    pinfo.cols.info = table.concat(infos, "; ")
end

-- A datagram (UDP): every 0x00-terminated segment is a frame; a last segment without its
-- delimiter is decoded too (protocol.frame.decode accepts a datagram without it).
local function dissect_datagram(tvb, pinfo, tree)
    local data = tvb:raw(0, tvb:len())
    local n, pos, infos = #data, 1, {}
    while pos <= n do
        local z = data:find("\0", pos, true)
        local stop = z and z - 1 or n
        if stop >= pos then
            local len = stop - pos + 1 + (z and 1 or 0)
            local root = tree:add(efd, tvb(pos - 1, len))
            root:add(F.wire_len, tvb(pos - 1, len), len):set_generated()
            infos[#infos + 1] = dissect_frame(data:sub(pos, stop), tvb(pos - 1, stop - pos + 1), pinfo, root)
            if not z then root:add_proto_expert_info(E.no_delim) end
        end
        if not z then break end
        pos = z + 1
    end
    set_info(pinfo, infos)
    return n
end

-- Serial captures: one byte stream across the file's packets. State at the start of each
-- packet (bytes of an unfinished segment, and whether an over-long one is being skipped) is
-- recorded on the first pass and reused when the packet is dissected again.
local stream = {carry = "", carry_from = 0, skipping = false}
local packet_state = {}

local function dissect_serial(tvb, pinfo, tree)
    local st = packet_state[pinfo.number]
    if st == nil then
        st = {carry = stream.carry, carry_from = stream.carry_from, skipping = stream.skipping}
        packet_state[pinfo.number] = st
    end
    local carry, carry_from, skipping = st.carry, st.carry_from, st.skipping
    local data = tvb:raw(0, tvb:len())
    local n, pos, infos = #data, 1, {}
    while pos <= n do
        local z = data:find("\0", pos, true)
        local stop = z and z - 1 or n
        if skipping then
            -- inside an over-long segment: wait for its delimiter
        elseif carry == "" and z then
            if stop >= pos then
                local len = stop - pos + 2
                local root = tree:add(efd, tvb(pos - 1, len))
                root:add(F.wire_len, tvb(pos - 1, len), len):set_generated()
                infos[#infos + 1] = dissect_frame(data:sub(pos, stop), tvb(pos - 1, stop - pos + 1), pinfo, root)
            end
        else
            local part = data:sub(pos, stop)
            if #carry + #part > MAX_WIRE - 1 then
                local root = tree:add(efd, tvb(pos - 1, stop - pos + 1))
                error_item(root, "overflow", tvb(pos - 1, stop - pos + 1)):add_proto_expert_info(E.malformed)
                if carry_from > 0 then root:add(F.reassembled, tvb(pos - 1, stop - pos + 1), carry_from):set_generated() end
                root:append_text(": overflow (no delimiter within 256 bytes)")
                infos[#infos + 1] = "overflow"
                skipping, carry, carry_from = true, "", 0
            elseif z then
                local seg = carry .. part
                local segtvb = ByteArray.new(seg, true):tvb("EFD segment (reassembled)")
                local root = tree:add(efd, tvb(pos - 1, stop - pos + 2))
                root:add(F.wire_len, tvb(pos - 1, stop - pos + 2), #seg + 1):set_generated()
                root:add(F.reassembled, tvb(pos - 1, stop - pos + 2), carry_from):set_generated()
                infos[#infos + 1] = dissect_frame(seg, segtvb(), pinfo, root)
                carry, carry_from = "", 0
            else
                if carry == "" then carry_from = pinfo.number end
                carry = carry .. part
            end
        end
        if not z then break end
        skipping = false
        pos = z + 1
    end
    if not pinfo.visited then
        stream.carry, stream.carry_from, stream.skipping = carry, carry_from, skipping
    end
    if #infos == 0 and n > 0 then
        pinfo.cols.protocol = "EFD"
        pinfo.cols.info = "[" .. n .. " bytes of a segment continued in a later packet]"
        local root = tree:add(efd, tvb())
        root:append_text(" (segment continues in a later packet)")
    end
    set_info(pinfo, infos)
    return n
end

-- "efd": datagrams (UDP, Decode As). "efd_serial": a byte stream split into packets (the serial
-- capture's link type, USER0; map other user DLTs to it in Preferences > Protocols > DLT_USER).
efd.dissector = function(tvb, pinfo, tree)
    if tvb:len() == 0 then return 0 end
    return dissect_datagram(tvb, pinfo, tree)
end

local efd_serial = Proto("efd_serial", "EFD serial byte stream")
efd_serial.dissector = function(tvb, pinfo, tree)
    if tvb:len() == 0 then return 0 end
    return dissect_serial(tvb, pinfo, tree)
end

function efd.init()
    stream = {carry = "", carry_from = 0, skipping = false}
    packet_state = {}
    keys_loaded_from = nil -- reload the key file on every (re)load of a capture
end

-- Registration ----------------------------------------------------------------------------
local udp_table = DissectorTable.get("udp.port")
local registered_port = nil

local function register_port()
    if registered_port ~= nil then udp_table:remove(registered_port, efd) end
    registered_port = efd.prefs.udp_port
    if registered_port ~= 0 then udp_table:add(registered_port, efd) end
end

function efd.prefs_changed()
    register_port()
    keys_loaded_from = nil
end

register_port()
udp_table:add_for_decode_as(efd)
DissectorTable.get("wtap_encap"):add(wtap_encaps.USER0, efd_serial)
