"""Lesion sizes from 0 upward, subnormal and huge ones included: a size the rules cannot score
is refused on entry naming the rule and the field, and nothing crashes. A nadir of 2e-309 mm
once made RECIST's change from the nadir overflow a float (docs/decisions.md, "Response
assessments")."""

from __future__ import annotations

import sys
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m22bol.domain.errors import BadInput, RuleViolation
from m22bol.domain.events import LARGEST_SIZE_MM, SMALLEST_SIZE_MM
from m22bol.domain.protocol import Response
from m22bol.domain.rules import recist
from m22bol.domain.rules.recist import Assessment, Target
from m22bol.ledger.store import MEMORY_URL
from tests.support import Driver, new_ledger

S = "M22-001"
DAY0 = date(2025, 1, 10)  # the first infusion

# Every non-negative float, weighted towards the edges: subnormals, the bound's neighbours,
# the largest floats; and integers far beyond a float's range.
SIZES = st.one_of(
    st.floats(0, sys.float_info.min, allow_subnormal=True),
    st.floats(0, 1, allow_subnormal=True),
    st.sampled_from([0.0, 5e-324, 2e-309, sys.float_info.min, 0.0999999999999, SMALLEST_SIZE_MM,
                     5.0, LARGEST_SIZE_MM, 1000.0000000001, 1e308, sys.float_info.max]),
    st.floats(0, allow_nan=False, allow_infinity=False, allow_subnormal=True),
    st.integers(0, 10**400),
)


def scorable(mm: float | int) -> bool:
    return mm == 0 or SMALLEST_SIZE_MM <= mm <= LARGEST_SIZE_MM


# --- the rules alone --------------------------------------------------------------------------


def test_the_nadir_of_2e_309_mm_that_crashed_is_refused_naming_the_rule():
    baseline = Assessment(DAY0 - timedelta(days=1), (Target("L1", "liver", False, 30.0),))
    tiny = Assessment(DAY0 + timedelta(days=60), (Target("L1", "liver", False, 2e-309),))
    grown = Assessment(DAY0 + timedelta(days=120), (Target("L1", "liver", False, 30.0),))
    with pytest.raises(RuleViolation) as refused:
        recist.evaluate([baseline, tiny, grown], DAY0, Response())
    assert refused.value.rule == "recist.invalid_measurement"
    assert refused.value.field == "target"
    assert "2e-309" in refused.value.message and "0.1 mm" in refused.value.message


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(SIZES, min_size=1, max_size=4))
def test_recist_scores_or_refuses_every_size_and_never_crashes(sizes):
    baseline = Assessment(DAY0 - timedelta(days=1), (Target("L1", "liver", False, 30.0),))
    later = [Assessment(DAY0 + timedelta(days=30 * (n + 1)), (Target("L1", "liver", False, mm),))
             for n, mm in enumerate(sizes)]
    try:
        out = recist.evaluate([baseline, *later], DAY0, Response())
    except RuleViolation as refused:
        assert refused.rule == "recist.invalid_measurement", refused
        assert not all(scorable(mm) for mm in sizes)
    else:
        assert all(scorable(mm) for mm in sizes)
        assert all(r.target_response in recist.TARGET_RESPONSES for r in out[1:])


# --- on entry ---------------------------------------------------------------------------------


def _subject() -> Driver:
    """A memory ledger with M22-001 enrolled, scanned at baseline and infused once."""
    driver = Driver(new_ledger(MEMORY_URL))
    driver.enrolled(S, enrol="2025-01-06")
    driver.do("scan", subject=S, date="2025-01-08", target=["L1:liver:30"])
    driver.do("infuse", subject=S, cycle=1, date=DAY0.isoformat(), weight_kg=60, dose_mg=324)
    return driver


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mm=SIZES, typed=st.booleans())
def test_a_scan_takes_every_scorable_size_and_refuses_the_rest_naming_rule_and_field(mm, typed):
    """Typed at the command line (`ID:ORGAN:MM`) or given as a JSON Lines object."""
    driver = _subject()
    lesion = (f"L1:liver:{mm!r}" if typed else {"lesion_id": "L1", "organ": "liver", "mm": mm})
    try:
        out = driver.do("scan", subject=S, date="2025-03-10", target=[lesion])
    except (BadInput, RuleViolation) as refused:
        assert not scorable(mm), (mm, refused)
        assert refused.field.startswith("target"), refused.field
        if refused.rule is None:  # an integer beyond any float: no number to the model
            assert isinstance(refused, BadInput) and "valid number" in refused.message, refused
            assert not typed and mm > LARGEST_SIZE_MM
        else:
            assert refused.rule == "recist.invalid_measurement", refused
    else:
        assert scorable(mm), mm
        assert out["target_response"] in recist.TARGET_RESPONSES


def test_the_refusal_names_the_rule_and_the_field_in_json():
    driver = _subject()
    with pytest.raises(BadInput) as refused:
        driver.do("scan", subject=S, date="2025-03-10",
                  target=[{"lesion_id": "L1", "organ": "liver", "mm": 2e-309}])
    error = refused.value.as_json()["error"]
    assert error["rule"] == "recist.invalid_measurement"
    assert error["field"] == "target.0.mm"
    assert "enter 0 for a lesion that disappeared, 5 for one too small" in error["message"]
