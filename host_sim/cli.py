"""Command line: `python -m host_sim run SCENARIO.toml --events OUT.jsonl --plot OUT.png`.

Exit status: 0 when the scenario ran (whatever the detector decided), 2 for bad input (a
malformed scenario, an unwritable output path, a bad option). User mistakes print one message
naming the file, line and key; never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from host_sim import kernel, report, simulate
from host_sim.scenario import ScenarioError, load

EXIT_OK = 0
EXIT_BAD_INPUT = 2

DESCRIPTION = """\
Electrical-fire detector simulator. Feeds scenario waveforms, through a 12-bit ADC model, to the
firmware's own detection modules (firmware/lib/efd, imported, never copied) at the firmware's
real sample rate, and reports the events the detector raises.

commands:
  run    simulate a scenario: event table + summary on stdout, optional JSONL and PNG
  check  only validate scenario files: every one, each reported (exit 2 if any is bad)

Scenario format, event fields and the conformance suite: docs/simulator.md.
Example:  python -m host_sim run host_sim/scenarios/demo.toml --events out/demo.jsonl \\
              --plot out/demo.png
"""

RUN_EPILOG = """\
event JSONL fields (one object per line):
  t          seconds from scenario start (end of the 100 ms window that raised it)
  kind       prealarm | alarm | clear | fault | fault_clear | reset | selftest | ror
  channel    residual | temp0..temp3 | phase0..phase2 | arc
  value      measured value (mA, degC, A, half-cycles/s; fault events: the fault code)
  threshold  the level the value was compared with, same units
  units      unit of value and threshold; fault events carry `fault` (open, short, ...) instead

exit status: 0 ran, 2 bad input.
"""


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m host_sim",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="simulate a scenario file",
        description="Simulate SCENARIO.toml through the firmware's detection code.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("scenario", metavar="SCENARIO.toml", help="scenario file (TOML)")
    run.add_argument("--events", metavar="OUT.jsonl", help="write every event as JSON lines")
    run.add_argument("--plot", metavar="OUT.png", help="write a PNG of signals and events")
    run.add_argument(
        "--kernel",
        choices=("numpy", "plain"),
        default="numpy",
        help="RMS accumulate kernel: numpy (default; host variant of the firmware kernel, "
        "proven equal by tests) or plain (efd.rms.accumulate itself, ~2x slower)",
    )
    run.add_argument(
        "--max-rows", type=int, default=100, metavar="N", help="event table rows (default 100)"
    )
    run.add_argument("--quiet", "-q", action="store_true", help="print only the summary line")
    run.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    check = sub.add_parser(
        "check",
        help="validate scenario files without running them",
        description="Load and check every scenario file given: `FILE: OK (...)` on stdout or "
        "its first mistake on stderr, for each. Exit status 0 when all are good, 2 if any is bad.",
    )
    check.add_argument("scenarios", nargs="+", metavar="SCENARIO.toml")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help()
        return EXIT_BAD_INPUT
    try:
        if args.command == "check":
            return _check(args.scenarios)
        return _run(args)
    except ScenarioError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # an output path we cannot write: the user's to fix
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _check(paths: list[str]) -> int:
    """Every file checked and reported, not only up to the first bad one."""
    bad = 0
    for path in paths:
        try:
            scn = load(path)
        except ScenarioError as e:
            print(f"error: {e}", file=sys.stderr)
            bad += 1
            continue
        print(f"{path}: OK ({scn.name}, {scn.duration_s:g} s)")
        _warn(scn.warnings, path)
    if bad and len(paths) > 1:
        print(f"{bad} of {len(paths)} scenario files are bad", file=sys.stderr)
    return EXIT_BAD_INPUT if bad else EXIT_OK


def _warn(warnings: list[str], path: str) -> None:
    for w in warnings:
        print(f"warning: {path}: {w}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    scn = load(args.scenario)
    _warn(scn.warnings, args.scenario)
    # Fail on unwritable outputs before a long run, not after it.
    outs = [Path(p) for p in (args.events, args.plot) if p]
    for p in outs:
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            with p.open("a"):
                pass
        except OSError as e:
            raise ScenarioError(str(p), f"cannot write: {e.strerror or e}") from None
    k = kernel.accumulate if args.kernel == "numpy" else None
    res = simulate.run(
        scn, trace=bool(args.plot), progress=not args.no_progress and sys.stderr.isatty(), kernel=k
    )
    if not args.quiet:
        print(f"{scn.name}: {scn.description}" if scn.description else scn.name)
        report.table(res.events, sys.stdout, args.max_rows)
    if args.events:
        report.write_jsonl(res.events, Path(args.events))
    if args.plot:
        from host_sim.plot import render  # matplotlib is slow to import: only when asked

        render(res, Path(args.plot))
    if res.dropped:
        print(f"warning: the core's event queue overwrote {res.dropped} events", file=sys.stderr)
    print(report.summary(res))
    for label, p in (("events", args.events), ("plot", args.plot)):
        if p:
            print(f"{label}: {p}")
    return EXIT_OK
