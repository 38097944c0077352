"""`scan`, `pet` and `ctdna` through the ledger: the worked examples of spec/recist.md, the
`scan --json` shape of spec/cli.md, refusals, and responses that follow late entries,
corrections and retractions. The rules run on the memory store; the CLI tests run end to end
on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

from m22bol.domain.errors import RuleViolation
from m22bol.projections.replay import patient_view
from tests.support import IN_MEMORY, ON_DATABASES, invoke

pytestmark = IN_MEMORY

SUBJECT = "M22-001"
SCAN_KEYS = {"entry", "target_sum_mm", "baseline_sum_mm", "nadir_sum_mm",
             "change_from_baseline_pct", "change_from_nadir_pct", "target_response",
             "non_target_response", "new_lesions", "overall_response"}


@pytest.fixture
def treated(driver):
    """One subject enrolled on 2025-01-10, cycle 1 on 2025-01-13 (60 kg, 324 mg)."""
    driver.enrolled(SUBJECT, consent="2025-01-02", enrol="2025-01-10", weight=60)
    return driver


def infuse(driver, cycle: int, when: str) -> dict:
    return driver.do("infuse", subject=SUBJECT, cycle=cycle, date=when, weight_kg=60,
                     dose_mg=324)


def scan(driver, when: str, targets=(), nodes=(), non_targets=(), new=()) -> dict:
    return driver.do("scan", subject=SUBJECT, date=when, target=list(targets), node=list(nodes),
                     non_target=list(non_targets), new_lesion=list(new))


# The worked examples of spec/recist.md: baseline, optional nadir scan, current scan, as the
# CLI's ID:ORGAN:MM strings; then the expected sums (baseline, nadir, now), the changes from
# baseline and nadir, the target and the overall response.
WORKED = [
    pytest.param(["L1:liver:30", "L2:lung:20"], [], None, ["L1:liver:21", "L2:lung:14"], [],
                 None, False, (50, 50, 35), (-30.0, -30.0), "PR", "PR", id="50-50-35 PR"),
    pytest.param(["L1:liver:30", "L2:lung:20"], [], None, ["L1:liver:22", "L2:lung:14"], [],
                 None, False, (50, 50, 36), (-28.0, -28.0), "SD", "SD", id="50-50-36 SD"),
    pytest.param(["L1:liver:30", "L2:lung:20"], [], ["L1:liver:18", "L2:lung:12"],
                 ["L1:liver:22", "L2:lung:14"], [], None, False, (50, 30, 36), (-28.0, 20.0),
                 "PD", "PD", id="50-30-36 PD"),
    pytest.param(["L1:liver:10", "L2:lung:10"], [], ["L1:liver:7", "L2:lung:5"],
                 ["L1:liver:9", "L2:lung:7"], [], None, False, (20, 12, 16), (-20.0, 33.3),
                 "SD", "SD", id="20-12-16 SD"),
    pytest.param(["L1:liver:25"], ["N1:axilla:15"], None, ["L1:liver:0"], ["N1:axilla:8"],
                 "absent", False, (40, 40, 8), (-80.0, -80.0), "CR", "CR", id="40-40-8 CR"),
    pytest.param(["L1:liver:25"], ["N1:axilla:15"], None, ["L1:liver:0"], ["N1:axilla:8"],
                 "present", False, (40, 40, 8), (-80.0, -80.0), "CR", "PR",
                 id="40-40-8 non-target present PR"),
    pytest.param(["L1:liver:20", "L2:lung:20"], [], None, ["L1:liver:10", "L2:lung:10"], [],
                 "progression", False, (40, 40, 20), (-50.0, -50.0), "PR", "PD",
                 id="40-40-20 non-target progression PD"),
    pytest.param(["L1:liver:20", "L2:lung:20"], [], None, ["L1:liver:10", "L2:lung:10"], [],
                 "present", True, (40, 40, 20), (-50.0, -50.0), "PR", "PD",
                 id="40-40-20 new lesion PD"),
]


@pytest.mark.parametrize("base_targets, base_nodes, nadir, now_targets, now_nodes, non_target, "
                         "new, sums, pcts, target, overall", WORKED)
def test_worked_example_through_the_ledger(treated, base_targets, base_nodes, nadir,
                                           now_targets, now_nodes, non_target, new, sums, pcts,
                                           target, overall):
    nt_base = ["NT1:bone:present"] if non_target else []
    nt_now = [f"NT1:bone:{non_target}"] if non_target else []
    scan(treated, "2025-01-08", base_targets, base_nodes, nt_base)
    infuse(treated, 1, "2025-01-13")
    if nadir is not None:
        scan(treated, "2025-02-24", nadir, base_nodes, nt_base)

    out = scan(treated, "2025-04-07", now_targets, now_nodes, nt_now,
               ["liver segment 7"] if new else [])

    assert (out["baseline_sum_mm"], out["nadir_sum_mm"], out["target_sum_mm"]) == sums
    assert (out["change_from_baseline_pct"], out["change_from_nadir_pct"]) == pcts
    assert out["target_response"] == target
    assert out["non_target_response"] == {None: None, "absent": "CR", "present": "non-CR/non-PD",
                                          "progression": "PD"}[non_target]
    assert out["new_lesions"] is new
    assert out["overall_response"] == overall
    # The event keeps the response derived at entry, for the record.
    stored = treated.ledger.require_patient(SUBJECT).event_of(out["entry"])
    assert stored.response == {k: out[k] for k in SCAN_KEYS - {"entry"}}
    assert stored.new_lesions == (("liver segment 7",) if new else ())


@ON_DATABASES
def test_scan_json_has_exactly_the_keys_of_the_cli_spec(treated):
    url = treated.ledger.url
    base = invoke(["scan", SUBJECT, "--date", "2025-01-08", "--target", "L1:liver:30",
                   "--node", "N1:neck:16", "--non-target", "NT1:bone:present", "--json"],
                  url=url)
    assert base.exit_code == 0, base.output
    assert invoke(["infuse", SUBJECT, "--cycle", "1", "--date", "2025-01-13", "--weight-kg",
                   "60", "--dose-mg", "324"], url=url).exit_code == 0

    result = invoke(["scan", SUBJECT, "--date", "2025-02-24", "--target", "L1:liver:NE",
                     "--node", "N1:neck:12", "--non-target", "NT1:bone:present",
                     "--new-lesion", "brain", "--json"], url=url)

    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert set(doc) == SCAN_KEYS
    assert set(json.loads(base.output)) == SCAN_KEYS
    # L1 not evaluated: no sum, target NE; the new lesion makes it PD all the same.
    assert (doc["target_sum_mm"], doc["target_response"], doc["non_target_response"],
            doc["new_lesions"], doc["overall_response"]) == (None, "NE", "non-CR/non-PD", True,
                                                             "PD")


@ON_DATABASES
def test_text_output_names_the_response(treated):
    url = treated.ledger.url
    scan(treated, "2025-01-08", ["L1:liver:30"])
    infuse(treated, 1, "2025-01-13")

    result = invoke(["scan", SUBJECT, "--date", "2025-02-24", "--target", "L1:liver:20"],
                    url=url)

    assert result.exit_code == 0, result.output
    assert "overall_response: PR" in result.output
    assert "change_from_baseline_pct: -33.3" in result.output


@ON_DATABASES
@pytest.mark.parametrize("args, rule", [
    (["--target", "L1:liver:30", "--target", "L2:liver:30", "--target", "L3:liver:30"],
     "recist.max_targets_per_organ"),
    (["--node", "N1:neck:12"], "recist.target_not_measurable"),
    (["--target", "L1:liver:30", "--new-lesion", "brain"], "recist.new_lesion_at_baseline"),
])
def test_an_invalid_baseline_is_refused_with_exit_3_naming_the_rule(treated, args, rule):
    result = invoke(["scan", SUBJECT, "--date", "2025-01-08", *args, "--json"],
                    url=treated.ledger.url)

    assert result.exit_code == 3, result.output
    assert json.loads(result.output)["error"]["rule"] == rule
    assert treated.ledger.require_patient(SUBJECT).version == 3  # nothing written


def test_a_follow_up_with_a_lesion_unknown_at_baseline_is_refused(treated):
    scan(treated, "2025-01-08", ["L1:liver:30"], non_targets=["NT1:bone:present"])
    infuse(treated, 1, "2025-01-13")

    with pytest.raises(RuleViolation) as exc:
        scan(treated, "2025-02-24", ["L1:liver:20"], non_targets=["NT9:bone:present"])

    assert exc.value.rule == "recist.unknown_non_target"


def test_late_entry_correction_and_retraction_rederive_later_responses(treated):
    scan(treated, "2025-01-08", ["L1:liver:30", "L2:lung:20"])
    infuse(treated, 1, "2025-01-13")
    infuse(treated, 2, "2025-02-03")
    last = scan(treated, "2025-04-07", ["L1:liver:22", "L2:lung:14"])
    assert last["overall_response"] == "SD"  # 36 mm against the baseline of 50

    nadir = scan(treated, "2025-02-24", ["L1:liver:18", "L2:lung:12"])  # a nadir of 30, late
    assert nadir["overall_response"] == "PR"
    view = treated.ledger  # the patient view derives every response again

    def response_of(entry: str) -> str | None:
        rows = {r["entry"]: r for r in patient_view(view, SUBJECT)["assessments"]}
        return rows[entry]["overall_response"]

    assert response_of(last["entry"]) == "PD"  # +20% and +6 mm over the nadir
    # The unconfirmed PR of day 42 meets the SD minimum (42 days), so the BOR is SD.
    assert patient_view(view, SUBJECT)["best_overall_response"] == "SD"

    treated.do("correct", subject=SUBJECT, entry=nadir["entry"], reason="misread",
               set=['targets=[{"lesion_id": "L1", "organ": "liver", "mm": 20},'
                    ' {"lesion_id": "L2", "organ": "lung", "mm": 14}]'])
    assert response_of(last["entry"]) == "SD"  # 34 mm nadir: 36 is +5.9%, not PD

    treated.do("retract", subject=SUBJECT, entry=nadir["entry"], reason="wrong patient")
    rows = patient_view(view, SUBJECT)["assessments"]
    assert [r["entry"] for r in rows] == [f"{SUBJECT}#4", last["entry"]]
    assert response_of(last["entry"]) == "SD"
    # The stored record of the last scan still says what was shown when it was entered.
    assert treated.ledger.require_patient(SUBJECT).event_of(last["entry"]).response[
        "overall_response"] == "SD"


@ON_DATABASES
def test_pet_rules_through_the_ledger(treated):
    base = treated.do("pet", subject=SUBJECT, date="2025-01-09", sulpeak=7.5)
    infuse(treated, 1, "2025-01-13")

    with pytest.raises(RuleViolation) as exc:
        treated.do("pet", subject=SUBJECT, date="2025-03-03")
    assert exc.value.rule == "pet.category_required"
    later = treated.do("pet", subject=SUBJECT, date="2025-03-03", percist="CMR", sulpeak=1.2)

    assert (base["pet"], later["pet"], later["baseline_sulpeak"]) == ("baseline", "follow-up",
                                                                      7.5)
    result = invoke(["pet", SUBJECT, "--date", "2025-01-12", "--percist", "PMR", "--json"],
                    url=treated.ledger.url)
    assert result.exit_code == 3
    assert json.loads(result.output)["error"]["rule"] == "pet.baseline_category"


@ON_DATABASES
def test_patient_json_shows_bor_ctdna_status_and_survival_status(treated):
    url = treated.ledger.url
    scan(treated, "2025-01-08", ["L1:liver:30"])
    treated.do("ctdna", subject=SUBJECT, date="2025-01-08", result="detected", assay="Signatera",
               value=3.2)
    for cycle, when in enumerate(["2025-01-13", "2025-02-03", "2025-02-24", "2025-03-17"], 1):
        infuse(treated, cycle, when)
    scan(treated, "2025-02-28", ["L1:liver:0"])
    scan(treated, "2025-04-01", ["L1:liver:0"])
    treated.do("ctdna", subject=SUBJECT, date="2025-04-01", result="not-detected")

    result = invoke(["patient", SUBJECT, "--json"], url=url, user="mon")

    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["best_overall_response"] == "CR"
    assert doc["ctdna_status"] == "cleared"
    assert doc["progression_free"] == {"status": "censored", "event": None,
                                       "date": "2025-04-01", "days": 78, "why": "no event"}
    assert doc["overall_survival"]["status"] == "censored"

    early = json.loads(invoke(["patient", SUBJECT, "--json", "--cutoff", "2025-03-31"],
                              url=url, user="mon").output)
    assert early["best_overall_response"] == "SD"  # CR not yet confirmed; day 46 >= 42
    assert early["ctdna_status"] == "detected"
