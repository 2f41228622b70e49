"""`make mutate`: mutation testing of the detection core and the wire codec with Cosmic Ray.

    python scripts/mutate.py                  # every module of both packages (docs/testing.md)
    python scripts/mutate.py --only ror.py    # modules whose path ends with this, to iterate
    python scripts/mutate.py --jobs 1         # one worker (default 2: this machine's cores)

Cosmic Ray (PyPI `cosmic-ray`, pinned in requirements-mutate.txt) writes each mutant into the
real source file and runs a test command, so the MicroPython differential tests, the mpy-cross
builds and the heap checks see the mutant exactly as CPython does. It never touches this
checkout: each worker mutates its own copy of the working tree under build/mutate/ (other
people run tests here meanwhile; an interrupted run leaves nothing mutated behind).

Each module runs with the tests selected for it below (TESTS): the whole suite takes minutes,
the selection seconds, and `-x` stops a run at the first failure. Hypothesis runs the `mutate`
profile (tests/conftest.py: derandomized, no example database, no shrinking), so a result is
the same on every run. A mutant counts as killed when the tests fail or time out. Equivalent
mutants (no test can tell them apart from the original: the behaviour is the same) are listed
in scripts/mutate_equivalents.toml with a one-line reason each; they are reported, and left
out of N in `mutation score: K/N killed (P %)`. Exit status 1 if a package scores below --min.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutate"
EQUIVALENTS = ROOT / "scripts" / "mutate_equivalents.toml"

PACKAGES = {"efd": "firmware/lib/efd", "protocol": "protocol"}

# Files of the two packages that are not mutated, and why (reported with every run).
EXCLUDED = {
    "firmware/lib/efd/__init__.py": "comments only",
    "protocol/__init__.py": "comments only",
    "protocol/gen_vectors.py": "writes protocol/vectors/vectors.json, a test input: "
    "the committed file is what the codec tests check (and --check keeps them equal)",
}

# The operators applied. Cosmic Ray's full set replaces every binary operator by every other
# one (3500 mutants here, mostly floats or TypeErrors any test kills); this keeps the mutants
# a wrong keystroke or a wrong idea makes: the neighbour of each arithmetic and bitwise
# operator, every comparison's off-by-one and negation, every number +1 and -1, and the
# boolean, unary, loop, exception and decorator operators.
OPERATORS = re.compile(
    r"core/(?:"
    r"ReplaceBinaryOperator_(?:Add_Sub|Sub_Add|Mul_FloorDiv|FloorDiv_Mul|Div_Mul|Mod_FloorDiv"
    r"|Pow_Mul|LShift_RShift|RShift_LShift|BitAnd_BitOr|BitOr_BitAnd|BitXor_BitOr)"
    r"|ReplaceComparisonOperator_(?:Eq_NotEq|NotEq_Eq|Lt_LtE|LtE_Lt|Gt_GtE|GtE_Gt"
    r"|Lt_GtE|LtE_Gt|Gt_LtE|GtE_Lt|Is_IsNot|IsNot_Is)"
    r"|ReplaceUnaryOperator_(?:USub_UAdd|Delete_USub|Delete_Invert|Delete_Not)"
    r"|NumberReplacer|AddNot|ReplaceTrueWithFalse|ReplaceFalseWithTrue|ReplaceAndWithOr"
    r"|ReplaceOrWithAnd|ReplaceBreakWithContinue|ReplaceContinueWithBreak|ExceptionReplacer"
    r"|RemoveDecorator|ZeroIterationForLoop)$"
)

# Tests per module, fastest and most telling first (`-x` stops at the first failure).
_RULES = ["tests/test_rules.py", "tests/test_threshold.py"]
_DETECTOR = [
    "tests/test_detector_rules.py",
    "tests/test_rules.py",
    "tests/test_detector_micropython.py",
    "tests/test_detector.py",
]
_P = "tests/protocol/"
_CODEC = [
    _P + "test_protocol_malformed.py",
    _P + "test_protocol_encoder.py",
    _P + "test_protocol_codec.py",
    _P + "test_protocol_auth.py",
    _P + "test_protocol_stream.py",
    _P + "test_protocol_micropython.py",
]
TESTS = {
    "firmware/lib/efd/compat.py": [
        "tests/test_rms.py",
        "tests/test_config.py",
        "tests/test_detector_micropython.py",
    ],
    "firmware/lib/efd/config.py": [
        "tests/test_config.py",
        _P + "test_param_ids.py",
        "tests/test_detector_rules.py",
        _P + "test_protocol_codec.py",
    ],
    "firmware/lib/efd/detector.py": _DETECTOR,
    "firmware/lib/efd/events.py": [
        _P + "test_spec_codes.py",
        "tests/test_rules.py",
        "tests/test_detector_rules.py",
        "tests/test_threshold.py",
    ],
    "firmware/lib/efd/faults.py": ["tests/test_detector_rules.py", *_RULES],
    "firmware/lib/efd/names.py": [_P + "test_spec_codes.py", "tests/test_detector_rules.py"],
    "firmware/lib/efd/ntc.py": ["tests/test_ntc.py", "tests/test_detector_rules.py"],
    "firmware/lib/efd/ntc_table.py": ["tests/test_ntc.py", "tests/test_detector_rules.py"],
    "firmware/lib/efd/rms.py": [
        "tests/test_rms.py",
        "tests/test_detector_rules.py",
        "tests/test_sim_kernel.py",
        "tests/test_detector_micropython.py",
    ],
    "firmware/lib/efd/ror.py": ["tests/test_rules.py", "tests/test_detector_rules.py"],
    "firmware/lib/efd/threshold.py": [*_RULES, "tests/test_detector_rules.py"],
    "firmware/lib/efd/ticks.py": [*_RULES, "tests/test_detector_rules.py"],
    "protocol/auth.py": [_P + "test_protocol_auth.py", *_CODEC],
    "protocol/cobs.py": _CODEC,
    "protocol/crc.py": [_P + "test_protocol_codec.py", *_CODEC],
    "protocol/frame.py": _CODEC,
    "protocol/host.py": [
        _P + "test_spec_codes.py",
        _P + "test_host_presentation.py",
        _P + "test_physical.py",
        *_CODEC[:4],
        _P + "test_protocol_encoder.py",
        _P + "test_param_ids.py",
        _P + "test_host_settings.py",
        "tests/gateway/test_settings_check.py",
        _P + "test_protocol_decode_cli.py",
        "tests/test_host_cli_decode_sim.py",
        _P + "test_protocol_micropython.py",
        "tests/gateway/test_units.py",
    ],
    "protocol/messages.py": [_P + "test_spec_codes.py", *_CODEC],
    "protocol/session.py": [
        _P + "test_protocol_auth.py",
        _P + "test_protocol_malformed.py",
        _P + "test_protocol_stream.py",
    ],
    "protocol/stream.py": [_P + "test_protocol_malformed.py", _P + "test_protocol_stream.py"],
}


@dataclass
class Mutant:
    module: str
    line: int
    operator: str
    definition: str
    outcome: str  # killed | survived | timeout | incompetent
    removed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)

    def where(self) -> str:
        return f"{self.module}:{self.line} {self.operator.removeprefix('core/')}"


def package_of(module: str) -> str:
    return next(p for p, d in PACKAGES.items() if module.startswith(d + "/"))


def modules() -> list[str]:
    out = []
    for d in PACKAGES.values():
        for p in sorted((ROOT / d).glob("*.py")):
            rel = p.relative_to(ROOT).as_posix()
            if rel not in EXCLUDED:
                out.append(rel)
    missing = [m for m in out if m not in TESTS]
    if missing:
        sys.exit(f"scripts/mutate.py: no tests selected for {missing}: add them to TESTS")
    return out


def copy_tree(dst: Path) -> None:
    """The working tree as it is (tracked and new files, not ignored ones) into dst."""
    if dst.exists():
        shutil.rmtree(dst)
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for f in files:
        if not f:
            continue
        src = ROOT / os.fsdecode(f)
        if src.is_file():
            (dst / os.fsdecode(f)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / os.fsdecode(f))


def test_command(tests: list[str]) -> list[str]:
    tests = list(dict.fromkeys(tests))  # each file once, first place kept
    return [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-q",
        "--no-header",
        "-p",
        "no:cacheprovider",
        "--hypothesis-profile=mutate",
        *[t for t in tests if (ROOT / t).exists()],
    ]


def env_for(copy: Path, write_bytecode: bool = False) -> dict[str, str]:
    # The venv's efd-repo.pth points at this checkout: the copy's modules must come first,
    # in pytest and in any subprocess a test starts.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(copy / "firmware" / "lib"), str(copy)])
    # Bytecode, and pytest's assertion-rewritten modules (all of Hypothesis: 0.5 s a run),
    # are cached under build/mutate/ by the baseline runs only. Mutant runs read that cache
    # and never write it (Cosmic Ray sets PYTHONDONTWRITEBYTECODE): a mutated module never
    # matches its cached source stamp, so it is always compiled from the mutated text.
    env["PYTHONPYCACHEPREFIX"] = str(WORK / "pycache")
    if write_bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("CI", None)  # the mutate profile, not Hypothesis' ci profile
    return env


def baseline(copy: Path, tests: list[str]) -> float:
    env = env_for(copy, write_bytecode=True)
    t0 = time.monotonic()
    proc = subprocess.run(test_command(tests), cwd=copy, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout[-4000:] + proc.stderr[-2000:])
        sys.exit(f"scripts/mutate.py: the tests fail without any mutant: {' '.join(tests)}")
    return time.monotonic() - t0


def run_module(copy: Path, module: str, timeout: float, log) -> list[Mutant]:
    """One Cosmic Ray session: init, keep OPERATORS, exec; the outcome of every mutant."""
    from cosmic_ray.commands import init
    from cosmic_ray.config import load_config, serialize_config
    from cosmic_ray.modules import find_modules
    from cosmic_ray.work_db import WorkDB, use_db

    name = module.replace("/", ".")
    sessions = WORK / "sessions"  # kept after the run: `cr-report build/mutate/sessions/...`
    sessions.mkdir(parents=True, exist_ok=True)
    cfg_path = sessions / f"{name}.toml"
    session = sessions / f"{name}.sqlite"
    cfg = {
        "module-path": str(copy / module),
        "timeout": timeout,
        "excluded-modules": [],
        "test-command": " ".join(test_command(TESTS[module])),
        "distributor": {"name": "local"},
    }
    cfg_path.write_text(serialize_config(cfg))
    session.unlink(missing_ok=True)
    with use_db(str(session)) as db:
        init(find_modules([copy / module]), db, load_config(str(cfg_path)).operators_config)
        items = [w for w in db.work_items if OPERATORS.match(w.mutations[0].operator_name)]
        db.clear()
        db.add_work_items(items)
    log(f"{module}: {len(items)} mutants")
    subprocess.run(
        [str(Path(sys.executable).parent / "cosmic-ray"), "exec", str(cfg_path), str(session)],
        cwd=copy,
        env=env_for(copy),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    out = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            m = item.mutations[0]
            if result.worker_outcome == "no-test":
                continue
            if result.test_outcome == "survived":
                outcome = "survived"
            elif result.output == "timeout":
                outcome = "timeout"
            elif result.test_outcome == "incompetent":
                outcome = "incompetent"
            else:
                outcome = "killed"
            diff = (result.diff or "").splitlines()
            out.append(
                Mutant(
                    module=module,
                    line=m.start_pos[0],
                    operator=m.operator_name,
                    definition=m.definition_name or "",
                    outcome=outcome,
                    removed=[d[1:].strip() for d in diff if d[:1] == "-" and d[:3] != "---"],
                    added=[d[1:].strip() for d in diff if d[:1] == "+" and d[:3] != "+++"],
                )
            )
    return sorted(out, key=lambda x: (x.line, x.operator))


def load_equivalents() -> list[dict]:
    data = tomllib.loads(EQUIVALENTS.read_text())
    return data.get("equivalent", [])


def is_equivalent(m: Mutant, eq: dict) -> bool:
    return (
        m.module == eq["file"]
        and m.operator.removeprefix("core/") == eq["operator"]
        and " / ".join(m.removed) == eq["line"]
        and " / ".join(m.added) == eq["mutant"]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=[], help="modules whose path ends with these")
    ap.add_argument("--jobs", type=int, default=2, help="workers, each in its own copy")
    ap.add_argument("--min", type=float, default=90.0, help="lowest score per package, in %%")
    args = ap.parse_args(argv)

    todo = [m for m in modules() if not args.only or any(m.endswith(o) for o in args.only)]
    if not todo:
        sys.exit(f"scripts/mutate.py: no module matches {args.only}")
    t_start = time.monotonic()
    lock = threading.Lock()

    def log(msg: str) -> None:
        with lock:
            print(f"[{time.monotonic() - t_start:6.0f} s] {msg}", flush=True)

    jobs = max(1, min(args.jobs, len(todo)))
    copies = [WORK / f"w{k}" for k in range(jobs)]
    every_test = sorted({t for m in todo for t in TESTS[m] if (ROOT / t).exists()})
    for c in copies:
        copy_tree(c)
        # Fill the bytecode cache of this copy's test files and modules (see env_for).
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "--collect-only",
                "-p",
                "no:cacheprovider",
                *every_test,
            ],
            cwd=c,
            env=env_for(c, write_bytecode=True),
            capture_output=True,
        )
    log(f"{len(todo)} modules, {jobs} workers, copies in {WORK.relative_to(ROOT)}/")

    # Baselines (also the per-module timeouts): every distinct selection once, unmutated.
    selections = sorted({tuple(TESTS[m]) for m in todo}, key=len)
    base: dict[tuple[str, ...], float] = {}
    for sel in selections:
        base[sel] = baseline(copies[0], list(sel))
        names = dict.fromkeys(Path(t).name for t in sel)
        log(f"baseline {base[sel]:5.1f} s: {' '.join(names)}")

    # Longest sessions first, so that the workers finish together.
    work: queue.Queue[str] = queue.Queue()
    for m in sorted(todo, key=lambda m: -base[tuple(TESTS[m])] * (ROOT / m).stat().st_size):
        work.put(m)
    results: dict[str, list[Mutant]] = {}
    errors: list[BaseException] = []

    def worker(copy: Path) -> None:
        while True:
            try:
                m = work.get_nowait()
            except queue.Empty:
                return
            try:
                t0 = time.monotonic()
                timeout = 2 * base[tuple(TESTS[m])] + 10
                res = run_module(copy, m, timeout, log)
                results[m] = res
                n_s = sum(1 for x in res if x.outcome == "survived")
                log(f"{m}: {len(res)} mutants, {n_s} survived, {time.monotonic() - t0:.0f} s")
            except BaseException as e:  # report it after the others finish
                errors.append(e)
                return

    threads = [threading.Thread(target=worker, args=(c,)) for c in copies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]

    equivalents = load_equivalents()
    used: set[int] = set()
    report = {"packages": {}, "seconds": round(time.monotonic() - t_start)}
    status = 0
    total_k = total_n = 0
    print()
    for pkg in PACKAGES:
        mods = [m for m in todo if package_of(m) == pkg]
        if not mods:
            continue
        mutants = [x for m in mods for x in results[m]]
        survivors, equiv = [], []
        for x in mutants:
            if x.outcome != "survived":
                continue
            hit = next((i for i, e in enumerate(equivalents) if is_equivalent(x, e)), None)
            if hit is None:
                survivors.append(x)
            else:
                used.add(hit)
                equiv.append((x, equivalents[hit]["reason"]))
        # A mutant Cosmic Ray could not test (its worker failed) is neither killed nor
        # survived: reported, and left out of N like the equivalent ones.
        untested = [x for x in mutants if x.outcome == "incompetent"]
        n = len(mutants) - len(equiv) - len(untested)
        k = n - len(survivors)
        pct = 100.0 * k / n if n else 100.0
        total_k += k
        total_n += n
        print(f"== {pkg} ({PACKAGES[pkg]}/): {len(mutants)} mutants in {len(mods)} modules")
        counts = {o: sum(1 for x in mutants if x.outcome == o) for o in ("killed", "timeout")}
        print(f"   killed {counts['killed']}, timed out {counts['timeout']} (killed too)")
        for x in untested:
            print(f"   not tested (Cosmic Ray's worker failed): {x.where()}")
        excluded = {f: r for f, r in EXCLUDED.items() if package_of(f) == pkg}
        for f, r in excluded.items():
            print(f"   not mutated: {f}: {r}")
        print(f"survived ({len(survivors)}):")
        for x in survivors:
            print(f"  {x.where()}  [{x.definition}]")
            for r in x.removed:
                print(f"      - {r}")
            for a in x.added:
                print(f"      + {a}")
        print(f"equivalent, not counted ({len(equiv)}):")
        for x, reason in equiv:
            print(f"  {x.where()}: {' / '.join(x.added)}  -- {reason}")
        print(f"{pkg}: mutation score: {k}/{n} killed ({pct:.1f} %)")
        print()
        if pct < args.min:
            status = 1
        report["packages"][pkg] = {
            "mutants": len(mutants),
            "killed": k,
            "n": n,
            "score_pct": round(pct, 1),
            "survived": [x.__dict__ for x in survivors],
            "equivalent": [dict(x.__dict__, reason=r) for x, r in equiv],
        }
    if not args.only:
        stale = [e for i, e in enumerate(equivalents) if i not in used]
        for e in stale:
            print(f"note: equivalent entry matched no survivor: {e['file']}: {e['mutant']}")
    (WORK / "report.json").write_text(json.dumps(report, indent=1))
    elapsed = time.monotonic() - t_start
    print(f"{elapsed / 60:.1f} min; report: {(WORK / 'report.json').relative_to(ROOT)}")
    pct = 100.0 * total_k / total_n if total_n else 100.0
    print(f"mutation score: {total_k}/{total_n} killed ({pct:.1f} %)")
    return status


if __name__ == "__main__":
    sys.exit(main())
