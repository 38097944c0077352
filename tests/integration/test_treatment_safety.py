"""Adverse events as records: CTCAE terms and grades, AE ids, the order of AE facts."""

from __future__ import annotations

import pytest

from m22bol.domain.errors import BadInput, RuleViolation
from m22bol.projections.replay import patient_view
from tests.support import IN_MEMORY, ON_DATABASES

pytestmark = IN_MEMORY

S = "M22-001"


def ae(driver, term: str, grade: int, onset: str = "2025-02-01", **extra) -> dict:
    return driver.do("adverse-event", subject=S, term=term, grade=grade, onset=onset, **extra)


@pytest.fixture
def enrolled(driver):
    driver.enrolled(S)
    driver.do("infuse", subject=S, cycle=1, date="2025-01-15", weight_kg=60, dose_mg=324)
    return driver


@pytest.mark.parametrize(("term", "grade"), [
    ("Febrile neutropenia", 1), ("Febrile neutropenia", 2), ("Alopecia", 3), ("alopecia", 5),
    ("Nausea", 4), ("Fatigue", 4), ("Fatigue", 5), ("Ejection fraction decreased", 1),
    ("Ejection fraction decreased", 5), ("Neutrophil count decreased", 5),
    ("Platelet count decreased", 5),
])
def test_grades_that_do_not_exist_for_a_term_are_bad_input(enrolled, term, grade):
    with pytest.raises(BadInput) as refusal:
        ae(enrolled, term, grade)
    assert refusal.value.field == "grade"
    assert len(enrolled.ledger.patient(S).events) == 4  # nothing written


@pytest.mark.parametrize(("term", "grade"), [
    ("Febrile neutropenia", 3), ("Alopecia", 2), ("Nausea", 3), ("Fatigue", 1),
    ("Ejection fraction decreased", 2), ("Ejection fraction decreased", 4),
    ("Rash maculo-papular", 1), ("Hiccups", 3),
])
def test_grades_that_exist_are_accepted(enrolled, term, grade):
    assert ae(enrolled, term, grade)["ae_id"] == "AE1"


def test_a_grade_outside_1_to_5_is_bad_input(enrolled):
    for grade in (0, 6):
        with pytest.raises(BadInput):
            ae(enrolled, "Nausea", grade)


def test_an_update_to_a_grade_the_term_lacks_is_bad_input(enrolled):
    ae(enrolled, "Nausea", 1)
    with pytest.raises(BadInput):
        enrolled.do("update-adverse-event", subject=S, ae_id="AE1", date="2025-02-03", grade=4)


def test_ae_ids_are_assigned_in_turn_and_unique(enrolled):
    assert ae(enrolled, "Nausea", 1)["ae_id"] == "AE1"
    assert ae(enrolled, "Nausea", 1)["ae_id"] == "AE2"  # same term and onset: allowed
    assert ae(enrolled, "Fatigue", 1, id="F1")["ae_id"] == "F1"
    assert ae(enrolled, "Fatigue", 1)["ae_id"] == "AE4"
    with pytest.raises(RuleViolation) as refusal:
        ae(enrolled, "Fatigue", 1, id="AE1")
    assert refusal.value.rule == "ae.id_exists"


@ON_DATABASES
def test_the_ctcae_version_and_the_action_are_stored_with_the_ae(enrolled):
    ae(enrolled, "Neutrophil count decreased", 3, serious=True, related=True)
    stored = enrolled.ledger.patient(S).events[-1]
    assert (stored.ctcae_version, stored.action) == ("5.0", "interrupt")
    assert (stored.serious, stored.serious_criteria, stored.related) == (
        True, ("medically-important",), True)
    assert (stored.ctcae_term, stored.meddra_code) == ("Neutrophil count decreased", 10029366)
    enrolled.do("update-adverse-event", subject=S, ae_id="AE1", date="2025-02-05", grade=2)
    assert enrolled.ledger.patient(S).events[-1].action == "resume"


def test_update_or_resolve_of_an_unknown_ae_is_bad_input(enrolled):
    with pytest.raises(BadInput):
        enrolled.do("update-adverse-event", subject=S, ae_id="AE9", date="2025-02-03", grade=2)
    with pytest.raises(BadInput):
        enrolled.do("resolve-adverse-event", subject=S, ae_id="AE9", date="2025-02-03")


def test_update_before_onset_or_after_resolution_is_impossible(enrolled):
    ae(enrolled, "Nausea", 2, onset="2025-02-01")
    with pytest.raises(RuleViolation) as refusal:
        enrolled.do("update-adverse-event", subject=S, ae_id="AE1", date="2025-01-31", grade=1)
    assert refusal.value.rule == "ae.before_onset"
    enrolled.do("resolve-adverse-event", subject=S, ae_id="AE1", date="2025-02-04")
    with pytest.raises(RuleViolation) as refusal:
        enrolled.do("update-adverse-event", subject=S, ae_id="AE1", date="2025-02-05", grade=1)
    assert refusal.value.rule == "ae.resolved"


def test_an_ae_before_the_first_infusion_is_a_baseline_condition_holding_nothing(driver):
    driver.do("register", subject=S, site="S1", consent_date="2025-01-02")
    out = ae(driver, "Neutrophil count decreased", 3, onset="2025-01-05")
    assert (out["action"], out["treatment_state"], out["baseline"]) == (
        "continue", "not started", True)
    driver.do("assess-eligibility", subject=S, date="2025-01-06", her2="positive",
              er="positive", prior_therapy="none", distant_lesions=1,
              all_lesions_curable="yes", lvef=60, ecog=0)
    driver.do("enrol", subject=S, date="2025-01-10", weight_kg=60)
    assert patient_view(driver.ledger, S)["treatment_state"] == "not started"
    out = driver.do("update-adverse-event", subject=S, ae_id="AE1", date="2025-01-12", grade=4)
    assert out["action"] == "continue"
    assert patient_view(driver.ledger, S)["treatment_state"] == "not started"


@ON_DATABASES
def test_the_patient_view_lists_adverse_events_and_lvef(enrolled):
    ae(enrolled, "Interstitial lung disease", 1, onset="2025-02-01")
    enrolled.do("resolve-adverse-event", subject=S, ae_id="AE1", date="2025-02-10")
    enrolled.do("lvef", subject=S, date="2025-02-12", percent=58)
    doc = patient_view(enrolled.ledger, S)
    [event] = doc["adverse_events"]
    assert (event["term"], event["graded_as"], event["worst_grade"]) == (
        "Interstitial lung disease", "Pneumonitis", 1)
    assert str(event["resolved"]) == "2025-02-10"
    assert (doc["lvef"]["baseline"], doc["lvef"]["last"]) == (60, 58)


@ON_DATABASES
def test_a_retracted_ae_takes_its_interruption_with_it(enrolled):
    out = ae(enrolled, "Febrile neutropenia", 3)
    assert patient_view(enrolled.ledger, S)["treatment_state"] == "interrupted"
    enrolled.do("retract", subject=S, entry=out["entry"], reason="entered for the wrong subject")
    assert patient_view(enrolled.ledger, S)["treatment_state"] == "active"


def test_a_corrected_grade_changes_the_dose_level(enrolled):
    out = ae(enrolled, "Neutrophil count decreased", 3)
    enrolled.do("update-adverse-event", subject=S, ae_id="AE1", date="2025-02-05", grade=2)
    assert patient_view(enrolled.ledger, S)["dose_level_mg_per_kg"] == 5.4
    enrolled.do("correct", subject=S, entry=out["entry"], reason="was grade 4",
                set=["grade=4"])
    assert patient_view(enrolled.ledger, S)["dose_level_mg_per_kg"] == 4.4


def test_a_baseline_ae_sets_no_reduction_cycle_1_starts_at_the_first_level(driver):
    driver.do("register", subject=S, site="S1", consent_date="2025-01-02")
    driver.do("assess-eligibility", subject=S, date="2025-01-03", her2="positive",
              er="positive", prior_therapy="none", distant_lesions=1,
              all_lesions_curable="yes", lvef=60, ecog=0)
    ae(driver, "Neutrophil count decreased", 4, onset="2025-01-04")
    assert driver.do("resolve-adverse-event", subject=S, ae_id="AE1",
                     date="2025-01-08")["action"] == "continue"
    driver.do("enrol", subject=S, date="2025-01-10", weight_kg=60)
    out = driver.do("infuse", subject=S, cycle=1, date="2025-01-15", weight_kg=60, dose_mg=324)
    assert out["dose_level_mg_per_kg"] == 5.4
