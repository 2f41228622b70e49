# Which code the detector boots: the two image slots and the trial of a new image (docs/
# firmware.md "Signed over-the-air update"). Loaded for the moment (app.run._rare) and dropped.
#
# The libraries live in one of two folders ("slots"): `lib` (what `make deploy` writes) and
# `lib_b`. `fw.json` says which one runs; boot.py (kept as source, never updated over the air)
# reads it before main.py imports anything and puts that slot on sys.path in place of `lib`:
#
#     {"run": "lib"}                                  run lib (also: no fw.json)
#     {"run": "lib", "try": "lib_b", "image": id,     boot lib_b once, on trial; boot.py adds
#      "confirm": N}                                  "tried": 1 before it runs the trial
#     {"run": "lib", "try": ..., "tried": 1, ...}     a boot that finds this rolls back: the
#                                                     trial never confirmed itself
#     {"run": "lib_b", "image": id}                   the trial confirmed itself (confirm below)
#     {"run": "lib", "failed": "lib_b", "image": id}  rolled back (reported as rolled_back)
#
# Every change is one atomic file replacement (app/store.write_atomic: tmp + rename), so a power
# cut leaves either the old or the new record, and both boot: see the table in docs/firmware.md.
import os

from app import store

FW = "fw.json"
SLOTS = ("lib", "lib_b")


def state():
    st = store.load_json(FW)
    return st if isinstance(st, dict) else {}


def running(st=None):
    """The slot this boot runs (boot.py's choice, from the record)."""
    if st is None:
        st = state()
    if st.get("try") and st.get("tried"):
        return st["try"]
    return st.get("run", "lib")


def spare(st=None):
    """The slot an update is staged into: the one not running."""
    return SLOTS[1] if running(st) == SLOTS[0] else SLOTS[0]


def trial_windows():
    """Windows the running image must run without error to confirm itself; 0 if it is not
    on trial (app/boot.py)."""
    st = state()
    if st.get("try") and st.get("tried"):
        return max(10, int(st.get("confirm", 300)))
    return 0


def start_trial(slot, image, confirm):
    """Boot `slot` on trial from the next boot on (the update's install step)."""
    st = state()
    store.save_json(
        FW,
        {"run": running(st), "try": slot, "image": image, "confirm": confirm},
    )


def confirm(app):
    """Called by app.run once the trial image has run its windows: keep it if it ran them
    without an error counted, else roll back now (the next boot runs the previous slot)."""
    st = state()
    slot = st.get("try")
    app.upd = None
    if not slot:
        return
    if app.errors == 0:
        store.save_json(FW, {"run": slot, "image": st.get("image", 0)})
        # What a power cut between the install and the staging's removal left (app/ota.py)
        for name in ("upd/image", "upd/session.json"):
            try:
                os.remove(name)
            except OSError:
                pass
    else:
        store.save_json(
            FW, {"run": st.get("run", "lib"), "failed": slot, "image": st.get("image", 0)}
        )
        app.reboot_at = app.hal.ticks_ms()
