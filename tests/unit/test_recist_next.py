"""Scoring a subject's scans one at a time, as the walk meets them, gives what `evaluate` of
all of them gives, refusals included.

The walk scores each new scan from the state the last one left (`recist.score_next`, through
`assessments._responses`): the baseline, the nadir, the CR flags and the unit of the sums. The
reference is `recist.evaluate` of every scan walked so far, which is what the walk called
before. The draws put scans and the first infusion in the walk's order (date, then entry), so
day 0 becomes known part-way, on the date of a scan or between scans; scans before day 0
(screening scans superseded by a later baseline), measurements with finer decimals than any
before (the unit of the sums changes), and scans the engine refuses (a new lesion at baseline,
an unknown target, a baseline target too small).
"""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from m22bol.domain.errors import RuleViolation
from m22bol.domain.protocol import Response
from m22bol.domain.rules import recist
from m22bol.domain.rules.recist import Assessment, NonTarget, Target

P = Response()
START = date(2025, 1, 10)
SLOTS = [("L1", "liver", False), ("L2", "lung", False), ("N1", "neck", True)]
MEASUREMENTS = st.one_of(
    st.integers(0, 60).map(float),
    st.integers(0, 1200).map(lambda x: x / 20),
    st.floats(0.001, 150, allow_nan=False, allow_infinity=False),
    st.none())
# Mostly measurable at baseline (a lesion >= 10 mm, a node >= 15), so that most walks get past
# their baseline; on coarse grids and long decimals, so that the unit of the sums changes.
MEASURABLE = st.one_of(
    st.integers(15, 60).map(float),
    st.integers(300, 1200).map(lambda x: x / 20),
    st.floats(15, 150, allow_nan=False, allow_infinity=False))


@st.composite
def scans(draw, day: date) -> Assessment:
    chosen = [slot for slot in SLOTS if draw(st.integers(0, 5))]
    if draw(st.integers(0, 24)) == 0:
        chosen.append(("X9", "skin", False))  # unknown after the baseline
    targets = tuple(Target(i, organ, node, draw(st.one_of(*[MEASURABLE] * 6, MEASUREMENTS)))
                    for i, organ, node in chosen)
    non_targets = (NonTarget("NT1", "bone", draw(st.sampled_from(recist.NON_TARGET_STATUSES))),
                   ) if draw(st.booleans()) else ()
    new = ("brain",) if draw(st.integers(0, 24)) == 0 else ()
    return Assessment(day, targets, non_targets, new)


@st.composite
def walks(draw) -> list[tuple[str, Assessment | date]]:
    """("scan", assessment) and at most one ("infusion", its date), in the walk's order."""
    days = sorted(draw(st.lists(st.integers(0, 300), min_size=1, max_size=10)))
    items: list[tuple[str, Assessment | date]] = [
        ("scan", draw(scans(START + timedelta(days=d)))) for d in days]
    if draw(st.integers(0, 4)):
        at = draw(st.integers(0, len(items)))
        # On the date of the scan before it, or of the next, or between the two.
        lo = items[at - 1][1].date if at else START - timedelta(days=5)
        hi = items[at][1].date if at < len(items) else lo + timedelta(days=60)
        when = lo + timedelta(days=draw(st.integers(0, (hi - lo).days)))
        items.insert(at, ("infusion", when))
    return items


def outcome(score, *args):
    try:
        return score(*args)
    except RuleViolation as refused:
        return ("refused", refused.rule, refused.message)


def scored_next(done, scan, day0):
    recist.score_next(done, scan, day0)
    return done.responses


def _rescaled(baseline: tuple[Target, ...], later: tuple[Target, ...]):
    """A baseline in whole mm, then a scan with a finer decimal: the unit changes there."""
    return [("scan", Assessment(START, baseline)), ("infusion", START + timedelta(1)),
            ("scan", Assessment(START + timedelta(42), later))]


@settings(max_examples=600, deadline=None)
@given(walks())
# The node's 10 mm in the new unit: 0 mm and a node at 5.05 mm is CR.
@example(_rescaled((Target("L1", "liver", False, 20.0), Target("N1", "neck", True, 20.0)),
                   (Target("L1", "liver", False, 0.0), Target("N1", "neck", True, 5.05))))
# The 5 mm over the nadir in the new unit: +20.5 % but +2.05 mm is not PD.
@example(_rescaled((Target("L1", "liver", False, 10.0),), (Target("L1", "liver", False, 12.05),)))
def test_scoring_scan_by_scan_equals_scoring_them_all(walk):
    walked: list[Assessment] = []
    day0 = None
    done = recist.scored([], None, P)
    for kind, item in walk:
        if kind == "infusion":
            day0 = item
            continue
        walked.append(item)
        expected = outcome(recist.evaluate, walked, day0, P)
        assert recist.resumable(done, day0, P)
        got = outcome(scored_next, done, item, day0)
        assert got == expected
        if isinstance(got, tuple):
            # The entry is refused, so never stored: the walk goes on without it, from the
            # scans before it, as the next command's walk would.
            event(f"refused: {got[1]}")
            walked.pop()
            done = recist.scored(walked, day0, P)
    event(f"{len(walked)} scans scored, day 0 {'known' if day0 else 'unknown'}")


def test_a_later_day0_keeps_the_baseline_and_an_earlier_one_does_not_resume():
    base = Assessment(START, (Target("L1", "liver", False, 20.0),))
    done = recist.scored([base], None, P)
    assert recist.resumable(done, START, P) and recist.resumable(done, START + timedelta(1), P)
    assert not recist.resumable(done, START - timedelta(1), P)
    assert not recist.resumable(done, None, Response(confirmation_min_days=10))


def test_a_finer_decimal_rescales_the_sums_exactly():
    base = Assessment(START, (Target("L1", "liver", False, 50.0),))
    done = recist.scored([base], START, P)
    later = Assessment(START + timedelta(42), (Target("L1", "liver", False, 35.05),))
    assert recist.score_next(done, later, START) == recist.evaluate([base, later], START, P)[1]
    assert done.scoring.unit % 20 == 0
    assert done.responses[-1].target_response == recist.SD  # 35.05 is above 70 % of 50
