"""On-target test suite: run the core's checks and the HAL self-checks ON the detector.

    python -m tools.board_test PORT [--vectors FILE] [--no-reset]     (make test-board PORT=...)

PORT is the device's REPL (the board's USB serial, or a virtual device's `console:` pty; the
board twin's too). The host computes the test vectors with the same efd modules the detector
runs (tools/board_test/vectors.py), copies them to the device (bt_vectors.json) with mpremote,
runs tools/board_test/on_board.py there (`mpremote run`: the runner itself is not copied), prints
its pass/fail table with the measured figures (ADC read cost, sample rate and late samples, PCNT
counting, flash write/erase time, free heap, watchdog), removes the vectors and resets the device
so its firmware runs again. On the simulated HAL the hardware checks say "n/a" with the reason.

Exit status: 0 every check passed or is n/a, 1 a check FAILED, 2 the runner did not complete.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from tools import deploy
from tools.board_test import vectors

RUNNER = Path(__file__).resolve().with_name("on_board.py")
SUMMARY = re.compile(r"board-test: (\d+) pass, (\d+) FAIL, (\d+) n/a")


def run(
    port: str, vec: Path | None = None, reset: bool = True, timeout: float = 120
) -> tuple[int, str]:
    """(exit status, the runner's output)."""
    deploy.first_contact(port)
    with tempfile.TemporaryDirectory(prefix="board-test-") as tmp:
        path = vec
        if path is None:
            path = Path(tmp) / "bt_vectors.json"
            vectors.write(path)
        deploy.run_mp(port, "fs", "cp", str(path), ":bt_vectors.json", timeout=60)
    p = subprocess.run(
        [deploy.mpremote(), "connect", port, "resume", "run", str(RUNNER)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    out = p.stdout + (p.stderr if p.returncode else "")
    with contextlib.suppress(SystemExit):  # a device gone: the status below says so
        deploy.run_mp(port, "fs", "rm", ":bt_vectors.json", timeout=30)
    if reset:
        _, platform = deploy.detect_arch(port)
        deploy.reset_device(port, platform)
    m = SUMMARY.search(out)
    if m is None:
        return 2, out
    return (1 if int(m.group(2)) else 0), out


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(
        prog="python -m tools.board_test",
        description=doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(doc.split("\n\n")[1:]),
    )
    ap.add_argument("port", help="the device's REPL (USB serial or the virtual console pty)")
    ap.add_argument("--vectors", type=Path, help="use this vectors file (default: made now)")
    ap.add_argument("--no-reset", action="store_true", help="leave the firmware stopped")
    a = ap.parse_args(argv)
    try:
        status, out = run(a.port, a.vectors, not a.no_reset)
    except subprocess.TimeoutExpired:
        print("error: the runner did not finish in time", file=sys.stderr)
        return 2
    print(out.rstrip())
    if status == 2:
        print("error: the runner did not complete (no summary line)", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
