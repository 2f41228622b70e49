# Runs first at every boot (board and virtual detector). Kept as source, not .mpy, so it can
# be read and edited on the device. Nothing here may fail: a broken boot.py bricks the REPL.
#
# It also picks the code slot (docs/firmware.md "Signed over-the-air update"; app/fwslot.py has
# the record's format): `fw.json` names the slot that runs, `lib` or `lib_b`, and a new image
# on trial. A trial boots once: this file records "tried" first (tmp + rename, atomic), so a
# trial that never confirms itself (a crash, a hang and the watchdog, a power cut) is rolled
# back by the next boot. Updates never replace this file or main.py.
import gc
import sys


def _slot():
    import json
    import os

    try:
        with open("fw.json") as f:
            st = json.loads(f.read())
        run = st.get("run", "lib")
        t = st.get("try")
    except Exception:  # no record (a deployed board): the deployed lib
        return "lib"
    if t:
        if st.get("tried"):
            st = {"run": run, "failed": t, "image": st.get("image", 0)}  # roll back
        else:
            st["tried"] = 1
            run = t
        try:
            with open("fw.json.tmp", "w") as f:
                f.write(json.dumps(st))
            os.rename("fw.json.tmp", "fw.json")
        except Exception:
            run = st["run"]  # cannot record the trial: do not start it
    for s in (run, "lib_b" if run == "lib" else "lib"):
        try:
            os.stat(s + "/app")
            return s
        except Exception:
            pass
    return "lib"


try:
    _s = _slot()
    if _s != "lib":
        for _i in range(len(sys.path)):
            if sys.path[_i] in ("lib", "/lib"):
                sys.path[_i] = sys.path[_i][:-3] + _s
except Exception:
    pass
gc.collect()
