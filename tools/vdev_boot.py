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


_run("boot.py")
_run("main.py")
