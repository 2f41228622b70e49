# The SNAPSHOT frames (protocol/SPEC.md §5.6): the residual window kept by app.run around an
# alarm, in 0.1 mA chunks. Loaded by app.commands for the snapshot command only (as settings.py
# for the settings commands) and dropped with it, so other commands never hold its code.
from array import array

from efd import events as ev
from efd.compat import const
from protocol import messages as M

_SNAP_CHUNK = const(96)


def frames(app):
    # Samples in 0.1 mA (scale_exp -1) around the window mean; clamp to i16.
    gain = app.det.cfg["res_gain_q12"]
    s = app.snap
    n = len(s)
    mean = 0
    for x in s:
        mean += x
    mean //= n
    chunks = (n + _SNAP_CHUNK - 1) // _SNAP_CHUNK
    # One sample buffer and one fields dict for every chunk: the frames are built one after the
    # other (each is bytes of its own), so nothing else needs to exist once per chunk.
    buf = array("h", bytes(2 * _SNAP_CHUNK))  # 2 bytes a sample, not an 8-byte list slot
    f = {
        "snap_id": app.snap_id,
        "channel": ev.RESIDUAL,
        "chunks": chunks,
        "scale_exp": -1,
        "rate_hz": 40 * app.det.cfg["mains_hz"],
        "trigger": app.snap_trig,
    }
    out = []
    for k in range(chunks):
        lo = k * _SNAP_CHUNK
        hi = lo + _SNAP_CHUNK if lo + _SNAP_CHUNK < n else n
        for i in range(lo, hi):
            y = (s[i] - mean) * gain * 10 >> 12
            buf[i - lo] = 32767 if y > 32767 else (-32767 if y < -32767 else y)
        f["chunk"] = k
        f["offset"] = lo
        f["samples"] = memoryview(buf)[: hi - lo]
        # Tagged (SPEC.md §5): a host stores chunks, replacing a re-requested one.
        out.append(app.link.enc.message(M.SNAPSHOT, app.hal.time(), f, auth=True))
    return out
