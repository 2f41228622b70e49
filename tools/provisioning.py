"""The files local provisioning writes onto a detector's flash, for every way of writing them
(tools/deploy.py over mpremote, the virtual detector's flash folder, the board twin, tests).

    identity.json   {"device": id, "key": 64 hex digits}   the firmware's app/boot.py reads it
    state.json      {"boots": 0, "host_ctr": 0}            fresh counters, only with a NEW key
    config.json     settings overrides (efd/config.py names), validated as the firmware would

Why state.json only with a new key (protocol/SPEC.md section 7.4): the detector's state holds
its downlink mark, the counter of the last command it accepted. Marks at 0 are safe only
under a key nothing was ever sent with; under the same key they would let every command ever
captured on the wire pass again. So provisioning a detector that already holds this key leaves
its state alone (a detector whose state was lost stays locked: rotate the key, --new-key), and
a detector with no identity or another key gets a fresh state. The firmware treats "identity
but no state" as a lost state and locks commands, which is why provisioning must write both.
"""

from __future__ import annotations

import json
import secrets

IDENTITY = "identity.json"
STATE = "state.json"
CONFIG = "config.json"


class ProvisionError(ValueError):
    """A user mistake in what to provision (printed without a traceback)."""


def check(device: int, key_hex: str) -> bytes:
    if not 0 < device < 0xFFFFFFFF:
        raise ProvisionError(f"device id {device} out of range: it must be 1..0xFFFFFFFE")
    try:
        key = bytes.fromhex(key_hex.strip())
    except ValueError:
        raise ProvisionError("the key must be 64 hex digits (32 bytes)") from None
    if len(key) != 32:
        raise ProvisionError(f"the key must be 64 hex digits (32 bytes), not {len(key) * 2}")
    return key


def new_key() -> str:
    """A fresh random device key (hex), from the OS's CSPRNG."""
    return secrets.token_hex(32)


def identity_text(device: int, key_hex: str) -> str:
    check(device, key_hex)
    return json.dumps({"device": device, "key": key_hex.strip().lower()})


def same_key(current_identity: str | None, key_hex: str) -> bool:
    """Whether the identity file already on the device holds this key."""
    if not current_identity:
        return False
    try:
        k = json.loads(current_identity).get("key", "")
    except (ValueError, AttributeError):
        return False
    return isinstance(k, str) and k.strip().lower() == key_hex.strip().lower()


def files(
    device: int, key_hex: str, current_identity: str | None = None, config: dict | None = None
) -> dict[str, str]:
    """{file name: contents} to write. current_identity: the device's identity.json now (None
    if it has none). Raises ProvisionError / ValueError (a bad setting) for bad input."""
    out = {IDENTITY: identity_text(device, key_hex)}
    if not same_key(current_identity, key_hex):
        out[STATE] = json.dumps({"boots": 0, "host_ctr": 0})
    if config:
        from efd import config as efd_config

        efd_config.make(config)  # refuse what the firmware would refuse
        out[CONFIG] = json.dumps(config)
    return out
