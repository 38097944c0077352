from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m22bol.domain.rules.survival import kaplan_meier


def test_textbook_example_with_a_tie_and_censorings():
    # times 1 2 2+ 3 4+ 5 ("+" = censored)
    # t=1: 6 at risk, 1 death -> 5/6
    # t=2: 5 at risk (the one censored at 2 still counts), 1 death -> 5/6 * 4/5 = 2/3
    # t=3: 3 at risk, 1 death -> 2/3 * 2/3 = 4/9   (first value <= 0.5: median 3)
    # t=5: 1 at risk, 1 death -> 0
    curve = kaplan_meier([1, 2, 2, 3, 4, 5], [True, True, False, True, False, True])
    assert curve.survival_at(0) == 1.0
    assert curve.survival_at(0.99) == 1.0
    assert curve.survival_at(1) == pytest.approx(5 / 6)
    assert curve.survival_at(2.5) == pytest.approx(2 / 3)
    assert curve.survival_at(4) == pytest.approx(4 / 9)
    assert curve.survival_at(5) == 0.0
    # Beyond the last follow-up the curve is known only because it reached 0.
    assert curve.survival_at(5.01) == 0.0
    assert curve.survival_at(60) == 0.0
    assert curve.median() == 3


def test_textbook_intervals_by_hand():
    # Greenwood sums: t=1: 1/(6*5) = 1/30; t=2: + 1/(5*4) = 1/12; t=3: + 1/(3*2) = 1/4;
    # t=5 (1 at risk, 1 death) adds nothing and S = 0, so its interval is [0, 0].
    # At t=1, S = 5/6, v = log S = -0.18232: log(-v) = -1.70198; z sqrt(1/30) / v = -1.96 *
    # 0.18257 / 0.18232 = -1.96271; lower = exp(-exp(-1.70198 + 1.96271)) = exp(-1.29793) =
    # 0.27310; upper = exp(-exp(-1.70198 - 1.96271)) = exp(-0.02561) = 0.97472.
    curve = kaplan_meier([1, 2, 2, 3, 4, 5], [True, True, False, True, False, True])
    low, high = curve.interval_at(1.5)
    assert (round(low, 4), round(high, 4)) == (0.2731, 0.9747)
    assert curve.interval_at(0.5) == (1.0, 1.0)
    assert curve.interval_at(5) == (0.0, 0.0)
    assert curve.interval_at(9) == (0.0, 0.0)
    ones = kaplan_meier([1, 2], [False, False])
    assert ones.interval_at(1.5) == (1.0, 1.0)
    assert ones.interval_at(2.5) is None


def test_events_come_before_censorings_at_the_same_time():
    # t=2: 3 at risk (the censored one included), 1 death -> 2/3; had the censoring gone first,
    # it would be 1/2 and the median would be 2.
    curve = kaplan_meier([2, 2, 3], [True, False, True])
    assert curve.survival_at(2) == pytest.approx(2 / 3)
    assert curve.survival_at(3) == 0.0
    assert curve.median() == 3


def test_median_is_the_first_time_the_curve_reaches_exactly_one_half():
    # 3/4 * 2/3 = 1/2 exactly at t=2; a float product may miss 0.5 by one ulp.
    assert kaplan_meier([1, 2, 3, 4], [True] * 4).median() == 2
    assert kaplan_meier([1, 2], [True, False]).median() == 1


def test_median_not_reached():
    # t=1: 4 at risk -> 3/4; t=2: 3 at risk -> 3/4 * 2/3 = 1/2 would reach it, so censor t=2
    curve = kaplan_meier([1, 2, 3, 4], [True, False, False, False])
    assert curve.survival_at(4) == pytest.approx(0.75)
    assert curve.median() is None


def test_no_events_stays_at_one_up_to_the_last_follow_up():
    curve = kaplan_meier([3.5, 7.25], [False, False])
    assert curve.survival_at(7.25) == 1.0
    assert curve.survival_at(7.26) is None
    assert curve.median() is None


def test_empty_sample_says_nothing():
    curve = kaplan_meier([], [])
    assert curve.survival_at(0) is None
    assert curve.median() is None


def test_time_zero_is_a_valid_duration():
    # t=0: 2 at risk, 1 death -> 1/2, reached at once
    curve = kaplan_meier([0, 4], [True, False])
    assert curve.survival_at(0) == 0.5
    assert curve.median() == 0


@pytest.mark.parametrize(
    ("durations", "events"),
    [([1, 2], [True]), ([-1], [True]), ([math.nan], [False]), ([math.inf], [True])],
)
def test_rejects_bad_input(durations, events):
    with pytest.raises(ValueError):
        kaplan_meier(durations, events)


# Few distinct values so that ties (event/event and event/censoring) are common.
samples = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 30).map(float), st.floats(0, 30, allow_nan=False)),
        st.booleans(),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150)
@given(samples)
def test_agrees_with_lifelines(sample):
    from lifelines import KaplanMeierFitter

    durations = [d for d, _ in sample]
    events = [e for _, e in sample]
    ours = kaplan_meier(durations, events)
    theirs = KaplanMeierFitter().fit(durations, events)

    last = max(durations)
    probes = sorted({*durations, *(d + 0.5 for d in durations if d + 0.5 <= last), 0.0, last})
    expected = theirs.survival_function_at_times(probes).to_numpy()
    for t, s in zip(probes, expected, strict=True):
        assert ours.survival_at(t) == pytest.approx(float(s), abs=1e-12)
    beyond = ours.survival_at(last + 0.001)
    assert beyond == (0.0 if ours.steps and ours.steps[-1] == 0 else None)

    # Greenwood log-log bounds at every probe, as lifelines' confidence_interval_ has them.
    bounds = theirs.confidence_interval_
    for t in probes:
        row = bounds[bounds.index <= t]
        expected_ci = (1.0, 1.0) if row.empty else tuple(map(float, row.iloc[-1]))
        assert ours.interval_at(t) == pytest.approx(expected_ci, abs=1e-9)

    # The median's interval: lifelines' median_survival_times of the bounds (inf: None).
    from lifelines.utils import median_survival_times

    medians = median_survival_times(bounds).iloc[0]
    as_ours = tuple(None if math.isinf(m) else float(m) for m in medians)
    near_bound = any(abs(b - 0.5) < 1e-9 for i in range(len(ours.times))
                     for b in ours._bounds(i))
    if not near_bound:
        assert ours.median_interval() == as_ours

    lifelines_median = theirs.median_survival_time_
    near_half = [t for t in ours.times if abs(ours.survival_at(t) - 0.5) < 1e-9]
    if near_half:
        # lifelines multiplies in floats (exp of summed logs), so a step exactly at 1/2 may
        # come out a hair above it and its median moves to a later step; ours is exact.
        assert ours.median() == near_half[0]
    elif math.isinf(lifelines_median):
        assert ours.median() is None
    else:
        assert ours.median() == lifelines_median


@given(samples)
def test_curve_is_non_increasing_and_within_0_and_1(sample):
    curve = kaplan_meier([d for d, _ in sample], [e for _, e in sample])
    last = curve.last_follow_up
    # min(): last * 50 / 50 can round above last, where the curve is undefined
    grid = [min(last, last * i / 50) for i in range(51)]
    values = [curve.survival_at(t) for t in grid]
    assert all(v is not None and 0.0 <= v <= 1.0 for v in values)
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
