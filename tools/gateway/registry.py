"""Fleet registry: which devices exist, where they are, and their keys.

A registry is a CSV file (one row per detector):

    device,name,district,category,site,key
    100001,Meilie-001,Meilie District,hospital,Meilie site 1,<64 hex digits>

`device` is the u32 id in every frame header (decimal or 0x hex). `district` is a unit of the
target plan (a county/district government or a city bureau), `category` one of CATEGORIES
(the priority site categories of the city's plan). `key` is the device's 32-byte HMAC key; when
the column is empty, the gateway can derive it from a fleet secret (derive_key) so a registry
can be shared without keys in it.

The target plan CSV (data/target_plan_2020.csv) has: unit,unit_zh,kind,scope,target.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import struct
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLAN_2020 = HERE / "data" / "target_plan_2020.csv"

# Priority site categories (CONTEXT.md: the city's plan), as stable snake_case tags.
CATEGORIES = (
    "hazardous_chemicals",
    "labour_intensive_workshop",
    "dust_workshop",
    "ammonia_workshop",
    "spray_painting_workshop",
    "wood_mill",
    "textile_mill",
    "paper_mill",
    "high_rise_building",
    "mixed_use_building",
    "market",
    "elderly_care_home",
    "welfare_home",
    "hotel",
    "mall",
    "entertainment_venue",
    "hospital",
    "medical_institution",
    "school",
    "kindergarten",
    "heritage_site",
    "religious_site",
    "rental_housing",
    "old_residential_block",
    "commercial_street",
)

# The city's 10 industry categories (data/industry_categories_2020.csv: code, Chinese, English;
# issue 15) and which one each priority site category belongs to. Code 10 is "other industries".
INDUSTRIES_2020 = HERE / "data" / "industry_categories_2020.csv"
INDUSTRY_OF = {
    "hazardous_chemicals": 1,
    "labour_intensive_workshop": 2,
    "dust_workshop": 2,
    "ammonia_workshop": 2,
    "spray_painting_workshop": 2,
    "wood_mill": 3,
    "textile_mill": 3,
    "paper_mill": 3,
    "high_rise_building": 4,
    "mixed_use_building": 4,
    "market": 4,
    "elderly_care_home": 5,
    "welfare_home": 5,
    "hotel": 6,
    "mall": 6,
    "entertainment_venue": 6,
    "hospital": 7,
    "medical_institution": 7,
    "school": 7,
    "kindergarten": 7,
    "heritage_site": 7,
    "rental_housing": 8,
    "old_residential_block": 8,
    "commercial_street": 9,
    "religious_site": 10,
}


def industry_of(category: str) -> int:
    """The industry category code (1-10) of a site category; 10 (other) when unknown/empty."""
    return INDUSTRY_OF.get(category, 10)


def load_industries(path: str | Path = INDUSTRIES_2020) -> dict[int, tuple[str, str]]:
    """code -> (Chinese name, English name) from the city's category list."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise RegistryError(f"{path}: cannot read industry categories: {e.strerror}") from None
    out: dict[int, tuple[str, str]] = {}
    for i, r in enumerate(csv.DictReader(text.splitlines()), start=2):
        try:
            out[int(r["code"])] = (r["category_zh"].strip(), r["category_en"].strip())
        except (KeyError, TypeError, ValueError):
            raise RegistryError(f"{path}:{i}: expected code,category_zh,category_en") from None
    return out


# Which categories a plan unit covers, from its `scope` text. Districts cover all of them.
_SCOPE_WORDS = {
    "schools": ("school",),
    "kindergartens": ("kindergarten",),
    "religious sites": ("religious_site",),
    "entertainment venues": ("entertainment_venue",),
    "hotels": ("hotel",),
    "heritage sites": ("heritage_site",),
    "welfare homes": ("welfare_home",),
    "elderly-care facilities": ("elderly_care_home",),
    "medical institutions": ("hospital", "medical_institution"),
}


class RegistryError(Exception):
    """A user mistake in a registry or plan file (printed without a traceback)."""


@dataclass
class Device:
    device: int
    name: str = ""
    district: str = ""
    category: str = ""
    site: str = ""
    key: bytes | None = None


@dataclass(frozen=True)
class PlanUnit:
    unit: str
    unit_zh: str
    kind: str
    scope: str
    target: int

    def categories(self) -> tuple[str, ...]:
        if self.kind == "district":
            return CATEGORIES
        out: list[str] = []
        for part in self.scope.split(";"):
            words = part.strip()
            for k, cats in _SCOPE_WORDS.items():
                if k in words:
                    out.extend(c for c in cats if c not in out)
        return tuple(out) or CATEGORIES


def derive_key(secret: bytes, device: int) -> bytes:
    """Per-device key from a fleet secret: HMAC-SHA256(secret, "efd-device-key" || id LE).
    Knowing one device's key tells nothing about another's or about the secret."""
    return hmac.new(secret, b"efd-device-key" + struct.pack("<I", device), hashlib.sha256).digest()


def parse_device_id(text: str) -> int:
    t = text.strip()
    try:
        v = int(t, 16) if t.lower().startswith("0x") else int(t)
    except ValueError:
        raise RegistryError(f"device id {text!r} is not a number") from None
    if not 0 <= v <= 0xFFFFFFFF:
        raise RegistryError(f"device id {text!r} is not a u32")
    return v


def load_registry(path: str | Path, secret: bytes | None = None) -> dict[int, Device]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise RegistryError(f"{path}: cannot read registry: {e.strerror}") from None
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise RegistryError(f"{path}: registry is empty")
    if "device" not in rows[0]:
        raise RegistryError(f"{path}: registry needs a 'device' column (got {list(rows[0])})")
    out: dict[int, Device] = {}
    for i, r in enumerate(rows, start=2):
        try:
            dev = parse_device_id(r.get("device") or "")
        except RegistryError as e:
            raise RegistryError(f"{path}:{i}: {e}") from None
        if dev in out:
            raise RegistryError(f"{path}:{i}: device {dev} listed twice")
        cat = (r.get("category") or "").strip()
        if cat and cat not in CATEGORIES:
            raise RegistryError(
                f"{path}:{i}: unknown category {cat!r} (one of: {', '.join(CATEGORIES)})"
            )
        key = None
        khex = (r.get("key") or "").strip()
        if khex:
            try:
                key = bytes.fromhex(khex)
            except ValueError:
                raise RegistryError(f"{path}:{i}: key is not hex") from None
            if len(key) != 32:
                raise RegistryError(f"{path}:{i}: key must be 32 bytes (64 hex digits)")
        elif secret is not None:
            key = derive_key(secret, dev)
        out[dev] = Device(
            dev,
            (r.get("name") or "").strip(),
            (r.get("district") or "").strip(),
            cat,
            (r.get("site") or "").strip(),
            key,
        )
    return out


def write_registry(path: str | Path, devices: list[Device], with_keys: bool = True) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["device", "name", "district", "category", "site", "key"])
        for d in devices:
            k = d.key.hex() if (with_keys and d.key) else ""
            w.writerow([d.device, d.name, d.district, d.category, d.site, k])


def load_plan(path: str | Path = PLAN_2020) -> list[PlanUnit]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise RegistryError(f"{path}: cannot read plan: {e.strerror}") from None
    rows = list(csv.DictReader(text.splitlines()))
    need = {"unit", "kind", "target"}
    if not rows or not need <= set(rows[0]):
        raise RegistryError(f"{path}: plan needs columns unit,kind,target")
    out = []
    for i, r in enumerate(rows, start=2):
        try:
            target = int(r["target"])
        except (TypeError, ValueError):
            raise RegistryError(f"{path}:{i}: target {r['target']!r} is not an integer") from None
        out.append(
            PlanUnit(
                r["unit"].strip(),
                (r.get("unit_zh") or "").strip(),
                r["kind"].strip(),
                (r.get("scope") or "").strip(),
                target,
            )
        )
    return out


def fleet_from_plan(
    plan: list[PlanUnit], secret: bytes, first_id: int = 100001, scale: float = 1.0
) -> list[Device]:
    """One Device per planned installation (target x scale per unit), ids consecutive from
    first_id, categories cycling through the unit's scope, keys derived from `secret`."""
    out = []
    dev = first_id
    for u in plan:
        cats = u.categories()
        n = max(1, round(u.target * scale)) if u.target else 0
        words = [w for w in u.unit.replace("'", "").split() if w != "City"]
        short = words[0] if words else "unit"
        for k in range(n):
            cat = cats[k % len(cats)]
            out.append(
                Device(
                    dev,
                    f"{short}-{k + 1:03d}",
                    u.unit,
                    cat,
                    f"{u.unit} {cat} site {k + 1}",
                    derive_key(secret, dev),
                )
            )
            dev += 1
    return out
