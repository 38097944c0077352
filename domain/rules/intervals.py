"""Exact (Clopper-Pearson) confidence intervals for a proportion, in pure Python.

The query path must not load scipy, so the beta quantiles the interval needs are found here:
the regularised incomplete beta function by its continued fraction (Lentz's method, as in
Numerical Recipes' `betacf`), inverted by Newton's method inside a bisection bracket. The
bounds agree with `scipy.stats.binomtest(k, n).proportion_ci(method="exact")` far below the 4
decimals reported (tests/unit/test_intervals.py checks it).
"""

from __future__ import annotations

import math

CONFIDENCE = 0.95

_TINY = 1e-300
_EPS = 1e-15


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((a + m2 - 1) * (a + m2)),
                          -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge (a={a}, b={b}, x={x})")


def regularised_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the cumulative distribution function of Beta(a, b) at x."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    front = math.exp(log_front)
    # The continued fraction converges fast only on this side of the mean; the other side
    # follows from the symmetry I_x(a, b) = 1 - I_{1-x}(b, a).
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def beta_quantile(q: float, a: float, b: float) -> float:
    """The x with I_x(a, b) = q: Newton's method on the Beta density, kept inside a shrinking
    bracket (a step that leaves it bisects instead), to 1e-13."""
    low, high = 0.0, 1.0
    x = a / (a + b)
    log_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    for _ in range(200):
        error = regularised_beta(a, b, x) - q
        if error < 0:
            low = x
        else:
            high = x
        density = math.exp(log_norm + (a - 1) * math.log(x) + (b - 1) * math.log1p(-x))
        step = error / density if density > 0 else math.inf
        new = x - step
        if not low < new < high:
            new = (low + high) / 2
        if abs(new - x) < 1e-13 or high - low < 1e-13:
            return new
        x = new
    return x


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The exact two-sided interval for k successes out of n; None when n is 0."""
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"successes must lie in 0..{n}, got {k}")
    tail = (1.0 - confidence) / 2
    low = 0.0 if k == 0 else beta_quantile(tail, k, n - k + 1)
    high = 1.0 if k == n else beta_quantile(1.0 - tail, k + 1, n - k)
    return low, high


def rounded_interval(k: int, n: int) -> list[float] | None:
    """The interval as the reports give it: fractions rounded to 4 decimals."""
    ci = clopper_pearson(k, n)
    return None if ci is None else [round(ci[0], 4), round(ci[1], 4)]
