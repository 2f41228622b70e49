"""docs/first-hour.md runs as written (issue 13): each walkthrough's shell blocks, in order, in
one bash per walkthrough from the repository's root, must exit 0. Also the README's blocks for
QA and integrators (lines naming a /dev/tty* port need a board and are left out)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "first-hour.md"
SCRATCH = Path("/tmp/efd-first-hour")

pytestmark = pytest.mark.micropython


def blocks(text: str) -> list[tuple[str, str]]:
    """(the heading it is under, code) of every ```sh block."""
    out = []
    heading = ""
    for m in re.finditer(r"^(#+ [^\n]*)$|^```sh\n(.*?)^```$", text, re.M | re.S):
        if m.group(1):
            heading = m.group(1).lstrip("# ").strip()
        else:
            out.append((heading, m.group(2)))
    return out


def run_bash(script: str, timeout: float) -> subprocess.CompletedProcess:
    # Output to a file, not a pipe: a walkthrough's background process (the gateway, the
    # virtual device) would hold a pipe open after bash ends. Its own process group: whatever
    # it leaves running is killed with it.
    with tempfile.TemporaryFile("w+") as log:
        p = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env=dict(os.environ, MAKEFLAGS=""),
        )
        try:
            rc = p.wait(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        log.seek(0)
        return subprocess.CompletedProcess(p.args, rc, log.read(), "")


def walkthroughs() -> dict[str, str]:
    per: dict[str, list[str]] = {}
    setup = []
    for heading, code in blocks(DOC.read_text()):
        if heading == "The first hour":
            setup.append(code)
        else:
            per.setdefault(heading, []).append(code)
    return {h: "\n".join(setup + codes) for h, codes in per.items()}


def test_every_walkthrough_is_there():
    assert set(walkthroughs()) == {
        "QA engineer: simulate, check, conform",
        "Hardware engineer: flash, provision, watch, command",
        "Integrator: decode frames, run a fleet through the gateway",
    }


@pytest.mark.parametrize("name", sorted(walkthroughs()))
def test_walkthrough_runs_as_written(name):
    shutil.rmtree(SCRATCH, ignore_errors=True)
    r = run_bash(walkthroughs()[name], timeout=300)
    assert r.returncode == 0, r.stdout[-4000:]
    out = r.stdout
    assert "Traceback" not in out
    if name.startswith("QA"):
        assert "events:" in out and "mine" in out
    elif name.startswith("Hardware"):
        assert '"kind": "alarm"' in out and '"units": "mA"' in out
        assert '"status": "ok"' in out
    else:
        assert "temp_c=[23.4,25.1,-5.0,71.2]°C" in out and '"temp_dc"' in out


README_SECTIONS = ("Simulating a detector (QA)", "Decoding the wire protocol (integrators)")


def test_readme_blocks_that_need_no_board_run():
    lines = []
    for heading, code in blocks((ROOT / "README.md").read_text()):
        if heading in README_SECTIONS:
            lines += [x for x in code.splitlines() if "/dev/tty" not in x]
    assert lines, "the README's QA and integrator blocks are gone"
    r = run_bash("\n".join(lines), timeout=120)
    assert r.returncode == 0, r.stdout[-4000:]
