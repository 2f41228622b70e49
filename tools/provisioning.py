"""The files local provisioning writes onto a detector's flash, for every way of writing them
(tools/deploy.py over mpremote, the virtual detector's flash folder, the board twin, tests).

    identity.json   {"device": id, "key": 64 hex digits}   the firmware's app/boot.py reads it
    state.json      {"boots": 0, "host_ctr": 0}            fresh counters, only with a NEW key
    config.json     settings overrides (efd/config.py names), validated as the firmware would
    wifi.json       {"ssid", "psk", "gateway": "a.b.c.d:port", "port", "ntp"}: the WiFi link
                    (app/wifi.py); never in the repository, never printed (mask())

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
        from efd import fullscale

        fullscale.check(efd_config.make(config))  # refuse what the firmware would refuse
        out[CONFIG] = json.dumps(config)
    return out


WIFI = "wifi.json"


def _ipv4(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) <= 255 for p in parts)


def wifi_text(cfg: dict) -> str:
    """wifi.json for app/wifi.py from {"ssid", "psk", "gateway": "a.b.c.d:port", "port": local
    UDP port (default 47101), "ntp": "a.b.c.d[:port]" (optional)}, checked as the firmware needs it:
    IP literals only (a name would need a DNS lookup, which blocks the sampling loop on the
    board), a WPA2 passphrase of 8..63 characters. Errors never repeat the secrets."""
    if not isinstance(cfg, dict):
        raise ProvisionError("wifi: a JSON object with ssid, psk, gateway")
    ssid, psk, gw = cfg.get("ssid"), cfg.get("psk"), cfg.get("gateway")
    if not isinstance(ssid, str) or not 1 <= len(ssid.encode()) <= 32:
        raise ProvisionError("wifi: ssid must be 1..32 bytes")
    if not isinstance(psk, str) or not 8 <= len(psk) <= 63:
        raise ProvisionError("wifi: psk (the WPA2 passphrase) must be 8..63 characters")
    host, _, port = str(gw).rpartition(":")
    if not _ipv4(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ProvisionError(
            f"wifi: gateway must be an IPv4 address and port, e.g. 192.168.1.10:47100, "
            f"not {gw!r} (no host names: a DNS lookup would block the detector)"
        )
    out: dict[str, str | int] = {"ssid": ssid, "psk": psk, "gateway": f"{host}:{int(port)}"}
    local = cfg.get("port", 47101)
    if not isinstance(local, int) or not 0 < local < 65536:
        raise ProvisionError("wifi: port (the detector's own UDP port) must be 1..65535")
    out["port"] = local
    ntp = cfg.get("ntp")
    if ntp:
        h, _, p = str(ntp).partition(":")
        if not _ipv4(h) or (p and (not p.isdigit() or not 0 < int(p) < 65536)):
            raise ProvisionError(f"wifi: ntp must be an IPv4 address[:port], not {ntp!r}")
        out["ntp"] = ntp
    return json.dumps(out)


def mask(text: str) -> str:
    """A secret for logs: never more than its first 2 characters and its length."""
    return f"{text[:2]}***({len(text)})"
