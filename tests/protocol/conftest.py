import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "protocol" / "vectors" / "vectors.json"


@pytest.fixture(scope="session")
def vectors():
    return json.loads(VECTORS.read_text())


@pytest.fixture(scope="session")
def mpy_lib(tmp_path_factory):
    """protocol/ and the efd modules it imports, compiled with mpy-cross, as on the detector:
    importing .py source would spend the small heap on the compiler, not on the codec."""
    import shutil
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("mpylib")
    cross = str(Path(sys.executable).parent / "mpy-cross")
    if not Path(cross).exists():
        cross = shutil.which("mpy-cross") or "mpy-cross"
    jobs = [(p, out / "protocol") for p in (ROOT / "protocol").glob("*.py")]
    jobs += [
        (ROOT / "firmware/lib/efd" / n, out / "efd")
        for n in ("compat.py", "events.py", "config.py", "names.py")
    ]
    (out / "efd").mkdir()
    (out / "protocol").mkdir()
    (out / "efd" / "__init__.py").write_text("")
    for src, dst in jobs:
        if src.name == "gen_vectors.py":
            continue
        target = dst / (src.stem + ".mpy")
        subprocess.run([cross, "-o", str(target), str(src)], check=True, timeout=60)
    return out
