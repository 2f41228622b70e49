# The detector: one window of samples in, events out. Sans-I/O: no clock, no hardware.
#
# The HAL (or the simulator) fills the preallocated buffers in place and calls process(now)
# once per window (5 mains cycles, 100 ms at 50 Hz); an external arc front-end's pulse count is
# given once a second to arc_second(). Events land in self.events (efd.events.EventQueue).
# In steady state process() allocates nothing on MicroPython (tests prove it with
# micropython.heap_lock()) and every intermediate is a small int (|x| < 2^30).
from array import array

from efd import events as ev
from efd import ntc, rms
from efd.compat import MICROPYTHON, const
from efd.faults import Faults
from efd.ror import RateOfRise
from efd.threshold import OFF, Thresholds

# GB 14287.2: the alarm value must lie within 80-100 % of the set value. We decide at 90 %:
# the middle of the band leaves 10 % of set on each side for the RMS error (<= 1 % + 1 mA,
# tests/test_rms.py), ADC noise and noise on the line (<= 2 % of set in the property tests),
# so a true RMS <= 80 % never alarms and >= 100 % always does.
LEAK_DECISION_PCT = const(90)
# A window with at least this many clipped samples is over-range (one stray sample is not).
_CLIP_MIN = const(2)
# Late sample instants the HAL may report for a window (self.late) before it is a sampling
# fault: a few are a preemption (WiFi, flash), more mean the plan does not fit (2 % of 200).
_LATE_MAX = const(4)
# A CT mean this close to a rail is a lead fault (open: pulled to 0 V; short: at the supply),
# not just a drifting bias.
_RAIL_MARGIN = const(256)
# Temperature smoothing: an exponential average over 2^_TEMP_SMOOTH windows (~0.8 s time
# constant at 100 ms windows). One ADC count is ~0.5 degC near 150 degC, so a raw reading is
# too noisy to compare with the set value; the lag this adds is tiny against GB 14287.3's 40 s.
_TEMP_SMOOTH = const(3)
_ARC_ALARM = const(14)  # GB 14287.4: >= 14 arc half-cycles in 1 s -> alarm
_ARC_QUIET = const(9)  # GB 14287.4: <= 9 half-cycles in 1 s -> no alarm

# Status word bits: latched alarm, fault and pre-alarm per channel (channel number = bit).
_STATUS_ALARM_SHIFT = const(0)
_STATUS_FAULT_SHIFT = const(9)
_STATUS_PRE_SHIFT = const(18)


class Detector:
    def __init__(self, settings=None, capacity=32, kernel=None):
        self.events = ev.EventQueue(capacity)
        q = self.events
        # Inputs, filled in place by the HAL/simulator before process().
        # Window buffers at mid-scale, built from zero bytes: a list of rms.N ints would take 4x
        # the array's size on the heap for a moment (8 bytes each on 64-bit), the largest
        # contiguous block the firmware asks for at boot.
        self.phase = []
        for _ in range(4):
            a = array("H", bytes(2 * rms.N))
            for i in range(rms.N):
                a[i] = rms.MID
            self.phase.append(a)
        self.residual = self.phase.pop()
        self.temp_code = array("H", [2048] * 4)
        self._temp_acc = array("i", bytes(16))  # smoothed 0.1 degC << _TEMP_SMOOTH; 0 = restart
        # Latest measurement per channel (residual mA, 0.1 degC, 0.01 A, arc count).
        self.values = array("i", bytes(4 * ev.N_CHANNELS))
        # Per-channel state: one bank (a few arrays) per kind, indexed by channel.
        self.rules = Thresholds(ev.N_CHANNELS, q)
        self.faults = Faults(ev.N_CHANNELS, q)
        self.late = 0  # late sample instants in this window, set by the HAL (FAULT_TIMING)
        self.rors = RateOfRise(q)  # the 4 temperature channels
        self._stats = array("i", bytes(12))
        if kernel is None:
            kernel = rms.accumulate_viper if MICROPYTHON else rms.accumulate
        self._accumulate = kernel
        self.cfg = {}
        self.configure(settings)

    def configure(self, settings=None):
        """Validate (config.make raises ConfigError) and apply settings. Latches are kept."""
        # Imported here, not at the top: settings change only at boot and by command, so the
        # firmware loads efd.config for those moments only (app.run drops it again).
        from efd import config

        cfg = config.make(settings)
        self.cfg = cfg
        set_ma = cfg["leak_set_ma"]
        rules = self.rules
        rules.configure(
            ev.RESIDUAL,
            set_ma * LEAK_DECISION_PCT // 100,
            _pct(set_ma, cfg["leak_prealarm_pct"]),
            set_ma * cfg["leak_hyst_pct"] // 100,
            cfg["leak_delay_s"] * 1000,
        )
        set_dc = cfg["temp_set_c"] * 10
        for i in range(4):
            # Temperature decides at the set value itself: the NTC table is within 0.5 degC
            # and GB 14287.3 measures the alarm time from the point reaching the set value.
            rules.configure(
                ev.TEMP0 + i,
                set_dc if i < cfg["temp_channels"] else OFF,
                _pct(set_dc, cfg["temp_prealarm_pct"]),
                cfg["temp_hyst_c"] * 10,
                cfg["temp_delay_s"] * 1000,
            )
        set_ca = cfg["line_set_a"] * 100
        for i in range(3):
            rules.configure(
                ev.PHASE0 + i,
                set_ca if i < cfg["phase_channels"] else OFF,
                _pct(set_ca, cfg["line_prealarm_pct"]),
                set_ca * cfg["line_hyst_pct"] // 100,
                cfg["line_delay_s"] * 1000,
            )
        rules.configure(
            ev.ARC, _ARC_ALARM if cfg["arc_enabled"] else OFF, OFF, _ARC_ALARM - _ARC_QUIET - 1, 0
        )
        self.rors.threshold = cfg["temp_ror_c_per_min"] * 10
        self.faults.delay_ms = cfg["fault_delay_s"] * 1000

    # -- per window -------------------------------------------------------------------------
    def process(self, now):
        """Evaluate one window of every enabled channel at time `now` (ms, 2^30-wrapping)."""
        cfg = self.cfg
        self._ct(ev.RESIDUAL, self.residual, cfg["res_gain_q12"], now)
        for i in range(cfg["phase_channels"]):
            self._ct(ev.PHASE0 + i, self.phase[i], cfg["phase_gain_q12"], now)
        for i in range(cfg["temp_channels"]):
            self._temp(i, now)

    def _ct(self, ch, buf, gain, now):
        st = self._stats
        self._accumulate(buf, rms.N, st)
        value = rms.to_units(rms.rms8(rms.N, st[rms.S1], st[rms.S2]), gain)
        self.values[ch] = value
        mean = rms.mean_code(rms.N, st[rms.S1])
        code = 0
        if mean < self.cfg["ct_bias_lo"]:
            code = ev.FAULT_OPEN if mean < _RAIL_MARGIN else ev.FAULT_BIAS
        elif mean > self.cfg["ct_bias_hi"]:
            code = ev.FAULT_SHORT if mean > rms.ADC_MAX - _RAIL_MARGIN else ev.FAULT_BIAS
        elif st[rms.CLIPPED] >= _CLIP_MIN:
            code = ev.FAULT_OVERRANGE
        elif ch == ev.RESIDUAL and self.late > _LATE_MAX:
            code = ev.FAULT_TIMING
        self.faults.update(ch, code, now)
        if code == 0 or code == ev.FAULT_OVERRANGE or code == ev.FAULT_TIMING:
            # Clipping makes the RMS a lower bound of the true current: still safe to alarm on.
            self.rules.update(ch, value, now)
        else:
            self.rules.suspend(ch)

    def _temp(self, i, now):
        ch = ev.TEMP0 + i
        code = self.temp_code[i]
        fault = ntc.classify(code)
        self.faults.update(ch, fault, now)
        if fault:
            self.rules.suspend(ch)
            self.rors.restart(i)
            self._temp_acc[i] = 0
            return
        raw = ntc.to_decic(code)
        acc = self._temp_acc[i]
        if acc == 0:
            acc = raw << _TEMP_SMOOTH  # first reading (or after a fault): start from it
        else:
            acc += raw - (acc >> _TEMP_SMOOTH)
        if acc == 0:
            acc = 1  # 0 means "restart": -0.0..0.1 degC is kept as a tiny offset instead
        self._temp_acc[i] = acc
        dc = (acc + (1 << (_TEMP_SMOOTH - 1))) >> _TEMP_SMOOTH
        self.values[ch] = dc
        self.rules.update(ch, dc, now)
        self.rors.update(i, dc, now)

    def arc_second(self, half_cycles, now):
        """Arc front-end pulse count for the last second (GB 14287.4 rule)."""
        self.values[ev.ARC] = half_cycles
        self.rules.update(ev.ARC, half_cycles, now)

    # -- commands ---------------------------------------------------------------------------
    def reset(self, now):
        """Reset every latch whose condition is gone. True if no alarm stays latched."""
        ok = True
        for ch in range(ev.N_CHANNELS):
            if not self.rules.reset(ch, now):
                ok = False
        return ok

    def status(self):
        """Bit field: latched alarm / fault / pre-alarm per channel (see _STATUS_*_SHIFT)."""
        s = 0
        rules = self.rules
        for ch in range(ev.N_CHANNELS):
            if rules.latched(ch):
                s |= 1 << (_STATUS_ALARM_SHIFT + ch)
            if self.faults.reported[ch]:
                s |= 1 << (_STATUS_FAULT_SHIFT + ch)
            if rules.pre(ch):
                s |= 1 << (_STATUS_PRE_SHIFT + ch)
        return s

    def alarmed(self):
        for ch in range(ev.N_CHANNELS):
            if self.rules.latched(ch):
                return True
        return False


def _pct(value, pct):
    return value * pct // 100 if pct else OFF
