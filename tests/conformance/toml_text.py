"""A tiny TOML writer for generated scenarios (tomllib reads TOML but cannot write it).

Covers what scenario files use: tables, arrays of tables, numbers, strings, inline tables.
"""

from __future__ import annotations

import json


def value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def dumps(doc: dict) -> str:
    out: list[str] = []
    for name, body in doc.items():
        entries = body if isinstance(body, list) else [body]
        for entry in entries:
            out.append(f"[[{name}]]" if isinstance(body, list) else f"[{name}]")
            out.extend(f"{key(k)} = {value(v)}" for k, v in entry.items())
            out.append("")
    return "\n".join(out)
