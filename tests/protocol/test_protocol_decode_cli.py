"""tools.decode: every source, JSON and --pretty output, bad input reported without
tracebacks."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools import decode

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, stdin="", timeout=30):
    return subprocess.run(
        [sys.executable, "-m", "tools.decode", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


def _lines(out):
    return [json.loads(x) for x in out.splitlines() if x.strip()]


def _wires(vectors):
    return [v for v in vectors["vectors"]]


def test_help():
    r = cli("--help")
    assert r.returncode == 0 and "--serial" in r.stdout and "SPEC.md" in r.stdout


def test_physical_units_by_default_wire_integers_with_raw(vectors):
    tele = next(v for v in vectors["vectors"] if v["name"] == "telemetry")
    d = _lines(cli(tele["hex"]).stdout)[0]
    assert d["temp_c"] == [23.4, 25.1, -5.0, 71.2] and d["line_a"] == [12.34, 11.2, 10.05]
    assert d["residual_ma"] == 123 and d["flags"] == ["prealarm"]
    assert d["units"] == {"residual_ma": "mA", "temp_c": "degC", "line_a": "A"}
    assert "temp_dc" not in d
    raw = _lines(cli("--raw", tele["hex"]).stdout)[0]
    assert raw["temp_dc"] == [234, 251, -50, 712] and "temp_c" not in raw
    fault = next(v for v in vectors["vectors"] if v["name"] == "event_fault_untagged")
    d = _lines(cli(fault["hex"]).stdout)[0]
    assert d["fault"] == "open" and d["channel"] == "temp2"


def test_hex_args_decode_every_vector_like_the_golden_file(vectors):
    vs = _wires(vectors)
    r = cli("--raw", "--key", vectors["test_key"], *[v["hex"] for v in vs])
    assert r.returncode == 0, r.stderr
    out = _lines(r.stdout)
    assert len(out) == len(vs)
    for v, d in zip(vs, out, strict=True):
        if "decoded" in v:
            assert {k: d[k] for k in v["decoded"]} == v["decoded"], v["name"]
            if v["decoded"]["counter"] is not None:
                assert d["auth"] == "ok"
        elif v["stage"] == "decode":
            assert d["error"] == v["error"] and d["reason"]
        else:
            assert d["auth"] == v["error"]  # bad_tag, caught by the key check


def test_stdin_lines_bad_hex_reported_and_decoding_continues(vectors):
    tele = next(v for v in vectors["vectors"] if v["name"] == "telemetry")
    stdin = "# capture\nnot-hex\n{}\n123\n{}\n".format(tele["hex"], tele["hex"][:-2])
    r = cli("--raw", stdin=stdin)
    assert r.returncode == 1  # some input was unreadable
    assert "Traceback" not in r.stderr and "bad hex" in r.stderr
    out = _lines(r.stdout)
    assert [d.get("error", d.get("type")) for d in out] == ["hex", "telemetry", "hex", "telemetry"]
    assert out[1]["status_flags"] == ["prealarm"] and out[1]["time_utc"] == "2026-05-03T19:33:20Z"


def test_capture_file_split_anywhere_with_garbage(vectors, tmp_path):
    blob = b"\x42\x17garbage" + b"".join(bytes.fromhex(v["hex"]) for v in vectors["vectors"])
    p = tmp_path / "cap.bin"
    p.write_bytes(blob[:-1])  # capture cut before the last delimiter: still decoded
    r = cli("-f", str(p), "--pretty")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    n_vec = len(vectors["vectors"])
    assert len(lines) == n_vec  # the garbage merged into the first frame: one error for both
    assert lines[0].startswith("ERROR")
    assert any(" telemetry " in x and "flags=[prealarm]" in x for x in lines)
    assert any("temp_c=[23.4,25.1,-5.0,71.2]°C" in x for x in lines)
    assert sum(x.startswith("ERROR") for x in lines) == 1 + sum(
        1 for v in vectors["vectors"] if v.get("stage") == "decode"
    )


@pytest.mark.parametrize(
    "args,needle",
    [
        (["-f", "/no/such/capture.bin"], "cannot open /no/such/capture.bin"),
        (["-s", "/dev/no-such-tty"], "cannot open serial port /dev/no-such-tty"),
        (["-u", "not-a-port"], "bad UDP port"),
        (["-u", "127.0.0.1:99999"], "bad UDP port"),
        (["--key", "zz", "00"], "bad --key"),
        (["--keys", "/no/keys.json", "00"], "cannot read --keys"),
    ],
)
def test_user_mistakes_get_one_clear_line(args, needle):
    r = cli(*args)
    assert r.returncode == 2
    assert needle in r.stderr and "Traceback" not in r.stderr


def test_bad_keys_file(tmp_path):
    p = tmp_path / "k.json"
    p.write_text('{"0x1": "xyz"}')
    r = cli("--keys", str(p), "00")
    assert r.returncode == 2 and "bad --keys file" in r.stderr and "Traceback" not in r.stderr


def test_keys_file_per_device_and_wrong_key(vectors, tmp_path):
    ev = next(v for v in vectors["vectors"] if v["name"] == "event_alarm")
    p = tmp_path / "k.json"
    p.write_text(json.dumps({"0x12345678": vectors["test_key"]}))
    assert _lines(cli("--keys", str(p), ev["hex"]).stdout)[0]["auth"] == "ok"
    assert _lines(cli("--key", "55" * 32, ev["hex"]).stdout)[0]["auth"] == "bad_tag"
    # the same frame twice in one run: the second is a retransmission
    out = _lines(cli("--key", vectors["test_key"], ev["hex"], ev["hex"]).stdout)
    assert [d["auth"] for d in out] == ["ok", "duplicate"]


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pty")
def test_serial_port_through_a_pty(vectors):
    master, slave = os.openpty()
    port = os.ttyname(slave)
    tele = bytes.fromhex(next(v for v in vectors["vectors"] if v["name"] == "telemetry")["hex"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.decode", "-s", port, "--count", "3", "--duration", "20"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # let it open the port
        # a frame split across writes, line noise, then two frames in one write
        os.write(master, tele[:7])
        time.sleep(0.2)
        os.write(master, tele[7:] + b"\x99\x98\x00" + tele + tele)
        out, err = proc.communicate(timeout=25)
    finally:
        os.close(master)
        os.close(slave)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert [d.get("type", d.get("error")) for d in _lines(out)] == [
        "telemetry",
        "cobs",
        "telemetry",
    ]


def test_serial_loop_url_in_process(vectors, monkeypatch, capsys):
    import serial

    tele = bytes.fromhex(next(v for v in vectors["vectors"] if v["name"] == "telemetry")["hex"])
    real = serial.serial_for_url

    def prefilled(url, **kw):
        port = real(url, **kw)
        port.write(b"\x00\x05\x01\x00" + tele)  # loop:// reads back what was written
        return port

    monkeypatch.setattr(serial, "serial_for_url", prefilled)
    rc = decode.main(["-s", "loop://", "--count", "2", "--duration", "5"])
    out = _lines(capsys.readouterr().out)
    assert rc == 0
    assert [d.get("type", d.get("error")) for d in out] == ["cobs", "telemetry"]


def test_udp_datagrams_on_localhost(vectors):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.decode",
            "-u",
            f"127.0.0.1:{port}",
            "--count",
            "3",
            "--duration",
            "20",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening" in proc.stderr.readline()
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ev = bytes.fromhex(next(v for v in vectors["vectors"] if v["name"] == "event_alarm")["hex"])
        tele = bytes.fromhex(next(v for v in vectors["vectors"] if v["name"] == "telemetry")["hex"])
        tx.sendto(ev[:-1], ("127.0.0.1", port))  # a datagram without its delimiter is fine
        tx.sendto(b"\xff\xfe", ("127.0.0.1", port))  # junk: one error, no state carried over
        tx.sendto(tele, ("127.0.0.1", port))
        tx.close()
        out, err = proc.communicate(timeout=25)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert [d.get("type", d.get("error")) for d in _lines(out)] == ["event", "cobs", "telemetry"]
