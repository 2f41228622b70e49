"""Board twin CLI: run a host_sim scenario through the ESP32 firmware image on the twin.

    python -m tools.twin run SCENARIO.toml [--events OUT.jsonl] [--vref-mv 1000..1200]
                             [--cpu-mhz 160|240] [--adc-read-us US] [--poll-ms MS] [--json]

Prints the events (same table and JSONL fields as `python -m host_sim run`, times from the
scenario start) and the board's own figures: CPU clock, ADC read cost, achieved sample rate and
window length, late samples, loop time and watchdog margin, flash erases, RS-485 reply latency.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from host_sim import report
from host_sim.scenario import ScenarioError, load

FIGURE_LABELS = {
    "result": "run ended (end: scenario over; repl: stopped)",
    "boots": "boots",
    "reset_causes": "reset causes (1 power-on, 2 hard, 3 watchdog, 5 soft)",
    "period": "sample period (us)",
    "cpu_mhz": "CPU clock (MHz)",
    "read_us": "ADC read cost measured at boot (us)",
    "sample_rate_hz": "achieved sample rate (Hz)",
    "window_ms": "window length, mean (ms)",
    "window_ms_max": "window length, max (ms)",
    "late": "late samples, last window",
    "late_total": "late samples, whole run",
    "loop_ms_max": "loop time, max (ms)",
    "watchdog_margin_ms": "watchdog margin, min (ms)",
    "watchdog_resets": "watchdog resets",
    "flash_erases": "flash block erases",
    "replies": "RS-485 replies to POLL",
    "reply_ms_p50": "POLL -> reply p50 (ms)",
    "reply_ms_p99": "POLL -> reply p99 (ms)",
    "reply_ms_max": "POLL -> reply max (ms)",
    "ack_replies": "RS-485 replies to ACK",
    "ack_reply_ms_p50": "ACK -> reply p50 (ms)",
    "ack_reply_ms_p99": "ACK -> reply p99 (ms)",
    "ack_reply_ms_max": "ACK -> reply max (ms)",
    "de_high_pct": "RS-485 driver enabled (% of time)",
    "speed_x_realtime": "speed (simulated s per wall s, the twin alone)",
    "wall_s": "wall time with image build and render (s)",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.twin", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a scenario through the twin")
    r.add_argument("scenario", type=Path, help="a host_sim scenario (TOML)")
    r.add_argument("--events", type=Path, help="write the events as JSONL (host_sim's fields)")
    r.add_argument(
        "--vref-mv", type=int, default=1100, help="the chip's ADC reference, 1000-1200 (1100)"
    )
    r.add_argument(
        "--cpu-mhz",
        type=int,
        choices=(80, 160, 240),
        help="pin the CPU clock (the firmware's machine.freq() request is then ignored)",
    )
    r.add_argument(
        "--adc-read-us",
        type=int,
        help="interpreter cost of one ADC read at 160 MHz, us (85; the driver adds 10)",
    )
    r.add_argument("--poll-ms", type=int, default=0, help="poll the detector on RS-485 every MS")
    r.add_argument("--workdir", type=Path, help="keep the run's files here (default: a temp dir)")
    r.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = ap.parse_args(argv)
    if not 900 <= a.vref_mv <= 1300:
        ap.error("--vref-mv: the ESP32's reference is 1000-1200 mV (900-1300 accepted)")
    from tools.twin import run as tr

    try:
        scn = load(a.scenario)
    except ScenarioError as e:
        print(e, file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{a.scenario}: {e.strerror}", file=sys.stderr)
        return 2
    opts = tr.Options(vref_mv=a.vref_mv, adc_read_us=a.adc_read_us, poll_ms=a.poll_ms)
    if a.cpu_mhz:
        opts.cpu_mhz = a.cpu_mhz
        opts.params["pin_cpu"] = True
    print(f"twin: {scn.name}: {scn.duration_s:g} s on the virtual clock ...", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        res = tr.run(scn, opts, a.workdir)
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    wall = time.perf_counter() - t0
    figs = tr.figures(res)
    figs["speed_x_realtime"] = round(scn.duration_s / max(res.launch_s, 1e-6), 1)
    figs["wall_s"] = round(wall, 1)
    if a.events:
        a.events.parent.mkdir(parents=True, exist_ok=True)
        report.write_jsonl(res.events, a.events)
    if a.json:
        print(json.dumps(figs, indent=1))
        return 0
    report.table(res.events, sys.stdout)
    print()
    print("board figures:")
    for k, v in figs.items():
        print(f"  {FIGURE_LABELS.get(k, k):48} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
