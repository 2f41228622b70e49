# Persistent detector settings: validated by efd.config, stored atomically by app.store.
#
# The file holds only the overrides of efd.config.DEFAULTS, so a firmware update that changes
# a default applies it to every detector that never set that value. Changing settings needs
# either the device key (the set_config command) or physical access (`make provision` over
# USB): GB 14287.5 "settings may be changed only with a special tool or password".
import hashlib
import struct

from app import store
from efd import config
from protocol import messages as M

PATH = "config.json"


def load(path=PATH):
    """(overrides, ok). A missing file is the factory state (ok); a file that does not
    validate is reported (ok False) and the defaults are used: never run on garbage."""
    obj = store.load_json(path)
    if obj is None:
        return {}, not store.exists(path)
    if not isinstance(obj, dict):
        return {}, False
    try:
        # Each setting alone: the combinations (efd.fullscale) were checked before the file
        # was written (save(), tools/provisioning.py), and boot is the firmware's peak.
        config.make(obj)
    except config.ConfigError:
        return {}, False
    return obj, True


def validate_update(current, params):
    """New overrides with params ([[name, value], ...]) applied, all or none.
    Returns (overrides, None) or (None, bad_param_id); a refused combination of two settings
    (efd.config's cross-field rules) is both ids, first | second << 8."""
    new = dict(current)
    for name, value in params:
        if not isinstance(name, str) or name not in config.DEFAULTS:
            return None, _pid(name)
        new[name] = value
    try:
        _combinations(config.make(new))
    except config.ConfigError as e:
        # A refused combination names both settings: first | second << 8 (SPEC.md §5.4).
        return None, _pid(e.key) | (_pid(e.other) << 8 if e.other else 0)
    return new, None


def _combinations(cfg):
    # efd.fullscale's cross-field rules, the module loaded for this call and forgotten again
    # (app.run drops this module and efd.config after each command, not that one).
    import sys

    from efd import fullscale

    try:
        fullscale.check(cfg)
    finally:
        sys.modules.pop("efd.fullscale", None)
        sys.modules["efd"].__dict__.pop("fullscale", None)


def _pid(name):
    # Wire parameter id: the setting's position in efd.config.NAMES + 1 (protocol/SPEC.md §5).
    if isinstance(name, str) and name in config.DEFAULTS:
        return config.NAMES.index(name) + 1
    if isinstance(name, str) and name[:1] == "p" and name[1:].isdigit():
        return int(name[1:])
    return 0


def save(overrides, path=PATH):
    _combinations(config.make(overrides))  # never persist what would not load
    store.save_json(path, overrides)


def params(cfg):
    """Every setting as (name, value) in wire-id order (CONFIG message). Tuples, not lists:
    half the heap for the 22 pairs while the frame is built."""
    out = []
    for name in config.NAMES:
        out.append((name, cfg[name]))
    return out


def config_hash(cfg):
    """SPEC.md §5.1: first 4 bytes (LE u32) of SHA-256 over the canonical config, defined here
    as (u8 id, i32 value) for every parameter in id order: the CONFIG payload's own layout."""
    h = hashlib.sha256()
    b = bytearray(5)
    for i, name in enumerate(config.NAMES):
        struct.pack_into("<Bi", b, 0, i + 1, cfg[name])
        h.update(b)
    return struct.unpack("<I", h.digest()[:4])[0]


def config_frame(app):
    """The CONFIG reply (SPEC.md §5): every setting the detector runs with, and their hash."""
    cfg = app.det.cfg
    return app.link.enc.message(
        M.CONFIG,
        app.hal.time(),
        {"config_hash": config_hash(cfg), "params": params(cfg)},
        auth=True,
    )
