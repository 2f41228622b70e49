# Command handling, for app.run.App. app.run loads this module for each command and drops it
# again (with app.settings and app.store),
# so the main loop never keeps its heap; settings.py is loaded only by the commands that read
# or change settings. Boot is app/boot.py. Functions of the App, not methods: `app` is the
# run.App instance.
from array import array

from app import store
from efd import events as ev
from efd import ticks
from efd.compat import const
from protocol import messages as M

_SNAP_CHUNK = const(96)


def command(app, f, counter, now):
    """-> (status, value, extra frames); status -1: the RESULT comes later."""
    # Persist before acting (SPEC.md §7.3): a replay after a power cut stays a replay.
    app.host_ctr = counter
    store.save_state(app)
    cmd = f["cmd"]
    det = app.det
    # Fields are numbers (messages.py, the detector's view): cmd M.CMD_*, channel efd.events.
    if cmd == M.CMD_RESET:
        ch = f["channel"]
        if ch == M.CMD_ALL:
            ok = det.reset(now)
        elif ch < ev.N_CHANNELS:
            ok = det.rules.reset(ch, now)
        else:
            return 2, 0, ()
        app._drain(now)
        return (0 if ok else 4), 0, ()
    if cmd == M.CMD_SELFTEST:
        if not app.start_selftest(now, counter):
            return 3, 0, ()
        return -1, 0, ()
    if cmd == M.CMD_SET_CONFIG:
        from app import settings  # the settings commands load it (and efd.config) for themselves

        # The current overrides are the file's (a file that did not load counts as none).
        new, bad = settings.validate_update(settings.load()[0], f["params"])
        if new is None:
            return 2, bad, ()
        settings.save(new)
        det.configure(new)
        app.problems &= ~1
        return 0, 0, (settings.config_frame(app),)
    if cmd == M.CMD_TIME_SYNC:
        app.hal.set_time(f["set_time"])
        return 0, 0, ()
    if cmd == M.CMD_SNAPSHOT:
        sid = f["snap_id"]
        if sid == 0 and app.snap_id == 0:
            # No alarm yet: the current window (app.run's _drain keeps an alarm's).
            app.snap[:] = app.det.residual
            app.snap_id = 1
            app.snap_trig = 0
        elif sid != 0 and sid != app.snap_id:
            return 2, 0, ()
        return 0, app.snap_id, snapshot_frames(app)
    if cmd == M.CMD_REBOOT:
        app.reboot_at = ticks.add(now, 300)
        return 0, 0, ()
    if cmd == M.CMD_GET_CONFIG:
        from app import settings

        return 0, 0, (settings.config_frame(app),)
    return 1, 0, ()


def snapshot_frames(app):
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
        out.append(app.link.enc.message(M.SNAPSHOT, app.hal.time(), f))
    return out
