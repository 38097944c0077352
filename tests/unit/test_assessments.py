"""Scans, PET and ctDNA in the walk (domain/rules/assessments.py), without a store."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m22bol.domain import events as ev
from m22bol.domain.errors import RuleViolation
from m22bol.domain.rules import assessments
from m22bol.domain.rules.assessments import RESPONSE_KEYS, ctdna_summary
from m22bol.domain.timeline import summary
from tests.support.timelines import DAY0, Subject, day


def rule_of(exc: pytest.ExceptionInfo[RuleViolation]) -> str | None:
    return exc.value.rule


# --- CT/MRI -----------------------------------------------------------------------------------


def test_scan_output_is_the_cli_shape_flat_and_under_response():
    s = Subject()
    s.scan(day(-5), {"L1": 30, "L2": 20})
    s.infuse(1, DAY0)
    entry = s.scan(day(42), {"L1": 21, "L2": 14})

    out = s.output(entry)

    assert set(out) == {*RESPONSE_KEYS, "response"}
    assert out["response"] == {k: out[k] for k in RESPONSE_KEYS}
    assert out["response"] == {
        "target_sum_mm": 35.0, "baseline_sum_mm": 50.0, "nadir_sum_mm": 50.0,
        "change_from_baseline_pct": -30.0, "change_from_nadir_pct": -30.0,
        "target_response": "PR", "non_target_response": None, "new_lesions": False,
        "overall_response": "PR"}


def test_the_baseline_scan_shows_its_sum_and_no_response():
    s = Subject()
    entry = s.scan(day(-5), {"L1": 30}, nodes={"N1": 16}, non_targets={"NT1": "present"})

    out = s.output(entry)

    assert out["target_sum_mm"] == out["baseline_sum_mm"] == 46.0
    assert [out[k] for k in ("nadir_sum_mm", "change_from_baseline_pct", "target_response",
                             "non_target_response", "overall_response")] == [None] * 5
    assert out["new_lesions"] is False


def test_nodes_are_targets_measured_by_short_axis_and_ne_is_not_measured():
    fact = Subject().entries[0][1]  # any envelope will do for the conversion
    scan = ev.ScanRecorded(
        **{k: getattr(fact, k) for k in ("originator_id", "originator_version", "recorded_at",
                                          "actor")},
        date=day(1), targets=(ev.Lesion(lesion_id="L1", organ="liver", mm=None),),
        nodes=(ev.Lesion(lesion_id="N1", organ="neck", mm=12),),
        non_targets=(ev.NonTargetLesion(lesion_id="NT1", organ="bone", status="absent"),),
        new_lesions=("brain",))

    a = assessments.assessment_of(scan)

    assert [(t.lesion_id, t.is_node, t.mm) for t in a.targets] == [("L1", False, None),
                                                                    ("N1", True, 12)]
    assert [(n.lesion_id, n.status) for n in a.non_targets] == [("NT1", "absent")]
    assert a.new_lesions == ("brain",)


def test_a_node_below_ten_millimetres_with_lesions_gone_is_cr():
    s = Subject()
    s.scan(day(-5), {"L1": 25}, nodes={"N1": 15}, non_targets={"NT1": "present"})
    s.infuse(1, DAY0)
    entry = s.scan(day(42), {"L1": 0}, nodes={"N1": 8}, non_targets={"NT1": "absent"})

    out = s.output(entry)

    assert (out["target_sum_mm"], out["target_response"], out["overall_response"]) == (
        8.0, "CR", "CR")


def test_an_invalid_baseline_is_refused_naming_the_rule():
    s = Subject()
    s.scan(day(-5), {"L1": 30, "L2": 9})  # L2 is not measurable

    with pytest.raises(RuleViolation) as exc:
        s.state()

    assert rule_of(exc) == "recist.target_not_measurable"
    assert exc.value.message.startswith("S1#4: ")  # the scan's entry
    assert "L2" in exc.value.message


def test_a_follow_up_with_a_target_unknown_at_baseline_is_refused():
    s = Subject()
    s.scan(day(-5), {"L1": 30})
    s.infuse(1, DAY0)
    s.scan(day(42), {"L1": 20, "L3": 10})

    with pytest.raises(RuleViolation) as exc:
        s.state()

    assert rule_of(exc) == "recist.unknown_target"


def test_a_new_lesion_at_baseline_is_refused():
    s = Subject()
    s.scan(day(-5), {"L1": 30}, new=("brain",))

    with pytest.raises(RuleViolation) as exc:
        s.state()

    assert rule_of(exc) == "recist.new_lesion_at_baseline"


def test_a_late_entered_earlier_scan_changes_the_responses_after_it():
    s = Subject()
    s.scan(day(-5), {"L1": 30, "L2": 20})
    s.infuse(1, DAY0)
    s.infuse(2, day(21))
    last = s.scan(day(84), {"L1": 22, "L2": 14})  # 36 mm: SD against the baseline of 50
    assert s.output(last)["overall_response"] == "SD"

    s.scan(day(42), {"L1": 18, "L2": 12})  # entered later, dated earlier: a nadir of 30

    out = s.output(last)
    assert (out["nadir_sum_mm"], out["change_from_nadir_pct"]) == (30.0, 20.0)
    assert out["overall_response"] == "PD"


def test_a_later_screening_scan_becomes_the_baseline():
    s = Subject()
    screening = s.scan(day(-10), {"L1": 40})
    baseline = s.scan(day(-3), {"L1": 50})
    s.infuse(1, DAY0)
    after = s.scan(day(42), {"L1": 35})

    rows = {r["entry"]: r for r in summary(s.state())["assessments"]}

    assert rows[screening]["baseline"] is False
    assert rows[screening]["overall_response"] is None
    assert rows[baseline]["baseline"] is True
    assert rows[after]["baseline_sum_mm"] == 50.0
    assert rows[after]["overall_response"] == "PR"


def test_a_scan_on_the_day_of_the_first_infusion_is_the_baseline_whatever_the_entry_order():
    before, after = Subject("A"), Subject("B")
    before.scan(DAY0, {"L1": 40})
    before.infuse(1, DAY0)
    after.infuse(1, DAY0)
    after.scan(DAY0, {"L1": 40})

    for s in (before, after):
        (row,) = summary(s.state())["assessments"]
        assert row["baseline"] is True


@given(st.randoms(use_true_random=False))
def test_the_responses_depend_on_the_dates_not_on_the_entry_order(rnd: random.Random):
    """Facts entered in any order (same dates, distinct) give the same responses and BOR."""
    plan = [
        ("scan", day(-5), {"L1": 30, "L2": 20}, {"NT1": "present"}),
        ("infuse", 1, DAY0), ("infuse", 2, day(21)), ("infuse", 3, day(42)),
        ("scan", day(41), {"L1": 15, "L2": 10}, {"NT1": "present"}),
        ("scan", day(83), {"L1": 0, "L2": 0}, {"NT1": "absent"}),
        ("scan", day(125), {"L1": 0, "L2": 0}, {"NT1": "absent"}),
        ("scan", day(167), {"L1": 8, "L2": 0}, {"NT1": "absent"}),
    ]

    def walk(order):
        s = Subject()
        # Cycles must be entered in sequence: wherever an infusion falls in the shuffled order,
        # the next cycle is entered there.
        infusions = iter(sorted(p[1:] for p in order if p[0] == "infuse"))
        for p in order:
            if p[0] == "scan":
                s.scan(p[1], p[2], non_targets=p[3])
            else:
                s.infuse(*next(infusions))
        doc = summary(s.state())
        return ([{k: v for k, v in r.items() if k != "entry"} for r in doc["assessments"]],
                doc["best_overall_response"])

    shuffled = plan[:]
    rnd.shuffle(shuffled)
    reference = walk(plan)

    assert walk(shuffled) == reference
    assert reference[1] == "CR"
    assert [r["overall_response"] for r in reference[0]] == [None, "PR", "CR", "CR", "PD"]


# --- PET --------------------------------------------------------------------------------------


def test_a_baseline_pet_takes_no_category_and_a_later_one_needs_one():
    s = Subject()
    base = s.add(ev.PetRecorded, date=day(-3), sulpeak=9.5)
    s.infuse(1, DAY0)
    later = s.add(ev.PetRecorded, date=day(60), percist="PMR", sulpeak=4.0)

    state = s.state()

    assert state.outputs[base] == {"pet": "baseline", "percist": None, "sulpeak": 9.5,
                                   "baseline_sulpeak": None}
    assert state.outputs[later] == {"pet": "follow-up", "percist": "PMR", "sulpeak": 4.0,
                                    "baseline_sulpeak": 9.5}
    doc = summary(state)
    assert doc["pet_baseline"] == {"date": day(-3), "sulpeak": 9.5}
    assert doc["pet_categories"] == [{"date": day(60), "percist": "PMR", "sulpeak": 4.0}]


@pytest.mark.parametrize("when, percist, rule", [
    (-3, "CMR", "pet.baseline_category"),
    (0, "SMD", "pet.baseline_category"),  # on the day of the first infusion: still baseline
    (1, None, "pet.category_required"),
])
def test_pet_category_rules(when, percist, rule):
    s = Subject()
    s.infuse(1, DAY0)
    s.add(ev.PetRecorded, date=day(when), percist=percist, sulpeak=5.0)

    with pytest.raises(RuleViolation) as exc:
        s.state()

    assert rule_of(exc) == rule


def test_a_pet_before_any_infusion_is_baseline():
    s = Subject()
    with_category = Subject("T")
    s.add(ev.PetRecorded, date=day(-3))
    with_category.add(ev.PetRecorded, date=day(-3), percist="CMR")

    assert s.state().outputs["S1#4"]["pet"] == "baseline"
    with pytest.raises(RuleViolation) as exc:
        with_category.state()
    assert rule_of(exc) == "pet.baseline_category"


def test_a_late_entered_earlier_infusion_that_makes_a_baseline_pet_a_follow_up_is_refused():
    s = Subject()
    s.add(ev.PetRecorded, date=day(3))
    assert s.state()  # no infusion yet: the PET is the baseline

    s.infuse(1, DAY0)  # entered later, dated before the PET

    with pytest.raises(RuleViolation) as exc:
        s.state()
    assert rule_of(exc) == "pet.category_required"


# --- ctDNA ------------------------------------------------------------------------------------


def sample(n: int, result: str) -> ev.CtdnaRecorded:
    return ev.CtdnaRecorded(originator_id=uuid4(), originator_version=1, actor="dm",
                            recorded_at=datetime(2026, 1, 1, tzinfo=UTC), date=day(n),
                            result=result)


@pytest.mark.parametrize("samples, treated, expected", [
    pytest.param([], True, (None, None, None, None), id="no sample"),
    pytest.param([(30, "not-detected")], True, ("not-informative", None, None, None),
                 id="only after day 0"),
    pytest.param([(-5, "not-detected"), (30, "not-detected")], True,
                 ("not-detected-baseline", -5, False, None), id="baseline not detected"),
    pytest.param([(-10, "detected"), (0, "not-detected")], True,
                 ("not-detected-baseline", 0, False, None),
                 id="the latest on or before day 0 is the baseline"),
    pytest.param([(-5, "detected"), (30, "detected")], True, ("detected", -5, True, None),
                 id="detected, not cleared"),
    pytest.param([(-5, "detected"), (30, "detected"), (60, "not-detected")], True,
                 ("cleared", -5, True, 60), id="cleared"),
    pytest.param([(-5, "detected"), (30, "not-detected"), (400, "detected")], True,
                 ("detected-after-clearance", -5, True, 30), id="detected again"),
    pytest.param([(-5, "not-detected"), (-5, "detected"), (30, "not-detected")], True,
                 ("cleared", -5, True, 30), id="same-day baseline: one detection is enough"),
    pytest.param([(-10, "not-detected"), (-5, "detected")], False,
                 ("detected", -5, True, None), id="before treatment: the latest is baseline"),
])
def test_ctdna_summary(samples, treated, expected):
    result = ctdna_summary([sample(n, r) for n, r in samples], DAY0 if treated else None,
                           treated=treated)

    status, base, detected, cleared = expected
    assert (result.status, result.baseline_date, result.baseline_detected,
            result.cleared_on) == (status, day(base) if base is not None else None, detected,
                                   day(cleared) if cleared is not None else None)


def test_ctdna_output_and_status_through_the_walk():
    s = Subject()
    base = s.add(ev.CtdnaRecorded, date=day(-4), result="detected", assay="Signatera",
                 value=12.5)
    s.infuse(1, DAY0)
    later = s.add(ev.CtdnaRecorded, date=day(40), result="not-detected")

    state = s.state()

    assert state.outputs[base] == {"ctdna_baseline": True, "ctdna_status": "detected"}
    assert state.outputs[later] == {"ctdna_baseline": False, "ctdna_status": "cleared"}
    doc = summary(state)
    assert (doc["ctdna_status"], doc["ctdna_baseline"], doc["ctdna_cleared_on"]) == (
        "cleared", {"date": day(-4), "detected": True}, day(40))


# --- the subject's summary --------------------------------------------------------------------


def test_summary_of_a_confirmed_responder():
    s = Subject()
    s.scan(day(-5), {"L1": 30, "L2": 20})
    for cycle in range(1, 5):
        s.infuse(cycle, day(21 * (cycle - 1)))
    s.scan(day(42), {"L1": 0, "L2": 0})
    s.scan(day(70), {"L1": 0, "L2": 0})  # 28 days later: confirms the CR

    doc = summary(s.state())

    assert doc["best_overall_response"] == "CR"
    assert doc["confirmed_responses"] == [{"date": day(42), "response": "CR",
                                           "confirmed_as": "CR", "confirmed_on": day(70)}]
    assert doc["last_assessment"]["date"] == day(70)
    assert doc["first_progression"] is None
    assert doc["progression_free"] == {"status": "censored", "event": None, "date": day(70),
                                       "days": 70, "why": "no event"}
    assert doc["overall_survival"]["status"] == "censored"


def test_summary_survival_status_progression_then_death():
    s = Subject()
    s.scan(day(-5), {"L1": 30})
    s.infuse(1, DAY0)
    s.scan(day(42), {"L1": 40})  # +33%, +10 mm: PD
    s.add(ev.DeathRecorded, date=day(90))

    doc = summary(s.state())

    assert doc["best_overall_response"] == "PD"
    assert doc["first_progression"] == day(42)
    assert doc["progression_free"] == {"status": "event", "event": "progression",
                                       "date": day(42), "days": 42, "why": "progression"}
    assert doc["overall_survival"] == {"status": "event", "event": "death", "date": day(90),
                                       "days": 90}


def test_summary_before_treatment_has_no_response_or_survival_status():
    s = Subject()
    s.scan(day(-5), {"L1": 30})
    s.add(ev.CtdnaRecorded, date=day(-5), result="detected")

    doc = summary(s.state())

    assert doc["best_overall_response"] is None
    assert doc["progression_free"] is None and doc["overall_survival"] is None
    assert doc["ctdna_status"] == "detected"
    assert doc["last_assessment"]["baseline"] is True


@pytest.mark.parametrize(("baseline", "now", "new", "allowed"), [
    (10, 7, False, "response"),  # -30.0% and -3 units: the boundary qualifies
    (10, 7.1, False, "SMD"),  # -29%
    (2.5, 1.7, False, "response"),  # -32%, -0.8 units exactly
    (2.5, 1.75, False, "SMD"),  # -30%, but only -0.75 units
    (10, 13, False, "PMD"),  # +30%, +3 units
    (2, 2.7, False, "SMD"),  # +35%, but only +0.7 units
    (10, 10, True, "PMD"),  # new lesions
])
def test_percist_from_sulpeak(baseline, now, new, allowed):
    assert assessments.percist_from_sulpeak(baseline, now, new) == allowed
