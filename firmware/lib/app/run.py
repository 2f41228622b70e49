# The detector's main loop: HAL samples -> efd.Detector -> event log -> protocol link, plus
# indicators, button and self-test. One iteration per 100 ms window.
#
# The loop never waits for the link (Link.poll only does what the transport takes now) and
# feeds the watchdog once per iteration, so a hang anywhere (driver, flash, a bug) resets the
# board within board.WDT_MS. Nothing here allocates per window except when an event or a
# frame is produced (MicroPython small allocations, collected by the GC between windows).
#
# Code that runs only at boot or for a command (loading identity, settings and state, the HELLO
# frame, command handling, persisting state) is app/commands.py: imported for the occasion and
# dropped again (with app.settings and app.store, which only it uses), so the main loop's heap
# never holds it (docs/firmware.md, Memory budget).
import gc
import sys
from array import array

from efd import events as ev
from efd import ticks
from efd.compat import const
from protocol import messages as M
from protocol.auth import make_counter

_SELFTEST_MARGIN_MS = const(3000)  # alarm delay + this without an alarm = self-test failed


def _rare(module, name, *args):
    """app.<module>.<name>(*args), with the module loaded for this call only."""
    try:
        __import__("app." + module)
        return getattr(sys.modules["app." + module], name)(*args)
    finally:
        _drop()


def _drop():
    # Forget the modules only boot and commands use (and their packages' references to them):
    # their code is freed by the next collection and loaded again the next time. efd.config
    # is one of them: the detector validates settings only at boot and by command.
    for pkg, names in (
        (
            "app",
            ("boot", "commands", "counters", "ed25519", "fwslot", "settings", "snapshot", "store"),
        ),
        ("efd", ("config",)),
    ):
        d = sys.modules[pkg].__dict__
        for m in names:
            sys.modules.pop(pkg + "." + m, None)
            d.pop(m, None)


class App:
    def __init__(self, hal):
        self.hal = hal
        # Identity, settings and state files: sets problems (bit 0 config file bad, bit 1 not
        # provisioned), boots, host_ctr and n. The detector, log and link are allocated once
        # that code is dropped again: a lower peak at boot, and no holes between them.
        overrides, device, key, hello = _rare("boot", "boot", self, hal)
        # Imported only now, after the boot code is dropped: the boot's peak holds the boot
        # code or the detector's, never both (docs/firmware.md, Memory budget).
        from app.evlog import EventLog
        from app.link import Link
        from efd.detector import Detector

        self.det = Detector(overrides)
        _drop()  # efd.config again: the detector has its settings
        self.log = EventLog()
        self.link = link = Link(self, device, key)
        if hasattr(hal, "service"):  # the board's burst calls it every ~10 ms (hal_esp32)
            hal.service = self._service
        if hello is not None:
            # Tagged (SPEC.md §5): its host_counter may then count (rule H1), its address is
            # the detector's, and after a lost state its refusal as a replay brings a resync.
            link.outbox.append(link.enc.message(M.HELLO, hal.time(), hello, auth=True))
        self.arc_at = 0
        self.test = None  # running self-test: [start, command counter (0 = button), was, clear]
        self.reboot_at = -1
        self.snap = array("H", bytes(400))  # residual alarm window, 200 samples (see _drain)
        self.snap_id = 0
        self.snap_trig = 0
        self.windows = 0
        self.errors = 0

    def next_counter(self):
        # SPEC.md §7.3: boot_count << 16 | n, n from 1; persist a new boot count before n wraps.
        n = self.n + 1
        if n > 0xFFFF:
            return _rare("counters", "next_boot", self)  # persisted first; never wraps (rule W)
        self.n = n
        return make_counter(self.boots, n)

    def _service(self):
        try:
            self.link.service(self.hal.ticks_ms())
        except Exception:  # a link fault must never stop sampling
            self.errors += 1

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, windows):
        """Run `windows` windows (-1: for ever)."""
        while windows != 0:
            self.step()
            if windows > 0:
                windows -= 1

    def step(self):
        hal = self.hal
        det = self.det
        hal.sample(det)  # board: the 100 ms burst itself; sim: fills buffers and paces
        now = hal.ticks_ms()
        test = self.test
        if test is not None:
            # Self-test: 1.5 x the set residual current through the whole alarm path.
            rules = det.rules
            if test[3]:
                # The test's own alarm: cleared once the test current is gone (never a real one).
                if rules.reset(ev.RESIDUAL, now) or ticks.diff(now, test[0]) > 10000:
                    self.test = None
            else:
                passed = -1
                if test[2]:  # latched before the test: the reading must reach the set value
                    if det.values[ev.RESIDUAL] >= det.cfg["leak_set_ma"]:
                        passed = 1
                elif rules.latched(ev.RESIDUAL):
                    passed = 1
                if passed < 0 and ticks.diff(now, test[0]) > (
                    det.cfg["leak_delay_s"] * 1000 + _SELFTEST_MARGIN_MS
                ):
                    passed = 0
                if passed >= 0:
                    hal.test_current(0)
                    det.events.push(ev.SELFTEST, ev.RESIDUAL, passed, 0, now)
                    if test[1]:
                        self.link.send_result(test[1], M.CMD_SELFTEST, 0, passed)
                    if passed and not test[2]:
                        test[3] = True  # now clear the test's own alarm
                        test[0] = now
                    else:
                        self.test = None
        det.process(now)
        if ticks.diff(now, self.arc_at) >= 1000:
            self.arc_at = ticks.add(self.arc_at, 1000)
            if ticks.diff(now, self.arc_at) >= 1000:
                self.arc_at = now  # after a stall: no catch-up burst
            det.arc_second(hal.arc_count(), now)
        self._drain(now)
        # Indicators: red + buzzer + relay = alarm latched, yellow = fault, green = normal.
        alarm = det.alarmed()
        fault = self.problems != 0
        for ch in range(ev.N_CHANNELS):
            if det.faults.reported[ch]:
                fault = True
        hal.outputs(alarm, fault, not alarm and not fault)
        try:
            self.link.poll(now)
        except Exception:  # a link fault must never stop detection
            self.errors += 1
        b = hal.button()
        if b == 1:
            det.reset(now)
            self._drain(now)
        elif b == 2:
            self.start_selftest(now, 0)
        if self.reboot_at >= 0 and ticks.diff(now, self.reboot_at) >= 0 and not hal.link.busy():
            hal.reboot()
        u = self.upd  # the signed update (SPEC.md §12): None on all but a few days of a life
        if u is not None:
            if type(u) is not int:
                u.tick()  # one slice of a signature or copy check (app/ota.py)
            elif self.windows >= u:  # a new image on trial ran its windows: keep or roll back
                _rare("fwslot", "confirm", self)
        hal.wdt_feed()
        self.windows += 1
        if not self.windows & 63:
            gc.collect()  # at a known point, not in the middle of a burst

    def _drain(self, now):
        q = self.det.events
        t = self.hal.time()
        enc = self.link.enc
        while q.count:
            kind, ch, value, thr, _ = q.pop()
            seq = enc.seq
            enc.seq = (seq + 1) & 0xFF
            counter = 0 if self.problems & 2 else self.next_counter()  # 0: not provisioned
            self.log.append(t, counter, seq, kind, ch, value, thr)
            # Each append is a flash write (tens of ms, an erase up to 400 ms on a worn chip):
            # a burst of events (a real fire) must not starve the watchdog.
            self.hal.wdt_feed()
            if kind == ev.ALARM and ch == ev.RESIDUAL:
                # Keep the window that raised the alarm (a copy: the HAL overwrites its buffer).
                self.snap[:] = self.det.residual
                self.snap_id = (self.snap_id % 0xFFFF) + 1
                self.snap_trig = 100

    # -- self-test (run by step()) --------------------------------------------------------------
    def start_selftest(self, now, counter):
        if self.test is not None:
            return False
        self.test = [now, counter, self.det.rules.latched(ev.RESIDUAL), False]
        self.hal.test_current(self.det.cfg["leak_set_ma"] * 3 // 2)
        return True

    # -- commands (authenticated by the link before they get here) ------------------------------
    def command(self, f, counter, now):
        """-> (status, value, extra frames); status -1: the RESULT comes later. Persists the
        host counter first (SPEC.md §7.3). counter -1: f is an UPDATE payload, and the answer
        its UPDATE_STATUS frame (app/commands.update)."""
        return _rare("commands", "command", self, f, counter, now)


def main(hal):
    app = App(hal)
    try:
        app.run(-1)
    except KeyboardInterrupt:
        # Ctrl-C from mpremote/the REPL: stop cleanly so tools can work; the watchdog is
        # released (sim) or stretched (board) so a long file copy does not reset the board.
        hal.wdt_release()
        hal.outputs(False, True, False)
        raise
