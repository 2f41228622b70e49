"""Issue 10, finding 3 (operators' side): re-provisioning that rotates the key, and never writes
a fresh state file under a key the detector already holds (protocol/SPEC.md section 7.4,
tools/provisioning.py). tools.deploy is driven with mpremote replaced by a recorder that plays
the device's filesystem, so these run without a board."""

from __future__ import annotations

import csv
import json
import stat
from pathlib import Path

import pytest

from tools import deploy, provisioning
from tools.gateway.registry import load_registry

KEY_A = "11" * 32
KEY_B = "22" * 32


def test_fresh_state_only_under_a_new_key():
    first = provisioning.files(5, KEY_A, None)
    assert set(first) == {"identity.json", "state.json"}
    assert json.loads(first["state.json"]) == {"boots": 0, "host_ctr": 0}
    same = provisioning.files(5, KEY_A.upper(), first["identity.json"])
    assert "state.json" not in same  # the detector's marks guard replays of old commands
    rotated = provisioning.files(5, KEY_B, first["identity.json"])
    assert "state.json" in rotated
    assert "state.json" in provisioning.files(5, KEY_A, "{broken")


@pytest.mark.parametrize(
    ("device", "key"),
    [(0, KEY_A), (0xFFFFFFFF, KEY_A), (5, "11" * 31), (5, "zz" * 32), (5, "")],
)
def test_bad_identity_refused(device, key):
    with pytest.raises(provisioning.ProvisionError):
        provisioning.files(device, key)


def test_bad_setting_refused():
    with pytest.raises(ValueError):
        provisioning.files(5, KEY_A, None, {"leak_set_ma": -1})


def test_new_keys_differ():
    assert len({provisioning.new_key() for _ in range(50)}) == 50
    assert len(bytes.fromhex(provisioning.new_key())) == 32


class FakeBoard:
    """mpremote against a device whose files are a dict (the unix port: a reset is the
    process ending, tools.deploy.reset_device)."""

    def __init__(self, files: dict[str, str] | None = None):
        self.files = dict(files or {})
        self.calls: list[tuple[str, ...]] = []
        self.resets = 0

    def __call__(self, port: str, *args: str, timeout: float = 120, cwd=None) -> str:
        self.calls.append(args)
        if args[:2] == ("exec", "--no-follow") and "sys.exit(0)" in args[2]:
            self.resets += 1
            return ""
        if args[0] == "exec":  # current_identity()'s probe
            ident = self.files.get("identity.json")
            return f"PLATFORM=linux\nID={ident.strip() if ident else ''}\n"
        words = list(args)
        while words:  # fs cp SRC :DST [+ fs cp SRC :DST ...]
            assert words[:2] == ["fs", "cp"], words
            self.files[words[3][1:]] = Path(words[2]).read_text()
            words = words[5:]
        return ""


@pytest.fixture
def board(monkeypatch):
    b = FakeBoard()
    monkeypatch.setattr(deploy, "run_mp", b)
    monkeypatch.setattr(deploy, "first_contact", lambda port: b.calls.append(("contact",)))
    return b


def registry_csv(path: Path) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device", "name", "district", "category", "site", "key"])
        w.writerow(["0x10", "A-1", "Sha County", "hotel", "s1", KEY_A])
        w.writerow(["17", "A-2", "Sha County", "school", "s2", ""])
    return path


def test_new_key_rotation_end_to_end(board, tmp_path, capsys):
    # A detector that lost its state (identity, no state file) gets a new key, a fresh
    # state and the registry row changes; the other rows are untouched.
    board.files = {"identity.json": json.dumps({"device": 16, "key": KEY_A})}
    reg = registry_csv(tmp_path / "fleet.csv")
    keyfile = tmp_path / "new.hex"
    rc = deploy.main(
        [
            "PORT",
            "--provision",
            "--device",
            "0x10",
            "--new-key",
            str(keyfile),
            "--registry",
            str(reg),
        ]
    )
    assert rc == 0, capsys.readouterr()
    new = keyfile.read_text().strip()
    assert len(bytes.fromhex(new)) == 32 and new != KEY_A
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    assert json.loads(board.files["identity.json"]) == {"device": 16, "key": new}
    assert json.loads(board.files["state.json"]) == {"boots": 0, "host_ctr": 0}
    devs = load_registry(reg, secret=b"fleet")
    assert devs[16].key == bytes.fromhex(new)
    assert devs[17].name == "A-2" and devs[17].key is not None  # derived, as before
    assert (tmp_path / "fleet.csv.bak").read_text().count(KEY_A) == 1
    assert "registry" in capsys.readouterr().out


def test_same_key_keeps_the_state(board, tmp_path, capsys):
    board.files = {
        "identity.json": json.dumps({"device": 16, "key": KEY_A}),
        "state.json": json.dumps({"boots": 40, "host_ctr": 123}),
    }
    keyfile = tmp_path / "k.hex"
    keyfile.write_text(KEY_A + "\n")
    assert deploy.main(["PORT", "--provision", "--device", "16", "--key-file", str(keyfile)]) == 0
    assert json.loads(board.files["state.json"]) == {"boots": 40, "host_ctr": 123}
    assert "--new-key" in capsys.readouterr().out


def test_new_key_never_overwrites_a_key_file(board, tmp_path, capsys):
    keyfile = tmp_path / "old.hex"
    keyfile.write_text(KEY_A)
    rc = deploy.main(["PORT", "--provision", "--device", "16", "--new-key", str(keyfile)])
    assert rc == 2
    assert keyfile.read_text() == KEY_A
    assert "exists" in capsys.readouterr().err
    assert board.calls == []  # nothing written to the device either


def test_unknown_registry_device_is_a_clear_error(board, tmp_path, capsys):
    reg = registry_csv(tmp_path / "fleet.csv")
    before = reg.read_text()
    rc = deploy.main(
        ["PORT", "--provision", "--device", "99", "--new-key", str(tmp_path / "n.hex"),
         "--registry", str(reg)]
    )  # fmt: skip
    assert rc == 2
    assert "not in the registry" in capsys.readouterr().err
    assert reg.read_text() == before


@pytest.mark.parametrize(
    "argv",
    [
        ["PORT", "--provision", "--device", "16"],  # no key at all
        ["PORT", "--provision", "--device", "16", "--key", KEY_A, "--new-key", "x"],
        ["PORT", "--provision", "--device", "16", "--key", KEY_A, "--registry", "r.csv"],
        ["PORT", "--provision", "--device", "sixteen", "--key", KEY_A],
    ],
)
def test_usage_errors_exit_2_without_traceback(board, argv, capsys):
    with pytest.raises(SystemExit) as e:
        deploy.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "Traceback" not in err
    assert board.calls == []


def test_provisioning_restarts_the_device(board, tmp_path, capsys):
    # The firmware reads identity.json at boot (issue 13): provisioning ends with the deploy's
    # reset, after the files; --no-reset leaves it and says how to restart.
    keyfile = tmp_path / "k.hex"
    keyfile.write_text(KEY_A + "\n")
    argv = ["PORT", "--provision", "--device", "16", "--key-file", str(keyfile)]
    assert deploy.main(argv) == 0
    assert board.resets == 1
    assert board.calls[-1][:2] == ("exec", "--no-follow")  # the last thing done
    assert "restarted" in capsys.readouterr().out
    assert deploy.main([*argv, "--no-reset"]) == 0
    assert board.resets == 1
    assert "--reset-only" in capsys.readouterr().out
