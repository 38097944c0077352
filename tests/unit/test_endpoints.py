from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m22bol.domain.protocol import bundled_protocol_text, parse_protocol
from m22bol.domain.rules.endpoints import (
    PROPORTIONS,
    AdverseEventFacts,
    PatientFacts,
    outcome,
    progression_free,
    tally,
    treatment_emergent_ae_ids,
    treatment_emergent_grades,
)

PROTOCOL = parse_protocol(bundled_protocol_text())
D0 = date(2025, 1, 6)  # day 0 of most patients below
CUTOFF = D0 + timedelta(days=2000)


def d(n: int) -> date:
    """Study day n, counted from D0."""
    return D0 + timedelta(days=n)


def patient(subject: str = "P1", *, basket: str | None = "I", enrolled: date | None = d(-10),
            infusions: tuple[date, ...] = (d(0),), **facts) -> PatientFacts:
    fields = dict(
        surgeries=(), radiotherapy=(), assessments=(), ctdna=(), pets=(), pathology=(),
        complications=(), adverse_events=(), death=None, treatment_ended=None,
    )
    fields.update(facts)
    return PatientFacts(subject=subject, basket=basket, enrolled=enrolled, infusions=infusions,
                        **fields)


def ae(onset: int, *grades: tuple[int, int], term: str = "Nausea", serious: bool = False,
       first_grade: int = 1, related: bool | None = None) -> AdverseEventFacts:
    """An AE with onset on study day `onset`; later grade changes as (day, grade)."""
    history = ((d(onset), first_grade), *((d(day), g) for day, g in grades))
    return AdverseEventFacts(ae_id=f"ae{onset}", term=term, onset=d(onset), serious=serious,
                             grades=history, related=related)


def run(*patients: PatientFacts, cutoff: date = CUTOFF) -> dict:
    """The tallies without their intervals (tests/unit/test_intervals.py checks those)."""
    return without_intervals(tally(patients, PROTOCOL, cutoff))


def without_intervals(value):
    if isinstance(value, dict):
        return {k: without_intervals(v) for k, v in value.items() if not k.endswith("_ci95")}
    return value


# --- shape, enrolled, treated -----------------------------------------------------------------


def test_every_protocol_basket_appears_with_the_spec_shape_even_when_empty():
    out = run()
    assert list(out) == ["I", "II", "III", "IV", "all"]
    empty_km = {"12": None, "24": None, "60": None}
    assert out["II"] == {
        "enrolled": 0, "treated": 0,
        "primary": {"responders": 0, "evaluable": 0, "radiologic_cr": 0,
                    "radiologic_cr_before_local_treatment": 0, "ctdna_cleared": 0,
                    "ctdna_not_informative": 0},
        "progression_free": {"events": 0, "censored": 0, "median_months": None,
                             "km": empty_km},
        "overall_survival": {"events": 0, "censored": 0, "median_months": None,
                             "km": empty_km},
        "pathological_complete_response": {"patients": 0, "operated": 0},
        "metabolic_response": {"patients": 0, "pet_evaluable": 0},
        "ctdna_clearance": {"patients": 0, "baseline_detected": 0},
        "safety": {"patients_with_teae": 0, "grade3plus": 0, "serious": 0, "grade5": 0,
                   "pneumonitis": 0, "related": 0, "clavien_dindo_3plus": 0},
    }


def test_enrolled_and_treated_per_basket():
    out = run(
        patient("A", basket="I"),
        patient("B", basket="I", infusions=()),  # enrolled, never infused
        patient("C", basket="III"),
        patient("D", basket="III", infusions=(d(2001),)),  # first infusion after the cutoff
        patient("E", basket="II", enrolled=d(2001), infusions=()),  # enrolled after the cutoff
        patient("F", basket=None),  # no basket of this protocol: counts under "all" only
        patient("G", basket="I", enrolled=None),  # never enrolled
    )
    assert (out["I"]["enrolled"], out["I"]["treated"]) == (2, 1)
    assert (out["II"]["enrolled"], out["II"]["treated"]) == (0, 0)
    assert (out["III"]["enrolled"], out["III"]["treated"]) == (2, 1)
    assert (out["all"]["enrolled"], out["all"]["treated"]) == (5, 3)
    assert out["all"]["primary"]["evaluable"] == 3


def test_untreated_patient_counts_in_no_other_tally():
    untreated = patient(
        infusions=(), ctdna=((d(-5), True), (d(30), False)), surgeries=(d(10),),
        adverse_events=(ae(5, first_grade=3),), death=d(50),
    )
    out = run(untreated)["all"]
    assert out["enrolled"] == 1
    assert out["primary"]["ctdna_not_informative"] == 0
    assert out["overall_survival"]["events"] == 0
    assert out["pathological_complete_response"]["operated"] == 0
    assert out["safety"]["patients_with_teae"] == 0


# --- primary ----------------------------------------------------------------------------------


def primary(*patients: PatientFacts, cutoff: date = CUTOFF) -> dict:
    return run(*patients, cutoff=cutoff)["all"]["primary"]


@pytest.mark.parametrize(
    ("assessments", "confirmed"),
    [
        # CR day 100 and day 128: 28 days apart, both within 365 -> confirmed
        (((d(-3), None), (d(100), "CR"), (d(128), "CR")), True),
        # 27 days apart -> not confirmed
        (((d(100), "CR"), (d(127), "CR")), False),
        # CR 100, CR 120 (too close), CR 140: 140 - 100 = 40 >= 28 -> confirmed
        (((d(100), "CR"), (d(120), "CR"), (d(140), "CR")), True),
        # second CR on day 366 is outside the 365-day window
        (((d(300), "CR"), (d(366), "CR")), False),
        # second CR on day 365 is inside (day 0 .. day 365 inclusive)
        (((d(300), "CR"), (d(365), "CR")), True),
        # PD between the two CRs -> not confirmed
        (((d(100), "CR"), (d(115), "PD"), (d(140), "CR")), False),
        # PD on the day of the second CR (another reading) -> "on or before the second"
        (((d(100), "CR"), (d(140), "PD"), (d(140), "CR")), False),
        # PD only after the confirmation does not undo it
        (((d(100), "CR"), (d(140), "CR"), (d(200), "PD")), True),
        # CR, PR, CR: a PR in between is allowed
        (((d(100), "CR"), (d(130), "PR"), (d(160), "CR")), True),
        # a CR dated before day 0 is not within the window
        (((d(-30), "CR"), (d(10), "CR")), False),
    ],
)
def test_confirmed_radiologic_cr(assessments, confirmed):
    assert primary(patient(assessments=assessments))["radiologic_cr"] == int(confirmed)


def test_radiologic_cr_before_local_treatment():
    crs = ((d(100), "CR"), (d(140), "CR"))
    out = primary(
        patient("none", assessments=crs),  # no local treatment at all -> counts
        patient("surgery-after", assessments=crs, surgeries=(d(141),)),  # both before -> counts
        patient("surgery-between", assessments=crs, surgeries=(d(120),)),
        patient("surgery-same-day", assessments=crs, surgeries=(d(140),)),  # not *before*
        patient("rt-between", assessments=crs, radiotherapy=((d(110), d(130)),)),
        # CR 100/140 confirmed before surgery on 150, even though a third CR follows it
        patient("third-cr", assessments=(*crs, (d(200), "CR")), surgeries=(d(150),)),
        # first confirmation only after surgery (100/120 too close, 100/160 spans surgery)
        patient("late", assessments=((d(100), "CR"), (d(120), "CR"), (d(160), "CR")),
                surgeries=(d(130),)),
        # surgery after the cutoff is not known at the cutoff -> "no local treatment"
        patient("surgery-after-cutoff", assessments=crs, surgeries=(d(2100),)),
    )
    assert out["radiologic_cr"] == 8
    # none, surgery-after, third-cr, surgery-after-cutoff
    assert out["radiologic_cr_before_local_treatment"] == 4


@pytest.mark.parametrize(
    ("ctdna", "cleared", "informative"),
    [
        # baseline (latest on or before day 0) detected, negative on day 200 -> cleared
        (((d(-20), True), (d(200), False)), True, True),
        # baseline on day 0 itself
        (((d(0), True), (d(365), False)), True, True),
        # negative only on day 366 -> not cleared within the year, but informative
        (((d(-1), True), (d(366), False)), False, True),
        # baseline not detected -> cannot clear
        (((d(-1), False), (d(100), False)), False, False),
        # an older detected sample does not matter: the latest before day 0 is the baseline
        (((d(-40), True), (d(-2), False), (d(100), False)), False, False),
        # no sample on or before day 0 -> baseline missing
        (((d(1), True), (d(100), False)), False, False),
        # still detected later -> not cleared
        (((d(-1), True), (d(100), True)), False, True),
    ],
)
def test_ctdna_clearance_within_one_year(ctdna, cleared, informative):
    out = primary(patient(ctdna=ctdna))
    assert out["ctdna_cleared"] == int(cleared)
    assert out["ctdna_not_informative"] == int(not informative)


def test_responder_needs_both_confirmed_cr_and_ctdna_clearance():
    crs = ((d(100), "CR"), (d(140), "CR"))
    clears = ((d(-1), True), (d(150), False))
    out = primary(
        patient("both", assessments=crs, ctdna=clears),
        patient("cr-only", assessments=crs, ctdna=((d(-1), True),)),
        patient("ctdna-only", assessments=((d(100), "CR"),), ctdna=clears),
        patient("cr-not-informative", assessments=crs, ctdna=((d(-1), False), (d(50), False))),
    )
    assert out == {
        "responders": 1, "evaluable": 4, "radiologic_cr": 3,
        "radiologic_cr_before_local_treatment": 3, "ctdna_cleared": 2,
        "ctdna_not_informative": 1,
    }


def test_primary_respects_the_cutoff():
    p = patient(assessments=((d(100), "CR"), (d(140), "CR")), ctdna=((d(-1), True),
                                                                       (d(150), False)))
    assert primary(p, cutoff=d(149))["ctdna_cleared"] == 0
    assert primary(p, cutoff=d(149))["radiologic_cr"] == 1
    assert primary(p, cutoff=d(139))["radiologic_cr"] == 0
    assert primary(p, cutoff=d(150))["responders"] == 1


# --- survival ---------------------------------------------------------------------------------


def test_progression_free_survival():
    out = run(
        # PD on day 100 -> event at 100 d
        patient("A", assessments=((d(-3), None), (d(50), "SD"), (d(100), "PD"), (d(150), "PD"))),
        # death on day 200 before any PD -> event at 200 d
        patient("B", assessments=((d(100), "PR"), (d(260), "PD")), death=d(200)),
        # no event, last assessment day 400 -> censored at 400 d
        patient("C", assessments=((d(50), "SD"), (d(400), "SD"))),
        # no event, only a baseline scan before day 0 -> censored at day 0
        patient("D", assessments=((d(-3), None),)),
    )["all"]["progression_free"]
    # months: 100/30.4375 = 3.285, 200/30.4375 = 6.571, 400/30.4375 = 13.142, 0
    # KM: t=0 censored (4 -> 3 at risk); t=3.285: 3 at risk -> 2/3; t=6.571: 2 at risk -> 1/3;
    # t=13.142 censored. Median: first S <= 0.5 at 6.571 -> 6.57. S(12) = 1/3; 24 and 60 months
    # lie beyond the last follow-up (13.142) -> null.
    assert out == {"events": 2, "censored": 2, "median_months": 6.57,
                   "km": {"12": 0.3333, "24": None, "60": None}}


def test_pfs_censoring_at_the_last_adequate_assessment_ignores_pd_after_the_cutoff():
    p = patient("A", assessments=((d(30), "SD"), (d(90), "NE"), (d(2001), "PD")))
    out = run(p)["all"]["progression_free"]
    # NE on day 90 is not adequate -> censored at day 30; the PD after the cutoff is ignored
    assert (out["events"], out["censored"]) == (0, 1)
    assert outcome(p, PROTOCOL, CUTOFF).pfs_days == 30
    assert out["km"] == {"12": None, "24": None, "60": None}


def test_overall_survival():
    out = run(
        # died on day 300 -> event at 300 d (9.856 months)
        patient("A", death=d(300), treatment_ended=d(300)),
        # last fact: a follow-up contact on day 800 -> censored at 800 d (26.283 months)
        patient("B", fact_dates=(d(800),), infusions=(d(0), d(21))),
        # last fact: an AE grade change on day 500 -> censored at 500 d (16.427 months)
        patient("C", adverse_events=(ae(100, (500, 2)),)),
        # died on day 600 (19.713 months); a contact after the cutoff is ignored
        patient("D", death=d(600), fact_dates=(d(2500),)),
        # alive: death after the cutoff is ignored; last fact is the PET on day 1000 (32.854 mo)
        patient("E", death=d(2200), pets=((d(1000), "CMR"),)),
    )["all"]["overall_survival"]
    # sorted: 9.856 x, 16.427 +, 19.713 x, 26.283 +, 32.854 +
    # t=9.856: 5 at risk -> 4/5; t=19.713: 3 at risk -> 4/5 * 2/3 = 8/15 = 0.5333
    # S(12) = 0.8, S(24) = 0.5333, 60 > 32.854 -> null; never <= 0.5 -> median null
    assert out == {"events": 2, "censored": 3, "median_months": None,
                   "km": {"12": 0.8, "24": 0.5333, "60": None}}


def test_overall_survival_median():
    out = run(
        patient("A", death=d(100)),
        patient("B", death=d(200)),
        patient("C", fact_dates=(d(1000),)),
    )["all"]["overall_survival"]
    # t=100 d (3.285 mo): 3 at risk -> 2/3; t=200 d (6.571 mo): 2 at risk -> 1/3 -> median 6.57
    assert out["median_months"] == 6.57
    assert out["km"] == {"12": 0.3333, "24": 0.3333, "60": None}


# --- pathological complete response -----------------------------------------------------------


@pytest.mark.parametrize(
    ("reports", "is_pcr"),
    [
        ((("T0", "N0", "no"),), True),
        ((("Tis", "N0", "not-resected"),), True),
        ((("not-resected", "not-resected", "no"),), True),  # only the metastasis resected
        ((("not-resected", "not-resected", "not-resected"),), False),  # nothing resected
        ((("T1", "N0", "no"),), False),
        ((("T0", "N1", "no"),), False),
        ((("T0", "N0", "yes"),), False),
        ((("T0", "N0", "no"), ("T0", "N0", "yes")), False),  # every report must qualify
        ((("T0", "not-resected", "not-resected"), ("not-resected", "N0", "no")), True),
        ((), False),  # operated, no pathology report yet
    ],
)
def test_pathological_complete_response(reports, is_pcr):
    p = patient(surgeries=(d(180),), pathology=tuple((d(190), *r) for r in reports))
    assert run(p)["all"]["pathological_complete_response"] == {"patients": int(is_pcr),
                                                               "operated": 1}


def test_pcr_only_among_operated_and_up_to_the_cutoff():
    out = run(
        patient("not-operated"),
        patient("operated-after-cutoff", surgeries=(d(2010),),
                pathology=((d(2020), "T0", "N0", "no"),)),
        patient("bad-report-after-cutoff", surgeries=(d(180),),
                pathology=((d(190), "T0", "N0", "no"), (d(2020), "T2", "N1", "yes"))),
    )["all"]["pathological_complete_response"]
    assert out == {"patients": 1, "operated": 1}


# --- metabolic response -----------------------------------------------------------------------


def test_metabolic_response():
    out = run(
        # baseline PET on day -5, CMR on day 120 -> responder and evaluable
        patient("A", pets=((d(-5), None), (d(120), "CMR"))),
        # PMR on day 365 (last day of the window) -> responder; SMD day 60 -> evaluable
        patient("B", pets=((d(0), None), (d(60), "SMD"), (d(365), "PMR"))),
        # CMR on day 366 only -> not a responder, and no later PET within 365 -> not evaluable
        patient("C", pets=((d(-5), None), (d(366), "CMR"))),
        # no baseline PET: not evaluable, so its PMR is no response either
        patient("D", pets=((d(90), "PMR"),)),
        # baseline only
        patient("E", pets=((d(-2), None),)),
        # progressive disease -> evaluable, not a responder
        patient("F", pets=((d(-2), None), (d(100), "PMD"))),
    )["all"]["metabolic_response"]
    assert out == {"patients": 2, "pet_evaluable": 3}


# --- ctDNA clearance (no time limit) ----------------------------------------------------------


def test_ctdna_clearance_without_time_limit():
    out = run(
        patient("A", ctdna=((d(-1), True), (d(700), False))),  # cleared in year 2 -> counts
        patient("B", ctdna=((d(-1), True), (d(100), True))),  # detected, never cleared
        patient("C", ctdna=((d(-1), False), (d(100), False))),  # baseline not detected
        patient("D", ctdna=((d(-1), True), (d(2100), False))),  # cleared after the cutoff
        # two samples on the baseline day disagree: the detection stands
        patient("E", ctdna=((d(0), False), (d(0), True), (d(50), False))),
    )["all"]
    assert out["ctdna_clearance"] == {"patients": 2, "baseline_detected": 4}
    assert out["primary"]["ctdna_cleared"] == 1  # only E cleared within 365 days
    assert out["primary"]["ctdna_not_informative"] == 1


# --- safety -----------------------------------------------------------------------------------


def safety(*patients: PatientFacts, cutoff: date = CUTOFF) -> dict:
    return run(*patients, cutoff=cutoff)["all"]["safety"]


def test_teae_window_while_treatment_goes_on_stays_open_to_the_cutoff():
    # Infusions up to day 42, treatment not ended: an AE on day 900 is still emergent.
    p = patient(infusions=(d(0), d(21), d(42)), adverse_events=(ae(900),))
    assert safety(p)["patients_with_teae"] == 1


def test_teae_window_closes_30_days_after_the_last_treatment_once_ended():
    infusions = (d(0), d(21), d(42))
    ended = {"infusions": infusions, "treatment_ended": d(50)}
    # last treatment day 42 -> window day 0 .. day 72
    assert safety(patient(adverse_events=(ae(72),), **ended))["patients_with_teae"] == 1
    assert safety(patient(adverse_events=(ae(73),), **ended))["patients_with_teae"] == 0
    # a surgery on day 100 moves the last treatment: window up to day 130
    assert safety(patient(adverse_events=(ae(130),), surgeries=(d(100),),
                          **ended))["patients_with_teae"] == 1
    # radiotherapy ending on day 150: window up to day 180
    rt = ((d(140), d(150)),)
    assert safety(patient(adverse_events=(ae(180),), radiotherapy=rt,
                          **ended))["patients_with_teae"] == 1
    assert safety(patient(adverse_events=(ae(181),), radiotherapy=rt,
                          **ended))["patients_with_teae"] == 0


def test_teae_window_when_the_end_of_treatment_is_after_the_cutoff():
    # Treatment ends on day 300 but the cutoff is day 200: still ongoing at the cutoff, so an
    # AE on day 150 (beyond last infusion 42 + 30) is emergent.
    p = patient(infusions=(d(0), d(21), d(42)), treatment_ended=d(300),
                adverse_events=(ae(150),))
    assert safety(p, cutoff=d(200))["patients_with_teae"] == 1
    # ...whereas at a cutoff after the end, the window had closed on day 72.
    assert safety(p, cutoff=d(400))["patients_with_teae"] == 0


def test_death_ends_treatment_for_the_window():
    # Died on day 200 without a separate end-of-treatment record: window closed on day 72.
    p = patient(infusions=(d(0), d(21), d(42)), death=d(200), adverse_events=(ae(100),))
    assert safety(p)["patients_with_teae"] == 0


def test_ae_before_day_0_counts_only_when_its_grade_rises_inside_the_window():
    ended = {"infusions": (d(0), d(21)), "treatment_ended": d(30)}  # window day 0 .. day 51
    cases = [
        (ae(-10), False),  # no change
        (ae(-10, (-2, 2)), False),  # worsened before day 0
        (ae(-10, (0, 2)), True),  # worsened on day 0
        (ae(-10, (51, 2)), True),  # worsened on the last day of the window
        (ae(-10, (52, 2)), False),  # worsened after the window closed
        (ae(-10, (20, 1)), False),  # grade unchanged: not a worsening
        (ae(-10, (-5, 1), (20, 2), first_grade=2), True),  # 2 -> 1 before day 0, back to 2
        (ae(-10, (20, 1), first_grade=3), False),  # improving is not worsening
    ]
    for event, emergent in cases:
        got = safety(patient(adverse_events=(event,), **ended))["patients_with_teae"]
        assert got == int(emergent), event


def test_teae_grade_seriousness_and_terms():
    out = safety(
        # grade 1 on day 10, worsens to 3 on day 40 -> grade3plus
        patient("A", adverse_events=(ae(10, (40, 3)),)),
        # grade 4 serious
        patient("B", adverse_events=(ae(5, first_grade=4, serious=True),)),
        # fatal AE inside the window (day 0 .. 72): grade5 and grade3plus
        patient("C", infusions=(d(0), d(21), d(42)),
                adverse_events=(ae(20, (60, 5), first_grade=3),), death=d(60)),
        # pneumonitis grade 1, assessed as related
        patient("D", adverse_events=(ae(80, term="Pneumonitis", related=True),)),
        # pre-existing grade 3 related AE that does not worsen: not emergent at all
        patient("E", adverse_events=(ae(-30, first_grade=3, serious=True, related=True),)),
        # two TEAEs in one patient count the patient once, related if either is
        patient("F", adverse_events=(ae(10, related=False), ae(20, first_grade=2,
                                                              related=True))),
    )
    assert out == {"patients_with_teae": 5, "grade3plus": 3, "serious": 1, "grade5": 1,
                   "pneumonitis": 1, "related": 2, "clavien_dindo_3plus": 0}


def test_only_grades_reached_inside_the_window_count():
    # Onset grade 2 on day 60 (window day 0 .. 72 after the end), grade 3 on day 100: outside.
    p = patient(infusions=(d(0), d(21), d(42)), treatment_ended=d(45),
                adverse_events=(ae(60, (100, 3), first_grade=2),))
    assert safety(p)["patients_with_teae"] == 1
    assert safety(p)["grade3plus"] == 0
    assert treatment_emergent_grades(p, PROTOCOL, CUTOFF) == {"ae60": 2}
    # Grade 4 before day 0, back to 1, up to 2 on day 10: the grade before day 0 does not count.
    q = patient(adverse_events=(ae(-20, (-10, 1), (10, 2), first_grade=4),))
    assert treatment_emergent_grades(q, PROTOCOL, CUTOFF) == {"ae-20": 2}
    assert safety(q)["grade3plus"] == 0


def test_clavien_dindo_3plus():
    def cd(grade: str, day: int, surgery: int = 180) -> PatientFacts:
        return patient(surgeries=(d(surgery),), complications=((d(day), grade),))

    counted = [cd("IIIa", 181), cd("IIIb", 210), cd("IVa-d", 200), cd("IVb", 180), cd("V", 190)]
    not_counted = [
        cd("II", 185),  # below IIIa
        cd("I", 185),
        cd("IIIb", 211),  # 31 days after the surgery
        cd("IIIb", 170),  # before the surgery
    ]
    for p in counted:
        assert safety(p)["clavien_dindo_3plus"] == 1, p.complications
    for p in not_counted:
        assert safety(p)["clavien_dindo_3plus"] == 0, p.complications
    # complications are not CTCAE AEs
    assert safety(*counted)["patients_with_teae"] == 0
    # within 30 days of the *second* surgery
    two = patient(surgeries=(d(100), d(300)), complications=((d(320), "IIIa"),))
    assert safety(two)["clavien_dindo_3plus"] == 1


def test_unknown_clavien_dindo_grade_is_refused():
    with pytest.raises(ValueError, match="Clavien-Dindo"):
        run(patient(surgeries=(d(10),), complications=((d(12), "VI"),)))


# --- per-patient views -----------------------------------------------------------------------


def test_outcome_gives_the_times_the_tallies_use():
    p = patient(assessments=((d(50), "SD"), (d(120), "PD")), fact_dates=(d(400),))
    o = outcome(p, PROTOCOL, CUTOFF)
    assert (o.pfs_days, o.pfs_event, o.os_days, o.os_event) == (120, True, 400, False)
    # the same patient at a cutoff before the PD: censored at the last assessment, alive then
    o = outcome(p, PROTOCOL, d(100))
    assert (o.pfs_days, o.pfs_event, o.os_days, o.os_event) == (50, False, 50, False)
    assert outcome(patient(infusions=()), PROTOCOL, CUTOFF) is None
    assert outcome(patient(enrolled=d(10), infusions=(d(20),)), PROTOCOL, d(5)) is None


def test_treatment_emergent_ae_ids():
    # window day 0 .. 72 (last infusion day 42, treatment ended)
    p = patient(infusions=(d(0), d(21), d(42)), treatment_ended=d(45),
                adverse_events=(ae(-5), ae(-3, (10, 2)), ae(30), ae(80)))
    assert treatment_emergent_ae_ids(p, PROTOCOL, CUTOFF) == {"ae-3", "ae30"}
    assert treatment_emergent_ae_ids(p, PROTOCOL, d(20)) == {"ae-3"}
    assert treatment_emergent_ae_ids(patient(infusions=(), adverse_events=(ae(1),)),
                                     PROTOCOL, CUTOFF) == frozenset()


# --- properties -------------------------------------------------------------------------------

HORIZON = 900
day = st.integers(-60, HORIZON).map(d)
responses = st.sampled_from([None, "CR", "PR", "SD", "PD", "NE"])
percist = st.sampled_from([None, "CMR", "PMR", "SMD", "PMD"])
clavien = st.sampled_from(["I", "II", "IIIa", "IIIb", "IVa", "IVb", "V", "IIIb-d", "IVa-d"])
terms = st.sampled_from(["Nausea", "Pneumonitis", "Neutropenia"])
pathology_reports = st.tuples(
    st.sampled_from(["T0", "Tis", "T2", "not-resected"]),
    st.sampled_from(["N0", "N1", "not-resected"]),
    st.sampled_from(["yes", "no", "not-resected"]),
)


def dated(values, max_size=4):
    return st.lists(st.tuples(day, values), max_size=max_size).map(tuple)


@st.composite
def adverse_events(draw, days=day):
    onset = draw(days)
    later = draw(st.lists(st.tuples(st.integers(0, 400), st.integers(1, 5)), max_size=3))
    grades = ((onset, draw(st.integers(1, 5))),
              *sorted((onset + timedelta(days=n), g) for n, g in later))
    return AdverseEventFacts(ae_id=f"ae-{onset}", term=draw(terms), onset=onset,
                             serious=draw(st.booleans()), grades=grades)


@st.composite
def patients(draw, subject):
    rt = draw(st.lists(st.tuples(day, st.integers(0, 40)), max_size=2))
    return PatientFacts(
        subject=subject,
        basket=draw(st.sampled_from(["I", "II", "III", "IV", None])),
        enrolled=draw(st.one_of(st.none(), day)),
        infusions=tuple(draw(st.lists(day, max_size=5))),
        surgeries=tuple(draw(st.lists(day, max_size=2))),
        radiotherapy=tuple((s, s + timedelta(days=n)) for s, n in rt),
        assessments=draw(dated(responses, 6)),
        ctdna=draw(dated(st.booleans())),
        pets=draw(dated(percist)),
        pathology=tuple((dt, *r) for dt, r in draw(dated(pathology_reports, 2))),
        complications=draw(dated(clavien, 2)),
        adverse_events=tuple(draw(st.lists(adverse_events(), max_size=3))),
        death=draw(st.one_of(st.none(), day)),
        treatment_ended=draw(st.one_of(st.none(), day)),
        fact_dates=tuple(draw(st.lists(day, max_size=2))),
        subsequent_therapy=draw(st.one_of(st.none(), day)),
    )


cohorts = st.integers(0, 8).flatmap(
    lambda n: st.tuples(*(patients(f"S{i}") for i in range(n))).map(list)
)


@st.composite
def later_facts(draw, p: PatientFacts, cutoff: date) -> PatientFacts:
    """The same patient with extra facts, every one dated after the cutoff."""
    after = st.integers(1, 500).map(lambda n: cutoff + timedelta(days=n))

    def more(values, max_size=2):
        return st.lists(st.tuples(after, values), max_size=max_size).map(tuple)

    extra_aes = []
    for a in p.adverse_events:
        grades = draw(st.lists(st.tuples(after, st.integers(1, 5)), max_size=2))
        extra_aes.append(dataclasses.replace(a, grades=a.grades + tuple(sorted(grades))))
    rt = draw(st.lists(st.tuples(after, st.integers(0, 40)), max_size=2))
    return dataclasses.replace(
        p,
        enrolled=p.enrolled or draw(st.one_of(st.none(), after)),
        infusions=p.infusions + tuple(draw(st.lists(after, max_size=3))),
        surgeries=p.surgeries + tuple(draw(st.lists(after, max_size=2))),
        radiotherapy=p.radiotherapy + tuple((s, s + timedelta(days=n)) for s, n in rt),
        assessments=p.assessments + draw(more(responses, 3)),
        ctdna=p.ctdna + draw(more(st.booleans())),
        pets=p.pets + draw(more(percist)),
        pathology=p.pathology + tuple((dt, *r) for dt, r in draw(more(pathology_reports))),
        complications=p.complications + draw(more(clavien)),
        adverse_events=(*extra_aes, *draw(st.lists(adverse_events(after), max_size=2))),
        death=p.death or draw(st.one_of(st.none(), after)),
        treatment_ended=p.treatment_ended or draw(st.one_of(st.none(), after)),
        fact_dates=p.fact_dates + tuple(draw(st.lists(after, max_size=2))),
        subsequent_therapy=p.subsequent_therapy or draw(st.one_of(st.none(), after)),
    )


@settings(max_examples=100)
@given(cohorts, st.integers(-30, HORIZON).map(d), st.data())
def test_facts_after_the_cutoff_never_change_the_tallies(cohort, cutoff, data):
    before = tally(cohort, PROTOCOL, cutoff)
    extended = [data.draw(later_facts(p, cutoff)) for p in cohort]
    newcomers = data.draw(st.lists(patients("late"), max_size=2))
    # a patient enrolled after the cutoff, with everything else after it too
    extended += [
        data.draw(later_facts(
            dataclasses.replace(
                p, enrolled=None, infusions=(), surgeries=(), radiotherapy=(), assessments=(),
                ctdna=(), pets=(), pathology=(), complications=(), adverse_events=(),
                death=None, treatment_ended=None, fact_dates=(), subsequent_therapy=None),
            cutoff,
        ))
        for p in newcomers
    ]
    assert tally(extended, PROTOCOL, cutoff) == before


@given(cohorts, st.integers(0, 3000).map(d))
def test_km_estimates_are_fractions_that_never_increase(cohort, cutoff):
    out = tally(cohort, PROTOCOL, cutoff)
    for group in out.values():
        assert group["treated"] <= group["enrolled"]
        for endpoint in ("progression_free", "overall_survival"):
            res = group[endpoint]
            assert res["events"] + res["censored"] == group["treated"]
            values = [res["km"][str(m)] for m in PROTOCOL.endpoints.km_months]
            known = [v for v in values if v is not None]
            # null only beyond follow-up: once null, null for every later time
            assert values[: len(known)] == known
            assert all(0.0 <= v <= 1.0 for v in known)
            assert all(a >= b for a, b in zip(known, known[1:], strict=False))


# --- progression-free censoring (FDA guidance) ------------------------------------------------


@pytest.mark.parametrize(("assessments", "death", "therapy", "expected"), [
    # no event: censored at the last adequate assessment, NE does not count
    (((d(63), "SD"), (d(126), "NE")), None, None, (d(63), False, "no event")),
    # nothing adequate: day 0
    (((d(-1), None), (d(63), "NE")), None, None, (d(0), False, "no adequate assessment")),
    # PD 133 days after the last adequate assessment: 2 x 63 + 7, still an event
    (((d(63), "SD"), (d(196), "PD")), None, None, (d(196), True, "progression")),
    # 134 days: two missed assessments, censored at the last adequate one
    (((d(63), "SD"), (d(197), "PD")), None, None, (d(63), False, "missed assessments")),
    # death 134 days after day 0 without any adequate assessment: censored at day 0
    ((), d(134), None, (d(0), False, "missed assessments")),
    (((d(63), "PR"),), d(100), None, (d(100), True, "death")),
    # a new therapy before the PD: censored at the last adequate assessment on or before it
    (((d(63), "PR"), (d(126), "SD"), (d(189), "PD")), None, d(126),
     (d(126), False, "subsequent therapy")),
    (((d(63), "PR"), (d(130), "NE"), (d(189), "PD")), None, d(150),
     (d(63), False, "subsequent therapy")),
    # a PD on the day the therapy starts is an event
    (((d(63), "PR"), (d(126), "PD")), None, d(126), (d(126), True, "progression")),
])
def test_progression_free_censoring(assessments, death, therapy, expected):
    assert progression_free(d(0), assessments, death, therapy, PROTOCOL) == expected


def test_the_missed_assessment_limit_is_a_protocol_number():
    weekly = PROTOCOL.model_copy(update={"response": PROTOCOL.response.model_copy(
        update={"assessment_interval_days": 42, "assessment_window_days": 0})})
    scans = ((d(42), "SD"), (d(127), "PD"))  # 85 days > 2 x 42
    assert progression_free(d(0), scans, None, None, weekly)[2] == "missed assessments"
    assert progression_free(d(0), scans, None, None, PROTOCOL)[2] == "progression"


def test_last_known_alive_is_any_fact_up_to_the_cutoff():
    # The latest fact on or before the cutoff is a contact on day 150; later ones do not count.
    p = patient(fact_dates=(d(150), d(200), d(300)), assessments=((d(63), "SD"),))
    assert outcome(p, PROTOCOL, d(173)).os_days == 150
    assert outcome(p, PROTOCOL, d(250)).os_days == 200


# --- properties of every proportion -----------------------------------------------------------


@given(cohorts, st.integers(0, 3000).map(d))
def test_every_proportion_has_an_interval_around_it(cohort, cutoff):
    for group in tally(cohort, PROTOCOL, cutoff).values():
        for (section, key), denominator in PROPORTIONS.items():
            values = group[section]
            n, total = values[key], values.get(denominator, group.get(denominator))
            assert 0 <= n <= total
            ci = values[f"{key}_ci95"]
            if total == 0:
                assert ci is None
            else:
                assert 0.0 <= ci[0] <= round(n / total, 4) + 1e-4
                assert round(n / total, 4) - 1e-4 <= ci[1] <= 1.0
