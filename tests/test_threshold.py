"""The latching threshold rule shared by every channel: delay, cancel, latch, reset, hysteresis.

The properties run on a one-channel bank (efd.threshold.Thresholds); the last tests check that
the channels of a bank (rules, fault debouncers, rate-of-rise) never interfere."""

from __future__ import annotations

from hypothesis import given, seed
from hypothesis import strategies as st

from efd import ticks
from efd.events import ALARM, CLEAR, PREALARM, RESET, TEMP0, EventQueue
from efd.faults import Faults
from efd.ror import RateOfRise
from efd.threshold import OFF, Thresholds

STEP_MS = 100


def make(alarm=900, pre=700, hyst=50, delay_ms=1000):
    q = EventQueue(256)
    r = Thresholds(1, q)
    r.configure(0, alarm, pre, hyst, delay_ms)
    return r, q


def feed(rule, values, t0=0):
    """One value per 100 ms window; returns [(kind, t_ms_since_start)]."""
    out = []
    for i, v in enumerate(values):
        rule.update(0, v, ticks.add(t0, i * STEP_MS))
        for e in rule.queue.drain():
            out.append((e[0], ticks.diff(e[4], t0)))
    return out


start_times = st.one_of(st.just(0), st.integers(0, ticks.MASK), st.just(ticks.MASK - 500))
values = st.integers(0, 2000)


@seed(14388)
@given(st.lists(values, max_size=300), st.integers(0, 10_000), start_times)
def test_never_alarms_below_the_alarm_point(vals, delay, t0):
    rule, _ = make(delay_ms=delay)
    vals = [min(v, 899) for v in vals]
    assert ALARM not in [k for k, _ in feed(rule, vals, t0)]
    assert not rule.latched(0)


@seed(14389)
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


@seed(14390)
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


@seed(14391)
@given(st.lists(values, max_size=200), start_times)
def test_alarm_latches_until_reset(after, t0):
    rule, _q = make(delay_ms=0)
    feed(rule, [1000], t0)
    assert rule.latched(0)
    feed(rule, after, t0)
    assert rule.latched(0), "an alarm must stay latched whatever the value does afterwards"


@seed(14392)
@given(st.integers(851, 5000))
def test_reset_refused_while_the_condition_is_present(level):
    rule, q = make(delay_ms=0)
    feed(rule, [1000, level])
    assert rule.reset(0, 0) is False
    assert rule.latched(0)
    assert RESET not in [e[0] for e in q.drain()]


@seed(14393)
@given(st.integers(0, 849))
def test_reset_clears_the_latch_once_the_condition_is_gone(level):
    rule, q = make(delay_ms=0)
    feed(rule, [1000, level])
    q.drain()
    assert rule.reset(0, 1234) is True
    assert not rule.latched(0)
    assert [e[0] for e in q.drain()] == [RESET]


def test_prealarm_then_alarm_then_clear_with_hysteresis():
    rule, _ = make(delay_ms=300)
    ev = feed(rule, [0, 700, 680, 660, 920, 920, 920, 920, 500, 651, 649])
    kinds = [k for k, _ in ev]
    # 680/660 stay above the clear level 700 - 50: no chatter; CLEAR only below 650.
    assert kinds == [PREALARM, ALARM, CLEAR]
    assert ev[1][1] == 700  # onset at 400 ms + 300 ms delay


@seed(14394)
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


# -- the channels of a bank never interfere -------------------------------------------------------
#
# Each bank keeps every channel's state side by side in shared arrays. Channel a's events (and
# answers) must be the same whether or not another channel b of the same bank is driven too.


def _two_channels(a_ops, b_ops, apply, t0, step_ms):
    """Run a's ops alone, then with b's interleaved (b first at each step): a's two histories."""
    runs = []
    for with_b in (False, True):
        q = EventQueue(64)
        bank, out = None, []
        for i, op in enumerate(a_ops):
            now = ticks.add(t0, i * step_ms)
            if bank is None:
                bank = apply(None, q, None, now)  # build the bank
            if with_b and i < len(b_ops):
                apply(bank, q, b_ops[i], now)
            out.append(apply(bank, q, op, now))
            out += [e for e in q.drain() if e[1] == op[0]]
        runs.append(out)
    return runs


channel_pairs = st.permutations(range(3)).map(lambda p: (p[0], p[1]))
levels = st.tuples(*[st.integers(0, 3000)] * 2, st.integers(0, 300), st.integers(0, 3000))


@seed(14395)
@given(levels)
def test_levels_are_what_was_configured_and_off_before(lv):
    bank = Thresholds(2, EventQueue())
    assert bank.levels(0) == bank.levels(1) == (OFF, OFF)
    bank.configure(1, *lv)
    assert bank.levels(1) == lv[:2] and bank.levels(0) == (OFF, OFF)


@seed(14396)
@given(channel_pairs, levels, levels, st.data(), start_times)
def test_threshold_channels_never_interfere(ab, levels_a, levels_b, data, t0):
    a, b = ab
    ops = st.tuples(st.sampled_from("uuuusr"), st.integers(0, 3000))
    a_ops = [(a, *op) for op in data.draw(st.lists(ops, max_size=80))]
    b_ops = [(b, *op) for op in data.draw(st.lists(ops, max_size=80))]

    def apply(bank, q, op, now):
        if bank is None:
            bank = Thresholds(3, q)
            bank.configure(a, *levels_a)
            bank.configure(b, *levels_b)
            return bank
        ch, what, v = op
        if what == "u":
            bank.update(ch, v, now)
        elif what == "s":
            bank.suspend(ch)
        elif bank.reset(ch, now) is not True:
            return "refused"
        return (bank.latched(ch), bank.pre(ch), bank.levels(ch))

    alone, shared = _two_channels(a_ops, b_ops, apply, t0, STEP_MS)
    assert alone == shared


@seed(14397)
@given(channel_pairs, st.integers(0, 9000), st.data(), start_times)
def test_fault_channels_never_interfere(ab, delay, data, t0):
    a, b = ab
    codes = st.tuples(st.sampled_from([0, 0, 0, 1, 2, 3, 4]))
    a_ops = [(a, *c) for c in data.draw(st.lists(codes, max_size=120))]
    b_ops = [(b, *c) for c in data.draw(st.lists(codes, max_size=120))]

    def apply(bank, q, op, now):
        if bank is None:
            bank = Faults(3, q)
            bank.delay_ms = delay
            return bank
        ch, code = op
        bank.update(ch, code, now)
        return bank.reported[ch]

    alone, shared = _two_channels(a_ops, b_ops, apply, t0, 500)
    assert alone == shared


@seed(14398)
@given(st.permutations(range(4)), st.integers(1, 300), st.data(), start_times)
def test_rate_of_rise_channels_never_interfere(perm, threshold, data, t0):
    a, b = perm[0], perm[1]
    readings = st.tuples(st.integers(-400, 2000), st.booleans())
    a_ops = [(TEMP0 + a, *r) for r in data.draw(st.lists(readings, max_size=120))]
    b_ops = [(TEMP0 + b, *r) for r in data.draw(st.lists(readings, max_size=120))]

    def apply(bank, q, op, now):
        if bank is None:
            bank = RateOfRise(q)
            bank.threshold = threshold
            return bank
        ch, decic, restart = op
        if restart and decic % 8 == 0:  # now and then, as after a sensor fault
            bank.restart(ch - TEMP0)
        else:
            bank.update(ch - TEMP0, decic, now)
        return None

    alone, shared = _two_channels(a_ops, b_ops, apply, t0, 2500)
    assert alone == shared
