"""RECIST's integer arithmetic decides exactly as exact fractions do.

`recist.evaluate` sums and compares measurements as whole numbers of a common unit (speed: the
fractions were most of a replay's time). The reference here is the fraction arithmetic it
replaced, kept verbatim in spirit: every decimal read as written, every threshold (20% and
5 mm over the nadir, 30% under the baseline, the node's 10 mm) compared as a Fraction, each
percentage rounded half away from zero. Hypothesis draws measurements on coarse grids, where
sums land exactly on the thresholds, and arbitrary floats, whose decimals are long.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from fractions import Fraction

from hypothesis import example, given, settings
from hypothesis import strategies as st

from m22bol.domain.events import SMALLEST_SIZE_MM
from m22bol.domain.protocol import Response
from m22bol.domain.rules import recist
from m22bol.domain.rules.recist import CR, NE, PD, PR, SD, Assessment, NonTarget, Target

P = Response()
DAY0 = date(2025, 1, 10)


# --- the reference: exact fractions ---------------------------------------------------------


def _mm(value) -> Fraction:
    return Fraction(value) if isinstance(value, int) else Fraction(repr(float(value)))


def _sum(targets) -> Fraction:
    return sum((_mm(t.mm) for t in targets if t.mm is not None), Fraction(0))


def _pct(now, ref):
    if now is None or ref is None or ref == 0:
        return None
    tenths = (now - ref) * 1000 / ref
    rounded = math.floor(abs(tenths) + Fraction(1, 2))
    return float(Fraction(rounded if tenths >= 0 else -rounded, 10))


def _float(value):
    return None if value is None else float(value)


def target_response(baseline, a, nadir, after_cr, params):
    if not baseline.targets:
        return None, None
    entered = {t.lesion_id: t.mm for t in a.targets}
    normal_below = _mm(params.node_normal_below_mm)
    measured = [(bt.is_node, _mm(entered[bt.lesion_id])) for bt in baseline.targets
                if entered.get(bt.lesion_id) is not None]
    complete = len(measured) == len(baseline.targets)
    total = sum((mm for _, mm in measured), Fraction(0))
    full_sum = total if complete else None
    grew = total >= nadir * Fraction(120, 100) and total - nadir >= 5
    reappeared = after_cr and any(
        (mm >= normal_below) if is_node else (mm > 0) for is_node, mm in measured)
    if grew or reappeared:
        return PD, full_sum
    if not complete:
        return NE, None
    if all((mm < normal_below) if is_node else (mm == 0) for is_node, mm in measured):
        return CR, full_sum
    if total <= _sum(baseline.targets) * Fraction(70, 100):
        return PR, full_sum
    return SD, full_sum


def reference(assessments, first_infusion, params) -> list[tuple]:
    """(date, target sum, baseline sum, nadir, % from baseline, % from nadir, target
    response, overall response) per scored assessment, by fractions."""
    ordered = sorted(assessments, key=lambda a: a.date)
    b = recist.baseline_index(ordered, first_infusion)
    baseline = ordered[b]
    base_sum = _sum(baseline.targets) if baseline.targets else None
    rows = [(baseline.date, _float(base_sum), _float(base_sum), None, None, None, None, None)]
    nadir, after_cr, after_overall_cr = base_sum, False, False
    for a in ordered[b + 1:]:
        tr, full = (target_response(baseline, a, nadir, after_cr, params)
                    if nadir is not None else (None, None))
        overall = recist.overall_response(
            tr, recist.non_target_response(baseline, a, after_overall_cr), bool(a.new_lesions))
        rows.append((a.date, _float(full), _float(base_sum), _float(nadir),
                     _pct(full, base_sum), _pct(full, nadir), tr, overall))
        after_cr = after_cr or tr == CR
        after_overall_cr = after_overall_cr or overall == CR
        if full is not None and nadir is not None and full < nadir:
            nadir = full
    return rows


def engine(assessments, first_infusion, params) -> list[tuple]:
    out = recist.evaluate(assessments, first_infusion, params)
    b = next(i for i, r in enumerate(out) if r.is_baseline)
    return [(r.date, r.target_sum_mm, r.baseline_sum_mm, r.nadir_sum_mm,
             r.change_from_baseline_pct, r.change_from_nadir_pct, r.target_response,
             r.overall_response) for r in out[b:]]


# --- the draws --------------------------------------------------------------------------------

# Coarse grids put sums on the thresholds (25 -> 30 is +20%, 50 -> 35 is -30%, 20 -> 25 is
# +5 mm); floats give long decimals (0.1 + 0.2 is not 0.3 in binary, but is here).
MEASUREMENTS = st.one_of(
    st.integers(0, 120).map(lambda x: x / 2),
    st.integers(0, 2400).map(lambda x: x / 20),
    st.integers(0, 60),
    # Measurements as a radiologist writes them: from the smallest size the rules accept
    # (below it a subnormal nadir would make a percentage overflow a float; the rules refuse
    # such sizes, tests/unit/test_recist_sizes.py).
    st.floats(SMALLEST_SIZE_MM, 150, allow_nan=False, allow_infinity=False),
).filter(lambda mm: mm == 0 or mm >= SMALLEST_SIZE_MM)
SLOTS = [("L1", "liver", False), ("L2", "lung", False), ("N1", "neck", True),
         ("N2", "axilla", True)]


@st.composite
def timelines(draw) -> list[Assessment]:
    slots = draw(st.permutations(SLOTS))[: draw(st.integers(1, 4))]
    baseline = Assessment(
        DAY0 - timedelta(days=1),
        tuple(Target(i, organ, node, draw(MEASUREMENTS.filter(
            lambda mm, node=node: mm >= (15 if node else 10)))) for i, organ, node in slots),
        (NonTarget("NT1", "bone", "present"),) if draw(st.booleans()) else ())
    days = sorted(draw(st.lists(st.integers(1, 400), max_size=8, unique=True)))
    scans = [baseline]
    for d in days:
        targets = tuple(Target(t.lesion_id, t.organ, t.is_node, draw(
            st.one_of(MEASUREMENTS, st.just(0.0), st.none())))
            for t in baseline.targets if draw(st.integers(0, 9)))
        scans.append(Assessment(DAY0 + timedelta(days=d), targets, baseline.non_targets,
                                ("brain",) if draw(st.integers(0, 9)) == 0 else ()))
    return scans


def _one(baseline_mm: float, *followups: float) -> list[Assessment]:
    return [Assessment(DAY0 - timedelta(days=1), (Target("L1", "liver", False, baseline_mm),)),
            *(Assessment(DAY0 + timedelta(days=42 * (i + 1)),
                         (Target("L1", "liver", False, mm),))
              for i, mm in enumerate(followups))]


@settings(max_examples=400, deadline=None)
@given(timelines())
@example(_one(50.0, 35.0))  # exactly -30%: PR
@example(_one(50.0, 35.05))  # just above: SD
@example(_one(25.0, 25.0, 30.0))  # exactly +20% and +5 mm over the nadir: PD
@example(_one(20.0, 20.0, 24.0))  # +20% but only +4 mm: not PD
@example(_one(10.1, 7.07))  # exactly -30%, where 10.1 * 0.7 in floats is above 7.07: PR
@example(_one(33.7, 33.7, 40.44))  # exactly +20%, where 33.7 * 1.2 in floats is above: PD
@example(_one(12.1, 12.1 * 0.7))  # a float product, not the decimal 8.47
@example(_one(0.1 + 0.2 + 10, 10.3, 12.36))  # 10.3 as written is not 0.1 + 0.2 + 10
def test_integer_arithmetic_decides_as_exact_fractions(scans):
    assert engine(scans, DAY0, P) == reference(scans, DAY0, P)
