"""Device keys and vendor signing keys.

    python -m tools.keys new key.hex                      (make key KEY_FILE=key.hex)
    python -m tools.keys vendor-new vendor.key            (make vendor-key VENDOR_KEY=vendor.key)
    python -m tools.keys vendor-pub vendor.key [OUT.pub]

Device key (`new`, also `make provision ... NEW_KEY=`):

A device key is 32 random bytes from the OS's CSPRNG (tools/provisioning.new_key, Python's
`secrets`), written as 64 hex digits and a newline. The file is created with mode 600 (only
you can read it) and never over an existing file: an old key may be the only copy of what a
detector holds. Then provision it and give it to the host side:

    make provision PORT=<console> DEVICE=0x12345678 KEY_FILE=key.hex
    python -m tools.monitor <link> --device 0x12345678 --key-file key.hex watch
    (gateway: the `key` column of the device's row in the registry CSV)

`make provision ... NEW_KEY=FILE` (tools.deploy --new-key) makes a key the same way and
provisions it in one step: the way to rotate the key of a detector in service.

Vendor signing key (`vendor-new`): an Ed25519 key pair for signed updates (docs/firmware.md,
"Signed over-the-air update"). The private key (FILE: its 32-byte seed as 64 hex digits, mode
600, never over an existing file) signs update images (python -m tools.fwimage build --key
FILE) and belongs offline with whoever releases firmware, never on a gateway. The public key
(FILE.pub next to it, 64 hex digits, or `vendor-pub`) is built into the firmware image
(make deploy VENDOR_PUB=FILE.pub; every signed image carries it on) and is all a detector needs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tools import provisioning


class KeyFileError(ValueError):
    """A key file that is missing or not a key (printed without a traceback)."""


def _read_hex32(path: str | Path, what: str) -> bytes:
    try:
        text = Path(path).read_text().strip()
    except OSError as e:
        raise KeyFileError(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        b = bytes.fromhex(text)
    except ValueError:
        b = b""
    if len(b) != 32:
        raise KeyFileError(f"{path} is not a {what} (64 hex digits)")
    return b


def new_vendor() -> tuple[str, str]:
    """(private seed hex, public key hex) of a fresh Ed25519 key pair (OS CSPRNG)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    sk = Ed25519PrivateKey.generate()
    seed = sk.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return seed.hex(), public_bytes(sk).hex()


def public_bytes(sk) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def load_vendor(path: str | Path):
    """The vendor's private key (cryptography Ed25519PrivateKey) from its key file."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    p = Path(path)
    if p.exists() and p.stat().st_mode & 0o077:
        raise KeyFileError(f"{p} is readable by others: chmod 600 {p}")
    return Ed25519PrivateKey.from_private_bytes(_read_hex32(p, "vendor private key"))


def load_pub(path: str | Path) -> bytes:
    """A vendor public key file (64 hex digits) -> 32 bytes."""
    return _read_hex32(path, "vendor public key")


def write_new(path: str | Path, key_hex: str) -> None:
    """Write key_hex to a new file at path, mode 600; FileExistsError if there is one."""
    # O_EXCL: never over an existing file, even one that appeared since a check; the mode is
    # set at creation, so the key is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key_hex + "\n")
    os.chmod(path, 0o600)  # whatever the umask left


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(
        prog="python -m tools.keys",
        description=doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(doc.split("\n\n")[1:]),
    )
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    new = sub.add_parser("new", help="make a new random device key in FILE (mode 600)")
    new.add_argument("file", metavar="FILE", help="the key file to create (must not exist)")
    vn = sub.add_parser(
        "vendor-new", help="make a vendor signing key pair: FILE (private, 600) and FILE.pub"
    )
    vn.add_argument("file", metavar="FILE", help="the private key file to create (must not exist)")
    vp = sub.add_parser("vendor-pub", help="print (or write to OUT) a vendor key's public half")
    vp.add_argument("file", metavar="FILE", help="the vendor's private key file")
    vp.add_argument("out", metavar="OUT", nargs="?", help="a public key file to create")
    a = ap.parse_args(argv)
    if a.cmd == "vendor-new":
        return _vendor_new(Path(a.file))
    if a.cmd == "vendor-pub":
        try:
            pub = public_bytes(load_vendor(a.file)).hex()
        except KeyFileError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if a.out is None:
            print(pub)
            return 0
        return _write_pub(Path(a.out), pub)
    path = Path(a.file)
    if not _create_key(path, provisioning.new_key()):
        return 2
    print(f"new device key written to {path} (mode 600)")
    print(f"  provision it: make provision PORT=<console> DEVICE=0x... KEY_FILE={path}")
    return 0


def _create_key(path: Path, key_hex: str) -> bool:
    """write_new(), its refusals said in one line: False if nothing was written."""
    try:
        write_new(path, key_hex)
    except FileExistsError:
        print(f"error: {path} exists: a new key never overwrites an old one", file=sys.stderr)
        return False
    except OSError as e:
        print(f"error: cannot create {path}: {e.strerror or e}", file=sys.stderr)
        return False
    return True


def _write_pub(path: Path, pub_hex: str) -> int:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        print(f"error: {path} exists: never overwritten", file=sys.stderr)
        return 2
    with os.fdopen(fd, "w") as f:
        f.write(pub_hex + "\n")
    print(f"vendor public key written to {path}")
    return 0


def _vendor_new(path: Path) -> int:
    pub_path = Path(str(path) + ".pub")
    if pub_path.exists():
        print(f"error: {pub_path} exists: a new key never overwrites an old one", file=sys.stderr)
        return 2
    seed, pub = new_vendor()
    if not _create_key(path, seed):
        return 2
    print(f"vendor signing key written to {path} (mode 600): keep it offline, back it up")
    rc = _write_pub(pub_path, pub)
    print(f"  build it into the firmware: make deploy PORT=... VENDOR_PUB={pub_path}")
    print(f"  sign an update: make image-sign VENDOR_KEY={path} VERSION=x.y.z")
    return rc


if __name__ == "__main__":
    sys.exit(main())
