"""The exact binomial interval of the query path against scipy's (a test dependency only)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m22bol.domain.rules.intervals import clopper_pearson, regularised_beta, rounded_interval

counts = st.integers(1, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@settings(max_examples=300)
@given(counts)
def test_clopper_pearson_agrees_with_scipy(count):
    from scipy.stats import binomtest

    k, n = count
    expected = binomtest(k, n).proportion_ci(method="exact", confidence_level=0.95)
    low, high = clopper_pearson(k, n)
    assert low == pytest.approx(expected.low, abs=1e-10)
    assert high == pytest.approx(expected.high, abs=1e-10)


@given(st.floats(0.5, 300), st.floats(0.5, 300), st.floats(0, 1))
def test_regularised_beta_agrees_with_scipy(a, b, x):
    from scipy.special import betainc

    assert regularised_beta(a, b, x) == pytest.approx(float(betainc(a, b, x)), abs=1e-9)


def test_closed_forms_by_hand():
    # 0 of n: [0, 1 - 0.025^(1/n)]; n of n: [0.025^(1/n), 1]; 1 of 1: [0.025, 1].
    assert rounded_interval(0, 6) == [0.0, round(1 - 0.025 ** (1 / 6), 4)] == [0.0, 0.4593]
    assert rounded_interval(4, 4) == [round(0.025 ** (1 / 4), 4), 1.0] == [0.3976, 1.0]
    assert rounded_interval(1, 1) == [0.025, 1.0]
    assert rounded_interval(0, 0) is None
    with pytest.raises(ValueError):
        clopper_pearson(5, 4)
