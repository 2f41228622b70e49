"""A host_sim scenario as the analog voltages at the board's input pins (the twin's inputs file).

The front end is the reference board's (docs/hardware.md): a CT signal rides on its bias so that
one ADC count of an *ideal* 12-bit converter over 0-3.3 V equals the channel's units per count
(host_sim.adc); here it stays a voltage, and the twin's ADC model turns it into the chip's raw
code. NTC inputs are their divider's pin voltage (host_sim.adc.ntc_code, same wiring as the
firmware's table). Format: tools/twin/board/inputs.py.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np

from host_sim import adc
from host_sim.scenario import CtSegment, Scenario
from host_sim.synth import AMBIENT_C, CT_INPUTS, Synth, ct_rail, cycle, level_at, ntc_rail, temp_at

SLICE_US = 100_000  # amplitude steps of 100 ms: one window; phase stays continuous
SHAPE_POINTS = 1000  # points per mains cycle: 20 us at 50 Hz, phase error < 0.4 deg at 1 kHz
UV_PER_CODE = 3_300_000 / adc.ADC_MAX  # ideal converter: code = V / 3.3 V * 4095
REC = struct.Struct("<" + "HiiI" * 4 + "IIIIIH")


def render(scn: Scenario, path: Path) -> dict:
    """Write the inputs file for `scn`; returns its header."""
    syn = Synth(scn)
    n = max(1, math.ceil(scn.duration_s * 1e6 / SLICE_US - 1e-9))
    shapes: list[np.ndarray] = [np.zeros(SHAPE_POINTS)]
    shape_of: dict[int, int] = {}
    for segs in syn.segs.values():
        for s in segs:
            shape_of[id(s)] = len(shapes)
            shapes.append(cycle(s.harmonics, SHAPE_POINTS))
    t = (np.arange(n) * SLICE_US + SLICE_US / 2) / 1e6  # slice midpoints, s
    bias_uv = scn.adc.bias * UV_PER_CODE
    adc_noise_uv = scn.adc.noise_counts * UV_PER_CODE
    cols: list[list[np.ndarray]] = []
    for name in CT_INPUTS:
        upc = syn.upc[name]
        shp = np.zeros(n, dtype=np.int64)
        amp = np.zeros(n)
        bias = np.full(n, bias_uv)
        noise = np.full(n, adc_noise_uv)
        seg: CtSegment
        for seg in syn.segs[name]:
            m = (t >= seg.t0) & (t < seg.t1)
            shp[m] = shape_of[id(seg)]
            amp[m] = level_at(seg, t[m]) / upc * UV_PER_CODE
            if seg.noise:
                noise[m] = np.hypot(adc_noise_uv, seg.noise / upc * UV_PER_CODE)
        for f in scn.fault:
            if f.sensor == name:
                m = (t >= f.t0) & (t < f.t1)
                amp[m] = 0
                noise[m] = 0
                bias[m] = ct_rail(f.kind) * UV_PER_CODE
        cols.append([shp, np.rint(amp), np.rint(bias), np.rint(noise)])
    temps = np.full((n, 4), AMBIENT_C)
    for ts in scn.temperature:
        m = (t >= ts.t0) & (t < ts.t1)
        temps[m, ts.channel] = temp_at(ts, t[m])
    ntc_uv = adc.ntc_code(temps) * UV_PER_CODE
    for f in scn.fault:
        if f.sensor.startswith("temp"):
            m = (t >= f.t0) & (t < f.t1)
            ntc_uv[m, int(f.sensor[4:])] = ntc_rail(f.kind) * UV_PER_CODE
    # Arc: per-second counts (host_sim), spread over the ten slices of each second.
    per_s = syn.arc_counts()
    arc_n = np.zeros(n, dtype=np.int64)
    for j, cnt in enumerate(per_s):
        for k in range(10):
            sl = j * 10 + k
            if sl < n:
                arc_n[sl] = (cnt * (k + 1)) // 10 - (cnt * k) // 10
    arc_cum = np.concatenate(([0], np.cumsum(arc_n)[:-1]))
    header = {
        "format": "efd-twin-inputs/1",
        "scenario": scn.name,
        "mains_hz": scn.mains_hz,
        "slice_us": SLICE_US,
        "n_slices": n,
        "shape_points": SHAPE_POINTS,
        "n_shapes": len(shapes),
        # The residual CT's front end in uV at the pin per mA in the primary (the self-test
        # current's model needs it: machine.PWM in tools/twin/board/machine.py).
        "residual_uv_per_ma": UV_PER_CODE / syn.upc["residual"],
        # A scenario reset is a short press of the front-panel button (150 ms) released just
        # before the reset time: the firmware acts on the release (app.hal_esp32.button).
        "presses": [[round(r * 1e6) - 170_000, round(r * 1e6) - 20_000] for r in scn.reset],
    }
    with open(path, "wb") as out:
        out.write(json.dumps(header).encode() + b"\n")
        out.write(np.rint(np.stack(shapes) * 10000).astype("<i2").tobytes())
        buf = bytearray(REC.size * n)
        for k in range(n):
            vals: list[int] = []
            for col in cols:
                vals += [int(col[0][k]), int(col[1][k]), int(col[2][k]), int(col[3][k])]
            vals += [max(0, round(v)) for v in ntc_uv[k]]
            vals += [int(arc_cum[k]), int(arc_n[k])]
            REC.pack_into(buf, k * REC.size, *vals)
        out.write(buf)
    return header
