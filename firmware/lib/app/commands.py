# Command handling, for app.run.App. app.run loads this module for each command and drops it
# again (with app.store and whatever the command loaded), so the main loop never keeps its
# heap; settings.py is loaded only by the commands that read or change settings, snapshot.py
# by the snapshot command, counters.py by resync. Boot is app/boot.py. Functions of the App,
# not methods: `app` is the run.App instance.
from app import store
from efd import events as ev
from efd import ticks
from protocol import messages as M


def command(app, f, counter, now):
    """-> (status, value, extra frames); status -1: the RESULT comes later."""
    if counter < 0:
        return update(app, f, now)
    # Persist before acting (SPEC.md §7.3): a replay after a power cut stays a replay.
    app.host_ctr = counter
    store.save_state(app)
    cmd = f["cmd"]
    if cmd == M.CMD_RESYNC:  # the recovery path (app/counters.py), loaded for it alone
        from app import counters

        return counters.resync(app, f["mark"])
    if app.problems & 4:
        # Replay state lost (SPEC.md §7.4): this command may be an old one replayed. Refused
        # until re-provisioned; resync above is safe from anyone, it only raises counters.
        return 5, 0, ()
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
        from app import snapshot  # like settings: loaded by the one command that needs it

        return 0, app.snap_id, snapshot.frames(app)
    if cmd == M.CMD_REBOOT:
        app.reboot_at = ticks.add(now, 300)
        return 0, 0, ()
    if cmd == M.CMD_GET_CONFIG:
        from app import settings

        return 0, 0, (settings.config_frame(app),)
    if cmd == 9:  # link_status (messages._CMD_LINK_STATUS, private to keep its heap)
        # A WiFi link has `rssi` (app/wifi.py: dBm while associated, None otherwise; the
        # simulator's UdpLink only with EFD_RSSI); RS-485 and the other links have none.
        lk = app.hal.link
        if not hasattr(lk, "rssi"):
            return 0, 0, ()
        r = lk.rssi
        return 0, (1 if r is None else min(r, -1)), ()
    return 1, 0, ()


def update(app, p, now):
    """An authenticated UPDATE payload (SPEC.md §12) -> its UPDATE_STATUS frame. app/ota.py
    is kept loaded (in app.upd) only while an update is in progress, and dropped after."""
    from app import ota

    return ota.handle(app, p, now)
