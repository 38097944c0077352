"""Local treatment through the ledger: surgery, radiotherapy, completion, pathology, pCR."""

from __future__ import annotations

from datetime import date

import pytest

from m22bol.domain.errors import BadInput, RuleViolation
from m22bol.projections.replay import patient_view
from tests.support import IN_MEMORY, ON_DATABASES

pytestmark = IN_MEMORY

S = "M22-001"


@pytest.fixture
def treated(driver):
    driver.enrolled(S)
    driver.do("infuse", subject=S, cycle=1, date="2025-01-15", weight_kg=60, dose_mg=324)
    return driver


@ON_DATABASES
def test_surgery_radiotherapy_and_completion_are_shown(treated):
    out = treated.do("surgery", subject=S, date="2025-03-01", site="primary",
                     location="left breast")
    assert out["phase"] == "local-treatment"
    treated.do("radiotherapy", subject=S, start="2025-03-20", end="2025-04-10",
               location="liver segment 7", dose_gy=50, fractions=5)
    treated.do("complete-local-treatment", subject=S, date="2025-04-11")
    doc = patient_view(treated.ledger, S)
    assert doc["surgeries"] == [{"date": date(2025, 3, 1), "site": "primary",
                                 "location": "left breast"}]
    assert doc["local_treatment_complete"] == date(2025, 4, 11)
    assert doc["radiotherapy"][0]["end"] == date(2025, 4, 10)
    assert doc["last_treatment_date"] == date(2025, 4, 10)
    assert doc["phase"] == "adjuvant"


def test_local_treatment_is_marked_complete_once(treated):
    treated.do("complete-local-treatment", subject=S, date="2025-03-01")
    with pytest.raises(RuleViolation) as refusal:
        treated.do("complete-local-treatment", subject=S, date="2025-03-05")
    assert refusal.value.rule == "local.complete_twice"


def test_radiotherapy_ending_before_it_starts_is_impossible(treated):
    with pytest.raises(RuleViolation) as refusal:
        treated.do("radiotherapy", subject=S, start="2025-03-20", end="2025-03-19",
                   location="lung", dose_gy=54, fractions=3)
    assert refusal.value.rule == "radiotherapy.dates"


def test_radiotherapy_ending_after_today_or_after_death_is_impossible(treated):
    with pytest.raises(RuleViolation) as refusal:
        treated.do("radiotherapy", subject=S, start="2025-03-20", end="2099-01-01",
                   location="lung", dose_gy=54, fractions=3)
    assert refusal.value.rule == "date.in_future"
    treated.do("radiotherapy", subject=S, start="2025-03-20", end="2025-03-30",
               location="lung", dose_gy=54, fractions=3)
    with pytest.raises(RuleViolation) as refusal:
        treated.do("death", subject=S, date="2025-03-25")
    assert refusal.value.rule == "date.after_death"


def test_local_treatment_before_enrolment_is_impossible(driver):
    driver.do("register", subject=S, site="S1", consent_date="2025-01-02")
    for name, values in [("surgery", {"date": "2025-01-05", "site": "primary"}),
                         ("complete-local-treatment", {"date": "2025-01-05"}),
                         ("pathology", {"date": "2025-01-05", "ypt": "T0", "ypn": "N0",
                                        "viable_metastatic_tumour": "no"})]:
        with pytest.raises(RuleViolation) as refusal:
            driver.do(name, subject=S, **values)
        assert refusal.value.rule == "treatment.before_enrolment"


@pytest.mark.parametrize(("ypt", "ypn", "viable", "pcr"), [
    ("T0", "N0", "no", True),
    ("Tis", "N0", "not-resected", True),
    ("not-resected", "not-resected", "no", True),
    ("T1", "N0", "no", False),
    ("T0", "N1", "no", False),
    ("T0", "N0", "yes", False),
    ("not-resected", "not-resected", "not-resected", None),
])
def test_pathology_derives_pcr(treated, ypt, ypn, viable, pcr):
    treated.do("surgery", subject=S, date="2025-03-01", site="primary")
    out = treated.do("pathology", subject=S, date="2025-03-05", ypt=ypt, ypn=ypn,
                     viable_metastatic_tumour=viable)
    assert out["pcr"] is pcr
    assert treated.ledger.patient(S).events[-1].pcr is pcr
    assert patient_view(treated.ledger, S)["pcr"] is pcr


@ON_DATABASES
def test_pcr_needs_every_report_to_qualify(treated):
    treated.do("surgery", subject=S, date="2025-03-01", site="primary")
    treated.do("pathology", subject=S, date="2025-03-05", ypt="T0", ypn="N0",
               viable_metastatic_tumour="not-resected")
    assert patient_view(treated.ledger, S)["pcr"] is True
    treated.do("pathology", subject=S, date="2025-04-05", ypt="not-resected",
               ypn="not-resected", viable_metastatic_tumour="yes")
    assert patient_view(treated.ledger, S)["pcr"] is False


@pytest.mark.parametrize("grade", ["I", "II", "IIIa", "IIIb", "IVa", "IVb", "V", "I-d",
                                   "IIIb-d", "IVb-d"])
def test_clavien_dindo_grades_within_30_days_of_surgery(treated, grade):
    treated.do("surgery", subject=S, date="2025-03-01", site="primary")
    out = treated.do("complication", subject=S, date="2025-03-31", clavien_dindo=grade)
    assert (out["surgery_date"], out["days_after_surgery"]) == (date(2025, 3, 1), 30)


@pytest.mark.parametrize("grade", ["III", "IV", "V-d", "VI", "iiia", "0"])
def test_clavien_dindo_grades_that_do_not_exist_are_bad_input(treated, grade):
    treated.do("surgery", subject=S, date="2025-03-01", site="primary")
    with pytest.raises(BadInput):
        treated.do("complication", subject=S, date="2025-03-02", clavien_dindo=grade)


@ON_DATABASES
def test_a_complication_needs_a_surgery_within_30_days(treated):
    with pytest.raises(RuleViolation) as refusal:
        treated.do("complication", subject=S, date="2025-03-02", clavien_dindo="II")
    assert refusal.value.rule == "complication.no_surgery"
    treated.do("surgery", subject=S, date="2025-03-01", site="primary")
    with pytest.raises(RuleViolation) as refusal:
        treated.do("complication", subject=S, date="2025-04-01", clavien_dindo="II")
    assert refusal.value.rule == "complication.window"
    # The latest surgery before it counts.
    treated.do("surgery", subject=S, date="2025-03-20", site="metastasis")
    out = treated.do("complication", subject=S, date="2025-04-01", clavien_dindo="II")
    assert out["days_after_surgery"] == 12
