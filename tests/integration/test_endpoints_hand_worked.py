"""A small trial worked out by hand, imported with `m22bol import` in two batches, and
`m22bol endpoints` checked against it at two cutoffs and two known-at times.

tests/data/endpoints_trial.jsonl is recorded first (known at T1); tests/data/
endpoints_trial_late.jsonl later (known at T2, "now"): E-01's contact on d300, E-02's death on
d210, E-03's subsequent therapy on d180, and a correction making E-06's nausea related.

Every treated subject has day 0 = 2025-01-08 (cycle 1); "dN" is N days later. Cutoff C1 =
2025-06-30 (d173), C2 = 2025-12-31 (d357). Months are days / 30.4375.

- E-01 (basket I): PR d63, then an all-NE scan d126 (target not measured); discontinued d84;
  LVEF d150, contact d200, contact d300 (late). Infusions recorded with 90 and 30 minutes.
  PFS: censored at the last *adequate* assessment, d63 (not at the NE scan). OS: last known
  alive from every fact up to the cutoff: C1 -> d150 (the LVEF reading, though contacts follow
  after C1); C2/T1 -> d200; C2/T2 -> d300.
- E-02 (I): fatigue grade 3 from d-3, down to 1 on d-1, up to 2 on d10, resolved d40; SD d63;
  discontinued d70; death d210 (late). TEAE (it worsens inside the window, d0-d72) at its worst
  grade *inside* the window, 2: not grade >= 3. PFS: the death comes 147 days after the last
  adequate assessment, more than 2 x 63 + 7 = 133 (two missed assessments): censored at d63 in
  every view. OS: C1 and C2/T1 censored d70 (the discontinuation); C2/T2 death d210.
- E-03 (I): ctDNA detected d-1, not detected d63; CR d63 and d105 (42 days apart): confirmed,
  before the surgery of d160, ctDNA cleared: responder. PET d-1 (SULpeak 10) and PMR d70 (6:
  -40%, -4 units): PET-evaluable responder. Pathology d170 ypT0/ypN0/metastasis not resected
  qualifies; d172 everything not resected resects nothing: pCR (in `patient` too).
  Discontinued d178; subsequent therapy d180 (late); PD d189 (a node back to 12 mm after CR).
  PFS: C1 censored d105; C2/T1 event d189 (84 days after the last adequate assessment);
  C2/T2 censored at the last adequate assessment on or before the therapy, d105. OS: C1 d172
  (pathology), C2 d189.
- E-04 (I): CR d42, then the non-target lesion, absent at that CR, present again d84: PD (not
  PR); PFS event d84. Diarrhoea grade 2 d80, grade 4 on d120, after the window closed (last
  infusion d63 + 30 = d93, discontinued d90): TEAE at grade 2. Contact d250. OS: C1 d120 (the
  AE update), C2 d250.
- E-05 (II): CR d42, then PR d84 (non-target not assessed): a worse response confirms nothing
  (BOR SD, no confirmed response). PMR d60 without a baseline PET: not PET-evaluable, no
  response. Surgery d100, Clavien-Dindo V and death d105: PFS and OS events d105.
- E-06 (I): surgery d-1, the day before cycle 1, accepted as a deviation with a reason; SD
  d63; nausea grade 1 d5, `related` corrected to true at T2. PFS and OS censored d63.
- E-07 (I): enrolled, never treated.

Tallies ("all"; basket I without E-05, basket II = E-05):
- enrolled 7, treated 6; primary: responders 1 (E-03), radiologic CR 1, before local 1, ctDNA
  cleared 1, not informative 5 (E-01, E-02, E-04, E-05, E-06: no baseline sample).
- PFS, C1 and C2/T2 (the same times): 63+ 63+ 63+ 84 105 105+: at 84, 3 at risk -> S = 2/3;
  at 105, 2 at risk (the event before the censoring) -> 1/3: median 105 d = 3.45 months;
  events 2, censored 4; follow-up ends at 105 d with S = 1/3: KM at 12, 24, 60 months null.
  C2/T1: E-03's PD d189 with 1 at risk -> S = 0: events 3, censored 3, median 3.45, and the
  curve at 0 makes KM 0 at 12, 24 and 60 months.
- OS, C1: 63+ 70+ 105 120+ 150+ 172+ -> S(105) = 3/4; events 1, censored 5, no median.
  C2/T1: 63+ 70+ 105 189+ 200+ 250+: events 1, censored 5. C2/T2: 63+ 105 189+ 210 250+ 300+:
  S = 4/5, then 4/5 x 2/3 = 8/15 at d210; events 2, censored 4, no median.
- pCR 1 of 3 operated (E-03; E-05, E-06 operated). Metabolic 1 of 1 PET-evaluable (E-03).
  ctDNA clearance 1 of 1 baseline detected. TEAE: 3 patients (E-02, E-04, E-06), none grade
  >= 3, serious or grade 5; related 0 at T1, 1 at T2; Clavien-Dindo >= IIIa 1 (E-05).

Intervals by hand. Clopper-Pearson: 0/n -> [0, 1 - 0.025^(1/n)] (n = 6: 0.4593; n = 1:
0.975); n/n -> [0.025^(1/n), 1]; 1/6 -> [1 - 0.975^(1/6), Beta(0.975; 2, 5)] = [0.0042,
0.6412]; 1/3 -> [0.0084, 0.9057]; 3/6 -> [0.1181, 0.8819]; 5/6 mirrors 1/6: [0.3588, 0.9958].
Greenwood log-log, S with sum G of d/(n(n-d)): lower, upper = exp(-exp(log(-log S) -/+ 1.96
sqrt(G) / log S)). PFS: at 84, S = 2/3, G = 1/6 -> [0.0541, 0.9452]; at 105, S = 1/3, G = 2/3
-> [0.0090, 0.7741]. The median's interval is the median of each bound: the lower bound is
<= 0.5 first at 84 d (2.76 months), the upper never (null); in C2/T1 the curve reaches 0 at
189 d, where both bounds are 0: [2.76, 6.21]. OS C1 at 105: S = 3/4, G = 1/12 -> lower 0.1280:
median interval [3.45, null]; C2/T2 at 105: S = 4/5, G = 1/20 -> lower 0.2038: [3.45, null].
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from m22bol.domain.rules import endpoints as rules
from m22bol.projections.reader import Reader
from tests.support import invoke, new_ledger, open_ledger, store_fingerprint

DATA = Path(__file__).parent.parent / "data"
EARLY, LATE = DATA / "endpoints_trial.jsonl", DATA / "endpoints_trial_late.jsonl"
C1, C2 = "2025-06-30", "2025-12-31"
DAY0 = date(2025, 1, 8)

NONE_KM = {"12": None, "24": None, "60": None}
ZERO_KM = {"12": 0.0, "24": 0.0, "60": 0.0}
ZERO_KM_CI = {"12": [0.0, 0.0], "24": [0.0, 0.0], "60": [0.0, 0.0]}
ONE_SIXTH, NONE_OF_SIX = [0.0042, 0.6412], [0.0, 0.4593]


def run(url: str, *args: str, user: str = "dm", code: int = 0):
    result = invoke(list(args), url=url, user=user)
    assert result.exit_code == code, result.output
    return result


def load(url: str) -> datetime:
    """Both batches through `m22bol import`; the moment between them (T1)."""
    new_ledger(url).close()  # the usual people, with their passwords
    run(url, "import", str(EARLY))
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    run(url, "import", str(LATE))
    return between


def endpoints(url: str, cutoff: str, known_at: datetime | None = None) -> dict:
    args = ["endpoints", "--json", "--cutoff", cutoff]
    if known_at is not None:
        args += ["--known-at", known_at.isoformat()]
    return json.loads(run(url, *args, user="mon").output)


def all_baskets(*, pfs: dict, os_: dict, related: int) -> dict:
    """The "all" tallies: everything but survival and `related` is the same in every view."""
    proportion = {1: ONE_SIXTH, 0: NONE_OF_SIX}
    return {
        "enrolled": 7, "treated": 6,
        "primary": {
            "responders": 1, "responders_ci95": ONE_SIXTH, "evaluable": 6,
            "radiologic_cr": 1, "radiologic_cr_ci95": ONE_SIXTH,
            "radiologic_cr_before_local_treatment": 1,
            "radiologic_cr_before_local_treatment_ci95": ONE_SIXTH,
            "ctdna_cleared": 1, "ctdna_cleared_ci95": ONE_SIXTH,
            "ctdna_not_informative": 5, "ctdna_not_informative_ci95": [0.3588, 0.9958],
        },
        "progression_free": pfs,
        "overall_survival": os_,
        "pathological_complete_response": {"patients": 1, "patients_ci95": [0.0084, 0.9057],
                                           "operated": 3},
        "metabolic_response": {"patients": 1, "patients_ci95": [0.025, 1.0],
                               "pet_evaluable": 1},
        "ctdna_clearance": {"patients": 1, "patients_ci95": [0.025, 1.0],
                            "baseline_detected": 1},
        "safety": {
            "patients_with_teae": 3, "patients_with_teae_ci95": [0.1181, 0.8819],
            "grade3plus": 0, "grade3plus_ci95": NONE_OF_SIX,
            "serious": 0, "serious_ci95": NONE_OF_SIX,
            "grade5": 0, "grade5_ci95": NONE_OF_SIX,
            "pneumonitis": 0, "pneumonitis_ci95": NONE_OF_SIX,
            "related": related, "related_ci95": proportion[related],
            "clavien_dindo_3plus": 1, "clavien_dindo_3plus_ci95": ONE_SIXTH,
        },
    }


PFS_TWO_EVENTS = {"events": 2, "censored": 4, "median_months": 3.45,
                  "median_months_ci95": [2.76, None], "km": NONE_KM, "km_ci95": NONE_KM}
PFS_THREE_EVENTS = {"events": 3, "censored": 3, "median_months": 3.45,
                    "median_months_ci95": [2.76, 6.21], "km": ZERO_KM, "km_ci95": ZERO_KM_CI}
OS_ONE_EVENT = {"events": 1, "censored": 5, "median_months": None,
                "median_months_ci95": [3.45, None], "km": NONE_KM, "km_ci95": NONE_KM}
OS_TWO_EVENTS = {"events": 2, "censored": 4, "median_months": None,
                 "median_months_ci95": [3.45, None], "km": NONE_KM, "km_ci95": NONE_KM}

# (cutoff, known at T1?) -> the "all" tallies
EXPECTED = {
    (C1, True): all_baskets(pfs=PFS_TWO_EVENTS, os_=OS_ONE_EVENT, related=0),
    (C1, False): all_baskets(pfs=PFS_TWO_EVENTS, os_=OS_ONE_EVENT, related=1),
    (C2, True): all_baskets(pfs=PFS_THREE_EVENTS, os_=OS_ONE_EVENT, related=0),
    (C2, False): all_baskets(pfs=PFS_TWO_EVENTS, os_=OS_TWO_EVENTS, related=1),
}

# Per subject: (PFS days, event?, why), (OS days, event?) in each view.
SUBJECTS = {
    "E-01": {(C1, True): ((63, False, "no event"), (150, False)),
             (C2, True): ((63, False, "no event"), (200, False)),
             (C2, False): ((63, False, "no event"), (300, False))},
    "E-02": {(C1, True): ((63, False, "no event"), (70, False)),
             (C2, True): ((63, False, "no event"), (70, False)),
             (C2, False): ((63, False, "missed assessments"), (210, True))},
    "E-03": {(C1, True): ((105, False, "no event"), (172, False)),
             (C2, True): ((189, True, "progression"), (189, False)),
             (C2, False): ((105, False, "subsequent therapy"), (189, False))},
    "E-04": {(C1, True): ((84, True, "progression"), (120, False)),
             (C2, False): ((84, True, "progression"), (250, False))},
    "E-05": {(C1, True): ((105, True, "death"), (105, True)),
             (C2, False): ((105, True, "death"), (105, True))},
    "E-06": {(C1, False): ((63, False, "no event"), (63, False)),
             (C2, False): ((63, False, "no event"), (63, False))},
}


@pytest.fixture(scope="module")
def trial(tmp_path_factory) -> tuple[str, datetime]:
    url = f"sqlite:///{tmp_path_factory.mktemp('hand')}/hand.sqlite"
    return url, load(url)


def test_endpoints_match_the_hand_count_on_every_store(ledger_url):
    t1 = load(ledger_url)
    for (cutoff, at_t1), expected in EXPECTED.items():
        doc = endpoints(ledger_url, cutoff, t1 if at_t1 else None)
        assert doc["baskets"]["all"] == expected, (cutoff, at_t1)


def test_baskets_split_the_hand_count(trial):
    url, t1 = trial
    now = endpoints(url, C2)["baskets"]
    assert (now["I"]["enrolled"], now["I"]["treated"], now["II"]["treated"]) == (6, 5, 1)
    assert now["III"]["enrolled"] == now["IV"]["enrolled"] == 0
    # Basket I OS at C2/T2: 63+ 189+ 210 250+ 300+: S = 2/3 at 210 d, G = 1/6 -> lower bound
    # 0.0541 <= 0.5 there: the median's interval starts at 210 d = 6.90 months.
    assert now["I"]["overall_survival"]["median_months_ci95"] == [6.9, None]
    # E-05 alone: one death on d105, S = 0 from then on.
    assert now["II"]["overall_survival"]["km"] == ZERO_KM
    assert now["II"]["metabolic_response"] == {"patients": 0, "patients_ci95": None,
                                               "pet_evaluable": 0}
    assert now["II"]["safety"]["clavien_dindo_3plus_ci95"] == [0.025, 1.0]
    # Basket I PFS at C1: 63+ 63+ 63+ 84 105+: S = 1/2 at 84 d -> median 2.76 months.
    assert endpoints(url, C1, t1)["baskets"]["I"]["progression_free"]["median_months"] == 2.76


@pytest.mark.parametrize("view", sorted({v for s in SUBJECTS.values() for v in s}))
def test_patient_and_the_tallies_use_the_same_times(trial, view):
    url, t1 = trial
    cutoff, at_t1 = view
    known_at = t1 if at_t1 else None
    ledger = open_ledger(url)
    try:
        inputs = Reader(ledger, "mon").inputs(known_at=known_at,
                                              cutoff=date.fromisoformat(cutoff))
        outcomes = {f.subject: rules.outcome(f, inputs.protocol, inputs.cutoff)
                    for f in inputs.patients}
    finally:
        ledger.close()
    for subject, views in SUBJECTS.items():
        if view not in views:
            continue
        (pfs_days, pfs_event, why), (os_days, os_event) = views[view]
        o = outcomes[subject]
        assert (o.pfs_days, o.pfs_event, o.pfs_reason) == (pfs_days, pfs_event, why), subject
        assert (o.os_days, o.os_event) == (os_days, os_event), subject
        args = ["patient", subject, "--json", "--cutoff", cutoff]
        if known_at is not None:
            args += ["--known-at", known_at.isoformat()]
        shown = json.loads(run(url, *args, user="mon").output)
        assert (shown["progression_free"]["days"], shown["progression_free"]["why"],
                shown["progression_free"]["status"] == "event") == (pfs_days, why, pfs_event)
        assert (shown["overall_survival"]["days"],
                shown["overall_survival"]["status"] == "event") == (os_days, os_event)


def test_subject_level_readings_shown_by_patient(trial):
    url, _ = trial

    def patient(subject: str) -> dict:
        return json.loads(run(url, "patient", subject, "--json", user="mon").output)

    e03, e04, e05 = patient("E-03"), patient("E-04"), patient("E-05")
    assert e03["pcr"] is True  # a report resecting nothing beside a qualifying one
    assert e03["subsequent_therapy"] == "2025-07-07"
    assert [a["overall_response"] for a in e04["assessments"]] == [None, "CR", "PD"]
    assert [a["overall_response"] for a in e05["assessments"]] == [None, "CR", "PR"]
    assert e05["confirmed_responses"] == [] and e05["best_overall_response"] == "SD"
    e01 = patient("E-01")
    durations = [(t["cycle"], t.get("duration_min")) for t in e01["timeline"]
                 if t["event"] == "InfusionGiven"]
    assert durations == [(1, 90), (2, 30), (3, None), (4, None)]
    e06 = patient("E-06")
    assert [(d["rule"], d["entry"]) for d in e06["deviations"]] == [
        ("local.before_first_infusion", "E-06#4")]


def test_the_text_shows_each_proportion_with_its_interval(trial):
    url, _ = trial
    text = run(url, "endpoints", "--cutoff", C2, user="mon").output
    assert "1/6 (16.7%, 95% CI 0.4-64.1%)" in text
    assert "0/6 (0.0%, 95% CI 0.0-45.9%)" in text
    assert "3.45 (95% CI 2.76-not reached)" in text


@pytest.mark.parametrize("command, code, rule", [
    # Eligibility with a criterion of the protocol left out: bad input, nothing passed.
    ({"command": "assess-eligibility", "subject": "E-07", "date": "2025-01-04",
      "her2": "positive", "er": "positive", "prior_therapy": "none", "distant_lesions": 1,
      "all_lesions_curable": True, "lvef": 60}, 2, "eligibility.not_assessed"),
    # A pathology report needs a surgery on or before it.
    ({"command": "pathology", "subject": "E-07", "date": "2025-02-01", "ypt": "T0",
      "ypn": "N0", "viable_metastatic_tumour": "no"}, 3, "pathology.no_surgery"),
    # Local treatment before cycle 1 is a deviation: refused without a reason.
    ({"command": "surgery", "subject": "E-07", "date": "2025-02-01", "site": "primary"}, 3,
     "local.before_first_infusion"),
    # PMR needs a fall of 30% and 0.8 SULpeak units from the baseline 10: 7.5 is -25%.
    ({"command": "pet", "subject": "E-03", "date": "2025-05-01", "percist": "PMR",
      "sulpeak": 7.5}, 3, "pet.percist_sulpeak"),
    # A death on another day than the Clavien-Dindo V complication of d105.
    ({"command": "correct", "subject": "E-05", "entry": "E-05#13", "reason": "typo",
      "set": ["date=2025-04-24"]}, 3, "complication.grade_v_death_date"),
])
def test_refusals_name_the_rule_and_write_nothing(trial, tmp_path, command, code, rule):
    url, _ = trial
    record = tmp_path / "one.jsonl"
    record.write_text(json.dumps(command) + "\n")
    before = store_fingerprint(url)

    result = run(url, "import", str(record), "--json", code=code)

    assert json.loads(result.output)["error"]["rule"] == rule
    assert store_fingerprint(url) == before
