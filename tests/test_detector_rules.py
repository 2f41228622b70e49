"""The detector's settings, levels, faults and status word, window by window.

Inputs are exact: a square wave of amplitude A counts around a bias has an RMS of exactly A
counts and a window mean of exactly the bias, so a residual channel reads A mA (1 mA per count)
and each case can sit on the level it probes. What is checked is what the platform sees: the
events (their kind, channel, value, threshold and time) and the TELEMETRY status word.
"""

from __future__ import annotations

from array import array

import numpy as np
import pytest

from efd import events as ev
from efd import ntc, rms, ticks
from efd.detector import Detector
from efd.names import as_dict
from efd.threshold import OFF
from host_sim import adc

N = rms.N
MID = 2048


def square(amp, bias=MID):
    """One window with RMS exactly `amp` counts and mean exactly `bias`."""
    return array("H", [bias + amp, bias - amp] * (N // 2))


def flat(code):
    return array("H", [code] * N)


def temp_code(deg_c):
    return int(adc.ntc_codes(np.array([float(deg_c)]))[0])


COOL = temp_code(25)


class Rig:
    """A Detector and its clock: one call per window, the events it raised."""

    def __init__(self, settings=None, t0=0):
        self.det = Detector(settings)
        self.t = t0
        self.t0 = t0
        for i in range(4):
            self.det.temp_code[i] = COOL

    def window(self, res=None, phases=(), temps=(), late=0, dt=100, arc=None):
        d = self.det
        self.t = ticks.add(self.t, dt)
        d.residual[:] = res if res is not None else square(0)
        for i in range(3):
            d.phase[i][:] = phases[i] if i < len(phases) and phases[i] is not None else square(0)
        for i, c in enumerate(temps):
            if c is not None:
                d.temp_code[i] = c
        d.late = late
        d.process(self.t)
        if arc is not None:
            d.arc_second(arc, self.t)
        return self.events()

    def windows(self, n, **kw):
        out = []
        for _ in range(n):
            out += self.window(**kw)
        return out

    def events(self):
        return [
            (e["kind"], e["channel"], e["value"], e["threshold"], ticks.diff(e["t_ms"], self.t0))
            for e in map(as_dict, self.det.events.drain())
        ]

    def ms(self):
        return ticks.diff(self.t, self.t0)


def only(events, kind, channel=None):
    return [e for e in events if e[0] == kind and (channel is None or e[1] == channel)]


# -- residual current: 90 % of set, pre-alarm, hysteresis, delay -----------------------------


@pytest.mark.parametrize("t0", [0, ticks.MASK - 1000])
def test_residual_alarms_at_90pct_of_set_after_exactly_the_delay(t0):
    rig = Rig({"leak_set_ma": 300, "leak_delay_s": 2, "leak_prealarm_pct": 0}, t0)
    assert rig.windows(30, res=square(269)) == []
    onset = rig.ms() + 100
    ev_ = rig.window(res=square(270))
    ev_ += rig.window(res=square(270), dt=1999)  # 1 ms before the delay has run
    assert ev_ == []
    assert rig.window(res=square(270), dt=1) == [("alarm", "residual", 270, 270, onset + 2000)]


def test_residual_prealarm_and_its_hysteresis():
    rig = Rig({"leak_set_ma": 300, "leak_prealarm_pct": 70, "leak_hyst_pct": 5})
    ev_ = rig.windows(2, res=square(209)) + rig.window(res=square(210))
    assert ev_ == [("prealarm", "residual", 210, 210, 300)]
    # Clear level min(210, 270) - 5 % of 300 = 195: 195 keeps it, 194 clears it.
    assert rig.window(res=square(195)) == []
    assert rig.window(res=square(194)) == [("clear", "residual", 194, 195, 500)]


@pytest.mark.parametrize("t0", [0, ticks.MASK - 300])
def test_hysteresis_is_a_percentage_of_the_set_value(t0):
    # 10 % of 1000 mA is 100 mA: the pre-alarm at 700 clears below 600, not below 599.
    rig = Rig({"leak_set_ma": 1000, "leak_prealarm_pct": 70, "leak_hyst_pct": 10}, t0)
    assert [e[0] for e in rig.window(res=square(700))] == ["prealarm"]
    assert rig.window(res=square(600)) == []
    assert rig.window(res=square(599)) == [("clear", "residual", 599, 600, 300)]
    # Line: 10 % of 10.00 A is 1.00 A (100 in 0.01 A) below the pre-alarm at 9.00 A.
    rig = Rig({"line_set_a": 10, "phase_gain_q12": 4096, "line_hyst_pct": 10}, t0)
    assert [e[0] for e in rig.window(phases=[square(900)])] == ["prealarm"]
    assert rig.window(phases=[square(800)]) == []
    assert rig.window(phases=[square(799)]) == [("clear", "phase0", 799, 800, 300)]


def test_residual_prealarm_off_at_zero_pct():
    rig = Rig({"leak_set_ma": 300, "leak_prealarm_pct": 0, "leak_delay_s": 0})
    assert [e[0] for e in rig.windows(3, res=square(269))] == []
    assert [e[0] for e in rig.window(res=square(400))] == ["alarm"]


def test_residual_reset_needs_the_leak_below_alarm_minus_hysteresis():
    rig = Rig({"leak_set_ma": 300, "leak_delay_s": 0, "leak_hyst_pct": 10})
    rig.window(res=square(300))
    rig.window(res=square(240))  # 270 - 30 = 240: the condition is still there
    assert rig.det.reset(rig.t) is False
    rig.window(res=square(239))
    rig.events()
    assert rig.det.reset(rig.t) is True
    assert rig.events() == [("reset", "residual", 239, 270, rig.ms())]


def test_residual_gain_scales_the_reading():
    rig = Rig({"res_gain_q12": 8192, "leak_set_ma": 300, "leak_delay_s": 0})
    rig.window(res=square(100))
    assert rig.det.values[ev.RESIDUAL] == 200  # 2 mA per count
    assert rig.window(res=square(135)) == [("alarm", "residual", 270, 270, 200)]


# -- line current -------------------------------------------------------------------------------


@pytest.mark.parametrize("ch", [0, 1, 2])
def test_line_levels_and_delay_per_phase(ch):
    cfg = {"line_set_a": 2, "phase_gain_q12": 4096, "line_delay_s": 1, "line_hyst_pct": 5}
    rig = Rig(cfg)
    name = f"phase{ch}"
    ph = [None] * 3
    ph[ch] = square(179)
    assert rig.window(phases=ph) == []
    ph[ch] = square(180)  # 90 % of 200 (0.01 A)
    assert rig.window(phases=ph) == [("prealarm", name, 180, 180, 200)]
    ph[ch] = square(200)
    assert rig.window(phases=ph) == []
    assert rig.window(phases=ph, dt=999) == []
    assert rig.window(phases=ph, dt=1) == [("alarm", name, 200, 200, 1300)]
    ph[ch] = square(170)  # clear below 180 - 10
    assert rig.window(phases=ph) == []
    ph[ch] = square(169)
    assert rig.window(phases=ph) == [("clear", name, 169, 170, 1500)]


def test_default_phase_gain_is_a_tenth_of_an_amp_per_count():
    rig = Rig({"line_set_a": 32, "line_delay_s": 0})
    rig.window(phases=[square(100)])
    assert rig.det.values[ev.PHASE0] == 1000  # 10.00 A
    ev_ = rig.window(phases=[square(320)])
    assert ("alarm", "phase0", 3200, 3200, 200) in ev_


def test_only_the_configured_phases_are_watched():
    rig = Rig({"phase_channels": 1, "line_set_a": 1, "line_delay_s": 0})
    ev_ = rig.windows(30, phases=[square(0), square(400), flat(0)])
    assert ev_ == []
    ev_ = rig.windows(30, phases=[flat(0)])
    assert only(ev_, "fault") == [("fault", "phase0", 1, 0, 5100)]  # 2 s after 3.1 s


# -- temperature --------------------------------------------------------------------------------


def hot_run(rig, ch, deg_c, n):
    temps = [None] * 4
    temps[ch] = temp_code(deg_c)
    return rig.windows(n, temps=temps)


@pytest.mark.parametrize("ch", [0, 3])
def test_temperature_levels_are_the_set_value_its_prealarm_pct_and_hysteresis(ch):
    cfg = {"temp_set_c": 60, "temp_prealarm_pct": 80, "temp_hyst_c": 3, "temp_delay_s": 0}
    rig = Rig(cfg)
    name = f"temp{ch}"
    rig.windows(5)  # 25 degC, then the smoothed reading rises through 48 and 60 degC
    ev_ = hot_run(rig, ch, 70, 30)
    pre = only(ev_, "prealarm")
    alarm = only(ev_, "alarm")
    assert [e[1:4:2] for e in pre] == [(name, 480)]  # 80 % of 60.0 degC, in 0.1 degC
    assert [e[1:4:2] for e in alarm] == [(name, 600)]
    assert pre[0][4] < alarm[0][4]
    ev_ = hot_run(rig, ch, 25, 40)
    assert [e[1:4:2] for e in only(ev_, "clear")] == [(name, 450)]  # 48.0 - 3 degC


def test_temperature_prealarm_off_at_zero_pct_and_alarm_off_beyond_the_channels():
    rig = Rig({"temp_set_c": 60, "temp_prealarm_pct": 0, "temp_delay_s": 0, "temp_channels": 3})
    ev_ = hot_run(rig, 0, 59, 30) + hot_run(rig, 3, 100, 30)
    assert ev_ == []
    ev_ = hot_run(rig, 2, 100, 30)
    assert [e[:2] for e in ev_] == [("alarm", "temp2")]
    rig = Rig({"temp_channels": 0})
    assert rig.windows(40, temps=[4095, 0, 4095, 0]) == []


def test_temperature_alarm_comes_exactly_the_delay_after_the_reading_reaches_set():
    rig = Rig({"temp_set_c": 60, "temp_prealarm_pct": 0, "temp_delay_s": 3})
    code = temp_code(90)
    t_reach = None
    for _ in range(100):
        ev_ = rig.window(temps=[code])
        if t_reach is None and rig.det.values[ev.TEMP0] >= 600:
            t_reach = rig.ms()
            rig.window(temps=[code], dt=2999)
            assert rig.events() == []
            ev_ = rig.window(temps=[code], dt=1)
            assert ev_ == [("alarm", "temp0", rig.det.values[ev.TEMP0], 600, t_reach + 3000)]
            return
    raise AssertionError("never reached 60 degC")


def test_a_steady_reading_reads_exactly_its_table_value():
    for deg in (-5, 0, 25, 70, 149):
        rig = Rig()
        code = temp_code(deg)
        rig.windows(1, temps=[code])
        assert rig.det.values[ev.TEMP0] == ntc.to_decic(code)  # the first reading: no lag
        rig.windows(20, temps=[code])
        assert rig.det.values[ev.TEMP0] == ntc.to_decic(code)


def test_temperature_smoothing_is_an_eight_window_exponential_average():
    rig = Rig()
    lo, hi = temp_code(30), temp_code(100)
    rig.windows(5, temps=[lo])
    a, b = ntc.to_decic(lo), ntc.to_decic(hi)
    for k in range(1, 40):
        rig.window(temps=[hi])
        want = b + (a - b) * (7 / 8) ** k
        assert abs(rig.det.values[ev.TEMP0] - want) <= 1.0, k


def test_temperature_average_restarts_after_an_ntc_fault():
    rig = Rig()
    rig.windows(20, temps=[temp_code(100)])
    rig.window(temps=[4095])  # one open-lead window: the rule is suspended, history dropped
    cool = temp_code(30)
    rig.window(temps=[cool])
    assert rig.det.values[ev.TEMP0] == ntc.to_decic(cool)


def test_a_reading_of_zero_degrees_is_a_reading_not_a_restart():
    zero = next(c for c in range(ntc.CODE_MIN, ntc.CODE_MAX) if ntc.to_decic(c) == 0)
    rig = Rig()
    rig.windows(10, temps=[zero])
    assert rig.det.values[ev.TEMP0] == 0
    rig.window(temps=[temp_code(10)])
    assert rig.det.values[ev.TEMP0] < 30  # smoothed from 0.0 degC, not restarted at 10


def test_fault_delay_is_whole_seconds_to_the_ms():
    rig = Rig({"fault_delay_s": 2})
    rig.window(res=flat(0))  # open from 100 ms
    assert rig.window(res=flat(0), dt=1999) == []  # 1 ms short of 2 s
    assert rig.window(res=flat(0), dt=1) == [("fault", "residual", ev.FAULT_OPEN, 0, 2100)]


def test_inputs_nobody_wrote_yet_read_as_an_idle_healthy_detector():
    """Before the HAL fills a buffer (boot), the CT inputs sit at mid-scale: no current, no
    lead fault."""
    det = Detector({"fault_delay_s": 1})
    for k in range(1, 40):
        det.process(100 * k)
    assert det.events.drain() == [] and det.status() == 0
    assert [det.values[c] for c in (ev.RESIDUAL, ev.PHASE0, ev.PHASE0 + 2)] == [0, 0, 0]


def test_unfitted_channels_have_no_levels():
    """What the simulator plots and reports as a channel's levels (rules.levels): none for a
    sensor that is not fitted, and the configured ones for those that are."""
    det = Detector({"temp_channels": 2, "phase_channels": 1, "arc_enabled": 0})
    lv = [det.rules.levels(c) for c in range(ev.N_CHANNELS)]
    assert lv[ev.TEMP0] == lv[ev.TEMP0 + 1] == (700, 630)
    assert lv[ev.TEMP0 + 2][0] == lv[ev.TEMP0 + 3][0] == OFF  # no alarm level: not shown
    assert lv[ev.PHASE0] == (3200, 2880)
    assert lv[ev.PHASE0 + 1][0] == lv[ev.PHASE0 + 2][0] == OFF
    assert lv[ev.ARC] == (OFF, OFF)
    assert lv[ev.RESIDUAL] == (270, 210)


def _smoothed(raws):
    """The documented filter: state in 1/80 degC, acc += raw - acc / 8 (floor), read out
    rounded to 0.1 degC; a state of 0 means 'start from the next reading', so a true 0 is
    kept as 1."""
    acc, out = 0, []
    for r in raws:
        acc = r << 3 if acc == 0 else acc + r - (acc >> 3)
        acc = acc or 1
        out.append((acc + 4) >> 3)
    return out


def test_temperature_smoothing_is_exactly_the_documented_filter():
    zero = next(c for c in range(ntc.CODE_MIN, ntc.CODE_MAX) if ntc.to_decic(c) == 0)
    one = next(c for c in range(ntc.CODE_MIN, ntc.CODE_MAX) if ntc.to_decic(c) == 10)
    codes = [temp_code(30)] * 3 + [temp_code(100)] * 30 + [temp_code(20)] * 30
    codes += [zero] * 20 + [one] * 5 + [temp_code(-5)] * 20
    # ... and a first reading of exactly 0.0 degC, then 1.0 degC: smoothed from the 0.0.
    for seq in (codes, [zero] * 3 + [one] * 6):
        rig = Rig()
        got = []
        for c in seq:
            rig.window(temps=[c])
            got.append(rig.det.values[ev.TEMP0])
        assert got == _smoothed([ntc.to_decic(c) for c in seq])


def test_ntc_fault_codes_and_their_debounce():
    rig = Rig({"fault_delay_s": 1})
    ev_ = rig.windows(11, temps=[4095, 0, COOL, ntc.RAIL_LO])
    assert only(ev_, "fault") == [
        ("fault", "temp0", ev.FAULT_OPEN, 0, 1100),
        ("fault", "temp1", ev.FAULT_SHORT, 0, 1100),
    ]
    ev_ = rig.windows(11, temps=[COOL, COOL])
    assert only(ev_, "fault_clear") == [
        ("fault_clear", "temp0", ev.FAULT_OPEN, 0, 2200),
        ("fault_clear", "temp1", ev.FAULT_SHORT, 0, 2200),
    ]


def test_rate_of_rise_through_the_detector():
    rig = Rig({"temp_ror_c_per_min": 5, "temp_set_c": 150})
    # 20 degC for a minute, then 26 degC: 6 degC in the last minute >= 5 degC/min.
    evs = []
    for k in range(1, 1202):
        deg = 20 if k < 600 else 26
        evs += rig.window(temps=[None, temp_code(deg)])
    ror = only(evs, "ror")
    assert len(ror) == 1 and ror[0][1] == "temp1" and ror[0][3] == 50
    assert ror[0][2] >= 50
    # After an NTC fault the minute starts again: no rate until 60 s of good readings.
    rig = Rig({"temp_ror_c_per_min": 5, "temp_set_c": 150})
    evs = []
    for k in range(1, 1202):
        code = temp_code(20 if k < 600 else 26)
        if k == 650:
            code = 4095
        evs += rig.window(temps=[None, code])
    assert only(evs, "ror") == []


# -- arc ------------------------------------------------------------------------------------------


def test_arc_alarms_at_14_clears_at_9_and_resets_below_10():
    rig = Rig()
    assert rig.window(arc=13) == []
    assert rig.window(arc=14) == [("alarm", "arc", 14, 14, 200)]
    assert rig.window(arc=10) == []
    assert rig.det.reset(rig.t) is False  # 10 half-cycles: not quiet yet
    assert rig.window(arc=9) == [("clear", "arc", 9, 10, 400)]
    assert rig.det.reset(rig.t) is True
    assert rig.events() == [("reset", "arc", 9, 14, 400)]
    assert rig.window(arc=40) == [("alarm", "arc", 40, 14, 500)]


def test_arc_disabled():
    rig = Rig({"arc_enabled": 0})
    assert rig.window(arc=100) == []


# -- CT faults: bias band, rails, clipping, sampling --------------------------------------------


@pytest.mark.parametrize(
    ("code", "fault"),
    [
        (0, ev.FAULT_OPEN),
        (255, ev.FAULT_OPEN),
        (256, ev.FAULT_BIAS),
        (1647, ev.FAULT_BIAS),
        (1648, 0),
        (2448, 0),
        (2449, ev.FAULT_BIAS),
        (3839, ev.FAULT_BIAS),
        (3840, ev.FAULT_SHORT),
        (4095, ev.FAULT_SHORT),
    ],
)
def test_ct_window_mean_against_the_bias_band_and_the_rails(code, fault):
    for ch, res, ph in (("residual", flat(code), ()), ("phase1", None, (None, flat(code)))):
        rig = Rig({"fault_delay_s": 1})
        got = only(rig.windows(11, res=res, phases=ph), "fault")
        assert got == ([("fault", ch, fault, 0, 1100)] if fault else []), (ch, code)


def test_ct_mean_is_rounded_down():
    # Half the samples at 1647, half at 1648: mean 1647.5 reads 1647, below the band.
    win = array("H", [1647, 1648] * (N // 2))
    rig = Rig({"fault_delay_s": 1})
    assert only(rig.windows(11, res=win), "fault") == [("fault", "residual", 4, 0, 1100)]


def test_ct_bias_band_follows_the_settings():
    rig = Rig({"fault_delay_s": 1, "ct_bias_lo": 1000, "ct_bias_hi": 3000})
    assert rig.windows(11, res=flat(1000)) == rig.windows(11, res=flat(3000)) == []
    assert only(rig.windows(11, res=flat(999)), "fault")[0][2] == ev.FAULT_BIAS
    rig = Rig({"fault_delay_s": 1, "ct_bias_lo": 1000, "ct_bias_hi": 3000})
    assert only(rig.windows(11, res=flat(3001)), "fault")[0][2] == ev.FAULT_BIAS


def with_edges(code, k, base=MID):
    w = array("H", [base] * N)
    for i in range(k):
        w[7 * i] = code
    return w


@pytest.mark.parametrize(
    ("code", "k", "fault"),
    [(3, 2, True), (3, 1, False), (4, 2, False), (0, 2, True), (4092, 2, True), (4091, 2, False)],
)
def test_two_clipped_samples_in_a_window_are_overrange(code, k, fault):
    rig = Rig({"fault_delay_s": 1, "leak_set_ma": 1000})
    got = only(rig.windows(11, res=with_edges(code, k)), "fault")
    assert got == ([("fault", "residual", ev.FAULT_OVERRANGE, 0, 1100)] if fault else [])


def test_overrange_keeps_the_alarm_rule_running():
    rig = Rig({"fault_delay_s": 1, "leak_set_ma": 20, "leak_delay_s": 0})
    ev_ = rig.window(res=with_edges(0, 2))
    assert [e[0] for e in ev_] == ["alarm"]


@pytest.mark.parametrize(("late", "fault"), [(4, False), (5, True)])
def test_late_samples_are_a_sampling_fault_on_the_residual_channel(late, fault):
    rig = Rig({"fault_delay_s": 1, "leak_delay_s": 0})
    ev_ = rig.windows(11, late=late, res=square(300), phases=[square(10)] * 3)
    want = [("fault", "residual", ev.FAULT_TIMING, 0, 1100)] if fault else []
    assert only(ev_, "fault") == want
    assert only(ev_, "alarm") == [("alarm", "residual", 300, 270, 100)]  # still evaluated


@pytest.mark.parametrize("bad", [flat(1200), flat(0), flat(4095)])
def test_a_faulty_ct_suspends_its_rule(bad):
    rig = Rig({"leak_delay_s": 1, "fault_delay_s": 1})
    rig.windows(5, res=square(400))  # 0.4 s into the 1 s delay
    rig.window(res=bad)
    # The delay starts again after the fault: no alarm until 1 s of leakage after it.
    ev_ = rig.windows(10, res=square(400))
    assert only(ev_, "alarm") == []
    assert only(rig.window(res=square(400)), "alarm") != []
    # A mis-biased CT carrying a large signal is still not read as a leak.
    rig = Rig({"leak_delay_s": 0, "fault_delay_s": 1})
    assert only(rig.windows(20, res=square(500, bias=1200)), "alarm") == []


# -- status word ---------------------------------------------------------------------------------


def test_status_word_has_alarm_fault_and_prealarm_bits_per_channel():
    rig = Rig({"fault_delay_s": 1, "leak_delay_s": 0, "line_set_a": 2, "phase_gain_q12": 4096})
    assert rig.det.status() == 0
    rig.window(res=square(210))  # residual pre-alarm
    assert rig.det.status() == 1 << (18 + ev.RESIDUAL)
    rig.window(res=square(300))  # residual alarm, pre-alarm still reported
    assert rig.det.status() == (1 << ev.RESIDUAL) | (1 << (18 + ev.RESIDUAL))
    rig.windows(11, res=square(300), temps=[None, None, 4095], phases=[None, None, square(185)])
    assert rig.det.status() == (
        (1 << ev.RESIDUAL)
        | (1 << (18 + ev.RESIDUAL))
        | (1 << (9 + ev.TEMP0 + 2))
        | (1 << (18 + ev.PHASE0 + 2))
    )
    rig.window(arc=20)
    assert rig.det.status() & (1 << ev.ARC)
    assert rig.det.alarmed()


def test_status_of_a_fault_alone_and_alarmed_false_without_latch():
    rig = Rig({"fault_delay_s": 1})
    rig.windows(11, phases=[None, flat(0)])
    assert rig.det.status() == 1 << (9 + ev.PHASE0 + 1)
    assert not rig.det.alarmed()
    assert rig.det.reset(rig.t) is True


# -- configuration ------------------------------------------------------------------------------


def test_reconfiguring_keeps_latches_and_applies_new_levels():
    rig = Rig({"leak_set_ma": 300, "leak_delay_s": 0})
    rig.window(res=square(300))
    rig.det.configure({"leak_set_ma": 500, "leak_delay_s": 0})
    assert rig.det.alarmed()
    assert rig.det.rules.levels(ev.RESIDUAL) == (450, 350)
    assert rig.det.cfg["leak_set_ma"] == 500


def test_state_stays_in_the_small_int_range_of_the_chip():
    """Every int the detector keeps (arrays read back escape tests/bounded.py) is a 31-bit
    MicroPython small int on the ESP32, levels switched off included."""
    lo, hi = -(1 << 30), (1 << 30) - 1
    rig = Rig({"temp_channels": 2, "phase_channels": 1, "arc_enabled": 0})
    rig.windows(5, res=square(2000), temps=[0, 4095])
    d = rig.det
    for arr in (d.rules.s, d.faults.s, d.rors.s, d.values, d._temp_acc):
        assert all(lo <= x <= hi for x in arr)
