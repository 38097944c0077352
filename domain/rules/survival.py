"""Kaplan-Meier product-limit estimator, small enough to keep the query path free of numpy.

The step values are kept as exact fractions: the median is the first time where S(t) <= 0.5, and
a float product can land a hair above or below 0.5 at exactly that point (3/4 * 2/3), which
would move the median by a whole step. Floats are produced only when a value is read.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

_HALF = Fraction(1, 2)


@dataclass(frozen=True)
class KMCurve:
    """A right-continuous step function: S(t) = product over event times u <= t of (1 - d/n)."""

    times: tuple[float, ...]  # distinct event times, increasing
    steps: tuple[Fraction, ...]  # S just after each of `times`
    last_follow_up: float | None  # largest observed duration, event or censored; None if empty
    subjects: int

    def survival_at(self, t: float) -> float | None:
        """S(t); None past the last follow-up time, where the curve says nothing."""
        if self.last_follow_up is None or t > self.last_follow_up:
            return None
        i = bisect_right(self.times, t)
        return 1.0 if i == 0 else float(self.steps[i - 1])

    def median(self) -> float | None:
        """Smallest t with S(t) <= 0.5 (lifelines' convention); None when never reached."""
        for t, s in zip(self.times, self.steps, strict=True):
            if s <= _HALF:
                return t
        return None


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
            times.append(float(t))
            steps.append(s)
        at_risk -= leaving
    last = float(order[-1][0]) if order else None
    return KMCurve(times=tuple(times), steps=tuple(steps), last_follow_up=last, subjects=n)
