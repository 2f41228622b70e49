"""Per-unit calibration at the bench: measure a known reference current, set the CT gains.

    python -m tools.calibrate LINK --device ID --key-file KEY [--ref-ma 300] [--ref-a 10]
                              [--phase 0] [--ambient-c 23.5]
    make calibrate PORT=LINK DEVICE=0x.. KEY_FILE=key.hex [REF_MA=300] [REF_A=10] [AMBIENT_C=..]

Pass a known reference current through the residual CT (REF_MA, mA RMS, e.g. from a calibrator
or a resistor from a mains-frequency source) and through one phase CT (REF_A, A RMS; --phase picks
which, default phase 0: the three phase inputs share one gain, phase_gain_q12). The tool then,
over the protocol link (LINK: the RS-485 adapter or the virtual device's link pty):

  1. reads the detector's settings (get_config) and several TELEMETRY readings (POLL);
  2. refuses a reading that is clearly not the reference, saying why: no current, the reference
     on another CT, a reading more than 30 % off (no unit is that far off: a wrong reference,
     wrong CT or wrong turns count), an unsteady reading, a fault reported by the detector;
  3. computes the Q12 gains (new = old x reference / reading), checks them as the detector will
     (ranges and the cross-field rules: a set value beyond the new full scale is refused here,
     naming both settings), writes them with the authenticated set_config command;
  4. reads them back (get_config) and measures again: every calibrated input must then read its
     reference within 1 % + 1 digit (1 mA residual, 0.01 A phase).

With --ambient-c (the room's temperature from a reference thermometer) each enabled temperature
channel must read it within 3 degC (the probes lie on the bench at room temperature). The NTC
inputs have no per-unit gain: they are ratiometric to the CT bias (docs/hardware.md), so a probe
off by more than its class is a bad probe, refused, not calibrated away. The CT offsets need no
calibration either: the window mean removes them exactly (efd/rms.py).

Exit status: 0 calibrated and verified, 1 verification failed or no answer, 2 refused (nothing
written). Nothing is written before every check has passed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import serial

from efd import fullscale
from protocol import host
from protocol.host import parse_key
from tools.monitor import COMMAND_TIMEOUT_S, HostLink, device_config

MAX_ERROR = 0.30  # a reading this far off the reference is not a unit to calibrate
STEADY = 0.02  # readings may spread this fraction (+ 2 digits) of the reference
AMBIENT_TOL_C = 3.0
READINGS = 5
NO_CURRENT = 0.1  # below this fraction of the reference: no current through that CT


class Refused(Exception):
    """A reading or a request that is not a calibration: nothing was written."""


def tolerance(ref: int) -> int:
    """The calibrated reading's allowed error around ref, in the wire's digits (mA for the
    residual, 0.01 A for the phases): 1 % of the reference + 1 digit."""
    return ref // 100 + 1


def within(reading: float, ref: int) -> bool:
    return abs(reading - ref) <= tolerance(ref)


def new_gain(old: int, ref: int, reading: float) -> int:
    """The Q12 gain that makes `reading` (at gain `old`) read `ref`."""
    return round(old * ref / reading)


def check_request(ref_ma: int, ref_ca: int, cfg: dict) -> None:
    """The references must lie well inside the inputs' ranges at the current gains: above 5 %
    of full scale (resolution: 0.2 % of the reading or better) and below 90 % of it (no
    clipping with a gain error)."""
    fs = fullscale.full_scale(cfg["res_gain_q12"])
    if not fs // 20 <= ref_ma <= fs * 9 // 10:
        raise Refused(
            f"--ref-ma {ref_ma}: use a reference of {fs // 20}..{fs * 9 // 10} mA "
            f"(5..90 % of the residual input's full scale, {fs} mA)"
        )
    fs = fullscale.full_scale(cfg["phase_gain_q12"])
    if not fs // 20 <= ref_ca <= fs * 9 // 10:
        raise Refused(
            f"--ref-a {ref_ca / 100:g}: use a reference of {fs // 20 / 100:g}.."
            f"{fs * 9 // 10 / 100:g} A (5..90 % of the phase inputs' full scale, {fs / 100:g} A)"
        )


def measure(link: HostLink, n: int) -> list[dict]:
    """n TELEMETRY readings, each asked for by a POLL (the first one after the request is
    dropped: it may be older than the reference current)."""
    out: list[dict] = []
    end = time.monotonic() + 4.0 + 1.5 * n
    skip = True
    while len(out) < n:
        if time.monotonic() > end:
            raise Refused(f"only {len(out)} of {n} readings came: {link.silence_hint()}")
        link.poll()
        for d in link.pump(0.3):
            if d["type"] == "telemetry":
                if skip:
                    skip = False
                else:
                    out.append(d)
    return out


def _mean(xs: list[int]) -> float:
    return sum(xs) / len(xs)


def check_readings(
    readings: list[dict], ref_ma: int, ref_ca: int, phase: int, ambient_dc: int | None, cfg: dict
) -> tuple[float, float]:
    """(mean residual mA, mean phase 0.01 A) of readings that are the reference; Refused
    with the reason otherwise."""
    for d in readings:
        faults = [f for f in host.status_flags(d["status"]) if f == "fault"]
        if faults:
            raise Refused(
                "the detector reports a fault (is every CT and probe connected?): "
                "clear it before calibrating"
            )
    res = [d["residual_ma"] for d in readings]
    lines = [[d["line_ca"][i] for d in readings] for i in range(3)]
    if any(v is None for v in res):
        raise Refused("the residual input gives no reading (disabled or faulty)")
    r = _mean(res)
    if r < ref_ma * NO_CURRENT:
        where = [
            i
            for i in range(cfg["phase_channels"])
            if None not in lines[i] and _mean(lines[i]) * 10 >= ref_ma * 0.5
        ]
        hint = (
            f"; phase {where[0]} carries about {_mean(lines[where[0]]) / 100:g} A: is the "
            "reference through that CT instead?"
            if where
            else ""
        )
        raise Refused(
            f"no current on the residual CT: it reads {r:.0f} mA, the reference is {ref_ma} mA "
            f"(is the reference current through the residual CT, and switched on?){hint}"
        )
    _check_one("residual CT", r, ref_ma, res, "mA", 1)
    if phase >= cfg["phase_channels"]:
        raise Refused(
            f"--phase {phase}: the detector has {cfg['phase_channels']} phase channel(s) enabled"
        )
    p = lines[phase]
    if None in p:
        raise Refused(f"phase {phase} gives no reading (disabled or faulty)")
    pm = _mean(p)
    if pm < ref_ca * NO_CURRENT:
        other = [
            i
            for i in range(cfg["phase_channels"])
            if i != phase and None not in lines[i] and _mean(lines[i]) >= ref_ca * (1 - MAX_ERROR)
        ]
        hint = (
            f"; phase {other[0]} reads {_mean(lines[other[0]]) / 100:g} A: wrong CT?"
            if other
            else ""
        )
        raise Refused(
            f"no current on phase CT {phase}: it reads {pm / 100:g} A, the reference is "
            f"{ref_ca / 100:g} A{hint}"
        )
    _check_one(f"phase CT {phase}", pm, ref_ca, p, "A", 100)
    if ambient_dc is not None:
        for i in range(cfg["temp_channels"]):
            t = [d["temp_dc"][i] for d in readings]
            if None in t:
                raise Refused(f"temperature channel {i} gives no reading (probe missing?)")
            if abs(_mean(t) - ambient_dc) > AMBIENT_TOL_C * 10:
                raise Refused(
                    f"temperature channel {i} reads {_mean(t) / 10:.1f} degC, the ambient is "
                    f"{ambient_dc / 10:.1f} degC (more than {AMBIENT_TOL_C:g} degC off: a bad "
                    "probe, or not at room temperature; the NTC inputs are not calibrated)"
                )
    return r, pm


def _check_one(what: str, mean: float, ref: int, xs: list[int], unit: str, div: int) -> None:
    if abs(mean / ref - 1) > MAX_ERROR:
        raise Refused(
            f"{what} reads {mean / div:g} {unit}, the reference is {ref / div:g} {unit}: "
            f"{100 * (mean / ref - 1):+.0f} %, more than {100 * MAX_ERROR:.0f} % off, which no "
            "unit's tolerance explains: a wrong reference value, the wrong CT, or the "
            "conductor through it more than once?"
        )
    if max(xs) - min(xs) > ref * STEADY + 2:
        raise Refused(
            f"{what}: readings spread {min(xs) / div:g}..{max(xs) / div:g} {unit}: the "
            "reference is not steady"
        )


def calibrate(
    link: HostLink,
    ref_ma: int,
    ref_ca: int,
    phase: int = 0,
    ambient_dc: int | None = None,
    n: int = READINGS,
    log=print,
) -> dict:
    """The whole procedure; returns the report (a dict). Raises Refused before writing."""
    # Heard first (a POLL is answered at once, SPEC.md §9): a detector still booting would
    # take the first command as lost and its retries as duplicates.
    end = time.monotonic() + 15.0
    while not any(d["type"] == "telemetry" for d in link.frames):
        if time.monotonic() > end:
            raise RuntimeError(f"the detector does not answer: {link.silence_hint()}")
        link.poll()
        link.pump(0.3)
    cfg = device_config(link)
    if cfg is None:
        raise RuntimeError(f"no CONFIG from the detector: {link.silence_hint()}")
    check_request(ref_ma, ref_ca, cfg)
    before = measure(link, n)
    r, pm = check_readings(before, ref_ma, ref_ca, phase, ambient_dc, cfg)
    gains = {
        "res_gain_q12": new_gain(cfg["res_gain_q12"], ref_ma, r),
        "phase_gain_q12": new_gain(cfg["phase_gain_q12"], ref_ca, pm),
    }
    params = [[k, v] for k, v in gains.items()]
    try:
        host.check_settings(params)
        host.check_combination(params, cfg)
    except ValueError as e:
        raise Refused(f"the new gains would not be accepted: {e}") from None
    log(
        f"measured: residual {r:.1f} mA (reference {ref_ma}), phase {phase} {pm / 100:.2f} A "
        f"(reference {ref_ca / 100:g}); gains {cfg['res_gain_q12']} -> {gains['res_gain_q12']}, "
        f"{cfg['phase_gain_q12']} -> {gains['phase_gain_q12']}"
    )
    res = link.command({"cmd": "set_config", "params": params}, timeout=COMMAND_TIMEOUT_S)
    if res is None or res["status"] != "ok":
        why = "no answer" if res is None else f"{res['status']} {res.get('param', '')}".strip()
        raise RuntimeError(f"set_config refused by the detector: {why}")
    link.frames.clear()
    back = device_config(link)
    if back is None or any(back.get(k) != v for k, v in gains.items()):
        raise RuntimeError(f"read back {back and {k: back.get(k) for k in gains}}, wrote {gains}")
    after = measure(link, n)
    ra = _mean([d["residual_ma"] for d in after])
    pa = _mean([d["line_ca"][phase] for d in after])
    report = {
        "ref_ma": ref_ma,
        "ref_a": ref_ca / 100,
        "phase": phase,
        "before": {"residual_ma": round(r, 1), "line_a": round(pm / 100, 3)},
        "gains_before": {k: cfg[k] for k in gains},
        "gains": gains,
        "after": {"residual_ma": round(ra, 1), "line_a": round(pa / 100, 3)},
        "tolerance": {"residual_ma": tolerance(ref_ma), "line_a": tolerance(ref_ca) / 100},
        "ok": within(ra, ref_ma) and within(pa, ref_ca),
    }
    return report


def _device_id(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a device id, e.g. 0x12345678") from None


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(
        prog="python -m tools.calibrate",
        description=doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(doc.split("\n\n")[1:]),
    )
    ap.add_argument("port", help="the detector's protocol link (RS-485 adapter or link pty)")
    ap.add_argument("--device", required=True, type=_device_id, help="device id (0x hex)")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--key", help="device key, 64 hex digits")
    g.add_argument("--key-file", help="file holding the key as 64 hex digits")
    ap.add_argument("--ref-ma", type=int, default=300, help="residual reference, mA RMS (300)")
    ap.add_argument("--ref-a", type=float, default=10.0, help="phase reference, A RMS (10)")
    ap.add_argument("--phase", type=int, default=0, choices=(0, 1, 2), help="phase CT (0)")
    ap.add_argument("--ambient-c", type=float, help="room temperature, degC (checks the NTCs)")
    ap.add_argument("--readings", type=int, default=READINGS, help="readings averaged (5)")
    ap.add_argument(
        "--state",
        type=Path,
        default=Path.home() / ".efd-monitor.json",
        metavar="FILE",
        help="the downlink counter, shared with tools.monitor (default: %(default)s)",
    )
    a = ap.parse_args(argv)
    if not 2 <= a.readings <= 50:
        ap.error("--readings: 2..50")
    if a.ambient_c is not None and not -20 <= a.ambient_c <= 60:
        ap.error("--ambient-c: a room temperature, -20..60 degC")
    try:
        key = parse_key(a.key if a.key else Path(a.key_file).read_text())
    except OSError as e:
        print(f"error: key file {a.key_file}: {e.strerror or e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        link = HostLink(a.port, a.device, key, a.state)
    except (ValueError, OSError, serial.SerialException) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    link.ack_events = True
    ambient = None if a.ambient_c is None else round(a.ambient_c * 10)
    try:
        rep = calibrate(
            link,
            a.ref_ma,
            round(a.ref_a * 100),
            a.phase,
            ambient,
            a.readings,
            log=lambda s: print(s, file=sys.stderr),
        )
    except Refused as e:
        print(f"refused: {e} (nothing written)", file=sys.stderr)
        return 2
    except (RuntimeError, serial.SerialException) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(rep))
    if not rep["ok"]:
        print(
            "error: after calibration the unit is not within 1 % + 1 digit of the references",
            file=sys.stderr,
        )
        return 1
    print(
        f"calibrated: residual {rep['after']['residual_ma']} mA, phase {rep['phase']} "
        f"{rep['after']['line_a']} A (within 1 % + 1 digit)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
