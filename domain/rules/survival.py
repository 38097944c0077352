"""Kaplan-Meier product-limit estimator, small enough to keep the query path free of numpy.

The step values are kept as exact fractions: the median is the first time where S(t) <= 0.5, and
a float product can land a hair above or below 0.5 at exactly that point (3/4 * 2/3), which
would move the median by a whole step. Floats are produced only when a value is read.

Intervals follow lifelines (tests/unit/test_survival_intervals.py compares them): Greenwood's
variance on the log(-log) scale, sum of d / (n (n - d)) over event times (a step where every
subject at risk dies adds nothing), and the median's interval is the median of each bound's
curve.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist

_HALF = Fraction(1, 2)
_Z95 = NormalDist().inv_cdf(0.975)


@dataclass(frozen=True)
class KMCurve:
    """A right-continuous step function: S(t) = product over event times u <= t of (1 - d/n)."""

    times: tuple[float, ...]  # distinct event times, increasing
    steps: tuple[Fraction, ...]  # S just after each of `times`
    last_follow_up: float | None  # largest observed duration, event or censored; None if empty
    subjects: int
    greenwood: tuple[float, ...] = ()  # cumulative sum of d / (n (n - d)) at each of `times`

    def _step(self, t: float) -> int | None:
        """How many event times are <= t; None where the curve says nothing.

        Past the last follow-up the curve is known only when it has already reached 0.
        """
        if self.last_follow_up is None:
            return None
        i = bisect_right(self.times, t)
        if t > self.last_follow_up and not (i and self.steps[i - 1] == 0):
            return None
        return i

    def survival_at(self, t: float) -> float | None:
        """S(t); None past the last follow-up time unless the curve is at 0 by then."""
        i = self._step(t)
        if i is None:
            return None
        return 1.0 if i == 0 else float(self.steps[i - 1])

    def interval_at(self, t: float) -> tuple[float, float] | None:
        """The 95% interval of S(t), where S(t) is known."""
        i = self._step(t)
        if i is None:
            return None
        return (1.0, 1.0) if i == 0 else self._bounds(i - 1)

    def _bounds(self, i: int) -> tuple[float, float]:
        s = self.steps[i]
        if s == 0:
            return 0.0, 0.0
        v = math.log(s)
        if v == 0:
            return 1.0, 1.0
        spread = _Z95 * math.sqrt(self.greenwood[i]) / v
        return (math.exp(-math.exp(math.log(-v) - spread)),
                math.exp(-math.exp(math.log(-v) + spread)))

    def median(self) -> float | None:
        """Smallest t with S(t) <= 0.5 (lifelines' convention); None when never reached."""
        for t, s in zip(self.times, self.steps, strict=True):
            if s <= _HALF:
                return t
        return None

    def median_interval(self) -> tuple[float | None, float | None]:
        """The median of the lower and of the upper bound's curve; None where never reached."""
        bounds = [self._bounds(i) for i in range(len(self.times))]
        return tuple(  # type: ignore[return-value]
            next((t for t, b in zip(self.times, bounds, strict=True) if b[side] <= 0.5), None)
            for side in (0, 1))


def kaplan_meier(durations: Sequence[float], events: Sequence[bool]) -> KMCurve:
    if len(durations) != len(events):
        raise ValueError("durations and events must have the same length")
    for d in durations:
        if not math.isfinite(d) or d < 0:
            raise ValueError(f"durations must be finite and non-negative, got {d!r}")
    order = sorted(zip(durations, events, strict=True))
    n = len(order)
    times: list[float] = []
    steps: list[Fraction] = []
    greenwood: list[float] = []
    total = 0.0
    s = Fraction(1)
    at_risk = n
    i = 0
    while i < n:
        t = order[i][0]
        deaths = leaving = 0
        while i < n and order[i][0] == t:
            deaths += bool(order[i][1])
            leaving += 1
            i += 1
        # Everyone leaving at t is still at risk for the deaths at t: events come before
        # censorings at a tie, the standard convention (and lifelines').
        if deaths:
            s *= Fraction(at_risk - deaths, at_risk)
            if deaths < at_risk:
                total += deaths / (at_risk * (at_risk - deaths))
            times.append(float(t))
            steps.append(s)
            greenwood.append(total)
        at_risk -= leaving
    last = float(order[-1][0]) if order else None
    return KMCurve(times=tuple(times), steps=tuple(steps), last_follow_up=last, subjects=n,
                   greenwood=tuple(greenwood))
