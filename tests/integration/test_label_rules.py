"""Every row of the label's AE and LVEF tables (spec/treatment.md), driven through the ledger.

Each test checks the action the command prints and what the next infusion may be: refused as
a deviation, or accepted at which dose level. The subject weighs 60 kg, so the expected doses
are 324 mg (5.4 mg/kg), 264 mg (4.4 mg/kg) and 192 mg (3.2 mg/kg).
"""

from __future__ import annotations

import pytest

from m22bol.domain.errors import DeviationRefused, RuleViolation
from tests.support import IN_MEMORY, ON_DATABASES

pytestmark = IN_MEMORY

S = "M22-001"
DOSE = {5.4: 324.0, 4.4: 264.0, 3.2: 192.0}


def infuse(driver, cycle: int, date: str, level: float = 5.4, **extra) -> dict:
    return driver.do("infuse", subject=S, cycle=cycle, date=date, weight_kg=60,
                     dose_mg=DOSE[level], **extra)


def ae(driver, term: str, grade: int, onset: str, **extra) -> dict:
    return driver.do("adverse-event", subject=S, term=term, grade=grade, onset=onset, **extra)


def update(driver, ae_id: str, date: str, grade: int) -> dict:
    return driver.do("update-adverse-event", subject=S, ae_id=ae_id, date=date, grade=grade)


def resolve(driver, ae_id: str, date: str) -> dict:
    return driver.do("resolve-adverse-event", subject=S, ae_id=ae_id, date=date)


def lvef(driver, date: str, percent: float, **extra) -> dict:
    return driver.do("lvef", subject=S, date=date, percent=percent, **extra)


def refused(driver, cycle: int, date: str, rule: str, level: float = 5.4) -> None:
    """The infusion is refused as a deviation of `rule`, and nothing is written."""
    with pytest.raises(DeviationRefused) as refusal:
        infuse(driver, cycle, date, level)
    assert refusal.value.rule == rule


def accepted_only_at(driver, cycle: int, date: str, level: float) -> dict:
    """The infusion at a higher level is a re-escalation deviation; at `level` it is clean."""
    higher = [lv for lv in DOSE if lv > level]
    for other in higher:
        refused(driver, cycle, date, "dose.re_escalation", other)
    out = infuse(driver, cycle, date, level)
    assert out["dose_level_mg_per_kg"] == level
    assert out["expected_dose_mg"] == DOSE[level]
    assert "deviations" not in out
    return out


def interrupted_then_refused(driver, out: dict, cycle: int, date: str) -> None:
    assert out["action"] == "interrupt"
    assert out["treatment_state"] == "interrupted"
    refused(driver, cycle, date, "treatment.while_interrupted")


def discontinued_for_good(driver, out: dict, cycle: int, date: str, level: float = 5.4) -> None:
    assert out["action"] == "discontinue"
    assert out["treatment_state"] == "discontinued"
    for any_level in DOSE:
        refused(driver, cycle, date, "treatment.after_discontinuation", any_level)
    # With a reason the infusion is recorded, the deviation with it.
    out = infuse(driver, cycle, date, level,
                 deviation_reason="given before the AE report was read")
    assert [d["rule"] for d in out["deviations"]] == ["treatment.after_discontinuation"]
    stored = driver.ledger.patient(S).event_of(out["entry"])  # an edit-check query follows it
    assert stored.deviation_reason == "given before the AE report was read"
    assert [d.rule for d in stored.deviations] == ["treatment.after_discontinuation"]


@pytest.fixture
def started(driver):
    """Enrolled 2025-01-10 (baseline LVEF 60 %), cycle 1 on 2025-01-15 at 5.4 mg/kg."""
    driver.enrolled(S)
    infuse(driver, 1, "2025-01-15")
    return driver


# --- pneumonitis / ILD ------------------------------------------------------------------------


@pytest.mark.parametrize("term", ["Pneumonitis", "pneumonitis", "Interstitial lung disease",
                                  "INTERSTITIAL LUNG DISEASE"])
def test_pneumonitis_grade_1_resolved_within_28_days_resumes_at_the_same_dose(started, term):
    interrupted_then_refused(started, ae(started, term, 1, "2025-01-25"), 2, "2025-02-05")
    out = resolve(started, "AE1", "2025-02-22")  # 28 days after onset: within
    assert (out["action"], out["treatment_state"]) == ("resume", "active")
    accepted_only_at(started, 2, "2025-02-24", 5.4)


def test_pneumonitis_grade_1_resolved_on_day_35_drops_one_level(started):
    interrupted_then_refused(started, ae(started, "Pneumonitis", 1, "2025-01-25"),
                             2, "2025-02-05")
    out = resolve(started, "AE1", "2025-03-01")
    assert out["action"] == "resume-reduced"
    assert out["dose_level_mg_per_kg"] == 4.4
    accepted_only_at(started, 2, "2025-03-03", 4.4)


def test_pneumonitis_grade_1_resolved_on_day_29_is_later_than_28_days(started):
    ae(started, "Pneumonitis", 1, "2025-01-25")
    assert resolve(started, "AE1", "2025-02-23")["action"] == "resume-reduced"


def test_pneumonitis_update_while_grade_1_keeps_the_interruption(started):
    ae(started, "Pneumonitis", 1, "2025-01-25")
    interrupted_then_refused(started, update(started, "AE1", "2025-02-01", 1), 2, "2025-02-05")


@pytest.mark.parametrize("grade", [2, 3, 4])
@pytest.mark.parametrize("term", ["Pneumonitis", "Interstitial lung disease"])
def test_pneumonitis_grade_2_or_more_makes_any_later_infusion_a_deviation(started, term, grade):
    discontinued_for_good(started, ae(started, term, grade, "2025-01-25"), 2, "2025-02-05")


@ON_DATABASES
def test_pneumonitis_worsening_from_grade_1_to_2_discontinues(started):
    ae(started, "Pneumonitis", 1, "2025-01-25")
    out = update(started, "AE1", "2025-02-01", 2)
    discontinued_for_good(started, out, 2, "2025-02-05")
    # Resolution afterwards does not bring treatment back.
    assert resolve(started, "AE1", "2025-02-10")["treatment_state"] == "discontinued"


# --- neutrophils, febrile neutropenia, platelets ----------------------------------------------


def test_neutrophil_count_decreased_grade_3_resumes_at_the_same_dose_at_grade_2(started):
    interrupted_then_refused(started, ae(started, "Neutrophil count decreased", 3,
                                         "2025-02-01"), 2, "2025-02-05")
    out = update(started, "AE1", "2025-02-07", 2)
    assert (out["action"], out["dose_level_mg_per_kg"]) == ("resume", 5.4)
    accepted_only_at(started, 2, "2025-02-08", 5.4)


def test_neutrophil_count_decreased_grade_4_then_grade_2_allows_only_4_4(started):
    interrupted_then_refused(started, ae(started, "Neutrophil count decreased", 4,
                                         "2025-02-01"), 2, "2025-02-05")
    # Grade 3 is not yet recovered: still interrupted, and the reduction still pending.
    interrupted_then_refused(started, update(started, "AE1", "2025-02-06", 3), 2, "2025-02-07")
    out = update(started, "AE1", "2025-02-08", 2)
    assert (out["action"], out["dose_level_mg_per_kg"]) == ("resume-reduced", 4.4)
    accepted_only_at(started, 2, "2025-02-10", 4.4)


def test_neutrophil_count_decreased_grade_4_resolved_resumes_reduced(started):
    ae(started, "Neutrophil count decreased", 4, "2025-02-01")
    assert resolve(started, "AE1", "2025-02-08")["action"] == "resume-reduced"
    accepted_only_at(started, 2, "2025-02-10", 4.4)


def test_neutrophils_worsening_from_3_to_4_reduce_on_recovery(started):
    ae(started, "Neutrophil count decreased", 3, "2025-02-01")
    assert update(started, "AE1", "2025-02-04", 4)["action"] == "interrupt"
    assert update(started, "AE1", "2025-02-08", 1)["action"] == "resume-reduced"
    accepted_only_at(started, 2, "2025-02-10", 4.4)


@pytest.mark.parametrize("grade", [1, 2])
def test_neutrophils_grade_1_or_2_continue(started, grade):
    out = ae(started, "Neutrophil count decreased", grade, "2025-02-01")
    assert (out["action"], out["treatment_state"]) == ("continue", "active")
    accepted_only_at(started, 2, "2025-02-05", 5.4)


@pytest.mark.parametrize("grade", [3, 4])
def test_febrile_neutropenia_grade_3_4_interrupts_until_resolved_then_reduces(started, grade):
    interrupted_then_refused(started, ae(started, "Febrile neutropenia", grade, "2025-02-01"),
                             2, "2025-02-05")
    # A lower grade is not resolution.
    if grade == 4:
        interrupted_then_refused(started, update(started, "AE1", "2025-02-06", 3),
                                 2, "2025-02-07")
    out = resolve(started, "AE1", "2025-02-08")
    assert (out["action"], out["dose_level_mg_per_kg"]) == ("resume-reduced", 4.4)
    accepted_only_at(started, 2, "2025-02-10", 4.4)


def test_platelet_count_decreased_grade_3_resumes_at_the_same_dose_at_grade_1(started):
    interrupted_then_refused(started, ae(started, "Platelet count decreased", 3, "2025-02-01"),
                             2, "2025-02-05")
    # Grade 2 is not enough for platelets (<= 1 is).
    interrupted_then_refused(started, update(started, "AE1", "2025-02-06", 2), 2, "2025-02-07")
    out = update(started, "AE1", "2025-02-08", 1)
    assert (out["action"], out["dose_level_mg_per_kg"]) == ("resume", 5.4)
    accepted_only_at(started, 2, "2025-02-10", 5.4)


def test_platelet_count_decreased_grade_4_resumes_one_level_lower_at_grade_1(started):
    interrupted_then_refused(started, ae(started, "Platelet count decreased", 4, "2025-02-01"),
                             2, "2025-02-05")
    interrupted_then_refused(started, update(started, "AE1", "2025-02-06", 2), 2, "2025-02-07")
    out = update(started, "AE1", "2025-02-08", 1)
    assert (out["action"], out["dose_level_mg_per_kg"]) == ("resume-reduced", 4.4)
    accepted_only_at(started, 2, "2025-02-10", 4.4)


# --- heart failure, grade 5 -------------------------------------------------------------------


@pytest.mark.parametrize("grade", [2, 3, 4])
def test_symptomatic_heart_failure_discontinues_permanently(started, grade):
    discontinued_for_good(started, ae(started, "Heart failure", grade, "2025-02-01"),
                          2, "2025-02-05")


def test_heart_failure_grade_1_is_asymptomatic_and_continues(started):
    assert ae(started, "heart failure", 1, "2025-02-01")["action"] == "continue"
    accepted_only_at(started, 2, "2025-02-05", 5.4)


@ON_DATABASES
def test_grade_5_discontinues_and_the_death_must_have_the_same_date(started):
    out = ae(started, "Sepsis", 5, "2025-02-01", serious=True)
    assert out["action"] == "discontinue"
    assert "2025-02-01" in out["note"]
    assert started.ledger.patient(S).events[-1].action == "discontinue"
    # The infusion the death makes impossible is, until the death is recorded, a deviation.
    refused(started, 2, "2025-02-01", "treatment.after_discontinuation")
    with pytest.raises(RuleViolation) as refusal:
        started.do("death", subject=S, date="2025-02-03")
    assert refusal.value.rule == "ae.grade5_death_date"
    started.do("death", subject=S, date="2025-02-01", cause="sepsis")
    with pytest.raises(RuleViolation):
        infuse(started, 2, "2025-02-05", deviation_reason="none can make this possible")


def test_grade_5_entered_after_a_death_of_another_date_is_refused(started):
    started.do("death", subject=S, date="2025-02-03")
    with pytest.raises(RuleViolation) as refusal:
        ae(started, "Pneumonitis", 5, "2025-02-01")
    assert refusal.value.rule == "ae.grade5_death_date"
    assert ae(started, "Pneumonitis", 5, "2025-02-03")["action"] == "discontinue"


def test_worsening_to_grade_5_discontinues(started):
    ae(started, "Febrile neutropenia", 3, "2025-02-01")
    assert update(started, "AE1", "2025-02-04", 5)["action"] == "discontinue"
    with pytest.raises(RuleViolation):
        started.do("death", subject=S, date="2025-02-05")


# --- a reduction below the last level ---------------------------------------------------------


def test_a_reduction_below_the_last_level_discontinues_permanently(started):
    day = iter(["2025-02-01", "2025-02-05", "2025-02-25", "2025-03-01", "2025-03-20",
                "2025-03-25"])
    ae(started, "Neutrophil count decreased", 4, next(day))
    assert update(started, "AE1", next(day), 2)["dose_level_mg_per_kg"] == 4.4
    infuse(started, 2, "2025-02-06", 4.4)
    ae(started, "Neutrophil count decreased", 4, next(day))
    assert update(started, "AE2", next(day), 2)["action"] == "resume-reduced"
    accepted_only_at(started, 3, "2025-03-02", 3.2)
    ae(started, "Neutrophil count decreased", 4, next(day))
    out = update(started, "AE3", next(day), 2)
    discontinued_for_good(started, out, 4, "2025-03-27", level=3.2)


# --- LVEF -------------------------------------------------------------------------------------


@pytest.mark.parametrize("percent", [60, 50, 45.5])
def test_lvef_above_45_with_a_drop_of_at_most_20_continues(started, percent):
    out = lvef(started, "2025-02-01", percent)
    assert (out["action"], out["treatment_state"]) == ("continue", "active")
    assert out["lvef_repeat_due"] is None
    accepted_only_at(started, 2, "2025-02-05", 5.4)


def test_lvef_40_to_45_with_a_drop_under_10_continues_and_asks_for_a_repeat(driver):
    driver.enrolled(S, lvef=52)
    infuse(driver, 1, "2025-01-15")
    out = lvef(driver, "2025-02-01", 44)
    assert (out["action"], out["treatment_state"]) == ("continue", "active")
    assert out["lvef_repeat_due"].isoformat() == "2025-02-22"
    accepted_only_at(driver, 2, "2025-02-05", 5.4)


def test_lvef_40_to_45_with_a_drop_of_10_to_20_recovering_resumes_at_the_same_dose(started):
    interrupted_then_refused(started, lvef(started, "2025-02-01", 45), 2, "2025-02-05")
    out = lvef(started, "2025-02-15", 51)  # within 10 points of 60
    assert (out["action"], out["dose_level_mg_per_kg"]) == ("resume", 5.4)
    accepted_only_at(started, 2, "2025-02-16", 5.4)


@pytest.mark.parametrize("repeat", [50, 48, 44, 38])
def test_lvef_40_to_45_with_a_drop_of_10_to_20_not_recovering_discontinues(started, repeat):
    interrupted_then_refused(started, lvef(started, "2025-02-01", 42), 2, "2025-02-05")
    discontinued_for_good(started, lvef(started, "2025-02-15", repeat), 2, "2025-02-16")


def test_lvef_60_to_38_interrupts_and_a_repeat_at_37_within_21_days_discontinues(started):
    interrupted_then_refused(started, lvef(started, "2025-02-01", 38), 2, "2025-02-05")
    out = lvef(started, "2025-02-20", 37)
    assert out["repeat_late"] is False
    discontinued_for_good(started, out, 2, "2025-02-21")


def test_lvef_below_40_not_confirmed_resumes_at_the_same_dose(started):
    interrupted_then_refused(started, lvef(started, "2025-02-01", 38), 2, "2025-02-05")
    out = lvef(started, "2025-02-15", 55)
    assert (out["action"], out["dose_level_mg_per_kg"]) == ("resume", 5.4)
    accepted_only_at(started, 2, "2025-02-16", 5.4)


def test_lvef_below_40_repeated_in_the_10_to_20_band_stays_interrupted(started):
    lvef(started, "2025-02-01", 38)
    interrupted_then_refused(started, lvef(started, "2025-02-15", 45), 2, "2025-02-16")
    # Now judged as the 10-20 band: back within 10 points resumes.
    assert lvef(started, "2025-03-01", 52)["action"] == "resume"
    accepted_only_at(started, 2, "2025-03-02", 5.4)


@ON_DATABASES
def test_lvef_drop_over_20_points_interrupts_and_confirmed_discontinues(driver):
    driver.enrolled(S, lvef=70)
    infuse(driver, 1, "2025-01-15")
    # 48 % is above 45 %, but 22 points below the baseline.
    interrupted_then_refused(driver, lvef(driver, "2025-02-01", 48), 2, "2025-02-05")
    discontinued_for_good(driver, lvef(driver, "2025-02-18", 49), 2, "2025-02-19")


def test_lvef_drop_over_20_points_not_confirmed_resumes(driver):
    driver.enrolled(S, lvef=70)
    infuse(driver, 1, "2025-01-15")
    lvef(driver, "2025-02-01", 48)
    assert lvef(driver, "2025-02-18", 62)["action"] == "resume"
    accepted_only_at(driver, 2, "2025-02-19", 5.4)


def test_a_late_lvef_repeat_still_confirms_and_is_marked_late(started):
    lvef(started, "2025-02-01", 38)
    out = lvef(started, "2025-02-25", 37)  # 24 days: later than 21
    assert out["repeat_late"] is True
    discontinued_for_good(started, out, 2, "2025-02-26")


def test_a_symptomatic_lvef_decline_discontinues(started):
    discontinued_for_good(started, lvef(started, "2025-02-01", 50, symptomatic=True),
                          2, "2025-02-05")


def test_lvef_interruption_is_not_lifted_by_a_decision_to_resume(started):
    lvef(started, "2025-02-01", 38)
    out = started.do("resume", subject=S, date="2025-02-03", reason="cardiologist agrees")
    assert out["treatment_state"] == "interrupted"
    refused(started, 2, "2025-02-05", "treatment.while_interrupted")


# --- several causes at once -------------------------------------------------------------------


@ON_DATABASES
def test_a_reduction_while_another_cause_holds_prints_reduce(started):
    ae(started, "Neutrophil count decreased", 4, "2025-02-01")
    lvef(started, "2025-02-02", 38)
    out = update(started, "AE1", "2025-02-06", 2)
    assert (out["action"], out["treatment_state"]) == ("reduce", "interrupted")
    assert out["dose_level_mg_per_kg"] == 4.4
    refused(started, 2, "2025-02-07", "treatment.while_interrupted", 4.4)
    assert lvef(started, "2025-02-10", 56)["action"] == "resume"
    accepted_only_at(started, 2, "2025-02-11", 4.4)


def test_an_unrelated_ae_during_an_interruption_prints_interrupt(started):
    ae(started, "Neutrophil count decreased", 3, "2025-02-01")
    out = ae(started, "Nausea", 2, "2025-02-02")
    assert (out["ae_id"], out["action"]) == ("AE2", "interrupt")
    assert ae(started, "Nausea", 1, "2025-02-03", id="N-1")["ae_id"] == "N-1"
