"""The same codec under the real MicroPython binary: golden vectors, encodes, HMAC, CRC and a
stream of garbage give byte-identical results to CPython (differential), plus the device
constraints: a 64 KB heap and an allocation-free telemetry encode."""

import json
import os
import random
import subprocess
import sys
from binascii import hexlify
from pathlib import Path

import pytest

from protocol import frame as fr
from protocol import gen_vectors, host
from tests.mpy import run

pytestmark = pytest.mark.micropython
DRIVER = (Path(__file__).parent / "driver.py").read_text()
ROOT = Path(__file__).resolve().parents[2]
# `micropython -c` puts the current directory (the repo root) first on sys.path, which would
# import protocol/*.py source instead of the compiled .mpy files and spend the small heap on
# the compiler. Drop it so the 64 KB tests measure the codec as the detector runs it.
NO_CWD = "import sys\nif '' in sys.path:\n    sys.path.remove('')\n"


def _cpython(stdin):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "firmware" / "lib"), str(ROOT)]))
    return subprocess.run(
        [sys.executable, "-c", DRIVER],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    ).stdout


def _request(vectors):
    rnd = random.Random(1234)  # fixed: the same garbage on both sides and on every run
    valid = [v for v in vectors["vectors"] if "decoded" in v]
    encode = []
    for v in valid:
        d = v["decoded"]
        fields = {k: d[k] for k in d if k not in ("type", "device", "seq", "time", "counter")}
        encode.append(
            [
                host.TYPE_CODES[d["type"]],
                d["time"],
                fields,
                d["counter"] is not None,
                d["seq"],
                d["counter"] or 0,
            ]
        )
    stream = b"".join(bytes.fromhex(v["hex"]) for v in vectors["vectors"])
    garbage = bytes(rnd.randrange(256) for _ in range(2000))
    # Each copy is led by a 0x00, as SPEC.md §3 tells senders to do after a power-up or an
    # aborted frame: it ends whatever garbage came before, so no good frame is lost.
    mixed = garbage[:300] + b"\0" + stream + garbage[300:] + b"\0" + stream
    cuts = sorted(rnd.sample(range(1, len(mixed)), 60))
    chunks = [mixed[a:b] for a, b in zip([0, *cuts], [*cuts, len(mixed)], strict=True)]
    return {
        "key": vectors["test_key"],
        "device": gen_vectors.DEVICE,
        "decode": [v["hex"] for v in vectors["vectors"]]
        + [
            hexlify(bytes(rnd.randrange(256) for _ in range(rnd.randrange(40)))).decode()
            for _ in range(50)
        ],
        "encode": encode,
        "hmac": [
            [hexlify(rnd.randbytes(n)).decode(), hexlify(rnd.randbytes(m)).decode()]
            for n, m in [(0, 0), (16, 3), (32, 64), (64, 100), (65, 10), (100, 300)]
        ],
        "crc": ["313233343536373839", "", "00", hexlify(garbage[:200]).decode()],
        "stream": [hexlify(c).decode() for c in chunks],
        "telemetry": [gen_vectors.T, 123, [234, 251, -50, 712], [1234, 1120, 1005], 0x200],
    }


def test_micropython_and_cpython_agree(vectors):
    stdin = json.dumps(_request(vectors))
    mp = json.loads(run(DRIVER, stdin=stdin, heapsize="2m"))
    cp = json.loads(_cpython(stdin))
    assert mp == cp
    # ...and both agree with the golden file, so neither can drift alone.
    for v, got in zip(vectors["vectors"], mp["decode"], strict=False):
        if "decoded" in v:
            assert got == v["decoded"], v["name"]
        elif v["stage"] == "decode":
            assert got["error"] == v["error"], v["name"]
    assert mp["encode"] == [v["hex"] for v in vectors["vectors"] if "decoded" in v]
    assert mp["crc"][0] == 0x29B1
    import hmac
    from hashlib import sha256

    for (k, m), got in zip(_request(vectors)["hmac"], mp["hmac"], strict=True):
        assert got == hmac.new(bytes.fromhex(k), bytes.fromhex(m), sha256).hexdigest()
    tele = next(v for v in vectors["vectors"] if v["name"] == "telemetry")
    got = fr.decode(bytes.fromhex(mp["telemetry"])).to_dict()
    assert got == dict(tele["decoded"], seq=0)  # the encoder's own seq starts at 0
    assert len(mp["telemetry"]) // 2 == tele["len"] == 32
    # The stream held every vector twice, amid garbage: every structurally valid one came out,
    # in order (the auth-stage invalid ones decode; the session layer rejects them).
    frames = [r for r in mp["stream"] if "error" not in r]
    want = [fr.decode(bytes.fromhex(v["hex"])).to_dict() for v in vectors["vectors"]]
    want = [d for d in want if "error" not in d]
    assert frames == want + want


def test_telemetry_encode_allocates_nothing_in_a_small_heap(mpy_lib):
    out = run(
        NO_CWD
        + """
import micropython
from protocol import frame
enc = frame.Encoder(0x12345678)
temps = (234, 251, -50, -32768)
lines = (1234, 1120, 1005)

def loop():  # locals, not module globals: a first store into globals can grow the dict
    n = 0
    i = 0
    micropython.heap_lock()
    try:
        while i < 100:  # not range(): creating a range object allocates
            n = enc.telemetry(200000000 + i, 123, temps, lines, 0x1001)
            i += 1
    except MemoryError:
        n = -1
    micropython.heap_unlock()
    return n

loop()
n = loop()
r = 'none' if n > 0 else 'allocated'
print(r, n)
""",
        heapsize="64k",
        extra_path=[mpy_lib],
    )
    assert out.split() == ["none", "32"]


def test_decoder_and_auth_run_in_64k_heap(vectors, mpy_lib):
    cmd = next(v for v in vectors["vectors"] if v["name"] == "cmd_reset")["hex"]
    forged = next(v for v in vectors["vectors"] if v["name"] == "cmd_forged_args")["hex"]
    out = run(
        NO_CWD
        + f"""
from binascii import unhexlify
from protocol import auth, session, stream
peer = session.Peer(auth.Key(bytes(range(32))), 1000, session.DETECTOR_REQUIRES, uplink=False)
dec = stream.StreamDecoder(uplink=False)
res = []
for h in ({cmd!r}, {forged!r}, {cmd!r}):
    for f in dec.feed(unhexlify(h)):
        e = f if not f.ok else peer.check(f)
        res.append(0 if e is None else e.code)  # codes: names are the host's (protocol/host.py)
print(' '.join(str(r) for r in res), peer.marks[0])
""",
        heapsize="64k",
        extra_path=[mpy_lib],
    )
    assert out.split() == ["0", str(fr.E_BAD_TAG), str(fr.E_DUPLICATE), "1001"]
