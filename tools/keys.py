"""Device keys: make the key file that provisioning, the monitor and the gateway read.

    python -m tools.keys new key.hex          (make key KEY_FILE=key.hex)

A device key is 32 random bytes from the OS's CSPRNG (tools/provisioning.new_key, Python's
`secrets`), written as 64 hex digits and a newline. The file is created with mode 600 (only
you can read it) and never over an existing file: an old key may be the only copy of what a
detector holds. Then provision it and give it to the host side:

    make provision PORT=<console> DEVICE=0x12345678 KEY_FILE=key.hex
    python -m tools.monitor <link> --device 0x12345678 --key-file key.hex watch
    (gateway: the `key` column of the device's row in the registry CSV)

`make provision ... NEW_KEY=FILE` (tools.deploy --new-key) makes a key the same way and
provisions it in one step: the way to rotate the key of a detector in service.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tools import provisioning


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
    a = ap.parse_args(argv)
    path = Path(a.file)
    try:
        write_new(path, provisioning.new_key())
    except FileExistsError:
        print(f"error: {path} exists: a new key never overwrites an old one", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot create {path}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"new device key written to {path} (mode 600)")
    print(f"  provision it: make provision PORT=<console> DEVICE=0x... KEY_FILE={path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
