"""Render a simulator scenario (host_sim TOML) into the virtual detector's sensor feed file.

The feed holds, per 100 ms window, exactly the ADC codes the simulator would hand the detection
core: residual and three phase CTs (200 codes each), four NTC codes and the arc pulses of the
window (a second's count sits in the window that ends that second). The firmware's simulated
HAL reads one record per window straight into the detector's buffers (firmware/lib/app/
sim_io.py, FEED_RECORD), so the virtual detector sees the same signals as `make sim`. When the
feed ends, the HAL holds its last window (app/sim_io.Feed), as the board twin holds its last
100 ms.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from host_sim import scenario as scn_mod
from host_sim.synth import CHUNK_WINDOWS, Synth

MAGIC = b"EFDFEED1"
RECORD = 2 * (4 * 200 + 6)


def render(scenario_path: str | Path, out: str | Path) -> dict:
    scn = scn_mod.load(scenario_path)
    syn = Synth(scn)
    arc = syn.arc_counts()
    n = syn.n_windows
    per_s = round(1.0 / syn.window_s)
    with open(out, "wb") as f:
        f.write(MAGIC)
        for w0 in range(0, n, CHUNK_WINDOWS):
            w1 = min(n, w0 + CHUNK_WINDOWS)
            cts = [
                syn.ct_codes(name, w0, w1) for name in ("residual", "phase0", "phase1", "phase2")
            ]
            temps = syn.temp_codes(w0, w1)
            for w in range(w0, w1):
                for c in cts:
                    f.write(
                        np.ascontiguousarray(
                            c[(w - w0) * 200 : (w - w0 + 1) * 200], "<u2"
                        ).tobytes()
                    )
                f.write(np.ascontiguousarray(temps[w - w0], "<u2").tobytes())
                sec, rem = divmod(w + 1, per_s)
                pulses = arc[sec - 1] if rem == 0 and 0 < sec <= len(arc) else 0
                f.write(struct.pack("<HH", min(pulses, 0xFFFF), 0))
    return {"windows": n, "seconds": n * syn.window_s, "config": dict(scn.config)}
