"""RECIST 1.1 engine: the spec's worked examples, baseline limits, confirmation, BOR, properties."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m22bol.domain.errors import RuleViolation
from m22bol.domain.protocol import Response
from m22bol.domain.rules.recist import (
    CR,
    NE,
    NON_CR_NON_PD,
    NON_TARGET_RESPONSES,
    OVERALL_RESPONSES,
    PD,
    PR,
    SD,
    TARGET_RESPONSES,
    Assessment,
    AssessmentResponse,
    Confirmation,
    NonTarget,
    Target,
    baseline_index,
    best_overall_response,
    confirmed,
    evaluate,
    non_target_response,
    on_study,
    overall_response,
    validate_baseline,
    validate_followup,
)

P = Response()
DAY0 = date(2026, 3, 2)  # first infusion


def day(n: int) -> date:
    return DAY0 + timedelta(days=n)


def lesion(lesion_id: str, mm: float | None, organ: str = "liver") -> Target:
    return Target(lesion_id, organ, False, mm)


def node(lesion_id: str, mm: float | None, organ: str = "neck") -> Target:
    return Target(lesion_id, organ, True, mm)


def scan(n: int, *targets: Target, non_targets: dict[str, str] | None = None,
         new: tuple[str, ...] = ()) -> Assessment:
    nts = tuple(NonTarget(i, "bone", s) for i, s in (non_targets or {}).items())
    return Assessment(day(n), targets, nts, new)


def rule_of(exc: pytest.ExceptionInfo[RuleViolation]) -> str | None:
    return exc.value.rule


# --- the worked examples of spec/recist.md ---------------------------------------------------

# Each row: baseline, optional nadir scan, current scan; the same lesion ids throughout.
WORKED_EXAMPLES = [
    pytest.param(
        [lesion("L1", 30), lesion("L2", 20, "lung")], None,
        [lesion("L1", 21), lesion("L2", 14, "lung")], None, False,
        (50, 50, 35), (-30.0, -30.0), PR, PR, id="50-50-35 PR at exactly -30.0%"),
    pytest.param(
        [lesion("L1", 30), lesion("L2", 20, "lung")], None,
        [lesion("L1", 22), lesion("L2", 14, "lung")], None, False,
        (50, 50, 36), (-28.0, -28.0), SD, SD, id="50-50-36 SD at -28%"),
    pytest.param(
        [lesion("L1", 30), lesion("L2", 20, "lung")],
        [lesion("L1", 18), lesion("L2", 12, "lung")],
        [lesion("L1", 22), lesion("L2", 14, "lung")], None, False,
        (50, 30, 36), (-28.0, 20.0), PD, PD, id="50-30-36 PD at +20% and +6 mm"),
    pytest.param(
        [lesion("L1", 10), lesion("L2", 10, "lung")],
        [lesion("L1", 7), lesion("L2", 5, "lung")],
        [lesion("L1", 9), lesion("L2", 7, "lung")], None, False,
        (20, 12, 16), (-20.0, 33.3), SD, SD, id="20-12-16 SD: +33% but only +4 mm"),
    pytest.param(
        [lesion("L1", 25), node("N1", 15)], None,
        [lesion("L1", 0), node("N1", 8)], "absent", False,
        (40, 40, 8), (-80.0, -80.0), CR, CR, id="40-40-8 node 8 mm, non-target absent: CR"),
    pytest.param(
        [lesion("L1", 25), node("N1", 15)], None,
        [lesion("L1", 0), node("N1", 8)], "present", False,
        (40, 40, 8), (-80.0, -80.0), CR, PR, id="40-40-8 node 8 mm, non-target present: PR"),
    pytest.param(
        [lesion("L1", 20), lesion("L2", 20, "lung")], None,
        [lesion("L1", 10), lesion("L2", 10, "lung")], "progression", False,
        (40, 40, 20), (-50.0, -50.0), PR, PD, id="40-40-20 non-target progression: PD"),
    pytest.param(
        [lesion("L1", 20), lesion("L2", 20, "lung")], None,
        [lesion("L1", 10), lesion("L2", 10, "lung")], "present", True,
        (40, 40, 20), (-50.0, -50.0), PR, PD, id="40-40-20 new lesion: PD"),
]


@pytest.mark.parametrize(
    "baseline, nadir, now, non_target, new, sums, pcts, target, overall", WORKED_EXAMPLES)
def test_worked_example(baseline, nadir, now, non_target, new, sums, pcts, target, overall):
    nts_base = {"NT1": "present"} if non_target else None
    nts_now = {"NT1": non_target} if non_target else None
    scans = [scan(-3, *baseline, non_targets=nts_base)]
    if nadir is not None:
        scans.append(scan(42, *nadir, non_targets=nts_base))
    scans.append(scan(84, *now, non_targets=nts_now, new=("liver segment 7",) if new else ()))

    r = evaluate(scans, DAY0, P)[-1]

    assert (r.baseline_sum_mm, r.nadir_sum_mm, r.target_sum_mm) == sums
    assert (r.change_from_baseline_pct, r.change_from_nadir_pct) == pcts
    assert r.target_response == target
    assert r.non_target_response == ({"absent": CR, "present": NON_CR_NON_PD,
                                      "progression": PD}[non_target] if non_target else None)
    assert r.new_lesions is new
    assert r.overall_response == overall


# --- baseline limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("targets, rule, named", [
    pytest.param([lesion("L1", 20), lesion("L2", 20), lesion("L3", 20, "lung"),
                  lesion("L4", 20, "lung"), node("N1", 20), lesion("L6", 20, "adrenal")],
                 "recist.max_targets", "L6", id="six targets"),
    pytest.param([lesion("L1", 20, "Liver"), lesion("L2", 20, " liver "),
                  lesion("L3", 20, "LIVER")],
                 "recist.max_targets_per_organ", "L3", id="three in one organ, any spelling"),
    pytest.param([node("N1", 20, "neck"), node("N2", 20, "axilla"), node("N3", 20, "groin")],
                 "recist.max_targets_per_organ", "N3", id="three nodes: nodes are one organ"),
    pytest.param([lesion("L1", 9.9)], "recist.target_not_measurable", "L1",
                 id="non-nodal under 10 mm"),
    pytest.param([node("N1", 14.9)], "recist.target_not_measurable", "N1",
                 id="node short axis under 15 mm"),
    pytest.param([lesion("L1", None)], "recist.target_not_measurable", "L1",
                 id="target not measured at baseline"),
    pytest.param([lesion("L1", -1)], "recist.invalid_measurement", "L1", id="negative mm"),
    pytest.param([lesion("L1", float("nan"))], "recist.invalid_measurement", "L1", id="NaN"),
    pytest.param([lesion("L1", 20), lesion("L1", 30, "lung")], "recist.duplicate_lesion", "L1",
                 id="same id twice"),
    pytest.param([lesion("L1", 20, "  ")], "recist.organ_required", "L1", id="blank organ"),
])
def test_baseline_refused(targets, rule, named):
    with pytest.raises(RuleViolation) as exc:
        validate_baseline(Assessment(DAY0, tuple(targets)), P)
    assert rule_of(exc) == rule
    assert named in exc.value.message


@pytest.mark.parametrize("targets", [
    pytest.param([lesion("L1", 10)], id="non-nodal exactly 10 mm"),
    pytest.param([node("N1", 15)], id="node exactly 15 mm"),
    pytest.param([lesion("L1", 20, "liver"), lesion("L2", 20, "Liver "),
                  lesion("L3", 20, "lung"), lesion("L4", 20, "lung"), node("N1", 20)],
                 id="five targets, two per organ"),
    pytest.param([lesion("L1", 20, "lymph nodes"), lesion("L2", 20, "lymph nodes"),
                  node("N1", 20), node("N2", 20)],
                 id="nodes do not share a count with an organ that happens to say lymph nodes"),
    pytest.param([], id="non-target disease only"),
])
def test_baseline_accepted(targets):
    validate_baseline(Assessment(DAY0, tuple(targets), (NonTarget("NT1", "bone", "present"),)), P)


def test_baseline_limits_come_from_the_protocol():
    strict = Response(max_target_lesions=2, max_targets_per_organ=1, measurable_min_mm=20)
    with pytest.raises(RuleViolation) as exc:
        validate_baseline(scan(0, lesion("L1", 20), lesion("L2", 20, "lung"),
                               lesion("L3", 20, "bone")), strict)
    assert rule_of(exc) == "recist.max_targets"
    with pytest.raises(RuleViolation) as exc:
        validate_baseline(scan(0, lesion("L1", 20), lesion("L2", 20)), strict)
    assert rule_of(exc) == "recist.max_targets_per_organ"
    with pytest.raises(RuleViolation) as exc:
        validate_baseline(scan(0, lesion("L1", 19.9)), strict)
    assert rule_of(exc) == "recist.target_not_measurable"


def test_baseline_refuses_new_lesion_and_bad_non_target_status():
    with pytest.raises(RuleViolation) as exc:
        validate_baseline(scan(0, lesion("L1", 20), new=("lung",)), P)
    assert rule_of(exc) == "recist.new_lesion_at_baseline"
    with pytest.raises(RuleViolation) as exc:
        validate_baseline(scan(0, lesion("L1", 20), non_targets={"NT1": "stable"}), P)
    assert rule_of(exc) == "recist.non_target_status"
    assert "NT1" in exc.value.message


def test_evaluate_refuses_an_invalid_baseline():
    with pytest.raises(RuleViolation) as exc:
        evaluate([scan(-3, lesion("L1", 8))], DAY0, P)
    assert rule_of(exc) == "recist.target_not_measurable"


# --- follow-up validation ----------------------------------------------------------------------

BASE = scan(-3, lesion("L1", 30), node("N1", 20), non_targets={"NT1": "present"})


def test_followup_with_an_unknown_target_is_refused():
    with pytest.raises(RuleViolation) as exc:
        validate_followup(BASE, scan(42, lesion("L1", 20), lesion("L9", 12)))
    assert rule_of(exc) == "recist.unknown_target"
    assert "L9" in exc.value.message
    with pytest.raises(RuleViolation):
        evaluate([BASE, scan(42, lesion("L1", 20), node("N1", 10), lesion("L9", 12))], DAY0, P)


def test_followup_changing_a_node_into_a_lesion_is_refused():
    with pytest.raises(RuleViolation) as exc:
        validate_followup(BASE, scan(42, lesion("L1", 20), lesion("N1", 10)))
    assert rule_of(exc) == "recist.lesion_kind_changed"


def test_followup_with_an_unknown_non_target_is_refused():
    with pytest.raises(RuleViolation) as exc:
        validate_followup(BASE, scan(42, lesion("L1", 20), non_targets={"NT2": "present"}))
    assert rule_of(exc) == "recist.unknown_non_target"


def test_a_missing_baseline_target_is_not_an_error_but_ne():
    followup = scan(42, lesion("L1", 20), non_targets={"NT1": "present"})
    validate_followup(BASE, followup)
    r = evaluate([BASE, followup], DAY0, P)[-1]
    assert r.target_response == NE
    assert r.target_sum_mm is None and r.change_from_baseline_pct is None
    assert r.overall_response == NE


# --- baseline and timeline ---------------------------------------------------------------------


def test_baseline_is_the_last_assessment_on_or_before_the_first_infusion():
    scans = [scan(5, lesion("L1", 20)), scan(-30, lesion("L1", 20)), scan(0, lesion("L1", 20)),
             scan(-3, lesion("L1", 20))]
    assert baseline_index(scans, DAY0) == 2
    assert baseline_index(scans, day(-1)) == 3
    assert baseline_index(scans, None) == 0  # not treated yet: the latest
    assert baseline_index(scans, day(-31)) is None
    assert baseline_index([], DAY0) is None


def test_same_day_assessments_count_in_entry_order():
    first, second = scan(0, lesion("L1", 20)), scan(0, lesion("L1", 30))
    assert baseline_index([first, second], DAY0) == 1
    out = evaluate([first, second, scan(42, lesion("L1", 30))], DAY0, P)
    assert [r.is_baseline for r in out] == [False, True, False]
    assert out[1].baseline_sum_mm == 30


def test_screening_scans_before_the_baseline_get_no_response():
    out = evaluate([scan(42, lesion("L1", 20)), scan(-40, lesion("X1", 5)),
                    scan(-3, lesion("L1", 20))], DAY0, P)
    assert [r.date for r in out] == [day(-40), day(-3), day(42)]
    pre, base, follow = out
    assert not pre.is_baseline
    assert (pre.target_sum_mm, pre.target_response, pre.non_target_response,
            pre.overall_response) == (None, None, None, None)
    assert base.is_baseline and base.overall_response is None and base.target_sum_mm == 20
    assert base.nadir_sum_mm is None and base.change_from_baseline_pct is None
    assert follow.target_response == SD and follow.nadir_sum_mm == 20


def test_without_a_baseline_nothing_is_scored():
    out = evaluate([scan(20, lesion("L1", 20)), scan(60, lesion("L1", 5))], DAY0, P)
    assert all(not r.is_baseline and r.overall_response is None for r in out)
    assert best_overall_response(out, DAY0, P) is None


def test_before_any_infusion_the_latest_scan_is_the_baseline():
    out = evaluate([scan(-30, lesion("L1", 30)), scan(-3, lesion("L1", 20))], None, P)
    assert [r.is_baseline for r in out] == [False, True]
    assert best_overall_response(out, None, P) is None


# --- target response details -------------------------------------------------------------------


def test_thresholds_use_exact_decimal_arithmetic():
    # In binary floats 7.0 + 25.62 exceeds 0.7 * (10.0 + 36.6), which would miss this PR.
    out = evaluate([scan(-3, lesion("L1", 10.0), lesion("L2", 36.6, "lung")),
                    scan(42, lesion("L1", 7.0), lesion("L2", 25.62, "lung"))], DAY0, P)
    assert out[-1].target_response == PR and out[-1].change_from_baseline_pct == -30.0
    # And 12.12 + 21.72 falls short of 1.2 * (10.1 + 18.1), which would miss this PD.
    out = evaluate([scan(-3, lesion("L1", 10.1), lesion("L2", 18.1, "lung")),
                    scan(42, lesion("L1", 12.12), lesion("L2", 21.72, "lung"))], DAY0, P)
    assert out[-1].target_response == PD and out[-1].change_from_nadir_pct == 20.0
    assert out[-1].target_sum_mm == 33.84


def test_twenty_percent_needs_five_millimetres_and_vice_versa():
    small = [scan(-3, lesion("L1", 10)), scan(42, lesion("L1", 14.9))]
    assert evaluate(small, DAY0, P)[-1].target_response == SD  # +49% but +4.9 mm
    big = [scan(-3, lesion("L1", 100)), scan(42, lesion("L1", 119.9))]
    assert evaluate(big, DAY0, P)[-1].target_response == SD  # +19.9 mm but +19.9%
    both = [scan(-3, lesion("L1", 25)), scan(42, lesion("L1", 30))]
    assert evaluate(both, DAY0, P)[-1].target_response == PD  # exactly +20% and +5 mm


def test_partial_measurement_that_already_proves_pd_is_pd():
    scans = [scan(-3, lesion("L1", 30), lesion("L2", 20, "lung")),
             scan(42, lesion("L1", 40), lesion("L2", None, "lung")),  # 40 mm proves nothing
             scan(84, lesion("L1", 60))]  # L2 missing, but 60 mm alone is +20% and +10 mm
    out = evaluate(scans, DAY0, P)
    assert out[1].target_response == NE and out[1].overall_response == NE
    assert out[2].target_response == PD and out[2].overall_response == PD
    assert out[2].target_sum_mm is None  # a partial sum is not reported as the sum


def test_unmeasured_assessments_do_not_set_the_nadir():
    scans = [scan(-3, lesion("L1", 30), lesion("L2", 20, "lung")),
             scan(42, lesion("L1", 5), lesion("L2", None, "lung")),  # partial 5 mm: not a nadir
             scan(84, lesion("L1", 25), lesion("L2", 20, "lung"))]
    out = evaluate(scans, DAY0, P)
    assert out[2].nadir_sum_mm == 50 and out[2].target_response == SD


def test_nadir_is_the_smallest_earlier_full_sum():
    scans = [scan(-3, lesion("L1", 50)), scan(42, lesion("L1", 30)), scan(84, lesion("L1", 40)),
             scan(126, lesion("L1", 34))]
    out = evaluate(scans, DAY0, P)
    assert [r.nadir_sum_mm for r in out] == [None, 50, 30, 30]
    assert [r.target_response for r in out[1:]] == [PR, PD, PR]


def test_reappearance_after_cr_is_pd_whatever_the_percentages():
    base = scan(-3, lesion("L1", 40), lesion("L2", 40, "lung"), node("N1", 20))
    cr = scan(42, lesion("L1", 0), lesion("L2", 0, "lung"), node("N1", 9))
    small_back = scan(84, lesion("L1", 5), lesion("L2", 0, "lung"), node("N1", 4))
    out = evaluate([base, cr, small_back], DAY0, P)
    assert out[1].target_response == CR
    assert out[2].change_from_nadir_pct == 0.0
    assert out[2].target_response == PD

    node_back = scan(84, lesion("L1", 0), lesion("L2", 0, "lung"), node("N1", 10))
    assert evaluate([base, cr, node_back], DAY0, P)[-1].target_response == PD
    node_still_normal = scan(84, lesion("L1", 0), lesion("L2", 0, "lung"), node("N1", 9.9))
    assert evaluate([base, cr, node_still_normal], DAY0, P)[-1].target_response == CR
    # An unmeasured lesion does not hide a reappearance seen on the others.
    partial = scan(84, lesion("L1", 3), node("N1", 2))
    assert evaluate([base, cr, partial], DAY0, P)[-1].target_response == PD


def test_pd_is_checked_before_cr_even_with_normal_nodes():
    base = scan(-3, node("N1", 20, "neck"), node("N2", 20, "axilla"))
    out = evaluate([base, scan(42, node("N1", 3, "neck"), node("N2", 3, "axilla")),
                    scan(84, node("N1", 9, "neck"), node("N2", 9, "axilla"))], DAY0, P)
    assert out[1].target_response == CR and out[1].target_sum_mm == 6
    assert out[2].target_response == PD  # 18 mm is +200% and +12 mm over 6 mm


def test_cr_with_node_sum_above_zero_and_pr_before_it():
    base = scan(-3, lesion("L1", 30), node("N1", 20))
    out = evaluate([base, scan(42, lesion("L1", 0), node("N1", 12)),
                    scan(84, lesion("L1", 0), node("N1", 9))], DAY0, P)
    assert [r.target_response for r in out[1:]] == [PR, CR]
    assert out[2].target_sum_mm == 9


def test_percentages_round_half_away_from_zero_and_need_a_nonzero_reference():
    up = evaluate([scan(-3, lesion("L1", 20), lesion("L2", 20, "lung")),
                   scan(42, lesion("L1", 20), lesion("L2", 20.02, "lung"))], DAY0, P)[-1]
    assert up.change_from_baseline_pct == 0.1  # +0.05%
    down = evaluate([scan(-3, lesion("L1", 20), lesion("L2", 20, "lung")),
                     scan(42, lesion("L1", 20), lesion("L2", 19.98, "lung"))], DAY0, P)[-1]
    assert down.change_from_baseline_pct == -0.1
    third = evaluate([scan(-3, lesion("L1", 30)), scan(42, lesion("L1", 10))], DAY0, P)[-1]
    assert third.change_from_baseline_pct == -66.7

    base = scan(-3, lesion("L1", 30))
    out = evaluate([base, scan(42, lesion("L1", 0)), scan(84, lesion("L1", 0))], DAY0, P)
    assert out[2].nadir_sum_mm == 0 and out[2].change_from_nadir_pct is None
    assert out[2].target_response == CR


# --- non-target and overall --------------------------------------------------------------------


@pytest.mark.parametrize("statuses, expected", [
    ({"NT1": "absent", "NT2": "absent"}, CR),
    ({"NT1": "absent", "NT2": "present"}, NON_CR_NON_PD),
    ({"NT1": "present"}, NE),  # NT2 not assessed
    ({"NT1": "progression"}, PD),  # unequivocal progression needs no other lesion
    ({}, NE),
])
def test_non_target_response(statuses, expected):
    base = scan(-3, non_targets={"NT1": "present", "NT2": "present"})
    assert non_target_response(base, scan(42, non_targets=statuses)) == expected
    assert non_target_response(scan(-3, lesion("L1", 20)), scan(42, lesion("L1", 20))) is None


@pytest.mark.parametrize("target, non_target, new, expected", [
    (CR, CR, False, CR), (CR, None, False, CR),
    (CR, NON_CR_NON_PD, False, PR), (CR, NE, False, PR),
    (PR, NON_CR_NON_PD, False, PR), (PR, NE, False, PR), (PR, None, False, PR),
    (PR, CR, False, PR),
    (SD, NON_CR_NON_PD, False, SD), (SD, NE, False, SD), (SD, None, False, SD),
    (NE, NON_CR_NON_PD, False, NE), (NE, NE, False, NE), (NE, None, False, NE),
    (PD, CR, False, PD), (PD, None, True, PD),
    (CR, PD, False, PD), (SD, PD, False, PD),
    (CR, CR, True, PD), (SD, None, True, PD),
    (None, CR, False, CR), (None, NON_CR_NON_PD, False, NON_CR_NON_PD), (None, NE, False, NE),
    (None, PD, False, PD), (None, CR, True, PD),
    (None, None, False, NE), (None, None, True, PD),
])
def test_overall_response_table(target, non_target, new, expected):
    assert overall_response(target, non_target, new) == expected


def test_non_target_only_subject():
    base = scan(-3, non_targets={"NT1": "present"})
    out = evaluate([base, scan(42, non_targets={"NT1": "present"}),
                    scan(84, non_targets={"NT1": "absent"}),
                    scan(126, non_targets={"NT1": "absent"})], DAY0, P)
    assert all(r.target_response is None and r.target_sum_mm is None for r in out)
    assert [r.overall_response for r in out[1:]] == [NON_CR_NON_PD, CR, CR]
    assert best_overall_response(out, DAY0, P) == CR


# --- confirmation and best overall response ----------------------------------------------------


def timeline(*points: tuple[int, str], targets: bool = True) -> list[AssessmentResponse]:
    """Responses as evaluate() would give them: a baseline, then (day, overall) points."""
    rows = [AssessmentResponse(day(-3), True, 50.0 if targets else None,
                               50.0 if targets else None, None, None, None, None, None, False,
                               None)]
    for n, overall in points:
        tr = (overall if overall in TARGET_RESPONSES else SD) if targets else None
        rows.append(AssessmentResponse(day(n), False, None, None, None, None, None, tr, None,
                                       False, overall))
    return rows


@pytest.mark.parametrize("points, bor", [
    pytest.param([(42, PR), (70, PR)], PR, id="PR confirmed 28 days later"),
    pytest.param([(42, PR), (70, CR)], PR, id="PR confirmed by a later CR"),
    pytest.param([(42, PR), (69, PR)], SD, id="PR 27 days apart: SD, minimum met"),
    pytest.param([(35, PR)], NE, id="unconfirmed PR before the SD minimum, nothing after"),
    pytest.param([(35, PR), (56, PR)], SD, id="PRs too close together, the later one at 8 weeks"),
    pytest.param([(35, PR), (63, PD)], PD, id="unconfirmed PR too early, then PD"),
    pytest.param([(35, PR), (63, NE)], NE, id="unconfirmed PR too early, then NE"),
    pytest.param([(42, PR), (70, PD)], SD, id="unconfirmed PR at the SD minimum, then PD"),
    pytest.param([(35, PR), (63, SD)], SD, id="unconfirmed PR followed by SD"),
    pytest.param([(42, CR), (70, CR)], CR, id="CR confirmed"),
    pytest.param([(42, CR), (70, PR)], SD, id="CR then PR: a worse response confirms nothing"),
    pytest.param([(42, PR), (70, CR)], PR, id="PR then CR: a better response confirms the PR"),
    pytest.param([(42, CR), (70, PR), (98, PR)], PR, id="CR then PR, PR: the PR is confirmed"),
    pytest.param([(42, CR), (56, SD), (84, CR)], CR, id="SD in between does not break it"),
    pytest.param([(42, CR), (56, NE), (70, CR)], CR, id="NE in between does not break it"),
    pytest.param([(42, CR), (56, PD), (84, CR)], SD, id="PD in between breaks it"),
    pytest.param([(14, PD), (42, PR), (70, PR)], PD, id="nothing counts after the first PD"),
    pytest.param([(42, SD)], SD, id="SD at the minimum"),
    pytest.param([(41, SD)], NE, id="SD a day early"),
    pytest.param([(28, SD), (56, PD)], PD, id="early SD then PD"),
    pytest.param([(28, SD), (56, NE), (84, PD)], PD, id="early SD, NE, then PD"),
    pytest.param([(42, NE), (84, NE)], NE, id="never evaluable"),
    pytest.param([(42, SD), (70, PR), (100, CR), (130, CR)], CR, id="improving to confirmed CR"),
    pytest.param([(42, PR), (56, PR), (84, PD), (112, CR), (140, CR)], SD,
                 id="unconfirmed PR, PD, then CRs that no longer count"),
])
def test_best_overall_response(points, bor):
    assert best_overall_response(timeline(*points), DAY0, P) == bor


@pytest.mark.parametrize("points, bor", [
    pytest.param([(42, NON_CR_NON_PD)], NON_CR_NON_PD, id="non-CR/non-PD at the minimum"),
    pytest.param([(41, NON_CR_NON_PD)], NE, id="non-CR/non-PD too early"),
    pytest.param([(42, CR)], NON_CR_NON_PD, id="unconfirmed CR falls back to non-CR/non-PD"),
    pytest.param([(42, CR), (70, CR)], CR, id="confirmed CR"),
    pytest.param([(42, PD)], PD, id="PD"),
])
def test_best_overall_response_without_target_disease(points, bor):
    assert best_overall_response(timeline(*points, targets=False), DAY0, P) == bor


def test_no_bor_before_treatment_or_before_any_followup():
    assert best_overall_response(timeline(), DAY0, P) is None
    assert best_overall_response(timeline((42, SD)), None, P) is None
    assert best_overall_response([], DAY0, P) is None


def test_confirmation_and_sd_windows_come_from_the_protocol():
    points = timeline((30, PR), (50, PR))
    assert best_overall_response(points, DAY0, P) == SD
    short = Response(confirmation_min_days=20, sd_min_days=28)
    assert best_overall_response(points, DAY0, short) == PR
    assert best_overall_response(timeline((30, SD)), DAY0, short) == SD


def test_confirmed_names_the_first_confirming_assessment_of_the_best_level():
    rows = timeline((42, CR), (56, NE), (70, PR), (98, CR), (126, CR), (150, PD), (180, CR))
    assert confirmed(rows, P) == [
        Confirmation(day(42), CR, CR, day(98)),
        Confirmation(day(70), PR, PR, day(98)),
        Confirmation(day(98), CR, CR, day(126)),
    ]
    # A window is a prefix: before day 90 the CR of day 42 is followed only by a (worse) PR.
    assert confirmed([r for r in rows if r.date < day(90)], P) == []
    assert [r.date for r in on_study(rows)][-1] == day(150)


def test_confirmed_cr_end_to_end():
    base = scan(-3, lesion("L1", 30), node("N1", 20), non_targets={"NT1": "present"})
    cr = {"NT1": "absent"}
    out = evaluate([
        base,
        scan(42, lesion("L1", 0), node("N1", 8), non_targets=cr),
        scan(63, lesion("L1", 0), node("N1", 8), non_targets={"NT1": "absent"}),
        scan(84, lesion("L1", 0), node("N1", 7), non_targets=cr),
    ], DAY0, P)
    assert [r.overall_response for r in out[1:]] == [CR, CR, CR]
    assert confirmed(out, P)[0] == Confirmation(day(42), CR, CR, day(84))
    assert best_overall_response(out, DAY0, P) == CR


def test_a_non_target_lesion_present_again_after_cr_is_progression():
    base = scan(-3, lesion("L1", 30), non_targets={"NT1": "present", "NT2": "present"})
    gone = {"NT1": "absent", "NT2": "absent"}
    out = evaluate([
        base,
        scan(42, lesion("L1", 0), non_targets=gone),
        scan(84, lesion("L1", 0), non_targets={"NT1": "present", "NT2": "absent"}),
    ], DAY0, P)
    assert [(r.non_target_response, r.overall_response) for r in out[1:]] == [(CR, CR),
                                                                               (PD, PD)]
    # Without an earlier CR, a present non-target lesion is non-CR/non-PD as before.
    partial = evaluate([base, scan(42, lesion("L1", 10), non_targets={"NT1": "present"})],
                       DAY0, P)
    assert partial[1].overall_response == PR


# --- properties --------------------------------------------------------------------------------

# Slots keep any draw within the limits: at most two per organ, two nodes, five in total.
SLOTS = [("L1", "liver", False), ("L2", "liver", False), ("L3", "lung", False),
         ("L4", "lung", False), ("L5", "adrenal", False), ("N1", "neck", True),
         ("N2", "axilla", True)]


@st.composite
def baselines(draw, integer_mm: bool = False) -> Assessment:
    slots = draw(st.permutations(SLOTS))[: draw(st.integers(0, 5))]
    targets = []
    for lesion_id, organ, is_node in slots:
        low = 15 if is_node else 10
        mm = (draw(st.integers(low, 80)) if integer_mm
              else draw(st.integers(low * 10, 800)) / 10)
        targets.append(Target(lesion_id, organ, is_node, mm))
    n_nt = draw(st.integers(0 if targets else 1, 2))
    nts = tuple(NonTarget(f"NT{i}", "bone", "present") for i in range(1, n_nt + 1))
    return Assessment(day(-draw(st.integers(0, 20))), tuple(targets), nts)


@st.composite
def followups(draw, baseline: Assessment, n: int) -> list[Assessment]:
    days = sorted(draw(st.lists(st.integers(1, 500), min_size=n, max_size=n, unique=True)))
    scans = []
    for d in days:
        targets = []
        for t in baseline.targets:
            if draw(st.integers(0, 9)) == 0:
                continue  # not measured
            mm = draw(st.one_of(st.just(None), st.just(0.0), st.integers(0, 1000).map(
                lambda x: x / 10)))
            targets.append(Target(t.lesion_id, t.organ, t.is_node, mm))
        nts = tuple(NonTarget(nt.lesion_id, nt.organ, s) for nt in baseline.non_targets
                    if (s := draw(st.sampled_from(["present", "absent", "progression", "-"])))
                    != "-")
        new = ("brain",) if draw(st.integers(0, 7)) == 0 else ()
        scans.append(Assessment(day(d), tuple(targets), nts, new))
    return scans


@st.composite
def timelines(draw) -> list[Assessment]:
    baseline = draw(baselines())
    screening = [Assessment(baseline.date - timedelta(days=draw(st.integers(1, 30))),
                            (Target("X", "liver", False, 3.0),))] if draw(st.booleans()) else []
    return [*screening, baseline, *draw(followups(baseline, draw(st.integers(0, 8))))]


@st.composite
def redistribute(draw, total: int, parts: int) -> list[int]:
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=parts - 1, max_size=parts - 1)))
    bounds = [0, *cuts, total]
    return [b - a for a, b in zip(bounds, bounds[1:], strict=False)]


@given(st.data())
def test_property_unchanged_sum_is_sd_forever(data):
    baseline = data.draw(baselines(integer_mm=True).filter(lambda a: a.targets))
    total = sum(int(t.mm) for t in baseline.targets)
    days = sorted(data.draw(st.lists(st.integers(1, 400), max_size=8, unique=True)))
    scans = [baseline]
    for d in days:
        mms = data.draw(redistribute(total, len(baseline.targets)))
        scans.append(Assessment(day(d), tuple(
            Target(t.lesion_id, t.organ, t.is_node, float(mm))
            for t, mm in zip(baseline.targets, mms, strict=True)), baseline.non_targets))

    out = evaluate(scans, DAY0, P)

    for r in out[1:]:
        assert r.target_response == SD and r.overall_response == SD
        assert r.change_from_baseline_pct == 0.0 and r.nadir_sum_mm == total
    expected = (None if not days else SD if days[-1] >= P.sd_min_days else NE)
    assert best_overall_response(out, DAY0, P) == expected


@given(timelines())
def test_property_nothing_after_the_first_pd_changes_the_bor(scans):
    full = evaluate(scans, DAY0, P)
    pd_dates = [r.date for r in full if r.overall_response == PD]
    cut = pd_dates[0] if pd_dates else max(a.date for a in scans)
    prefix = evaluate([a for a in scans if a.date <= cut], DAY0, P)

    assert prefix == full[: len(prefix)]
    assert best_overall_response(prefix, DAY0, P) == best_overall_response(full, DAY0, P)
    assert confirmed(prefix, P) == confirmed(full, P)


@given(timelines(), st.randoms(use_true_random=False))
def test_property_entry_order_does_not_matter(scans, rnd: random.Random):
    shuffled = list(scans)
    rnd.shuffle(shuffled)
    assert evaluate(shuffled, DAY0, P) == evaluate(scans, DAY0, P)


@given(timelines())
def test_property_responses_stay_in_their_sets(scans):
    out = evaluate(scans, DAY0, P)
    baseline = next(a for a in scans if a.date == next(r.date for r in out if r.is_baseline))
    for r in out:
        assert r.target_response in TARGET_RESPONSES | {None}
        assert r.non_target_response in NON_TARGET_RESPONSES | {None}
        if r.is_baseline or r.date < baseline.date:
            assert r.overall_response is None
            continue
        assert r.overall_response in OVERALL_RESPONSES
        assert (r.target_response is None) == (not baseline.targets)
        if r.target_response in (CR, PR, SD):
            assert r.target_sum_mm is not None
    bor = best_overall_response(out, DAY0, P)
    assert bor is None or bor in OVERALL_RESPONSES
