"""The signed update's cryptography and host tools (issue 11): the detector's Ed25519 verifier
and SHA-512 (firmware/lib/app/ed25519.py) against `cryptography` and hashlib, on CPython with
random keys and messages and on the MicroPython unix port; SPEC.md section 12's tables against
the codec; the vendor key tool and the image builder."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from app import ed25519
from protocol import host
from tests import mpy
from tools import fwimage, keys

ROOT = Path(__file__).resolve().parents[2]
SPEC = (ROOT / "protocol" / "SPEC.md").read_text()


def _pair(seed: bytes):
    sk = Ed25519PrivateKey.from_private_bytes(seed)
    return sk, keys.public_bytes(sk)


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=600), st.integers(0, 8 * 64 - 1))
def test_verifier_agrees_with_cryptography(seed, msg, bit):
    sk, pub = _pair(seed)
    sig = sk.sign(msg)
    assert ed25519.check(pub, sig, msg)
    bad = bytearray(sig)
    bad[bit // 8] ^= 1 << (bit % 8)
    assert not ed25519.check(pub, bytes(bad), msg)  # any flipped signature bit
    if msg:
        m2 = bytearray(msg)
        m2[bit % len(msg)] ^= 1
        assert not ed25519.check(pub, sig, bytes(m2))  # any changed message byte
    other = keys.public_bytes(Ed25519PrivateKey.generate())
    assert not ed25519.check(other, sig, msg)  # another key


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=700))
def test_sha512_is_hashlib(data):
    assert ed25519.sha512(data) == hashlib.sha512(data).digest()


def test_verifier_refuses_malformed_input():
    sk, pub = _pair(bytes(32))
    sig = sk.sign(b"m")
    s = int.from_bytes(sig[32:], "little")
    # S + L: the same point, a non-canonical scalar (RFC 8032 5.1.7): refused, no malleability
    high = sig[:32] + (s + ed25519._L).to_bytes(32, "little")
    assert not ed25519.check(pub, high, b"m")
    assert not ed25519.check(pub, sig[:63], b"m")
    assert not ed25519.check(pub[:31], sig, b"m")
    assert not ed25519.check(b"\xff" * 32, sig, b"m")  # not a point (y >= p)


def test_verifier_on_micropython():
    """The same module on the unix port: good signatures pass, flipped ones fail, in slices."""
    cases = []
    for i in range(6):
        sk, pub = _pair(bytes([i]) * 32)
        msg = os.urandom(50 * i + 1)
        sig = sk.sign(msg)
        bad = bytearray(sig)
        bad[i * 9] ^= 0x04
        cases.append((pub, sig, msg, True))
        cases.append((pub, bytes(bad), msg, False))
    script = f"""
from app import ed25519
for pub, sig, msg, want in {cases!r}:
    g = ed25519.verify(pub, sig, (msg,))
    n = 0
    try:
        while True:
            next(g)
            n += 1
    except StopIteration as e:
        got = e.value
    print(got == want, n)
print(ed25519.sha512(b"abc").hex())
"""
    out = mpy.run(script).split()
    assert out[-1] == hashlib.sha512(b"abc").hexdigest()
    results = out[:-1]
    assert results[0::2] == ["True"] * len(cases)
    assert all(int(n) >= 30 for n in results[1::2][0::2])  # a good one takes many slices


def _spec_row(field: str) -> str:
    sec = SPEC[SPEC.index("## 12. Signed update") :]
    return next(line for line in sec.splitlines() if f"| {field} |" in line)


def test_spec_section_12_names_are_the_codec_s():
    def codes(row: str) -> dict[int, str]:
        return {int(n): name for n, name in re.findall(r"(\d+) ([a-z_]+)", row)}

    ops = codes(_spec_row("op"))
    assert ops == {i: n for i, n in enumerate(host.UPDATE_OPS) if n}
    assert codes(_spec_row("state")) == dict(enumerate(host.UPDATE_STATES))
    assert codes(_spec_row("result")) == dict(enumerate(host.UPDATE_RESULTS))
    assert "200" in _spec_row("data") and host.UP_MAX_CHUNK == 200


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd or ROOT, timeout=120
    )


def test_vendor_key_tool(tmp_path):
    k = tmp_path / "vendor.key"
    r = _cli("tools.keys", "vendor-new", str(k))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(k.stat().st_mode) == 0o600
    pub = Path(str(k) + ".pub").read_text().strip()
    assert keys.public_bytes(keys.load_vendor(k)).hex() == pub
    before = k.read_text()
    r = _cli("tools.keys", "vendor-new", str(k))  # never over an existing key
    assert r.returncode == 2 and "exists" in r.stderr and k.read_text() == before
    r = _cli("tools.keys", "vendor-pub", str(k))
    assert r.returncode == 0 and r.stdout.strip() == pub
    k.chmod(0o644)  # a signing key others can read is refused
    with pytest.raises(keys.KeyFileError, match="chmod 600"):
        keys.load_vendor(k)
    for cmd in (
        ["tools.keys", "--help"],
        ["tools.fwimage", "--help"],
        ["tools.fwimage", "build", "-h"],
    ):
        assert _cli(*cmd).returncode == 0


def test_image_build_info_and_tamper(tmp_path):
    k = tmp_path / "v.key"
    assert _cli("tools.keys", "vendor-new", str(k)).returncode == 0
    out = tmp_path / "u.efu"
    r = _cli(
        "tools.fwimage", "build", "--key", str(k), "--version", "0.3.1", "--arch", "x64", str(out)
    )
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    img = fwimage.parse(data)
    assert img.version == (0, 3, 1) and img.confirm == fwimage.DEFAULT_CONFIRM
    assert {n for n, _, _ in img.files} >= {"lib/app/run.mpy", "lib/app/vendor_key.mpy"}
    assert not any(n.endswith(("boot.py", "main.py")) for n, _, _ in img.files)
    pub = str(k) + ".pub"
    r = _cli("tools.fwimage", "info", str(out), "--pub", pub)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
    bad = tmp_path / "bad.efu"
    b = bytearray(data)
    b[-1] ^= 1
    bad.write_bytes(bytes(b))
    r = _cli("tools.fwimage", "info", str(bad), "--pub", pub)
    assert r.returncode == 1 and "BAD" in r.stdout
    r = _cli("tools.fwimage", "build", "--key", str(k), "--version", "1.2", str(out))
    assert r.returncode == 2 and "MAJOR.MINOR.PATCH" in r.stderr
