"""The latching threshold rule shared by every channel: delay, cancel, latch, reset, hysteresis."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from efd import ticks
from efd.events import ALARM, CLEAR, PREALARM, RESET, EventQueue
from efd.threshold import Threshold

STEP_MS = 100


def make(alarm=900, pre=700, hyst=50, delay_ms=1000):
    q = EventQueue(256)
    r = Threshold(0, q)
    r.configure(alarm, pre, hyst, delay_ms)
    return r, q


def feed(rule, values, t0=0):
    """One value per 100 ms window; returns [(kind, t_ms_since_start)]."""
    out = []
    for i, v in enumerate(values):
        rule.update(v, ticks.add(t0, i * STEP_MS))
        for e in rule.queue.drain():
            out.append((e[0], ticks.diff(e[4], t0)))
    return out


start_times = st.one_of(st.just(0), st.integers(0, ticks.MASK), st.just(ticks.MASK - 500))
values = st.integers(0, 2000)


@given(st.lists(values, max_size=300), st.integers(0, 10_000), start_times)
def test_never_alarms_below_the_alarm_point(vals, delay, t0):
    rule, _ = make(delay_ms=delay)
    vals = [min(v, 899) for v in vals]
    assert ALARM not in [k for k, _ in feed(rule, vals, t0)]
    assert not rule.latched


@given(st.integers(0, 60_000), st.integers(900, 5000), st.integers(0, 50), start_times)
def test_alarm_exactly_when_the_delay_has_elapsed(delay, level, lead_in, t0):
    rule, _ = make(delay_ms=delay)
    n_above = delay // STEP_MS + 3
    ev = feed(rule, [0] * lead_in + [level] * n_above, t0)
    alarms = [t for k, t in ev if k == ALARM]
    onset = lead_in * STEP_MS
    # The first window at/after onset + delay raises it (windows are 100 ms apart).
    want = onset + -(-delay // STEP_MS) * STEP_MS
    assert alarms == [want]


@given(st.integers(200, 60_000), st.data(), start_times)
def test_falling_back_during_the_delay_cancels(delay, data, t0):
    rule, _ = make(delay_ms=delay)
    vals = []
    # Bursts above the alarm point, each shorter than the delay, separated by a window below it.
    for _ in range(data.draw(st.integers(1, 10))):
        burst = data.draw(st.integers(1, max(1, (delay - 1) // STEP_MS)))
        vals += [data.draw(st.integers(900, 3000)) for _ in range(burst)]
        vals += [data.draw(st.integers(0, 899))]
    assert ALARM not in [k for k, _ in feed(rule, vals, t0)]


@given(st.lists(values, max_size=200), start_times)
def test_alarm_latches_until_reset(after, t0):
    rule, _q = make(delay_ms=0)
    feed(rule, [1000], t0)
    assert rule.latched
    feed(rule, after, t0)
    assert rule.latched, "an alarm must stay latched whatever the value does afterwards"


@given(st.integers(851, 5000))
def test_reset_refused_while_the_condition_is_present(level):
    rule, q = make(delay_ms=0)
    feed(rule, [1000, level])
    assert rule.reset(0) is False
    assert rule.latched
    assert RESET not in [e[0] for e in q.drain()]


@given(st.integers(0, 849))
def test_reset_clears_the_latch_once_the_condition_is_gone(level):
    rule, q = make(delay_ms=0)
    feed(rule, [1000, level])
    q.drain()
    assert rule.reset(1234) is True
    assert not rule.latched
    assert [e[0] for e in q.drain()] == [RESET]


def test_prealarm_then_alarm_then_clear_with_hysteresis():
    rule, _ = make(delay_ms=300)
    ev = feed(rule, [0, 700, 680, 660, 920, 920, 920, 920, 500, 651, 649])
    kinds = [k for k, _ in ev]
    # 680/660 stay above the clear level 700 - 50: no chatter; CLEAR only below 650.
    assert kinds == [PREALARM, ALARM, CLEAR]
    assert ev[1][1] == 700  # onset at 400 ms + 300 ms delay


@given(st.lists(st.integers(600, 800), min_size=1, max_size=200))
def test_prealarm_hysteresis_matches_a_two_level_reference(vals):
    """Noise around the pre-alarm level: PREALARM at >= 700, CLEAR only below 650, alternating."""
    rule, _ = make(alarm=10_000, delay_ms=0)
    got = [k for k, _ in feed(rule, vals)]
    want, on = [], False
    for v in vals:
        if not on and v >= 700:
            on = True
            want.append(PREALARM)
        elif on and v < 650:
            on = False
            want.append(CLEAR)
    assert got == want
