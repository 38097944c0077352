"""The treatment course derived from a timeline, without a ledger: phases and state."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest

from m22bol.domain import events as e
from m22bol.domain.errors import RuleViolation
from m22bol.domain.protocol import bundled_protocol_text, parse_protocol
from m22bol.domain.timeline import derive, summary

PROTOCOL = parse_protocol(bundled_protocol_text())
TODAY = date(2026, 11, 26)
ID = uuid4()


class Timeline:
    """Facts in entry order, each with the envelope the ledger would give it."""

    def __init__(self):
        self.entries: list[tuple[str, e.Fact]] = []
        self.add(e.Registered, subject="S", site="S1", consent_date=date(2025, 1, 2))
        self.add(e.EligibilityAssessed, date=date(2025, 1, 2), her2="positive", er="positive",
                 prior_therapy="none", distant_lesions=1, all_lesions_curable=True, lvef=60,
                 ecog=0)
        self.add(e.Enrolled, date=date(2025, 1, 10), weight_kg=60)

    def add(self, kind: type[e.Fact], **values) -> Timeline:
        n = len(self.entries) + 1
        fact = kind(originator_id=ID, originator_version=n, recorded_at=datetime.now(UTC),
                    actor="dm", **values)
        self.entries.append((f"S#{n}", fact))
        return self

    def infuse(self, cycle: int, when: date, dose: float = 324) -> Timeline:
        return self.add(e.InfusionGiven, cycle=cycle, date=when, weight_kg=60, dose_mg=dose)

    def summary(self) -> dict:
        return summary(derive("S", self.entries, PROTOCOL, TODAY))


def cycles(t: Timeline, first: int, last: int, start: date) -> date:
    day = start
    for cycle in range(first, last + 1):
        t.infuse(cycle, day)
        day += timedelta(days=21)
    return day - timedelta(days=21)


def test_phases_of_a_full_course():
    t = Timeline()
    assert t.summary()["phase"] == "not-started"
    t.infuse(1, date(2025, 1, 15))
    assert t.summary()["phase"] == "neoadjuvant"
    last_neo = cycles(t, 2, 8, date(2025, 2, 5))
    doc = t.summary()
    assert (doc["phase"], doc["cycles_given"], doc["next_cycle"]) == ("local-treatment", 8, 9)
    t.add(e.SurgeryPerformed, date=last_neo + timedelta(days=20), site="primary")
    assert t.summary()["phase"] == "local-treatment"
    t.add(e.LocalTreatmentCompleted, date=last_neo + timedelta(days=30))
    assert t.summary()["phase"] == "adjuvant"
    last = cycles(t, 9, 16, last_neo + timedelta(days=35))
    doc = t.summary()
    assert (doc["phase"], doc["treatment_state"]) == ("completed", "completed")
    assert (doc["next_cycle"], doc["next_cycle_due"]) == (None, None)
    assert doc["treatment_ended"] == last
    assert doc["deviations"] == []


def test_a_surgery_during_neoadjuvant_cycles_starts_the_local_treatment_phase():
    t = Timeline().infuse(1, date(2025, 1, 15)).infuse(2, date(2025, 2, 5))
    t.add(e.SurgeryPerformed, date=date(2025, 2, 20), site="metastasis")
    assert t.summary()["phase"] == "local-treatment"
    # Cycle 3 is still neo-adjuvant: local treatment is not marked complete.
    t.infuse(3, date(2025, 2, 26))
    assert t.summary()["deviations"] == []


def test_several_causes_of_interruption_are_shown_together():
    t = Timeline().infuse(1, date(2025, 1, 15))
    t.add(e.TreatmentInterrupted, date=date(2025, 2, 1), reason="travel")
    t.add(e.AdverseEventReported, ae_id="AE1", term="Platelet count decreased", grade=3,
          onset=date(2025, 2, 3), ctcae_version="5.0")
    doc = t.summary()
    assert doc["treatment_state"] == "interrupted"
    assert doc["interruption"]["since"] == date(2025, 2, 1)
    assert [c["cause"] for c in doc["interruption"]["causes"]] == ["decision", "AE1"]
    t.add(e.TreatmentResumed, date=date(2025, 2, 5), reason="back")
    doc = t.summary()
    assert doc["treatment_state"] == "interrupted"
    assert doc["interruption"]["why"] == "AE1 Platelet count decreased grade 3"
    assert "grade <= 1" in doc["interruption"]["ends_when"]


def test_an_infusion_after_discontinuation_is_a_deviation_in_the_walk():
    t = Timeline().infuse(1, date(2025, 1, 15))
    t.add(e.TreatmentDiscontinued, date=date(2025, 2, 1), reason="progression")
    t.infuse(2, date(2025, 2, 5))
    assert [d["rule"] for d in t.summary()["deviations"]] == ["treatment.after_discontinuation"]


def test_death_ends_the_course_and_grade_5_needs_its_date():
    t = Timeline().infuse(1, date(2025, 1, 15))
    t.add(e.AdverseEventReported, ae_id="AE1", term="Sepsis", grade=5,
          onset=date(2025, 2, 1), ctcae_version="5.0")
    assert t.summary()["death_to_record"] == date(2025, 2, 1)
    t.add(e.DeathRecorded, date=date(2025, 2, 1))
    doc = t.summary()
    assert (doc["status"], doc["treatment_state"], doc["death_to_record"]) == (
        "dead", "discontinued", None)
    t.entries[-1] = ("S#6", t.entries[-1][1].model_copy(update={"date": date(2025, 2, 2)}))
    with pytest.raises(RuleViolation):
        t.summary()
