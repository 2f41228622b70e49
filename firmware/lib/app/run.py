# The detector's main loop: HAL samples -> efd.Detector -> event log -> protocol link, plus
# indicators, button, self-test and commands. One iteration per 100 ms window.
#
# The loop never waits for the link (Link.poll only does what the transport takes now) and
# feeds the watchdog once per iteration, so a hang anywhere (driver, flash, a bug) resets the
# board within board.WDT_MS. Nothing here allocates per window except when an event or a
# frame is produced (MicroPython small allocations, collected by the GC between windows).
import gc
from array import array
from binascii import unhexlify

from app import VERSION, settings, store
from app.evlog import EventLog
from app.link import Link
from efd import events as ev
from efd import ticks
from efd.compat import const
from efd.detector import Detector
from protocol import messages as M
from protocol.auth import Key, make_counter

IDENTITY = "identity.json"  # {"device": u32, "key": 64 hex digits}: `make provision`
STATE = "state.json"  # {"boots": n, "host_ctr": n}
_SELFTEST_MARGIN_MS = const(3000)  # alarm delay + this without an alarm = self-test failed


def load_identity():
    obj = store.load_json(IDENTITY)
    try:
        dev = int(obj["device"])
        key = unhexlify(obj["key"])
        if 0 < dev < 0xFFFFFFFF and len(key) == 32:
            return dev, key
    except (TypeError, KeyError, ValueError):
        pass
    return 0, None


class App:
    def __init__(self, hal):
        self.hal = hal
        self.problems = 0  # bit 0 config file bad, bit 1 not provisioned, bit 2 link errors
        overrides, ok = settings.load()
        if not ok:
            self.problems |= 1
        self.overrides = overrides
        self.det = Detector(overrides)
        self.device, key = load_identity()
        if key is None:
            self.problems |= 2
        st = store.load_json(STATE)
        if not isinstance(st, dict):
            st = {}
        self.boots = int(st.get("boots", 0)) + 1
        self.host_ctr = int(st.get("host_ctr", 0))
        self._save_state()
        self.n = 0  # authenticated uplink frames this boot (counter low 16 bits)
        self.log = EventLog()
        self.link = Link(
            hal.link,
            self.device,
            Key(key) if key is not None else None,
            self.log,
            self.next_counter,
            self.host_ctr,
            self._save_host_ctr,
            hal.polled,
        )
        self.link.handler = self.command
        self.link.telemetry = self.telemetry
        self.link.time = hal.time
        self.link.hello_frame = self.hello
        if self.device:
            self.link.outbox.append(self.hello())
        self.temps = array("h", [0] * 4)
        self.lines = array("H", [0] * 3)
        self.arc_at = 0
        self.selftest_at = -1  # start time of a running self-test, -1 = none
        self.selftest_ctr = 0  # command counter to answer when it ends (0 = button)
        self.selftest_clear = False
        self.selftest_was = False
        self.reboot_at = -1
        self.snap = array("H", bytes(400))  # 200 samples; no 200-int list on the way
        self.snap_id = 0
        self.snap_trig = 0
        self.windows = 0
        self.errors = 0

    # -- persistent counters -------------------------------------------------------------------
    def _save_state(self):
        store.save_json(STATE, {"boots": self.boots, "host_ctr": self.host_ctr})

    def _save_host_ctr(self, c):
        self.host_ctr = c
        self._save_state()

    def next_counter(self):
        # SPEC.md §7.3: boot_count << 16 | n, n from 1; persist a new boot count before n wraps.
        self.n += 1
        if self.n > 0xFFFF:
            self.boots += 1
            self._save_state()
            self.n = 1
        return make_counter(self.boots, self.n)

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, windows=-1):
        while windows != 0:
            self.step()
            if windows > 0:
                windows -= 1

    def step(self):
        hal = self.hal
        det = self.det
        hal.sample(det)  # board: the 100 ms burst itself; sim: fills buffers and paces
        now = hal.ticks_ms()
        if self.selftest_at >= 0:
            self._selftest(now)
        det.process(now)
        if ticks.diff(now, self.arc_at) >= 1000:
            self.arc_at = ticks.add(self.arc_at, 1000)
            if ticks.diff(now, self.arc_at) >= 1000:
                self.arc_at = now  # after a stall: no catch-up burst
            det.arc_second(hal.arc_count(), now)
        self._drain(now)
        self._outputs()
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
            counter = self.next_counter() if self.device else 0
            self.log.append(t, counter, seq, kind, ch, value, thr)
            if kind == ev.ALARM and ch == ev.RESIDUAL:
                self._capture(ev.RESIDUAL)

    def _outputs(self):
        det = self.det
        alarm = det.alarmed()
        fault = self.problems != 0
        for ch in range(ev.N_CHANNELS):
            if det.faults.reported[ch]:
                fault = True
        self.hal.outputs(alarm, fault, not alarm and not fault)

    # -- self-test: 1.5 x the set residual current through the whole alarm path ---------------
    def start_selftest(self, now, counter):
        if self.selftest_at >= 0:
            return False
        self.selftest_at = now
        self.selftest_ctr = counter
        self.selftest_was = self.det.rules.latched(ev.RESIDUAL)
        self.hal.test_current(self.det.cfg["leak_set_ma"] * 3 // 2)
        return True

    def _selftest(self, now):
        det = self.det
        rules = det.rules
        if self.selftest_clear:
            # The test's own alarm: cleared once the test current is gone (never a real one).
            if rules.reset(ev.RESIDUAL, now) or ticks.diff(now, self.selftest_at) > 10000:
                self.selftest_clear = False
                self.selftest_at = -1
            return
        set_ma = det.cfg["leak_set_ma"]
        passed = -1
        if self.selftest_was:
            if det.values[ev.RESIDUAL] >= set_ma:
                passed = 1
        elif rules.latched(ev.RESIDUAL):
            passed = 1
        if passed < 0 and ticks.diff(now, self.selftest_at) > (
            det.cfg["leak_delay_s"] * 1000 + _SELFTEST_MARGIN_MS
        ):
            passed = 0
        if passed < 0:
            return
        self.hal.test_current(0)
        det.events.push(ev.SELFTEST, ev.RESIDUAL, passed, 0, now)
        if self.selftest_ctr:
            self.link.send_result(self.selftest_ctr, M.CMD_SELFTEST, 0, passed)
            self.selftest_ctr = 0
        if passed and not self.selftest_was:
            self.selftest_clear = True
            self.selftest_at = now
        else:
            self.selftest_at = -1

    # -- commands (authenticated by the link before they get here) ------------------------------
    def command(self, f, counter, now):
        """-> (status, value, extra frames); status -1: the RESULT comes later."""
        # Commands are rare: their code (app/commands.py) is loaded by the first one.
        from app import commands

        return commands.command(self, f, counter, now)

    # -- frames ---------------------------------------------------------------------------------
    def hello(self):
        return self.link.enc.message(
            M.HELLO,
            self.hal.time(),
            {
                "fw": VERSION,
                "reset_cause": self.hal.reset_cause(),
                "boot_count": self.boots,
                "config_hash": settings.config_hash(self.det.cfg),
                "host_counter": self.host_ctr,
            },
        )

    def telemetry(self, now):
        det = self.det
        v = det.values
        cfg = det.cfg
        st = det.status()
        status = st & 0x1FF
        if st >> 18:
            status |= M.ST_PREALARM
        if st >> 9 & 0x1FF:
            status |= M.ST_FAULT
        if self.selftest_at >= 0:
            status |= M.ST_SELFTEST
        t = self.hal.time()
        if t == 0:
            status |= M.ST_CLOCK_UNSET
        if self.log.pending():
            status |= M.ST_PENDING
        res = v[ev.RESIDUAL]
        if det.faults.reported[ev.RESIDUAL] or res > 0xFFFE:
            res = M.NA_U16
        for i in range(4):
            ch = ev.TEMP0 + i
            ok = i < cfg["temp_channels"] and not det.faults.reported[ch]
            self.temps[i] = v[ch] if ok else M.NA_I16
        for i in range(3):
            ch = ev.PHASE0 + i
            ok = i < cfg["phase_channels"] and not det.faults.reported[ch] and v[ch] <= 0xFFFE
            self.lines[i] = v[ch] if ok else M.NA_U16
        return self.link.enc.telemetry(t, res, self.temps, self.lines, status)

    def _capture(self, ch, trig=100):
        # Keep the window that raised the alarm (a copy: the HAL overwrites its buffer).
        src = self.det.residual
        dst = self.snap
        for i in range(len(dst)):
            dst[i] = src[i]
        self.snap_id = (self.snap_id % 0xFFFF) + 1
        self.snap_trig = trig


def main(hal):
    app = App(hal)
    try:
        app.run()
    except KeyboardInterrupt:
        # Ctrl-C from mpremote/the REPL: stop cleanly so tools can work; the watchdog is
        # released (sim) or stretched (board) so a long file copy does not reset the board.
        hal.wdt_release()
        hal.outputs(False, True, False)
        raise
