"""The Wireshark dissector (tools/wireshark/efd.lua) under the real tshark shows what the codec
decodes, field for field, on pcaps of (a) the golden vectors, (b) the fleet simulator talking to
the gateway, live over UDP, and a VirtualDetector answering every command, (c) the real firmware
on the virtual device's serial link.

For every frame the dissector shows, every `efd.*` field in tshark's PDML output is turned into
the codec's presentation (protocol.frame.decode(...).to_dict(), names from protocol.host) and
compared with the codec's own decode of the same bytes; a field the comparison does not know
fails the test, so nothing shown goes unchecked. Tags: `verified` with the right key file,
`bad_tag` with a wrong one, `no_key` without; bad CRCs are flagged.

tshark comes from Debian (scripts/tshark.sh install, run by `make pytest`): the test is skipped
only where it cannot be installed (not root), and fails under CI.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from efd import names
from protocol import auth, frame, host, messages, session
from protocol.crc import crc16
from protocol.stream import StreamDecoder
from tools.wireshark.capture import (
    LINKTYPE_RAW,
    LINKTYPE_USER0,
    PcapWriter,
    SerialRecorder,
    udp_packet,
)

ROOT = Path(__file__).resolve().parents[2]
LUA = ROOT / "tools" / "wireshark" / "efd.lua"
CAPTURE = ROOT / "tools" / "wireshark" / "capture.py"
TSHARK_SH = ROOT / "scripts" / "tshark.sh"
VECTORS = ROOT / "protocol" / "vectors" / "vectors.json"
TEST_KEY = bytes(range(32))
WRONG_KEY = bytes(range(1, 33))
DEVICE = 0x12345678


# -- tshark ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tshark() -> str:
    r = subprocess.run([str(TSHARK_SH), "install"], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        why = "tshark is not installed and cannot be installed here: " + r.stderr.strip()
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return "tshark"


def run_tshark(tshark: str, pcap: Path, key_file: Path | None = None, *extra: str) -> list:
    """The efd protos tshark shows, in order: each a list of (name, show, showname, value)."""
    cmd = [tshark, "-n", "-r", str(pcap), "-X", f"lua_script:{LUA}", "-T", "pdml", *extra]
    if key_file is not None:
        cmd += ["-o", f"efd.key_file:{key_file}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "lua" in ln.lower() or "error" in ln.lower()]
    assert not errors, r.stderr
    assert "Lua Error" not in r.stdout, re.findall(r'show="(Lua Error[^"]*)"', r.stdout)[:3]
    out = []
    for proto in ET.fromstring(r.stdout).iter("proto"):
        if proto.get("name") != "efd":
            continue
        fields = [
            (f.get("name", ""), f.get("show", ""), f.get("showname", ""), f.get("value") or "")
            for f in proto.iter("field")
        ]
        if fields:  # no fields: the first part of a segment continued in a later packet
            out.append(fields)
    return out


# -- the dissector's fields, as the codec presents them -----------------------------------------
_ENUM = re.compile(r"[^:]*: (\S+) \((\d+|unknown)\)")
_STATUS_BITS = {f"alarm_{c}": i for i, c in enumerate(host.CHANNEL_NAMES)} | {
    f: 9 + i for i, f in enumerate(host.STATUS_FLAGS)
}
_EXPERTS = {
    "efd.crc_bad", "efd.malformed", "efd.bad_tag", "efd.no_delimiter", "efd.no_tag",
    "efd.counter_zero",
}  # fmt: skip
# Types a receiver requires tagged (a host's, a detector's): the dissector's `no_tag` note.
REQUIRED = set(host.HOST_REQUIRES) | set(session.DETECTOR_REQUIRES)


def _enum(showname: str) -> tuple[str | int, int | None]:
    """(the codec's presentation, the code) from "kind: alarm (2)" or "kind: 42 (unknown)"."""
    m = _ENUM.match(showname)
    assert m, showname
    name, num = m.groups()
    if num == "unknown":
        return int(name), int(name)
    return name, int(num)


def shown(fields: list) -> dict:
    """One efd proto's fields -> a dict in the codec's names and presentation, plus the
    dissector's own fields (crc_good, tag_status, ...). Unknown fields fail the test."""
    d: dict = {}
    lists: dict[str, list] = {}
    params: list | None = None
    experts = set()
    typ = None
    for name, show, showname, value in fields:
        if name in _EXPERTS:
            experts.add(name[4:])
            continue
        if not name.startswith("efd."):
            assert name.startswith("_ws.expert"), name
            continue
        k = name[4:]
        if k == "type":
            typ, d["type_code"] = _enum(showname)
            d["type"] = typ
        elif k in ("kind", "channel", "reset_cause", "cmd", "ack_type", "op", "state", "result"):
            d[k] = _enum(showname)[0]
        elif k == "status":
            if typ == "result":
                d[k] = _enum(showname)[0]
            else:
                d[k] = int(show, 0)
        elif k.startswith("status."):
            d.setdefault("status_bits", {})[k[7:]] = show in ("1", "True")
        elif k in ("residual_ma",):
            d[k] = None if "n/a" in showname else int(show, 0)
        elif k in ("temp_dc", "line_ca", "samples"):
            lists.setdefault(k, []).append(None if "n/a" in showname else int(show, 0))
        elif k == "fw":
            d[k] = [int(x) for x in show.split(".")]
        elif k == "params":
            params = [] if params is None else params
            params.append([None, None, None])
        elif k in ("param", "param_id", "param_value") and params is not None:
            slot = {"param": 0, "param_value": 1, "param_id": 2}[k]
            params[-1][slot] = show if k == "param" else int(show, 0)
        elif k == "param":  # a RESULT's refused setting
            d[k] = show
        elif k in ("auth", "tag_verified", "crc_good"):
            d[k] = show in ("1", "True")
        elif k in ("tag", "payload", "extra", "args", "data"):
            d[k] = value
        elif k in ("error", "reason", "tag_status", "status_flags", "time_utc"):
            d[k] = show
        elif k == "update_offset":  # UPDATE's u32 offset (SNAPSHOT's is a u16 field)
            d["offset"] = int(show, 0)
        elif k in ("samples_list",):
            pass  # a container: its items are the samples
        else:
            d[k] = int(show, 0)  # every other field is an integer (unknown names fail here)
            assert k in _INT_FIELDS, f"field efd.{k} is not compared with the codec"
    d.update(lists)
    if typ is not None:
        d.setdefault("counter", None)  # untagged: no counter shown, the codec's None
    if params is not None:
        for p in params:
            pid = p.pop()
            assert p[0] == (host.PARAMS[pid] if 0 < pid < len(host.PARAMS) else f"p{pid}")
        d["params"] = params
    if typ in ("snapshot",):
        d.setdefault("samples", [])
    if typ == "config" or (typ == "command" and d.get("cmd") == "set_config"):
        d.setdefault("params", [])
    d["experts"] = experts
    return d


_INT_FIELDS = {
    "wire_len", "hdr", "version", "device", "seq", "time", "counter", "crc", "crc_calc",
    "boot_count", "config_hash", "host_counter", "value", "threshold", "cmd_counter", "snap_id",
    "chunk", "chunks", "scale_exp", "rate_hz", "trigger", "offset", "ack_seq", "ack_crc",
    "set_time", "mark", "reassembled_from", "image", "size", "have",
}  # fmt: skip
_FIXED = {
    messages.HELLO: 16,
    messages.TELEMETRY: 18,
    messages.EVENT: 10,
    messages.RESULT: 10,
    messages.POLL: 0,
    messages.ACK: 4,
}


def _utc(t: int) -> str:
    return time.strftime("%b %e, %Y %H:%M:%S.000000000 UTC", time.gmtime(t + host.EPOCH_UNIX))


def expected(seg: bytes, delimited: bool, key: bytes | None) -> dict:
    """What the dissector must show for one segment (no delimiter), from the codec alone."""
    f = frame.decode(seg)
    if not f.ok:
        d = {"error": f.name, "reason": f.reason}
        if f.device is not None:
            d.update(device=f.device, seq=f.seq, type_code=f.type)
        return d
    raw = f.raw
    tagged = f.counter is not None
    stop = len(raw) - 2 - (12 if tagged else 0)
    d = f.to_dict()
    d.update(
        type_code=f.type,
        hdr=raw[0],
        auth=tagged,
        version=frame.VERSION,
        wire_len=len(seg) + delimited,
        payload=raw[10:stop].hex(),
        crc=f.crc,
        crc_calc=crc16(raw, 0, len(raw) - 2),
        crc_good=True,
        experts=set() if delimited else {"no_delimiter"},
    )
    if f.time:
        d["time_utc"] = _utc(f.time)
    fixed = _FIXED.get(f.type)
    if fixed is not None and stop - 10 > fixed:
        d["extra"] = raw[10 + fixed : stop].hex()
    if f.type == messages.TELEMETRY:
        st = f.fields["status"]
        d["status_flags"] = ",".join(host.status_flags(st))
        d["status_bits"] = {k: bool(st >> b & 1) for k, b in _STATUS_BITS.items()}
    if f.type == messages.COMMAND and "args" in d:
        d["args"] = d["args"]  # hex, as the codec presents an unknown command's arguments
    if not tagged and f.type in REQUIRED:
        d["experts"] = d["experts"] | {"no_tag"}
    if f.counter == 0:
        d["experts"] = d["experts"] | {"counter_zero"}
    if tagged:
        d["tag"] = f.tag.hex()
        if key is None:
            d["tag_status"] = "no_key"
        elif auth.equal(auth.Key(key).tag(raw, 0, stop + 4), f.tag):
            d["tag_status"] = "verified"
        else:
            d["tag_status"] = "bad_tag"
            d["experts"] = d["experts"] | {"bad_tag"}
        d["tag_verified"] = d["tag_status"] == "verified"
    return d


def compare(got: dict, want: dict, where: str) -> None:
    if "error" in want:
        assert got.get("error") == want["error"], f"{where}: {got} vs {want}"
        assert got.get("reason") == want["reason"], where
        for k in ("device", "seq", "type_code"):
            if k in want:
                assert got.get(k) == want[k], f"{where}: {k}"
        if want["error"] == "crc":
            assert got["crc_good"] is False and "crc_bad" in got["experts"], where
        else:
            assert "malformed" in got["experts"], where
        return
    assert "error" not in got, f"{where}: dissector says {got.get('error')}, codec decodes it"
    assert got == want, f"{where}:\n tshark {got}\n codec  {want}"


def segments(data: bytes, stream: bool) -> list[tuple[bytes, bool]]:
    """(segment, ends with 0x00) of a datagram or a whole byte stream, as a receiver splits it."""
    parts = data.split(b"\x00")
    out = [(p, True) for p in parts[:-1] if p]
    if parts[-1] and not stream:  # a datagram's last frame may lack its delimiter
        out.append((parts[-1], False))
    return out


def check_capture(protos: list, segs: list[tuple[bytes, bool]], key: bytes | None) -> list:
    assert len(protos) == len(segs), f"tshark shows {len(protos)} frames, codec {len(segs)}"
    shown_all = []
    for i, (fields, (seg, delimited)) in enumerate(zip(protos, segs, strict=True)):
        got = shown(fields)
        got.pop("reassembled_from", None)
        compare(got, expected(seg, delimited, key), f"frame {i} ({seg.hex()})")
        shown_all.append(got)
    return shown_all


# -- key files in each format the dissector reads -----------------------------------------------
def key_csv(path: Path, keys: dict[int, bytes]) -> Path:
    rows = ["device,name,site,key"] + [f'{d},"det, {d}",site,{k.hex()}' for d, k in keys.items()]
    path.write_text("\n".join(rows) + "\n")
    return path


def key_json(path: Path, keys: dict[int, bytes]) -> Path:
    path.write_text(json.dumps({hex(d): k.hex() for d, k in keys.items()}))
    return path


# -- (a) golden vectors -------------------------------------------------------------------------
def vector_wires() -> list[tuple[str, bytes, dict]]:
    v = json.loads(VECTORS.read_text())
    return [(x["name"], bytes.fromhex(x["hex"]), x) for x in v["vectors"]]


def test_lua_tables_match_the_codec():
    """The dissector's names are protocol/host.py's (a renamed or added code fails here)."""
    src = LUA.read_text()

    def table(name: str) -> dict[int, str]:
        m = re.search(rf"^local {name} = \{{(.*)\}}$", src, re.M)
        assert m, name
        return {int(k): v for k, v in re.findall(r'\[(\d+)\] = "([^"]*)"', m.group(1))}

    def named(seq) -> dict[int, str]:
        return {i: n for i, n in enumerate(seq) if n}

    assert table("TYPE_NAMES") == host.TYPE_NAMES
    assert table("KIND_NAMES") == named(names.KIND_NAMES)
    assert table("CHANNEL_NAMES") == named(host.CHANNEL_NAMES)
    assert table("CMD_NAMES") == named(host.CMD_NAMES)
    assert table("RESULT_NAMES") == named(host.RESULT_NAMES)
    assert table("RESET_CAUSES") == named(host.RESET_CAUSES)
    assert table("PARAMS") == named(host.PARAMS)
    assert table("STATUS_FLAGS") == {9 + i: f for i, f in enumerate(host.STATUS_FLAGS)}
    assert table("FAULT_NAMES") == named(names.FAULT_NAMES)
    assert table("UPDATE_OPS") == named(host.UPDATE_OPS)
    assert table("UPDATE_STATES") == named(host.UPDATE_STATES) | {0: host.UPDATE_STATES[0]}
    assert table("UPDATE_RESULTS") == named(host.UPDATE_RESULTS) | {0: host.UPDATE_RESULTS[0]}
    min_len = {t: n for t, n in enumerate(messages.MIN_LEN) if n != 0xFF}
    lua_min = {int(k): int(v) for k, v in re.findall(r"\[(\d+)\] = (\d+)", re.search(
        r"^local MIN_LEN = \{(.*)\}$", src, re.M).group(1))}  # fmt: skip
    assert lua_min == min_len


def test_vectors_over_udp(tshark, tmp_path):
    wires = vector_wires()
    pcap = tmp_path / "vectors.pcap"
    datagrams = [w for _, w, _ in wires]
    assert all(len(segments(w, stream=False)) == 1 for w in datagrams)  # one frame each
    # and every valid frame back to back in one datagram (a concentrator's batch, SPEC.md §3)
    datagrams.append(b"".join(w for _, w, x in wires if "decoded" in x))
    with PcapWriter(str(pcap), LINKTYPE_RAW) as pw:
        for i, d in enumerate(datagrams):
            pw.write(udp_packet(("192.0.2.7", 40000 + i), ("192.0.2.1", 47000), d), 1.7e9 + i)
    segs = [s for d in datagrams for s in segments(d, stream=False)]

    right = key_csv(tmp_path / "keys.csv", {DEVICE: TEST_KEY, 7: WRONG_KEY})
    got = check_capture(run_tshark(tshark, pcap, right), segs, TEST_KEY)
    check_capture(run_tshark(tshark, pcap, key_json(tmp_path / "wrong.json", {DEVICE: WRONG_KEY})),
                  segs, WRONG_KEY)  # fmt: skip
    check_capture(run_tshark(tshark, pcap), segs, None)

    # What the golden vectors say, in the dissector's words.
    by_name = dict(zip([n for n, _, _ in wires], got, strict=False))
    for name, _, x in wires:
        if x.get("stage") == "decode":
            assert by_name[name]["error"] == x["error"], name
        elif x.get("stage") == "auth":  # stateless ones the dissector can tell
            g = by_name[name]
            if x["error"] == "bad_tag":
                assert g["tag_status"] == "bad_tag", name
            elif x["error"] == "no_tag":
                assert "no_tag" in g["experts"], name
            elif g.get("counter") == 0:
                assert "counter_zero" in g["experts"], name
        else:
            want = dict(x["decoded"])
            assert {k: by_name[name][k] for k in want} == want, name
            if want["counter"] is not None:
                assert by_name[name]["tag_status"] == "verified", name
    assert by_name["bad_crc"]["crc_good"] is False
    statuses = {g.get("tag_status") for g in got}
    assert {"verified", "bad_tag"} <= statuses


def test_vectors_as_a_serial_stream(tshark, tmp_path):
    """The serial capture format: the stream split into odd reads, with line noise, a partial
    frame at the start and an over-long run: frames are reassembled across packets."""
    stream = b"\x11\x22\x33" + b"".join(w if w.endswith(b"\x00") else w + b"\x00"
                                        for _, w, _ in vector_wires())  # fmt: skip
    stream += b"\x41" * 300 + b"\x00" + vector_wires()[1][1]
    pcap = tmp_path / "serial.pcap"
    reads = [stream[i : i + 7] for i in range(0, len(stream), 7)]
    with PcapWriter(str(pcap), LINKTYPE_USER0) as pw:
        for i, chunk in enumerate(reads):
            pw.write(chunk, 1.7e9 + i / 100)
    segs = segments(stream, stream=True)
    # the codec's own stream decoder sees the same segments and verdicts
    dec = StreamDecoder()
    items = [it for c in reads for it in dec.feed(c)]
    assert [(it.ok and it.type) or it.name for it in items] == [
        (lambda f: (f.ok and f.type) or f.name)(frame.decode(s)) for s, _ in segs
    ]
    protos = run_tshark(tshark, pcap, key_csv(tmp_path / "k.csv", {DEVICE: TEST_KEY}))
    got = check_capture(protos, segs, TEST_KEY)
    assert any(g.get("error") == "overflow" for g in got)
    # a frame split across reads says where it began
    assert any(n == "efd.reassembled_from" for p in protos for n, *_ in p)


def _restuff(raw: bytes) -> bytes:
    """A frame with its CRC recomputed, COBS-stuffed with its delimiter."""
    from protocol import cobs

    body = raw[:-2] if len(raw) >= 2 else raw
    c = crc16(body)
    framed = body + bytes([c & 0xFF, c >> 8])
    out = bytearray(len(framed) + len(framed) // 254 + 2)
    return bytes(out[: cobs.encode_into(framed, len(framed), out)])


def test_mutated_frames_agree_with_the_codec(tshark, tmp_path):
    """Every type code (0-31), with and without the A bit, payloads cut short and grown (a later
    revision's fields, a 97-sample SNAPSHOT), odd CONFIG lengths, unknown commands: the
    dissector's verdict and fields are the codec's, frame for frame."""
    import random

    rng = random.Random(12)
    raws = [frame.decode(w).raw for _, w, x in vector_wires() if "decoded" in x]
    cases: list[bytes] = []
    for raw in raws:
        for typ in range(32):
            for a in (0, 0x80):
                cases.append(_restuff(bytes([a | 0x20 | typ]) + raw[1:]))
        for cut in (1, 2, 3, 5, 7, 12, 13):
            if len(raw) - 2 - cut >= 0:
                cases.append(_restuff(raw[: len(raw) - 2 - cut] + raw[-2:]))
        for grow in (1, 2, 5, 10, 200):
            extra = bytes(rng.randrange(256) for _ in range(grow))
            cases.append(_restuff(raw[:-2] + extra + raw[-2:]))
        cases.append(_restuff(bytes([raw[0] ^ 0x40]) + raw[1:]))  # version 3
    snap = next(r for r in raws if r[0] & 0x1F == messages.SNAPSHOT)
    cases.append(_restuff(snap[:22] + bytes(2 * 97) + snap[-2:]))  # 97 samples: length
    for cmd in (0, 1, 3, 4, 5, 8, 9, 200):
        for args in (b"", b"\x07", b"\x01\x02\x03\x04\x05\x06"):
            hdr = bytes([0x32]) + DEVICE.to_bytes(4, "little") + b"\x05" + bytes(4)
            cases.append(_restuff(hdr + bytes([cmd]) + args + b"\x00\x00"))
    pcap = tmp_path / "mutated.pcap"
    with PcapWriter(str(pcap), LINKTYPE_RAW) as pw:
        for i, w in enumerate(cases):
            pw.write(udp_packet(("192.0.2.7", 40000), ("192.0.2.1", 47000), w), 1.7e9 + i)
    segs = [sg for w in cases for sg in segments(w, stream=False)]
    got = check_capture(run_tshark(tshark, pcap, key_csv(tmp_path / "k.csv", {DEVICE: TEST_KEY})),
                        segs, TEST_KEY)  # fmt: skip
    verdicts = {g.get("error", "ok") for g in got}
    assert {"ok", "unknown_type", "length", "version"} <= verdicts, verdicts


# -- (b) the fleet simulator --------------------------------------------------------------------
def _free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def _wait_for_line(proc: subprocess.Popen, log: Path, text: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in log.read_text(errors="replace"):
            return
        assert proc.poll() is None, log.read_text(errors="replace")
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} within {timeout} s: {log.read_text(errors='replace')}")


def _read_pcap_payloads(pcap: Path) -> list[bytes]:
    """The UDP payloads of a LINKTYPE_RAW pcap written by capture.py (IPv4)."""
    import struct

    data = pcap.read_bytes()
    assert struct.unpack_from("<IHHiIII", data, 0)[6] == LINKTYPE_RAW
    out, o = [], 24
    while o < len(data):
        _, _, n, _ = struct.unpack_from("<IIII", data, o)
        pkt = data[o + 16 : o + 16 + n]
        ihl = (pkt[0] & 0x0F) * 4
        out.append(pkt[ihl + 8 :])
        o += 16 + n
    return out


def test_fleet_simulator_and_gateway_live(tshark, tmp_path):
    """A small fleet talks to the real gateway through capture.py's UDP relay: HELLO, tagged
    and untagged TELEMETRY, EVENTs and the gateway's ACKs, all verified with the registry."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"wireshark-test-secret")
    reg = tmp_path / "fleet.csv"
    py = sys.executable
    r = subprocess.run([py, "-m", "tools.fleet", "registry", "--out", str(reg), "--secret-file",
                        str(secret), "--scale", "0.01"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    gw_port, relay_port = _free_udp_port(), _free_udp_port()
    pcap = tmp_path / "fleet.pcap"
    gw_log, cap_log = tmp_path / "gw.log", tmp_path / "cap.log"
    procs = []
    try:
        with open(gw_log, "wb") as gl, open(cap_log, "wb") as cl:
            gw = subprocess.Popen([py, "-m", "tools.gateway", "run", "--registry", str(reg),
                                   "--db", str(tmp_path / "gw.db"), "--udp",
                                   f"127.0.0.1:{gw_port}"], cwd=ROOT, stdout=gl,
                                  stderr=subprocess.STDOUT)  # fmt: skip
            procs.append(gw)
            cap = subprocess.Popen([py, str(CAPTURE), "udp", "--listen", f"127.0.0.1:{relay_port}",
                                    "--forward", f"127.0.0.1:{gw_port}", "-o", str(pcap)],
                                   cwd=tmp_path, stdout=cl, stderr=subprocess.STDOUT)  # fmt: skip
            procs.append(cap)
            _wait_for_line(gw, gw_log, "udp listening", 30)
            _wait_for_line(cap, cap_log, "listening on", 30)
            fl = subprocess.run([py, "-m", "tools.fleet", "run", "--registry", str(reg), "--udp",
                                 f"127.0.0.1:{relay_port}", "--devices", "4", "--interval", "1",
                                 "--duration", "3", "--alarm-share", "1", "--speed", "50",
                                 "--drain", "5", "--retry", "0.5", "--progress", "0"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
            assert fl.returncode == 0, fl.stderr
            summary = json.loads(fl.stdout)
            time.sleep(0.3)  # the last ACK through the relay
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    assert "datagrams ->" in cap_log.read_text(), cap_log.read_text()

    keys = {}
    import csv

    with open(reg, newline="") as f:
        for row in csv.DictReader(f):
            keys[int(row["device"])] = bytes.fromhex(row["key"])
    datagrams = _read_pcap_payloads(pcap)
    segs = [s for d in datagrams for s in segments(d, stream=False)]
    protos = run_tshark(tshark, pcap, reg, "-d", f"udp.port=={relay_port},efd")
    assert len(protos) == len(segs) > 0
    seen = []
    for i, (fields, (seg, delim)) in enumerate(zip(protos, segs, strict=True)):
        got = shown(fields)
        compare(got, expected(seg, delim, keys.get(got["device"])), f"fleet frame {i}")
        seen.append(got)
    types = {g["type"] for g in seen}
    assert {"hello", "telemetry", "event", "ack"} <= types, types
    tagged = [g for g in seen if g["counter"] is not None]
    assert tagged and all(g["tag_status"] == "verified" for g in tagged)
    assert sum(g["type"] == "event" for g in seen) >= summary["events"] > 0
    # Without the key file the same tags are unverified, and with other keys they do not verify.
    unkeyed = run_tshark(tshark, pcap, None, "-d", f"udp.port=={relay_port},efd")
    assert all(shown(p).get("tag_status") in (None, "no_key") for p in unkeyed)
    wrong = key_csv(tmp_path / "wrong.csv", {d: WRONG_KEY for d in keys})
    for fields in run_tshark(tshark, pcap, wrong, "-d", f"udp.port=={relay_port},efd"):
        g = shown(fields)
        if g["counter"] is not None:
            assert g["tag_status"] == "bad_tag" and g["tag_verified"] is False


def test_virtual_detectors_every_command(tshark, tmp_path):
    """tools/fleet/detector.py's VirtualDetector answers each command (RESULT, CONFIG,
    SNAPSHOT, bad_argument with its param, unknown_command): a UDP capture of the exchange."""
    from tools.fleet.detector import VirtualDetector

    dev_id, key = 100077, bytes(range(100, 132))
    det = VirtualDetector(dev_id, key, seed=3)
    ctr = [5000]

    def next_counter() -> int:
        ctr[0] += 1
        return ctr[0]

    enc = frame.Encoder(dev_id, auth.Key(key), next_counter)
    t = host.efd_time(int(time.time()))
    det_addr, gw_addr = ("198.51.100.9", 40001), ("198.51.100.1", 47000)
    pcap = tmp_path / "vd.pcap"
    datagrams = []
    with PcapWriter(str(pcap), LINKTYPE_RAW) as pw:

        def send(src, dst, wire):
            datagrams.append(wire)
            pw.write(udp_packet(src, dst, wire))

        send(det_addr, gw_addr, det.hello(t))
        send(det_addr, gw_addr, det.telemetry(t))
        det.raise_event(2, 0, 420, 300)
        ev = det.uplink(0.0, t)
        send(det_addr, gw_addr, ev)
        f = frame.decode(ev)
        ack = {"ack_type": "event", "ack_seq": f.seq, "ack_crc": f.crc}
        send(gw_addr, det_addr, enc.message(messages.ACK, t, ack, auth=True))
        commands = [
            {"cmd": "get_config"},
            {"cmd": "set_config", "params": [["leak_set_ma", 250], ["temp_set_c", 80]]},
            {"cmd": "set_config", "params": [["p200", 1]]},  # bad_argument: param p200
            {"cmd": "snapshot", "snap_id": 0},
            {"cmd": "selftest"},
            {"cmd": "reset", "channel": "all"},
            {"cmd": "reset", "channel": "residual"},
            {"cmd": "time_sync", "set_time": t},
            {"cmd": "resync", "mark": 0x00050000},
            {"cmd": 42, "args": "0102ff"},  # unknown_command
        ]
        for c in commands:
            wire = enc.message(messages.COMMAND, t, c, auth=True)
            send(gw_addr, det_addr, wire)
            for reply in det.downlink(wire, 1.0, t):
                send(det_addr, gw_addr, reply)
        send(gw_addr, det_addr, enc.message(messages.POLL, t, {}))
        send(det_addr, gw_addr, det.telemetry(t))  # telemetry with status bits set
    segs = [s for d in datagrams for s in segments(d, stream=False)]
    kf = tmp_path / "keys.txt"
    kf.write_text(f"# device key\n{dev_id} {key.hex()}\n")
    got = check_capture(run_tshark(tshark, pcap, kf), segs, key)
    results = {g["cmd"]: g for g in got if g["type"] == "result"}
    assert results["set_config"]["status"] in ("ok", "bad_argument")
    assert any(g.get("param") == "p200" for g in got if g["type"] == "result")
    assert results[42]["status"] == "unknown_command"
    assert {"config", "snapshot", "command", "result"} <= {g["type"] for g in got}
    assert all(g["tag_status"] == "verified" for g in got if g["counter"] is not None)


# -- (c) the real firmware on the virtual device --------------------------------------------------
@pytest.mark.micropython
def test_virtual_device_serial_link(tshark, tmp_path):
    """The firmware on the MicroPython unix port: its pty link recorded for a few seconds while
    a host polls it, sends commands (one with a wrong key, one untagged) and ACKs its events."""
    import serial

    from tests.firmware.conftest import DEVICE as VDEV_ID
    from tests.firmware.conftest import KEY, VDev
    from tools.monitor import HostLink

    pcap = tmp_path / "vdev.pcap"
    v = VDev(tmp_path)
    try:
        port = serial.Serial(v.state["link"], 115200, timeout=0.05)
        with PcapWriter(str(pcap), LINKTYPE_USER0) as pw:
            rec = SerialRecorder(port, pw)
            link = HostLink(rec, VDEV_ID, KEY)
            link.pump(0.3)
            v.ctl("res", "400")  # an alarm: a tagged EVENT, ACKed by the link
            assert link.command({"cmd": "time_sync", "set_time": host.now()}) is not None
            assert link.command({"cmd": "get_config"}) is not None
            assert link.command({"cmd": "selftest"}) is not None
            forged = frame.Encoder(VDEV_ID, auth.Key(WRONG_KEY), lambda: link.ctr + 10)
            rec.write(b"\x00" + forged.message(messages.COMMAND, host.now(), {"cmd": "reboot"},
                                               auth=True))  # fmt: skip
            link.send(messages.COMMAND, {"cmd": "reset", "channel": "all"}, auth=False)
            # a reboot: RESULT, then the HELLO of the new boot
            assert link.command({"cmd": "reboot"}) is not None
            end = time.monotonic() + 15
            while time.monotonic() < end and not (
                any(e["kind"] == "alarm" for e in link.events)
                and any(d["type"] == "hello" for d in link.frames)
            ):
                link.poll()
                link.pump(0.3)
            link.poll()
            link.pump(0.3)
        port.close()
    finally:
        v.close()
    assert any(e["kind"] == "alarm" for e in link.events), link.frames[-5:]
    assert any(d["type"] == "hello" for d in link.frames), link.frames[-5:]

    chunks = _read_serial_pcap(pcap)
    stream = b"".join(chunks)
    segs = segments(stream, stream=True)
    kf = tmp_path / "key.hex"
    kf.write_text(KEY.hex() + "\n")  # one key for every device
    got = check_capture(run_tshark(tshark, pcap, kf), segs, KEY)
    types = {g.get("type") for g in got}
    assert {"hello", "telemetry", "event", "result", "config", "command", "ack", "poll"} <= types
    statuses = [g["tag_status"] for g in got if g.get("counter") is not None]
    assert statuses.count("bad_tag") == 1 and statuses.count("verified") >= 6, statuses


def _read_serial_pcap(pcap: Path) -> list[bytes]:
    import struct

    data = pcap.read_bytes()
    assert struct.unpack_from("<IHHiIII", data, 0)[6] == LINKTYPE_USER0
    out, o = [], 24
    while o < len(data):
        _, _, n, _ = struct.unpack_from("<IIII", data, o)
        out.append(data[o + 16 : o + 16 + n])
        o += 16 + n
    return out


# -- capture.py ---------------------------------------------------------------------------------
def test_capture_tool_help_and_serial_pty(tshark, tmp_path):
    """capture.py --help, and `capture.py serial` on a pty: what is written to the other end
    comes out of tshark as frames."""
    r = subprocess.run([sys.executable, str(CAPTURE), "--help"], capture_output=True, text=True,
                       timeout=30)  # fmt: skip
    assert r.returncode == 0 and "serial" in r.stdout and "udp" in r.stdout
    master, slave = os.openpty()
    pcap = tmp_path / "pty.pcap"
    p = subprocess.Popen([sys.executable, str(CAPTURE), "serial", os.ttyname(slave), "-b",
                          "115200", "-o", str(pcap), "--duration", "8"],
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        time.sleep(1.0)
        wires = [w for _, w, x in vector_wires() if "decoded" in x]
        for w in wires:
            os.write(master, w)
            time.sleep(0.02)
        time.sleep(0.5)
    finally:
        p.terminate()
        _, err = p.communicate(timeout=10)
        os.close(master)
        os.close(slave)
    assert "packets from" in err, err
    protos = run_tshark(tshark, pcap, None)
    segs = segments(b"".join(wires), stream=True)
    check_capture(protos, segs, None)


def test_capture_tool_udp_listen(tshark, tmp_path):
    port = _free_udp_port()
    pcap = tmp_path / "udp.pcap"
    p = subprocess.Popen([sys.executable, str(CAPTURE), "udp", "--listen", f"127.0.0.1:{port}",
                          "-o", str(pcap), "--count", "3"], stderr=subprocess.PIPE,
                         text=True)  # fmt: skip
    try:
        select.select([p.stderr], [], [], 10)
        assert "listening" in (p.stderr.readline() if p.stderr else "")
        wires = [w for _, w, x in vector_wires() if "decoded" in x][:3]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for w in wires:
                s.sendto(w, ("127.0.0.1", port))
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    protos = run_tshark(tshark, pcap, None, "-d", f"udp.port=={port},efd")
    check_capture(protos, [s for w in wires for s in segments(w, stream=False)], None)
