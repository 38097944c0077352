"""Corrections and retractions: new events naming the entry they supersede, a mandatory reason,
the timeline judged again with the change (so a change that breaks a rule is refused), derived
values that follow, and a history that shows old value, new value, who, when and why."""

from __future__ import annotations

import json

import pytest

from m22bol.domain.errors import BadInput, DeviationRefused, RuleViolation
from m22bol.projections.replay import history_view, patient_view
from tests.support import IN_MEMORY, ON_DATABASES, invoke, store_fingerprint

pytestmark = IN_MEMORY

S = "M22-001"


@pytest.fixture
def enrolled(driver):
    """M22-001: consent and eligibility 2025-01-02 (ER+, no prior therapy), enrolled 2025-01-10
    at 60 kg, basket I. Entries #1 register, #2 eligibility, #3 enrolment."""
    driver.enrolled(S, er="positive", prior="none", weight=60)
    return driver


def history(driver, subject: str = S, user: str = "mon") -> dict:
    result = invoke(["history", subject, "--json"], url=driver.ledger.url, user=user)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@ON_DATABASES
@pytest.mark.parametrize("args", [
    ["correct", S, f"{S}#2", "--set", "er=negative"],
    ["correct", S, f"{S}#2", "--set", "er=negative", "--reason", "   "],
    ["retract", S, f"{S}#3"],
    ["retract", S, f"{S}#3", "--reason", ""],
])
def test_a_change_without_a_reason_is_refused_and_nothing_is_written(enrolled, args):
    before = store_fingerprint(enrolled.ledger.url)

    result = invoke(args, url=enrolled.ledger.url)

    assert result.exit_code == 2, result.output
    assert "reason" in result.output
    assert store_fingerprint(enrolled.ledger.url) == before


@ON_DATABASES
def test_an_imported_change_needs_a_reason_too(enrolled, tmp_path):
    before = store_fingerprint(enrolled.ledger.url)
    path = tmp_path / "changes.jsonl"
    path.write_text(json.dumps({"command": "correct", "subject": S, "entry": f"{S}#2",
                                "set": ["er=negative"], "reason": " "}) + "\n")

    result = invoke(["import", str(path)], url=enrolled.ledger.url)

    assert result.exit_code == 2, result.output
    assert "line 1: reason" in result.output
    assert store_fingerprint(enrolled.ledger.url) == before


@ON_DATABASES
def test_history_shows_old_value_new_value_who_when_and_why(enrolled):
    result = invoke(["correct", S, f"{S}#2", "--set", "er=negative", "--reason",
                     "ER transcribed from the wrong report"], url=enrolled.ledger.url,
                    user="inv")
    assert result.exit_code == 0, result.output

    doc = history(enrolled)

    original, correction = doc["entries"][1], doc["entries"][-1]
    assert original["values"]["er"] == "positive"  # the old record is never obscured
    assert original["superseded_by"] == f"{S}#4"
    assert correction["entry"] == f"{S}#4"
    assert correction["event"] == "EntryCorrected"
    assert correction["actor"] == "inv"
    assert correction["recorded_at"] == enrolled.ledger.require_patient(S).events[
        -1].recorded_at.isoformat()
    assert correction["reason"] == "ER transcribed from the wrong report"
    assert correction["old_values"] == {"er": "positive"}
    assert correction["new_values"] == {"er": "negative"}
    text = invoke(["history", S], url=enrolled.ledger.url, user="mon").output
    assert f"{S}#2: er: positive -> negative" in text
    assert "ER transcribed from the wrong report" in text


def test_a_second_correction_supersedes_the_first(enrolled):
    enrolled.do("correct", subject=S, entry=f"{S}#3", reason="scale not tared",
                set=["weight_kg=58"])
    enrolled.do("correct", subject=S, entry=f"{S}#3", reason="weighed again",
                set=["weight-kg=59"])  # the option spelling is accepted

    rows = {r["entry"]: r for r in history_view(enrolled.ledger, S)["entries"]}

    assert rows[f"{S}#3"]["superseded_by"] == f"{S}#4"
    assert rows[f"{S}#4"]["superseded_by"] == f"{S}#5"
    assert (rows[f"{S}#4"]["old_values"], rows[f"{S}#4"]["new_values"]) == (
        {"weight_kg": 60.0}, {"weight_kg": 58.0})
    assert (rows[f"{S}#5"]["old_values"], rows[f"{S}#5"]["new_values"]) == (
        {"weight_kg": 58.0}, {"weight_kg": 59.0})


def test_a_retraction_keeps_and_shows_what_it_withdrew(enrolled):
    enrolled.do("contact", subject=S, date="2025-03-01")
    enrolled.do("retract", subject=S, entry=f"{S}#4", reason="another patient's visit")

    rows = {r["entry"]: r for r in history_view(enrolled.ledger, S)["entries"]}

    assert rows[f"{S}#4"]["superseded_by"] == f"{S}#5"
    assert rows[f"{S}#5"]["old_values"] == {"date": "2025-03-01"}
    assert rows[f"{S}#5"]["new_values"] is None
    assert rows[f"{S}#5"]["reason"] == "another patient's visit"
    assert patient_view(enrolled.ledger, S)["last_known_alive"].isoformat() == "2025-01-10"


@ON_DATABASES
def test_correcting_er_on_the_eligibility_entry_moves_the_subject_to_another_basket(enrolled):
    url = enrolled.ledger.url
    assert patient_view(enrolled.ledger, S)["basket"] == "I"

    result = invoke(["correct", S, f"{S}#2", "--set", "er=negative", "--reason", "lab typo",
                     "--json"], url=url)

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["old_values"] == {"er": "positive"}
    patient = json.loads(invoke(["patient", S, "--json"], url=url, user="mon").output)
    assert patient["basket"] == "II"
    status = json.loads(invoke(["status", "--json"], url=url, user="mon").output)["baskets"]
    assert (status["I"]["enrolled"], status["II"]["enrolled"]) == (0, 1)
    # What was stored at enrolment stays, for the record.
    assert enrolled.ledger.require_patient(S).event_of(f"{S}#3").basket == "I"


def test_correcting_lvef_at_screening_turns_a_screened_subject_into_a_screen_failure(driver):
    driver.do("register", subject="M22-002", site="S1", consent_date="2025-01-02")
    driver.do("assess-eligibility", subject="M22-002", date="2025-01-03", her2="positive",
              er="negative", prior_therapy="none", distant_lesions=1, all_lesions_curable="yes",
              lvef=55, ecog=1)
    assert patient_view(driver.ledger, "M22-002")["status"] == "registered"

    driver.do("correct", subject="M22-002", entry="M22-002#2", reason="echo re-read",
              set=["lvef=45"])

    view = patient_view(driver.ledger, "M22-002")
    assert view["status"] == "screen-failed"
    assert view["failed_criteria"] == ["lvef: 45% below 50%"]


@ON_DATABASES
@pytest.mark.parametrize("entry, change, rule", [
    ("#2", "her2=negative", "enrol.ineligible"),
    ("#1", "consent_date=2025-01-05", "date.before_consent"),
    ("#3", "date=2027-06-01", "date.in_future"),
    ("#2", "date=2025-01-11", "enrol.not_assessed"),
])
def test_a_correction_that_breaks_a_rule_is_refused_with_exit_3(enrolled, entry, change, rule):
    before = store_fingerprint(enrolled.ledger.url)

    result = invoke(["correct", S, S + entry, "--set", change, "--reason", "checked", "--json"],
                    url=enrolled.ledger.url)

    assert result.exit_code == 3, result.output
    assert json.loads(result.output)["error"]["rule"] == rule
    assert store_fingerprint(enrolled.ledger.url) == before


@pytest.fixture
def treated(enrolled):
    """Cycle 1 at 5.4 mg/kg (324 mg at 60 kg) as #4, a dose reduction on 2025-01-20 as #5."""
    enrolled.do("infuse", subject=S, cycle=1, date="2025-01-13", weight_kg=60, dose_mg=324)
    enrolled.do("reduce-dose", subject=S, date="2025-01-20", reason="fatigue")
    return enrolled


def test_a_correction_that_makes_a_dose_a_deviation_needs_a_deviation_reason(treated):
    with pytest.raises(DeviationRefused) as refused:
        treated.do("correct", subject=S, entry=f"{S}#4", reason="weight misread",
                   set=["weight_kg=80"])
    assert refused.value.rule == "dose.out_of_tolerance"

    out = treated.do("correct", subject=S, entry=f"{S}#4", reason="weight misread",
                     set=["weight_kg=80"], deviation_reason="dosed on the old weight")

    assert [d["rule"] for d in out["deviations"]] == ["dose.out_of_tolerance"]
    assert patient_view(treated.ledger, S)["deviations"][0]["entry"] == f"{S}#4"


def test_the_dose_level_follows_a_retracted_reduction(treated):
    treated.do("infuse", subject=S, cycle=2, date="2025-02-03", weight_kg=60, dose_mg=264)
    assert patient_view(treated.ledger, S)["dose_level_mg_per_kg"] == 4.4

    # Without the reduction, cycle 2 was under-dosed: the retraction must accept that.
    with pytest.raises(DeviationRefused):
        treated.do("retract", subject=S, entry=f"{S}#5", reason="entered for another patient")
    treated.do("retract", subject=S, entry=f"{S}#5", reason="entered for another patient",
               deviation_reason="264 mg was given as recorded")

    view = patient_view(treated.ledger, S)
    assert view["dose_level_mg_per_kg"] == 5.4
    assert [d["entry"] for d in view["deviations"]] == [f"{S}#6"]


def test_dates_follow_a_corrected_and_a_retracted_death(enrolled):
    enrolled.do("death", subject=S, date="2025-06-01")
    enrolled.do("correct", subject=S, entry=f"{S}#4", reason="date from the death certificate",
                set=["date=2025-05-30"])
    view = patient_view(enrolled.ledger, S)
    assert (view["status"], view["death"].isoformat()) == ("dead", "2025-05-30")

    enrolled.do("retract", subject=S, entry=f"{S}#4", reason="wrong patient")

    view = patient_view(enrolled.ledger, S)
    assert (view["status"], view["death"]) == ("enrolled", None)


@pytest.mark.parametrize("command, values, error, rule", [
    ("correct", {"entry": f"{S}#3", "set": ["basket=II"]}, BadInput, None),
    ("correct", {"entry": f"{S}#3", "set": ["colour=blue"]}, BadInput, None),
    ("correct", {"entry": f"{S}#3", "set": ["weight_kg=sixty"]}, BadInput, None),
    ("correct", {"entry": f"{S}#3", "set": ["weight_kg=60"]}, BadInput, None),
    ("correct", {"entry": f"{S}#9", "set": ["weight_kg=61"]}, BadInput, None),
    ("correct", {"entry": "M22-002#3", "set": ["weight_kg=61"]}, BadInput, None),
    ("retract", {"entry": f"{S}#1"}, RuleViolation, "retract.registration"),
])
def test_changes_that_cannot_apply_are_refused(enrolled, command, values, error, rule):
    with pytest.raises(error) as refused:
        enrolled.do(command, subject=S, reason="checked", **values)
    assert refused.value.rule == rule


def test_a_retracted_entry_and_a_change_itself_cannot_be_changed(enrolled):
    enrolled.do("contact", subject=S, date="2025-03-01")
    enrolled.do("retract", subject=S, entry=f"{S}#4", reason="wrong patient")

    with pytest.raises(RuleViolation) as refused:
        enrolled.do("correct", subject=S, entry=f"{S}#4", reason="x", set=["date=2025-03-02"])
    assert refused.value.rule == "correct.retracted"
    with pytest.raises(BadInput, match="not a clinical fact"):
        enrolled.do("retract", subject=S, entry=f"{S}#5", reason="undo")
