"""The report's survival figure draws the project's own estimator: the plotted steps are the
curve the endpoint tallies read, and the numbers at risk are lifelines' (which drew it before)."""

from __future__ import annotations

from bisect import bisect_right

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m22bol.domain.rules.survival import kaplan_meier
from m22bol.projections.report.figures import SurvivalRow, at_risk, km_figure, km_steps

samples = st.lists(
    st.tuples(st.sampled_from(["I", "II", "IV"]),
              st.one_of(st.integers(0, 30).map(float), st.floats(0, 30, allow_nan=False)),
              st.booleans()),
    min_size=1, max_size=30,
).map(lambda rows: [SurvivalRow(b, m, e) for b, m, e in rows])


def drawn(xs: list[float], ys: list[float], t: float) -> float:
    """The value of a step line drawn with where="post" at t."""
    return ys[bisect_right(xs, t) - 1]


@settings(max_examples=60, deadline=None)
@given(samples)
def test_each_basket_is_drawn_as_the_tallies_curve(rows):
    import matplotlib.pyplot as plt

    fig = km_figure(rows, "PFS")
    try:
        ax = fig.axes[0]
        steps = {line.get_label(): line for line in ax.get_lines()
                 if line.get_label().startswith("basket ")}
        for basket in {r.basket for r in rows}:
            mine = [r for r in rows if r.basket == basket]
            curve = kaplan_meier([r.months for r in mine], [r.event for r in mine])
            line = steps[f"basket {basket}"]
            xs, ys = [float(x) for x in line.get_xdata()], [float(y) for y in line.get_ydata()]
            assert (xs, ys) == km_steps(curve)
            for t in sorted({0.0, *(r.months for r in mine)}):
                assert drawn(xs, ys, t) == curve.survival_at(t)
    finally:
        plt.close(fig)


@settings(max_examples=60, deadline=None)
@given(samples)
def test_numbers_at_risk_are_the_ones_lifelines_printed(rows):
    from lifelines import KaplanMeierFitter

    fitter = KaplanMeierFitter().fit([r.months for r in rows], [r.event for r in rows])
    table = fitter.event_table
    for t in table.index[1:]:  # the first row is lifelines' time 0 entry
        assert at_risk(rows, t) == table.loc[t, "at_risk"]


def test_an_empty_sample_draws_no_step():
    curve = kaplan_meier([], [])
    assert km_steps(curve) == ([], [])


def test_steps_hold_the_last_value_to_the_last_follow_up():
    # 7 at risk: 6/7 at 1, x 5/6 at 2, x 3/4 at 3 (2+ left), x 1/2 at 5 (4+ left), held to 7+
    curve = kaplan_meier([1, 2, 2, 3, 4, 5, 7], [True, True, False, True, False, True, False])
    xs, ys = km_steps(curve)
    assert xs == [0.0, 1.0, 2.0, 3.0, 5.0, 7.0]
    assert ys == pytest.approx([1.0, 6 / 7, 5 / 7, 15 / 28, 15 / 56, 15 / 56])
