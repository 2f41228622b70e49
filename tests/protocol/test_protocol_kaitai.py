"""protocol/efd_frame.ksy, compiled by the real kaitai-struct-compiler (npm), decodes every
golden vector to the same fields as the codec.

No skip: if node or the compiler is missing this test fails, so CI proves the .ksy is valid.
`make pytest` installs the compiler (npm ci) before running the tests.
"""

import binascii
import importlib.util
import shutil
import subprocess
import sys
from enum import IntEnum
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import cobs, host
from protocol import frame as fr

ROOT = Path(__file__).resolve().parents[2]
KSY = ROOT / "protocol" / "efd_frame.ksy"
KSC_JS = ROOT / "tools" / "ksc.js"
COMPILER = ROOT / "node_modules" / "kaitai-struct-compiler" / "kaitai-struct-compiler.js"


@pytest.fixture(scope="module")
def EfdFrame(tmp_path_factory):
    node = shutil.which("node")
    assert node, "node is not installed: the Kaitai check needs Node.js (v20)"
    assert COMPILER.exists(), "kaitai-struct-compiler missing: run `npm ci` (make pytest does)"
    out = tmp_path_factory.mktemp("ksc")
    r = subprocess.run(
        [node, str(KSC_JS), "python", str(KSY), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    spec = importlib.util.spec_from_file_location("efd_frame_ks", out / "efd_frame.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["efd_frame_ks"] = mod
    spec.loader.exec_module(mod)
    return mod.EfdFrame


def _e(v):
    return v.name if isinstance(v, IntEnum) else v


def _na(v, na):
    return None if v == na else v


def _params(ps):
    return [[p.id.name if isinstance(p.id, IntEnum) else "p" + str(p.id), p.value] for p in ps]


def to_fields(k):
    """The Kaitai object in the codec's dict shape (SPEC.md names and sentinels)."""
    t = _e(k.msg_type)
    p = k.payload
    d = {
        "type": t,
        "device": k.device,
        "seq": k.seq_no,
        "time": k.time,
        "counter": k.counter if k.authenticated else None,
    }
    if t == "telemetry":
        d.update(
            residual_ma=_na(p.residual_ma, 0xFFFF),
            temp_dc=[_na(x, -32768) for x in p.temp_dc],
            line_ca=[_na(x, 0xFFFF) for x in p.line_ca],
            status=p.status,
        )
    elif t == "event":
        d.update(kind=_e(p.kind), channel=_e(p.channel), value=p.value, threshold=p.threshold)
    elif t == "hello":
        d.update(
            fw=list(p.fw),
            reset_cause=_e(p.reset_cause),
            boot_count=p.boot_count,
            config_hash=p.config_hash,
            host_counter=p.host_counter,
        )
    elif t == "result":
        d.update(cmd_counter=p.cmd_counter, cmd=_e(p.cmd), status=_e(p.status), value=p.value)
    elif t == "config":
        d.update(config_hash=p.config_hash, params=_params(p.params))
    elif t == "snapshot":
        d.update(
            snap_id=p.snap_id,
            channel=_e(p.channel),
            chunk=p.chunk,
            chunks=p.chunks,
            scale_exp=p.scale_exp,
            rate_hz=p.rate_hz,
            trigger=p.trigger,
            offset=p.offset,
            samples=list(p.samples),
        )
    elif t == "ack":
        d.update(ack_type=_e(p.ack_type), ack_seq=p.ack_seq, ack_crc=p.ack_crc)
    elif t == "command":
        d["cmd"] = _e(p.cmd)
        a = getattr(p, "args", None)  # commands without arguments have none
        if d["cmd"] == "reset":
            d["channel"] = _e(a.channel)
        elif d["cmd"] == "set_config":
            d["params"] = _params(a.params)
        elif d["cmd"] == "time_sync":
            d["set_time"] = a.set_time
        elif d["cmd"] == "snapshot":
            d["snap_id"] = a.snap_id
        elif d["cmd"] == "resync":
            d["mark"] = a.mark
    elif t == "update_status":
        d.update(
            state=_e(p.state),
            result=_e(p.result),
            image=p.image,
            have=p.have,
            size=p.size,
            fw=list(p.fw),
        )
    elif t == "update":
        d.update(op=_e(p.op), image=p.image)
        a = getattr(p, "args", None)
        if d["op"] == "begin":
            d["size"] = a.size
        elif d["op"] == "chunk":
            d.update(offset=a.offset, data=a.data.hex())
    return d


def _raw(hexstr):
    return cobs.decode(bytes.fromhex(hexstr)[:-1])


def test_every_valid_vector_decodes_to_the_codec_fields(EfdFrame, vectors):
    checked = set()
    for v in vectors["vectors"]:
        if "decoded" not in v:
            continue
        raw = _raw(v["hex"])
        k = EfdFrame.from_bytes(raw)
        assert to_fields(k) == v["decoded"], v["name"]
        assert k.version == 1
        assert k.crc == binascii.crc_hqx(raw[:-2], 0xFFFF), v["name"]
        if k.authenticated:
            assert k.tag == raw[-10:-2]
        checked.add(v["decoded"]["type"])
    assert checked == set(host.TYPE_NAMES.values())


def test_invalid_vectors_are_rejected_by_kaitai_plus_crc(EfdFrame, vectors):
    """What an integrator's pipeline (COBS decode, Kaitai parse, CRC check) does with each:
    every decode-stage error of the codec is an error there too (issue 12: the .ksy used to
    accept unknown types, more than 96 samples and leftover set_config bytes)."""
    for v in vectors["vectors"]:
        if v.get("stage") != "decode":
            continue
        raw = cobs.decode(bytes.fromhex(v["hex"])[:-1])
        if raw is None:
            assert v["error"] == "cobs", v["name"]
            continue
        try:
            k = EfdFrame.from_bytes(raw)
        except Exception as e:
            assert v["error"] in ("short", "length", "version", "unknown_type"), (v["name"], e)
            continue
        crc_ok = k.crc == binascii.crc_hqx(raw[:-2], 0xFFFF)
        assert v["error"] == "crc" and not crc_ok, v["name"]


# Codec decode errors the .ksy reproduces (with a good CRC: Kaitai does not check it). The
# codec's `direction` needs the receiver's side, which a frame alone does not tell.
_STRUCTURAL = ("short", "version", "unknown_type", "length", "overflow")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.data())
def test_kaitai_rejects_exactly_what_the_codec_rejects(EfdFrame, vectors, data):
    # Mutate a valid vector's frame (a byte changed, bytes cut or added, the header's type or
    # A bit flipped), re-CRC it, and compare the two verdicts.
    valid = [v for v in vectors["vectors"] if "decoded" in v]
    v = data.draw(st.sampled_from(valid))
    raw = bytearray(cobs.decode(bytes.fromhex(v["hex"])[:-1]))
    body = raw[:-2]
    op = data.draw(st.sampled_from(["byte", "cut", "grow", "type", "abit"]))
    if op == "byte" and len(body) > 10:
        i = data.draw(st.integers(10, len(body) - 1))
        body[i] = data.draw(st.integers(0, 255))
    elif op == "cut":
        del body[len(body) - data.draw(st.integers(1, min(12, len(body)))) :]
    elif op == "grow":
        body += bytes(data.draw(st.lists(st.integers(0, 255), min_size=1, max_size=12)))
    elif op == "type":
        body[0] = (body[0] & 0xE0) | data.draw(st.integers(0, 31))
    else:
        body[0] ^= 0x80
    c = binascii.crc_hqx(bytes(body), 0xFFFF)
    frame_bytes = bytes(body) + bytes([c & 0xFF, c >> 8])
    f = fr.parse(frame_bytes)
    try:
        EfdFrame.from_bytes(frame_bytes)
        kaitai_ok = True
    except Exception:
        kaitai_ok = False
    if f.ok:
        assert kaitai_ok, (v["name"], op, frame_bytes.hex())
    else:
        assert f.name in _STRUCTURAL, f.name
        assert not kaitai_ok, (v["name"], op, f.name, frame_bytes.hex())


def test_channel_all_only_in_a_reset_command(EfdFrame, vectors):
    # 0xFF is "all" in the reset command's target only; anywhere else it is no channel (SPEC
    # 5.9, 10a): an EVENT naming channel 255 shows the number, as the codec does.
    fault = _vector(vectors, "event_fault_untagged")
    raw = bytearray(cobs.decode(bytes.fromhex(fault["hex"])[:-1]))
    raw[11] = 0xFF
    c = binascii.crc_hqx(bytes(raw[:-2]), 0xFFFF)
    raw[-2:] = bytes([c & 0xFF, c >> 8])
    k = EfdFrame.from_bytes(bytes(raw))
    assert _e(k.payload.channel) == 255 == fr.parse(bytes(raw)).to_dict()["channel"]
    reset = cobs.decode(bytes.fromhex(_vector(vectors, "cmd_reset")["hex"])[:-1])
    assert _e(EfdFrame.from_bytes(reset).payload.args.channel) == "all"


def _vector(vectors, name):
    return next(v for v in vectors["vectors"] if v["name"] == name)
