# Small persistent records on flash (config, identity, boot state), written atomically.
#
# A write goes to `<name>.tmp`, is flushed and closed, then renamed over `<name>`. rename() is
# atomic on LittleFS (the ESP32 port's default filesystem: the directory entry is replaced in
# one metadata commit) and on POSIX (the unix port), so a power cut at any step leaves either
# the whole old file or the whole new one. A leftover .tmp is ignored and removed at the next
# write. (VfsFat emulates rename-over by unlink + rename, which is NOT atomic: use LittleFS.)
# tests/firmware/test_store_atomic.py kills the process at every step below.
import json
import os

# Test hook: called with the name of each write step; the kill test exits the process there.
hook = None


def _step(name):
    if hook is not None:
        hook(name)


def write_atomic(path, data):
    tmp = path + ".tmp"
    _step("open")
    f = open(tmp, "wb")
    try:
        half = len(data) // 2
        # Two writes so the test can also cut power between them (a torn temporary file).
        f.write(data[:half])
        _step("write1")
        f.write(data[half:])
        _step("write2")
        f.flush()
        _step("flush")
    finally:
        f.close()
    _step("close")
    os.rename(tmp, path)
    _step("rename")


def load_json(path):
    """The object stored at path, or None if the file is missing or unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def save_json(path, obj):
    write_atomic(path, json.dumps(obj).encode())


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


# The boot state file (SPEC.md §7.3): the boot count (high half of every uplink counter) and the
# highest command counter accepted, persisted before acting on it; "locked" while the detector
# runs without its lost replay state (SPEC.md §7.4: commands refused until re-provisioned).
# Provisioning writes a fresh one ({"boots": 0, "host_ctr": 0}) with the identity.
STATE = "state.json"  # {"boots": n, "host_ctr": n[, "locked": 1]}


def save_state(app):
    st = {"boots": app.boots, "host_ctr": app.host_ctr}
    if app.problems & 4:
        st["locked"] = 1
    save_json(STATE, st)
