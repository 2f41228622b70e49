"""tools.decode: `--help` examples that run as written, a short key refused with exit 2, a
refused setting named; host_sim check: every file checked and reported."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from host_sim import cli as sim_cli
from protocol import auth
from protocol import frame as fr
from protocol import messages as M

ROOT = Path(__file__).resolve().parents[1]
VECTORS = json.loads((ROOT / "protocol" / "vectors" / "vectors.json").read_text())


def decode(*args: str, stdin: str = "", cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "tools.decode", *args], input=stdin,
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=60)  # fmt: skip


def _examples(help_text: str) -> list[str]:
    """The example commands of --help, continuation lines joined."""
    out: list[str] = []
    lines = iter(help_text[help_text.index("\nexamples") :].splitlines())
    for line in lines:
        s = line.strip()
        if "python -m tools.decode" not in s or s.startswith("#"):
            if out and not s:
                break  # the end of the examples paragraph
            continue
        while s.endswith("\\"):
            s = s[:-1] + next(lines).strip()
        out.append(s)
    return out


def test_help_examples_run_as_written(tmp_path):
    r = decode("--help")
    assert r.returncode == 0
    examples = _examples(r.stdout)
    assert len(examples) >= 6, r.stdout
    # The capture the -f example reads: every golden vector, as a bus would carry them.
    (tmp_path / "capture.bin").write_bytes(
        b"".join(b"\x00" + bytes.fromhex(v["hex"]) for v in VECTORS["vectors"][:9])
    )
    ran = 0
    for ex in examples:
        if "--duration" in ex:  # live sources (a serial adapter, a UDP port): not here
            continue
        cmd, _, pipe_in = ex.rpartition("|") if ex.startswith("echo") else (ex, "", "")
        stdin = ""
        if ex.startswith("echo"):
            stdin = shlex.split(cmd)[1] + "\n"
            ex = pipe_in
        argv = shlex.split(ex)
        assert argv[:3] == ["python", "-m", "tools.decode"], ex
        r = decode(*argv[3:], stdin=stdin, cwd=tmp_path)
        assert r.returncode == 0 and r.stderr == "", (ex, r.stderr)
        assert r.stdout.strip() and "error" not in r.stdout, (ex, r.stdout)
        if "--key" in argv:
            assert json.loads(r.stdout)["auth"] == "ok", ex
        ran += 1
    assert ran >= 5


@pytest.mark.parametrize("key", ["12", "00" * 31, "00" * 33, "zz" * 32])
def test_a_key_that_is_not_64_hex_digits_exits_2(key):
    r = decode("--key", key, VECTORS["vectors"][0]["hex"])
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("decode: bad --key: the key must be 64 hex digits")
    assert "Traceback" not in r.stderr


def test_a_short_key_in_the_keys_file_exits_2(tmp_path):
    p = tmp_path / "keys.json"
    p.write_text(json.dumps({"0x12345678": "12"}))
    r = decode("--keys", str(p), VECTORS["vectors"][0]["hex"])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "device 0x12345678: the key must be 64 hex digits" in r.stderr


def test_a_refused_setting_is_named():
    enc = fr.Encoder(0x12345678, auth.Key(bytes(range(32))), lambda: 5)
    fields = {"cmd_counter": 9, "cmd": "set_config", "status": "bad_argument", "value": 2}
    wire = enc.message(M.RESULT, 0, fields, auth=True).hex()
    d = json.loads(decode(wire).stdout)
    assert d["status"] == "bad_argument" and d["value"] == 2 and d["param"] == "leak_set_ma"
    assert "param=leak_set_ma" in decode("--pretty", wire).stdout


# -- host_sim check ---------------------------------------------------------------------------
def test_check_reports_every_file(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[scenario]\n")
    good = ROOT / "host_sim" / "scenarios" / "demo.toml"
    missing = tmp_path / "missing.toml"
    assert sim_cli.main(["check", str(bad), str(good), str(missing)]) == 2
    out, err = capsys.readouterr()
    assert f"{good}: OK" in out
    assert f"error: {bad}:1:" in err and "duration_s" in err
    assert f"error: {missing}: no such file" in err
    assert "2 of 3 scenario files are bad" in err and "Traceback" not in err
    assert sim_cli.main(["check", str(good), str(good)]) == 0


def test_check_help_says_every_file():
    r = subprocess.run([sys.executable, "-m", "host_sim", "check", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0 and "every scenario file" in r.stdout
