"""The rule engines at their edges: clock wrap, the latching rule's boundaries, fault debounce,
rate of rise (window, threshold, re-arming, restart) and the event queue.

Every case here sits exactly on a boundary the firmware promises (>= versus >, the first window
at or after a delay, the reading 60 s back, half the threshold to re-arm), so an off-by-one in
any of them fails a test. Properties run with a fixed seed: these are conformance checks, and a
failure must not depend on what Hypothesis happened to draw (`make mutate`, docs/testing.md).
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, seed
from hypothesis import strategies as st

from efd import ticks
from efd.events import ALARM, CLEAR, FAULT, FAULT_CLEAR, PREALARM, RESET, ROR, TEMP0, EventQueue
from efd.faults import Faults
from efd.ror import RateOfRise
from efd.threshold import OFF, Thresholds

PERIOD = 1 << 30
HALF = 1 << 29

# -- the 2^30 ms clock ------------------------------------------------------------------------


@seed(14287)
@given(st.integers(0, PERIOD - 1), st.integers(-HALF, HALF - 1))
@example(0, HALF - 1)
@example(0, -HALF)
@example(PERIOD - 1, 1)
@example(PERIOD - 1, -HALF)
@example(0, -1)
@example(HALF, HALF - 1)
@example(HALF - 1, -HALF)
@example(HALF, -HALF)
def test_clock_add_and_diff_are_arithmetic_modulo_2_30(t, delta):
    """add() wraps into [0, 2^30) and diff() undoes it for any delta in [-2^29, 2^29)."""
    later = ticks.add(t, delta)
    assert later == (t + delta) % PERIOD
    assert ticks.diff(later, t) == delta
    assert ticks.diff(t, later) == (-delta if delta != -HALF else -HALF)


def test_clock_ends_meet():
    """MASK is the last timestamp: one ms later is 0, and it lies one ms before 0."""
    assert ticks.add(ticks.MASK, 1) == 0
    assert ticks.add(0, -1) == ticks.MASK
    assert ticks.diff(0, ticks.MASK) == 1
    assert ticks.diff(ticks.MASK, 0) == -1


# -- the latching rule (efd.threshold) ----------------------------------------------------------


def bank(alarm=900, pre=700, hyst=50, delay_ms=1000, n=1, ch=0):
    q = EventQueue(256)
    r = Thresholds(n, q)
    r.configure(ch, alarm, pre, hyst, delay_ms)
    return r, q


def run(rule, values, t0=0, step=100, ch=0):
    """One value per window; [(kind, value, threshold, ms since t0)]."""
    out = []
    for i, v in enumerate(values):
        rule.update(ch, v, ticks.add(t0, i * step))
        out += [(e[0], e[2], e[3], ticks.diff(e[4], t0)) for e in rule.queue.drain()]
    return out


@pytest.mark.parametrize("t0", [0, ticks.MASK - 150])
def test_alarm_at_the_level_itself_and_at_the_first_window_after_the_delay(t0):
    rule, _ = bank(pre=OFF, delay_ms=300)
    # 899 never starts the delay; 900 does, at 100 ms; the alarm comes at 400 ms, not 500.
    assert run(rule, [899, 900, 900, 900, 900, 900], t0) == [(ALARM, 900, 900, 400)]


def test_no_alarm_one_window_before_the_delay_ends():
    rule, _ = bank(pre=OFF, delay_ms=300)
    assert run(rule, [900, 900, 900, 899, 900]) == []
    assert not rule.latched(0)


def test_zero_delay_alarms_in_the_first_window_at_the_level():
    rule, _ = bank(pre=OFF, delay_ms=0)
    assert run(rule, [0, 900]) == [(ALARM, 900, 900, 100)]


def test_prealarm_at_its_level_and_clear_below_the_hysteresis_band():
    rule, _ = bank(alarm=10_000, pre=700, hyst=50)
    ev = run(rule, [699, 700, 650, 651, 700, 649, 650])
    # Reported once at 700, still on at 650 (the clear level is 700 - 50 = 650: "below" it
    # clears), cleared at 649 with the clear level as threshold, not re-raised at 650.
    assert ev == [(PREALARM, 700, 700, 100), (CLEAR, 649, 650, 500)]
    assert not rule.pre(0)


def test_prealarm_state_is_reported_until_it_clears():
    rule, _ = bank(alarm=10_000, pre=700, hyst=50)
    assert not rule.pre(0)
    run(rule, [700])
    assert rule.pre(0) and not rule.latched(0)
    run(rule, [660])
    assert rule.pre(0)
    run(rule, [600])
    assert not rule.pre(0)


def test_clear_level_is_below_the_lower_of_the_two_levels():
    # Pre-alarm above the alarm level (or off): CLEAR is below alarm - hysteresis.
    rule, _ = bank(alarm=500, pre=800, hyst=20, delay_ms=0)
    ev = run(rule, [500, 480, 479])
    assert ev == [(ALARM, 500, 500, 0), (CLEAR, 479, 480, 200)]
    rule, _ = bank(alarm=500, pre=OFF, hyst=20, delay_ms=10_000)
    assert run(rule, [500, 481, 480, 479]) == [(CLEAR, 479, 480, 300)]


def test_no_prealarm_while_latched_and_none_repeated():
    rule, _ = bank(delay_ms=0)
    ev = run(rule, [1000, 800, 1000, 800, 750])
    # The alarm is latched: the value dipping to the pre-alarm band is not a new pre-alarm.
    assert [k for k, *_ in ev] == [ALARM]
    assert not rule.pre(0)
    # Pre-alarm first, then the alarm: one PREALARM only, however long it stays above.
    rule, _ = bank(delay_ms=200)
    assert [k for k, *_ in run(rule, [700, 750, 900, 900, 900, 720, 710])] == [PREALARM, ALARM]
    # After a reset, a new rise is a new pre-alarm.
    rule, _ = bank(delay_ms=0)
    run(rule, [1000, 0])
    assert rule.reset(0, 5000) is True
    assert [k for k, *_ in run(rule, [0, 710])] == [RESET, PREALARM]


@pytest.mark.parametrize(
    ("last", "ok"),
    [(851, False), (850, False), (849, True), (0, True)],
)
def test_reset_needs_the_value_below_alarm_minus_hysteresis(last, ok):
    rule, q = bank(pre=OFF, delay_ms=0)
    run(rule, [1000, last])
    q.drain()
    assert rule.reset(0, 777) is ok
    assert rule.latched(0) is (not ok)
    want = [(RESET, 0, last, 900, 777)] if ok else []
    assert q.drain() == want


def test_suspend_cancels_the_delay_and_keeps_the_latch():
    rule, _ = bank(pre=OFF, delay_ms=300)
    ev = run(rule, [900, 900, 900])  # 200 ms into a 300 ms delay
    rule.suspend(0)
    ev += run(rule, [900, 900, 900, 900], t0=300)
    # The delay restarted at 300 ms: the alarm comes at 600, not at 300.
    assert ev == [(ALARM, 900, 900, 300)]
    rule.suspend(0)
    assert rule.latched(0), "a sensor fault must not clear a latched alarm"
    assert rule.reset(0, 0) is False


def test_suspending_one_channel_leaves_the_others_running():
    rule, q = bank(alarm=100, pre=OFF, hyst=10, delay_ms=300, n=9, ch=0)
    for ch in (5, 8):
        rule.configure(ch, 100, OFF, 10, 300)
    for t in (0, 100, 200):
        for ch in (0, 5, 8):
            rule.update(ch, 100, t)
    rule.suspend(5)
    for ch in (0, 5, 8):
        rule.update(ch, 100, 300)
    assert sorted(e[1] for e in q.drain() if e[0] == ALARM) == [0, 8]
    for t in (400, 500, 600):
        rule.update(5, 100, t)
    assert [(e[0], e[1], e[4]) for e in q.drain()] == [(ALARM, 5, 600)]


def test_unlatched_channel_resets_trivially_and_reports_nothing():
    rule, q = bank()
    assert rule.reset(0, 0) is True
    assert q.drain() == []


def test_second_channel_of_a_bank_keeps_its_own_levels():
    rule, q = bank(alarm=100, pre=OFF, hyst=10, delay_ms=0, n=3, ch=2)
    assert rule.levels(2) == (100, OFF)
    assert rule.levels(0) == rule.levels(1) == (OFF, OFF)
    rule.update(0, 10**6, 0)
    rule.update(1, 10**6, 0)
    rule.update(2, 100, 0)
    assert [(e[0], e[1]) for e in q.drain()] == [(ALARM, 2)]
    assert [rule.latched(c) for c in range(3)] == [False, False, True]


# -- fault debounce (efd.faults) ------------------------------------------------------------------


def faults(codes, delay_ms=None, step=100, n=1, ch=0, t0=0):
    q = EventQueue(64)
    f = Faults(n, q)
    if delay_ms is not None:
        f.delay_ms = delay_ms
    out = []
    for i, c in enumerate(codes):
        f.update(ch, c, ticks.add(t0, i * step))
        out += [(e[0], e[2], ticks.diff(e[4], t0)) for e in q.drain()]
    return out, f


def test_fault_reported_when_held_for_the_delay_and_cleared_after_as_long_good():
    ev, f = faults([0] + [1] * 5 + [0] * 5, delay_ms=300)
    # Fault from 100 ms: reported at 400. Good again from 600: cleared at 900, naming the code.
    assert ev == [(FAULT, 1, 400), (FAULT_CLEAR, 1, 900)]
    assert f.reported[0] == 0


def test_fault_shorter_than_the_delay_is_never_reported_and_a_blip_restarts_clearing():
    ev, _ = faults([1, 1, 1, 0, 1, 1, 1, 0], delay_ms=300)
    assert ev == []
    ev, _ = faults([1] * 4 + [0, 0, 1] + [0] * 4, delay_ms=300)
    # Reported at 300; good at 400-500, a bad window at 600, good again from 700: clear at 1000.
    assert ev == [(FAULT, 1, 300), (FAULT_CLEAR, 1, 1000)]


def test_default_fault_delay_is_two_seconds():
    ev, _ = faults([2] * 21)  # 0 .. 2000 ms
    assert ev == [(FAULT, 2, 2000)]
    q = EventQueue(8)
    f = Faults(1, q)
    f.update(0, 2, 0)
    f.update(0, 2, 1999)  # 1 ms early
    assert q.drain() == []
    f.update(0, 2, 2000)
    assert q.drain() == [(FAULT, 0, 2, 0, 2000)]


def test_a_changed_fault_code_is_debounced_and_reported_again():
    ev, f = faults([1] * 4 + [3] * 4, delay_ms=300)
    assert ev == [(FAULT, 1, 300), (FAULT, 3, 700)]
    assert f.reported[0] == 3


def test_fault_channels_are_separate():
    q = EventQueue(64)
    f = Faults(3, q)
    f.delay_ms = 0
    f.update(1, 4, 0)
    f.update(2, 0, 0)
    assert list(f.reported) == [0, 4, 0]
    assert [(e[0], e[1], e[2]) for e in q.drain()] == [(FAULT, 1, 4)]


# -- rate of rise (efd.ror) -------------------------------------------------------------------


def ror(readings, threshold=100, step=10_000, t0=0, i=0, restart_at=(), times=None):
    """Feed one reading per `step` ms (or at `times`); [(value, threshold, channel, ms)]."""
    q = EventQueue(64)
    r = RateOfRise(q)
    r.threshold = threshold
    out = []
    for k, v in enumerate(readings):
        if k in restart_at:
            r.restart(i)
        r.update(i, v, ticks.add(t0, times[k] if times else k * step))
        out += [(e[2], e[3], e[1], ticks.diff(e[4], t0)) for e in q.drain() if e[0] == ROR]
    return out


def test_ror_compares_with_the_reading_a_minute_back():
    # A 10 degC step between the first and second reading: seen only once the oldest of the
    # 7 readings (60 s back) is the one before the step, at 60 s; not at 50 s, not at 70 s.
    assert ror([250] + [350] * 8) == [(100, 100, TEMP0, 60_000)]


@pytest.mark.parametrize("t0", [0, ticks.MASK - 25_000])
def test_ror_threshold_is_inclusive(t0):
    assert ror([0, 0, 0, 0, 0, 0, 100], t0=t0) == [(100, 100, TEMP0, 60_000)]
    assert ror([0, 0, 0, 0, 0, 0, 99], t0=t0) == []


def test_ror_needs_a_full_minute_of_readings():
    # Six readings span 50 s: no decision yet, however steep.
    assert ror([0, 500, 1000, 1500, 2000, 2500]) == []


def test_ror_takes_one_reading_per_10_s():
    # Windows every 100 ms: the readings are those at 0, 10, 20 ... 60 s; the windows between
    # them are not readings (here they all read 50 degC hotter).
    vals = [0 if k % 100 == 0 else 500 for k in range(601)]
    assert ror(vals, step=100) == []
    # The window exactly 10 s after the last reading is the next reading.
    assert ror([0] * 600 + [100], step=100) == [(100, 100, TEMP0, 60_000)]
    # One ms short of 10 s is not: the 60 s reading is 0, the hot one 1 ms before is skipped.
    times = [0, 10_000, 20_000, 30_000, 40_000, 50_000, 59_999, 60_000]
    assert ror([0, 0, 0, 0, 0, 0, 500, 0], times=times) == []


def test_ror_reported_once_while_it_keeps_rising():
    assert [t for *_, t in ror([0, 20, 40, 60, 80, 100, 120, 140, 160, 180], 120)] == [60_000]


@pytest.mark.parametrize(("at_70s", "want"), [(79, [60_000, 80_000]), (80, [60_000])])
def test_ror_rearmed_only_once_the_rise_is_below_half_the_threshold(at_70s, want):
    # 120 per minute at 60 s: reported. At 70 s the rise over the minute is 59 (re-armed) or
    # exactly 60 = half (not re-armed); at 80 s it is 120 again: a new report only if re-armed.
    vals = [0, 20, 40, 60, 80, 100, 120, at_70s, 160]
    assert [t for *_, t in ror(vals, threshold=120)] == want


def test_ror_off_at_threshold_zero():
    assert ror([0, 0, 0, 0, 0, 0, 5000], threshold=0) == []
    # A bank nobody configured is off too (the detector sets temp_ror_c_per_min).
    q = EventQueue(8)
    r = RateOfRise(q)
    for k, v in enumerate([0, 0, 0, 0, 0, 0, 1, -10, 5000]):
        r.update(0, v, k * 10_000)
    assert q.drain() == []


def test_ror_restart_forgets_the_history():
    # A sensor fault at 100 s: the minute starts again with the 100 s reading, so the first
    # decision is at 160 s (a rise of 100 over 100..160 s); the 0 readings before it are gone.
    vals = [0] * 10 + [300] * 6 + [400] * 2
    assert ror(vals, restart_at={10}) == [(100, 100, TEMP0, 160_000)]


def test_ror_restart_rearms():
    vals = [0] * 6 + [100] * 8 + [200]
    assert [t for *_, t in ror(vals, restart_at={8})] == [60_000, 140_000]


def test_ror_each_temperature_channel_reports_as_itself():
    assert ror([0] * 6 + [100], i=3) == [(100, 100, TEMP0 + 3, 60_000)]


# -- the event queue (efd.events) -----------------------------------------------------------------


def test_queue_is_fifo_and_overwrites_the_oldest_when_full():
    q = EventQueue(3)
    assert q.pop() is None and q.drain() == []
    for k in range(5):
        q.push(ALARM, k, 10 * k, -k, 1000 + k)
    assert q.dropped == 2 and q.count == 3
    assert q.drain() == [(ALARM, k, 10 * k, -k, 1000 + k) for k in (2, 3, 4)]
    q.push(CLEAR, 8, -(2**31), 2**31 - 1, ticks.MASK)
    assert q.pop() == (CLEAR, 8, -(2**31), 2**31 - 1, ticks.MASK)
    assert q.pop() is None
    assert q.dropped == 2


def test_queue_wraps_around_its_arrays_without_loss():
    q = EventQueue(4)
    seen = []
    for k in range(10):
        q.push(PREALARM, k % 9, k, k, k)
        q.push(ALARM, k % 9, k, k, k)
        seen.append(q.pop())
        seen.append(q.pop())
    assert [e[2] for e in seen] == [k for k in range(10) for _ in range(2)]
    assert q.dropped == 0


def test_detector_queue_holds_32_events():
    from efd.detector import Detector

    q = Detector().events
    for k in range(33):
        q.push(ALARM, 0, k, 0, k)
    assert q.dropped == 1 and q.pop()[2] == 1
