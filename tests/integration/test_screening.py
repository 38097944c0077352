"""Screening and enrolment through the ledger: strata decide the basket; failures are facts."""

import pytest

from m22bol.domain.errors import BadInput, RuleViolation
from tests.support import IN_MEMORY, ON_DATABASES

pytestmark = IN_MEMORY

STRATA = [  # (ER, prior therapy) -> basket, spec/trial.md
    ("positive", "none", "I"),
    ("negative", "none", "II"),
    ("positive", "chemo-anti-her2", "III"),
    ("negative", "chemo-anti-her2", "IV"),
]


@pytest.mark.parametrize(("er", "prior", "basket"), STRATA)
def test_each_stratum_combination_lands_in_its_basket(driver, er, prior, basket):
    assert driver.enrolled("M22-001", er=er, prior=prior)["basket"] == basket
    assert driver.ledger.patient("M22-001") is not None


def _assess(driver, subject, **overrides):
    values = dict(subject=subject, date="2025-02-01", her2="positive", er="positive",
                  prior_therapy="none", distant_lesions=2, all_lesions_curable="yes", lvef=60,
                  ecog=0)
    values.update(overrides)
    driver.do("register", subject=subject, site="S1", consent_date="2025-01-30")
    return driver.do("assess-eligibility", **values)


@ON_DATABASES
def test_her2_negative_is_a_screen_failure_with_that_reason(driver):
    out = _assess(driver, "M22-002", her2="negative")
    assert out["eligible"] is False
    assert [c.split(":")[0] for c in out["failed_criteria"]] == ["her2"]
    from m22bol.projections.replay import patient_view

    view = patient_view(driver.ledger, "M22-002")
    assert view["status"] == "screen-failed"
    assert view["failed_criteria"] == out["failed_criteria"]


def test_four_distant_lesions_is_a_screen_failure_with_that_reason(driver):
    out = _assess(driver, "M22-003", distant_lesions=4)
    assert out["eligible"] is False
    assert out["failed_criteria"] == ["distant_lesions: 4 outside 1-3"]


def test_every_failing_criterion_is_recorded(driver):
    out = _assess(driver, "M22-004", her2="negative", distant_lesions=5,
                  all_lesions_curable="no", lvef=45, ecog=2)
    names = [c.split(":")[0] for c in out["failed_criteria"]]
    assert names == ["her2", "distant_lesions", "all_lesions_curable", "lvef", "ecog"]
    stored = driver.ledger.patient("M22-004").events[-1]
    assert stored.eligible is False and list(stored.failed_criteria) == out["failed_criteria"]


def test_screen_failure_cannot_be_enrolled(driver):
    _assess(driver, "M22-005", distant_lesions=4)
    with pytest.raises(RuleViolation) as refused:
        driver.do("enrol", subject="M22-005", date="2025-02-02", weight_kg=60)
    assert refused.value.rule == "enrol.ineligible"


def test_a_later_assessment_decides(driver):
    _assess(driver, "M22-006", distant_lesions=4)
    driver.do("assess-eligibility", subject="M22-006", date="2025-02-03", her2="positive",
              er="negative", prior_therapy="none", distant_lesions=3, all_lesions_curable="yes",
              lvef=60, ecog=0)
    assert driver.do("enrol", subject="M22-006", date="2025-02-04", weight_kg=70)["basket"] == "II"


@ON_DATABASES
def test_subject_ids_are_unique(driver):
    driver.do("register", subject="M22-007", site="S1", consent_date="2025-01-02")
    with pytest.raises(RuleViolation) as refused:
        driver.do("register", subject="M22-007", site="S2", consent_date="2025-01-03")
    assert refused.value.rule == "register.exists"


@ON_DATABASES
def test_enrolment_twice_and_before_assessment_are_refused(driver):
    driver.do("register", subject="M22-008", site="S1", consent_date="2025-01-02")
    with pytest.raises(RuleViolation, match="no eligibility assessment"):
        driver.do("enrol", subject="M22-008", date="2025-01-05", weight_kg=60)
    driver.enrolled("M22-009")
    with pytest.raises(RuleViolation, match="already enrolled"):
        driver.do("enrol", subject="M22-009", date="2025-01-11", weight_kg=60)


def test_dates_before_consent_or_in_the_future_are_impossible(driver):
    driver.do("register", subject="M22-010", site="S1", consent_date="2025-01-10")
    with pytest.raises(RuleViolation) as refused:
        _assess_on(driver, "M22-010", "2025-01-09")
    assert refused.value.rule == "date.before_consent"
    with pytest.raises(RuleViolation) as refused:
        _assess_on(driver, "M22-010", "2099-01-01")
    assert refused.value.rule == "date.in_future"


def _assess_on(driver, subject, when):
    return driver.do("assess-eligibility", subject=subject, date=when, her2="positive",
                     er="positive", prior_therapy="none", distant_lesions=1,
                     all_lesions_curable="yes", lvef=60, ecog=0)


def test_unknown_subject_is_bad_input(driver):
    with pytest.raises(BadInput, match="not registered"):
        driver.do("enrol", subject="M22-404", date="2025-01-05", weight_kg=60)
