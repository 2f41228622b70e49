# Boot sequence of the virtual detector, run by the unix port with cwd = the "flash" folder:
# like the board, run boot.py then main.py from the filesystem root with /lib on the path.
# `micropython -i` then leaves the REPL to mpremote when main.py stops (Ctrl-C).
import os
import sys

sys.path[:] = ["", "lib"]


def _run(name):
    try:
        os.stat(name)
    except OSError:
        return
    with open(name) as f:
        src = f.read()
    exec(compile(src, name, "exec"), {"__name__": "__main__"})


class _Os:
    """`os` for code typed or sent (mpremote) at the REPL, as on the board: the unix port's
    VfsPosix.ilistdir() yields (name, type, inode) without the size a board's LittleFS gives,
    and mpremote's `fs ls` then prints 0 for every file. Everything else is the real os."""

    def __init__(self, real):
        self.real = real  # (the REPL's `import os` rebinds this script's global `os`)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def ilistdir(self, path="."):
        real = self.real
        for e in real.ilistdir(path):
            size = 0
            if e[1] == 0x8000:  # a file (a folder's size is 0 on the board too)
                try:  # noqa: SIM105 (MicroPython: no contextlib)
                    size = real.stat(path.rstrip("/") + "/" + e[0] if path else e[0])[6]
                except OSError:
                    pass
            yield (e[0], e[1], e[2], size)


class _Machine:
    """`machine` at the REPL with the board's reset(): the unix port has none, so mpremote's
    `reset` (machine.reset() with --no-follow) did nothing. Here it ends the process with
    status 2, which the supervisor (tools/virtual_device.py) boots again as a hard reset."""

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    def reset(self):
        raise SystemExit(2)


def _at_the_repl():
    # Only for the REPL, once main.py has stopped: the firmware itself keeps the real modules.
    import machine

    sys.modules["machine"] = _Machine(machine)
    sys.modules["os"] = _Os(os)


def _gain_error():
    """EFD_GAIN_ERR (python -m tools.virtual_device --gain-error RES_PCT,PHASE_PCT): a unit
    whose CT front ends are off nominal, for `make calibrate`. The built-in generator of the
    simulated HAL makes its codes with the detector's gains (an ideal unit); here, for the
    virtual device only, it makes them with the unit's true gains instead (the detector's own
    gains are put back before it processes the window). Kept out of app/hal_sim.py, whose
    every byte counts against the 64 KB heap of the routine hour (tests/firmware)."""
    ge = os.getenv("EFD_GAIN_ERR")
    if not ge:
        return
    from app import hal_sim, sim_io

    true = sim_io.true_gains(ge)
    sample = hal_sim.SimHal.sample

    def sample_true(self, det):
        # (Every window, not only when dirty: a control message read inside sample() makes it so.)
        if self.feed is not None:
            return sample(self, det)
        cfg = det.cfg
        kept = cfg["res_gain_q12"], cfg["phase_gain_q12"]
        cfg["res_gain_q12"], cfg["phase_gain_q12"] = true
        try:
            return sample(self, det)
        finally:
            cfg["res_gain_q12"], cfg["phase_gain_q12"] = kept

    hal_sim.SimHal.sample = sample_true


try:
    _run("boot.py")  # (it may choose the image's folder: patch the modules main.py will use)
    _gain_error()
    _run("main.py")
finally:
    _at_the_repl()
