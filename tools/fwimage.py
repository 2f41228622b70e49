"""Signed update images: build and sign one, or check one.

    python -m tools.fwimage build --key vendor.key --version 0.2.0 OUT.efu   (make image-sign)
    python -m tools.fwimage info IMAGE.efu [--pub vendor.pub]

An update image is the firmware's lib/ (.mpy, compiled by tools/fwbuild.py for --arch, with
the vendor's public key built in as app/vendor_key.py so the detector accepts the update after
this one too) plus a manifest (format, version, target, the trial's length, each file's size
and SHA-256) whose SHA-256 is signed with the vendor's Ed25519 key (tools/keys.py vendor-new).
The detector (firmware/lib/app/ota.py, which has the byte layout) accepts it only if the
signature verifies
under the key in the image it runs, and only if the version is newer than its own, unless the
signed manifest says `downgrade_from` its exact version (--downgrade-from: an authorised
downgrade, e.g. back from a faulty release; --devices limits it to some detectors). boot.py and
main.py are not in an update: they choose the slot and must stay the same. Docs:
docs/firmware.md "Signed over-the-air update", protocol/SPEC.md section 12.
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tools import fwbuild

MAGIC = b"EFU1"
MAX_MANIFEST = 8192  # app/ota.py _MAX_MANIFEST
MAX_IMAGE = 393216  # app/ota.py _MAX_IMAGE
DEFAULT_CONFIRM = 300  # windows (30 s) the new image runs without error before it is kept


class ImageError(ValueError):
    """A bad image, key or argument (printed without a traceback)."""


def parse_version(text: str) -> tuple[int, int, int]:
    parts = text.strip().split(".")
    try:
        v = tuple(int(p) for p in parts)
    except ValueError:
        v = ()
    if len(v) != 3 or not all(0 <= x <= 255 for x in v):
        raise ImageError(f"bad version {text!r}: expected MAJOR.MINOR.PATCH, each 0..255")
    return (v[0], v[1], v[2])


def mpy_code(lib: Path) -> int:
    """sys.implementation._mpy of the target the .mpy files in lib were compiled for: the
    .mpy version, its sub-version and the native arch (from a file with native code)."""
    best = 0
    for p in sorted(lib.rglob("*.mpy")):
        h = p.read_bytes()[:3]
        best = max(best, h[1] | (h[2] & 3) << 8 | (h[2] >> 2) << 10)
    return best


def manifest_text(
    files: list[tuple[str, bytes]],
    version: tuple[int, int, int],
    mpy: int,
    confirm: int = DEFAULT_CONFIRM,
    downgrade_from: tuple[int, int, int] | None = None,
    devices: list[int] | None = None,
) -> bytes:
    lines = [
        "efd-update 1",
        "version {} {} {}".format(*version),
        f"mpy {mpy}",
        f"confirm {confirm}",
    ]
    if downgrade_from is not None:
        lines.append("downgrade_from {} {} {}".format(*downgrade_from))
    if devices:
        lines.append("devices " + " ".join(f"{d:08x}" for d in devices))
    for name, data in files:
        lines.append(f"file {name} {len(data)} {hashlib.sha256(data).hexdigest()}")
    return ("\n".join(lines) + "\n").encode()


def image_id(manifest: bytes) -> int:
    """The id an UPDATE names the image by: SHA-256(manifest)[0:4], little-endian."""
    return int(struct.unpack_from("<I", hashlib.sha256(manifest).digest())[0])


def assemble(manifest: bytes, signature: bytes, files: list[tuple[str, bytes]]) -> bytes:
    if len(manifest) > MAX_MANIFEST:
        raise ImageError(f"manifest of {len(manifest)} bytes: at most {MAX_MANIFEST}")
    out = MAGIC + struct.pack("<H", len(manifest)) + manifest + signature
    out += b"".join(d for _, d in files)
    if len(out) > MAX_IMAGE:
        raise ImageError(f"image of {len(out)} bytes: at most {MAX_IMAGE}")
    return out


def lib_files(root: Path) -> list[tuple[str, bytes]]:
    """('lib/...', bytes) of every file under root/lib, in a fixed order."""
    out = []
    for p in sorted((root / "lib").rglob("*")):
        if p.is_file():
            out.append((p.relative_to(root).as_posix(), p.read_bytes()))
    return out


def build(
    private_key,
    version: tuple[int, int, int],
    arch: str = "xtensawin",
    confirm: int = DEFAULT_CONFIRM,
    downgrade_from: tuple[int, int, int] | None = None,
    devices: list[int] | None = None,
    board: str | None = None,
    embed_pub: bytes | None = None,
) -> bytes:
    """A signed image of this tree's firmware. private_key: a cryptography Ed25519PrivateKey
    (tools.keys.load_vendor). embed_pub: the public key the new image will accept updates
    under (default: this key's; another one rotates the vendor key)."""
    from tools import keys

    pub = embed_pub if embed_pub is not None else keys.public_bytes(private_key)
    with tempfile.TemporaryDirectory(prefix="fwimage-") as tmp:
        out = Path(tmp) / "image"
        fwbuild.build(arch, out, board, vendor_pub=pub, version=version)
        files = lib_files(out)
        mpy = mpy_code(out / "lib")
    manifest = manifest_text(files, version, mpy, confirm, downgrade_from, devices)
    return assemble(manifest, sign(private_key, manifest), files)


def signed_message(manifest: bytes) -> bytes:
    """What the vendor key signs: SHA-256 of the manifest (32 bytes). The detector hashes the
    manifest with its C SHA-256 and its Python SHA-512 then hashes one block, not ~30."""
    return hashlib.sha256(manifest).digest()


def sign(private_key, manifest: bytes) -> bytes:
    return bytes(private_key.sign(signed_message(manifest)))


@dataclass
class Image:
    manifest: bytes
    signature: bytes
    id: int
    header_len: int
    version: tuple[int, int, int] = (0, 0, 0)
    mpy: int = 0
    confirm: int = DEFAULT_CONFIRM
    downgrade_from: tuple[int, int, int] | None = None
    devices: list[int] | None = None
    files: list[tuple[str, int, str]] = field(default_factory=list)


def parse(data: bytes) -> Image:
    """The header and manifest of an image; ImageError if malformed."""
    if len(data) < 70 or data[:4] != MAGIC:
        raise ImageError("not an EFD update image (no EFU1 magic)")
    (m,) = struct.unpack_from("<H", data, 4)
    if 6 + m + 64 > len(data):
        raise ImageError("image truncated in its header")
    manifest = data[6 : 6 + m]
    img = Image(manifest, data[6 + m : 70 + m], image_id(manifest), 70 + m)
    total = 70 + m
    for line in manifest.decode().splitlines():
        w = line.split()
        if not w:
            continue
        if w[0] == "version":
            img.version = (int(w[1]), int(w[2]), int(w[3]))
        elif w[0] == "mpy":
            img.mpy = int(w[1])
        elif w[0] == "confirm":
            img.confirm = int(w[1])
        elif w[0] == "downgrade_from":
            img.downgrade_from = (int(w[1]), int(w[2]), int(w[3]))
        elif w[0] == "devices":
            img.devices = [int(x, 16) for x in w[1:]]
        elif w[0] == "file":
            img.files.append((w[1], int(w[2]), w[3]))
            total += int(w[2])
    if total != len(data):
        raise ImageError(f"image is {len(data)} bytes, its manifest says {total}")
    return img


def verify(data: bytes, pub: bytes) -> bool:
    """Signature and every file hash, as the detector checks them (host side)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    img = parse(data)
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(img.signature, signed_message(img.manifest))
    except InvalidSignature:
        return False
    o = img.header_len
    for _, size, digest in img.files:
        if hashlib.sha256(data[o : o + size]).hexdigest() != digest:
            return False
        o += size
    return True


def _devices(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x, 0) for x in text.replace(",", " ").split()]
    except ValueError:
        raise ImageError(f"bad --devices {text!r}: device ids, e.g. 0x12345678,0x9abc") from None


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(
        prog="python -m tools.fwimage",
        description=doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(doc.split("\n\n")[1:]),
    )
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    b = sub.add_parser("build", help="build and sign an update image of this tree's firmware")
    b.add_argument("out", metavar="OUT", help="the image file to write (e.g. build/update.efu)")
    b.add_argument("--key", required=True, help="the vendor's private key file (keys vendor-new)")
    b.add_argument("--version", help="MAJOR.MINOR.PATCH (default: app.VERSION of the source)")
    b.add_argument("--arch", default="xtensawin", help="xtensawin (ESP32) or x64 (unix port)")
    b.add_argument("--board", help="file set when it differs from the arch (twin: xtensawin)")
    b.add_argument("--confirm", type=int, default=DEFAULT_CONFIRM, help="trial windows (>= 10)")
    b.add_argument("--downgrade-from", help="allow replacing exactly this newer version")
    b.add_argument("--devices", help="only these device ids (comma-separated)")
    b.add_argument("--embed-pub", help="public key file the new image accepts (key rotation)")
    i = sub.add_parser("info", help="print an image's manifest; check it with --pub")
    i.add_argument("image", metavar="IMAGE")
    i.add_argument("--pub", help="the vendor's public key file: verify signature and hashes")
    a = ap.parse_args(argv)
    from tools import keys

    try:
        if a.cmd == "build":
            if a.confirm < 10:
                raise ImageError("--confirm must be at least 10 windows")
            sk = keys.load_vendor(a.key)
            if a.version:
                version = parse_version(a.version)
            else:
                sys.path.insert(0, str(fwbuild.FIRMWARE / "lib"))
                from app import VERSION

                version = (VERSION[0], VERSION[1], VERSION[2])
            data = build(
                sk,
                version,
                a.arch,
                a.confirm,
                parse_version(a.downgrade_from) if a.downgrade_from else None,
                _devices(a.devices),
                a.board,
                keys.load_pub(a.embed_pub) if a.embed_pub else None,
            )
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_bytes(data)
            img = parse(data)
            print(
                f"{a.out}: version {'.'.join(map(str, version))}, {len(img.files)} files, "
                f"{len(data)} bytes, image id {img.id:#010x} ({a.arch})"
            )
            return 0
        data = Path(a.image).read_bytes()
        img = parse(data)
        print(f"image id {img.id:#010x}, {len(data)} bytes, header {img.header_len} bytes")
        print(img.manifest.decode(), end="")
        if a.pub:
            ok = verify(data, keys.load_pub(a.pub))
            print("signature and hashes: " + ("OK" if ok else "BAD"))
            return 0 if ok else 1
        return 0
    except (ImageError, keys.KeyFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
