"""`endpoint_inputs.patient_facts`: one walked subject as the endpoint tallies read it."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from m22bol.domain import events as ev
from m22bol.domain.rules.endpoint_inputs import patient_facts
from m22bol.domain.rules.endpoints import AdverseEventFacts, tally
from m22bol.domain.timeline import derive
from tests.support.timelines import DAY0, PROTOCOL, Subject, day


def full_course_subject() -> Subject:
    """Baseline scan, PET and ctDNA; eight cycles; surgery with a complication; pathology."""
    s = Subject()
    s.scan(day(-5), {"L1": 30, "L2": 20}, non_targets={"NT1": "present"})
    s.add(ev.PetRecorded, date=day(-4), sulpeak=8.0)
    s.add(ev.CtdnaRecorded, date=day(-4), result="detected")
    s.add(ev.AdverseEventReported, ae_id="AE1", term="Interstitial lung disease", grade=1,
          onset=day(30), ctcae_version="5.0")
    s.add(ev.AdverseEventResolved, ae_id="AE1", date=day(40))
    s.add(ev.AdverseEventReported, ae_id="AE2", term="Nausea", grade=1, onset=day(2),
          serious_criteria=("hospitalisation",), ctcae_version="5.0")
    s.add(ev.AdverseEventUpdated, ae_id="AE2", date=day(9), grade=3)
    for cycle in range(1, 9):
        # AE1 interrupts (pneumonitis grade 1) until resolved on day 40: cycle 3 waits for it.
        when = day(21 * (cycle - 1)) if cycle < 3 else day(42 + 21 * (cycle - 3))
        s.infuse(cycle, when)
    s.scan(day(60), {"L1": 0, "L2": 0}, non_targets={"NT1": "absent"})
    s.add(ev.PetRecorded, date=day(61), percist="CMR", sulpeak=1.1)
    s.add(ev.CtdnaRecorded, date=day(61), result="not-detected")
    s.scan(day(100), {"L1": 0, "L2": 0}, non_targets={"NT1": "absent"})
    s.add(ev.SurgeryPerformed, date=day(190), site="primary")
    s.add(ev.ComplicationRecorded, date=day(195), clavien_dindo="IIIb")
    s.add(ev.RadiotherapyGiven, start=day(200), end=day(210), location="liver", dose_gy=50,
          fractions=5)
    s.add(ev.PathologyReported, date=day(198), ypt="T0", ypn="N0",
          viable_metastatic_tumour="not-resected")
    s.add(ev.ContactRecorded, date=day(300))
    return s


def test_patient_facts_reads_each_part_of_the_walk():
    s = full_course_subject()

    facts = patient_facts(s.state(), s.entries)

    assert (facts.subject, facts.basket, facts.enrolled) == ("S1", "I", date(2025, 1, 10))
    assert facts.infusions == (DAY0, day(21), *(day(42 + 21 * i) for i in range(6)))
    assert facts.assessments == ((day(-5), None), (day(60), "CR"), (day(100), "CR"))
    assert facts.ctdna == ((day(-4), True), (day(61), False))
    assert facts.pets == ((day(-4), None), (day(61), "CMR"))
    assert facts.surgeries == (day(190),)
    assert facts.radiotherapy == ((day(200), day(210)),)
    assert facts.pathology == ((day(198), "T0", "N0", "not-resected"),)
    assert facts.complications == ((day(195), "IIIb"),)
    coded = [replace(ae, report_due=None, entered_late=None) for ae in facts.adverse_events]
    assert coded == [
        AdverseEventFacts(ae_id="AE2", term="Nausea", onset=day(2), serious=True,
                          grades=((day(2), 1), (day(9), 3)), soc="Gastrointestinal disorders",
                          meddra_code=10028813, serious_criteria=("hospitalisation",)),
        AdverseEventFacts(ae_id="AE1", term="Pneumonitis", onset=day(30), serious=False,
                          grades=((day(30), 1),),
                          soc="Respiratory, thoracic and mediastinal disorders",
                          meddra_code=10035742),
    ]
    assert facts.adverse_events[0].report_due is not None
    assert facts.death is None
    assert facts.treatment_ended is None  # eight of sixteen cycles: the course goes on
    assert max(facts.fact_dates) == day(300)


def test_the_tallies_read_a_walked_subject():
    s = full_course_subject()

    out = tally([patient_facts(s.state(), s.entries)], PROTOCOL, day(400))["I"]

    # CR on days 60 and 100 (40 days apart, no PD), ctDNA detected at baseline, clear on day 61.
    assert out["primary"]["responders"] == 1
    assert out["primary"]["radiologic_cr_before_local_treatment"] == 1
    assert out["pathological_complete_response"] == {"patients": 1, "patients_ci95": [0.025, 1.0],
                                                     "operated": 1}
    assert out["metabolic_response"] == {"patients": 1, "patients_ci95": [0.025, 1.0],
                                         "pet_evaluable": 1}
    assert out["safety"]["pneumonitis"] == 1  # the ILD counts as pneumonitis
    assert out["safety"]["serious"] == out["safety"]["grade3plus"] == 1
    assert out["safety"]["clavien_dindo_3plus"] == 1


def test_treatment_ended_follows_the_course():
    stopped, withdrawn, dead = Subject("A"), Subject("B"), Subject("C")
    for s in (stopped, withdrawn, dead):
        s.infuse(1, DAY0)
    stopped.add(ev.TreatmentDiscontinued, date=day(10), reason="patient's choice")
    withdrawn.add(ev.Withdrawn, date=day(12), reason="moved away")
    dead.add(ev.DeathRecorded, date=day(14))

    assert patient_facts(stopped.state(), stopped.entries).treatment_ended == day(10)
    assert patient_facts(withdrawn.state(), withdrawn.entries).treatment_ended == day(12)
    facts = patient_facts(dead.state(), dead.entries)
    assert facts.death == day(14)


def test_only_the_facts_handed_in_count():
    s = full_course_subject()
    cutoff = day(70)
    kept = [(k, f) for k, f in s.entries if f.clinical_date <= cutoff]

    facts = patient_facts(derive("S1", kept, PROTOCOL, date(2026, 11, 26)), kept)

    assert facts.assessments[-1] == (day(60), "CR")
    assert facts.surgeries == () and facts.complications == ()
    assert max(facts.fact_dates) == day(63)  # cycle 4, the last fact up to day 70
