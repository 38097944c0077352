"""A hand-written mini-trial (tests/data/mini_trial.jsonl) loaded through `m22bol import`, and
`m22bol endpoints` / `m22bol safety` checked against counts worked out by hand.

The subjects and their counts at the cutoff are in tests/support/mini_trial.py (the endpoints
CLI tests read them too); the counts at other cutoffs are below. Months are days / 30.4375.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support import invoke, new_ledger
from tests.support.mini_trial import DATA, EXPECTED, KM_NONE, without_intervals

CUTOFF = "2025-12-31"  # after every fact of the mini-trial


def run(url: str, *args: str, user: str = "dm"):
    """The CLI as `user` (a person of tests.support, with their password)."""
    result = invoke(list(args), url=url, user=user)
    assert result.exit_code == 0, result.output
    return result


def load(url: str, path: Path = DATA) -> None:
    new_ledger(url).close()
    run(url, "import", str(path))


def endpoints(url: str, *args: str) -> dict:
    """The endpoints document without its intervals (the counts are checked here; the
    intervals in tests/integration/test_endpoints_hand_worked.py)."""
    return without_intervals(json.loads(run(url, "endpoints", "--json", *args,
                                            user="mon").output))


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('mini')}/mini.sqlite"
    load(url)
    return url


def test_the_mini_trial_imports_whole(url):
    lines = [line for line in DATA.read_text().splitlines() if line.strip()]
    status = json.loads(run(url, "status", "--json", user="mon").output)

    assert len(lines) >= 200
    assert status["baskets"]["all"]["enrolled"] == 13
    assert status["baskets"]["all"]["screen_failed"] == 1


def test_endpoints_match_the_hand_counts(url):
    doc = endpoints(url, "--cutoff", CUTOFF)

    assert doc["cutoff"] == CUTOFF
    assert list(doc["baskets"]) == ["I", "II", "III", "IV", "all"]
    for basket, expected in EXPECTED.items():
        assert doc["baskets"][basket] == expected, basket


def test_by_default_the_cutoff_is_today_and_known_at_is_now(url):
    before = datetime.now(UTC)
    doc = endpoints(url)

    assert doc["cutoff"] == datetime.now(UTC).date().isoformat()
    assert before <= datetime.fromisoformat(doc["known_at"]) <= datetime.now(UTC)
    # Every fact is dated before 2026, so today's tallies are the ones above.
    assert doc["baskets"] == EXPECTED


# Cutoff 2024-06-30, by hand: A, B, C, E, F, G, H, I, K, L are enrolled and treated (J enrols
# on 2024-07-08, M and D in 2025). In study days the cutoff is A d167, B d139, C d111, E d160,
# F d76, G d48, H d118, I d13, K d118, L d62.
EXPECTED_MID_2024 = {
    "enrolled": 10, "treated": 10,
    "primary": {
        "responders": 1,  # A (CR d61 and d124, ctDNA- d61)
        "evaluable": 10,
        "radiologic_cr": 3,  # A; B (d63, d105); K (d63, d105). H's CRs (d210) are later.
        # A's surgery is on d168 = 2024-07-01, one day after the cutoff: no local treatment yet.
        "radiologic_cr_before_local_treatment": 3,
        "ctdna_cleared": 1,  # A; G (d125) and H (d210) clear after the cutoff
        "ctdna_not_informative": 3,  # C, I, L
    },
    # Events: F death d58, E PD d60. I's PD (d126) and L's (d189) are later. Censored: G, I, L
    # at day 0 (no scan after baseline yet), C d63, H d63, B d105, K d105, A d124.
    # S = 6/7 at d58, 5/7 at d60: no median; follow-up ends at 124 days.
    "progression_free": {"events": 2, "censored": 8, "median_months": None, "km": KM_NONE},
    # F's death is the only death by then (E dies on d250 = 2024-09-28).
    "overall_survival": {"events": 1, "censored": 9, "median_months": None, "km": KM_NONE},
    "pathological_complete_response": {"patients": 0, "operated": 0},  # no surgery yet
    # A (CMR d62), E (PMD d61), L (SMD d60 = 2024-06-28) have a PET after baseline; G's is on
    # d60 = 2024-07-12 and H's on d211: not yet.
    "metabolic_response": {"patients": 1, "pet_evaluable": 3},
    "ctdna_clearance": {"patients": 1, "baseline_detected": 7},  # A, B, E, F, G, H, K
    # A nausea d3, B alopecia d120, E diarrhoea d30, F pneumonitis, G nausea d10, H nausea d5,
    # I nausea g2 on d10, K fatigue d20, L anaemia d30: 9 patients. H's IIIb is on d177.
    "safety": {"patients_with_teae": 9, "grade3plus": 2, "serious": 2, "grade5": 1,
               "pneumonitis": 1, "related": 0, "clavien_dindo_3plus": 0},
}


def test_an_earlier_cutoff_matches_its_own_hand_counts(url):
    doc = endpoints(url, "--cutoff", "2024-06-30")

    assert doc["baskets"]["all"] == EXPECTED_MID_2024
    assert doc["baskets"]["I"]["enrolled"] == 3  # D enrols in 2025
    assert doc["baskets"]["III"]["enrolled"] == 2  # J enrols on 2024-07-08


def _clinical_date(record: dict) -> str:
    for key in ("date", "onset", "start", "consent_date"):
        if key in record:
            return record[key]
    raise AssertionError(f"no clinical date in {record}")


@pytest.mark.parametrize("cutoff", ["2024-02-29", "2024-06-30", "2024-09-30", "2024-12-31",
                                    "2025-06-30", CUTOFF])
def test_a_fact_after_the_cutoff_never_counts(url, tmp_path, cutoff):
    """The whole ledger cut at D tallies exactly like a ledger that never heard of later facts."""
    kept = [line for line in DATA.read_text().splitlines()
            if line.strip() and _clinical_date(json.loads(line)) <= cutoff]
    partial = tmp_path / "partial.jsonl"
    partial.write_text("\n".join(kept) + "\n")
    other = f"sqlite:///{tmp_path}/partial.sqlite"
    load(other, partial)

    full = endpoints(url, "--cutoff", cutoff)
    truncated = endpoints(other, "--cutoff", cutoff)

    assert full["baskets"] == truncated["baskets"]
    # And the truncated ledger needs no cutoff at all: nothing in it is later.
    assert endpoints(other)["baskets"] == full["baskets"]


def test_every_tally_only_grows_or_moves_with_the_cutoff(url):
    """Counts that can only accumulate never fall as the cutoff moves later."""
    cutoffs = ["2024-01-31", "2024-03-31", "2024-06-30", "2024-09-30", "2024-12-31",
               "2025-03-31", "2025-06-30", "2025-09-30", CUTOFF]
    monotone = [("enrolled",), ("treated",), ("primary", "radiologic_cr"),
                ("ctdna_clearance", "patients"), ("ctdna_clearance", "baseline_detected"),
                ("pathological_complete_response", "operated"),
                ("metabolic_response", "pet_evaluable"), ("overall_survival", "events"),
                ("progression_free", "events"), ("safety", "patients_with_teae"),
                ("safety", "grade5"), ("safety", "clavien_dindo_3plus")]
    previous = None
    for cutoff in cutoffs:
        tallies = endpoints(url, "--cutoff", cutoff)["baskets"]["all"]
        if previous is not None:
            for path in monotone:
                now, before = tallies, previous
                for key in path:
                    now, before = now[key], before[key]
                assert now >= before, (cutoff, path)
        previous = tallies
    assert previous == EXPECTED["all"]


def test_safety_tables_match_the_hand_counts(url):
    doc = json.loads(run(url, "safety", "--json", "--cutoff", CUTOFF, user="mon").output)
    every = doc["baskets"]["all"]

    assert every["treated"] == 12
    # Treatment-emergent AEs, each patient once per term at its worst grade:
    # Alopecia B g1, M g1; Anaemia L g2; Diarrhoea E g3; Fatigue K g1 (A's fatigue on d380 and
    # B's from d-3 are not emergent); Nausea A g1, H g1, G g2, I g2, M g2; Pneumonitis F g5.
    worst = {row["term"]: (row["patients"], [row[f"grade_{g}"] for g in range(1, 6)],
                           row["grade_3plus"]) for row in every["teae_by_term"]}
    assert worst == {
        "Alopecia": (2, [2, 0, 0, 0, 0], 0),
        "Anemia": (1, [0, 1, 0, 0, 0], 0),  # entered as the synonym "Anaemia"
        "Diarrhea": (1, [0, 0, 1, 0, 0], 1),  # entered as "Diarrhoea"
        "Fatigue": (1, [1, 0, 0, 0, 0], 0),
        "Nausea": (5, [2, 3, 0, 0, 0], 0),
        "Pneumonitis": (1, [0, 0, 0, 0, 1], 1),
    }
    # Every serious AE is listed, flagged when not treatment-emergent (B's began on d-3).
    assert [(s["subject"], s["term"], s["worst_grade"], s["treatment_emergent"])
            for s in every["serious"]] == [("M22-102", "Fatigue", 2, False),
                                           ("M22-201", "Diarrhea", 3, True),
                                           ("M22-202", "Pneumonitis", 5, True)]
    # A's II-d (counted under II) and H's IIIb.
    assert {row["grade"]: (row["complications"], row["patients"])
            for row in every["clavien_dindo"] if row["complications"]} == {
        "II": (1, 1), "IIIb": (1, 1)}
    # MedDRA's SOC order (respiratory before gastrointestinal), terms alphabetical within one.
    assert [(row["soc"], row["term"]) for row in doc["baskets"]["II"]["teae_by_term"]] == [
        ("Respiratory, thoracic and mediastinal disorders", "Pneumonitis"),
        ("Gastrointestinal disorders", "Diarrhea"), ("Gastrointestinal disorders", "Nausea")]
    nausea = next(r for r in every["teae_by_term"] if r["term"] == "Nausea")
    assert (nausea["meddra_code"], nausea["pct"]) == (10028813, round(100 * 5 / 12, 1))
    # Before H's surgery complication and before E's diarrhoea, by cutoff.
    early = json.loads(run(url, "safety", "--json", "--cutoff", "2024-02-20",
                           user="mon").output)["baskets"]["all"]
    assert [row["term"] for row in early["teae_by_term"]] == ["Nausea"]  # A d3, H d5
    assert every["clavien_dindo"] != early["clavien_dindo"]
    assert [s["subject"] for s in early["serious"]] == ["M22-102"]


def test_human_tables(url):
    text = run(url, "endpoints", "--cutoff", CUTOFF, user="mon").output

    assert "endpoints at cutoff 2025-12-31" in text
    header = next(line.split() for line in text.splitlines() if line.startswith("tally"))
    assert header == ["tally", "I", "II", "III", "IV", "all"]
    cells = {parts[0]: parts[1:] for parts in
             (re.split(r"\s{2,}", line.strip()) for line in text.splitlines())}
    # 1/3: Clopper-Pearson 0.0084-0.9057; 2/12: 0.0209-0.4841
    assert cells["primary: responders (confirmed CR + ctDNA clearance, 1 y)"] == [
        "1/3 (33.3%, 95% CI 0.8-90.6%)", "0/3 (0.0%, 95% CI 0.0-70.8%)",
        "1/3 (33.3%, 95% CI 0.8-90.6%)", "0/3 (0.0%, 95% CI 0.0-70.8%)",
        "2/12 (16.7%, 95% CI 2.1-48.4%)"]
    assert cells["OS: at 12 months"][-1] == "0.79 (95% CI 0.36-0.94)"
    assert cells["PFS: median (months)"][0] == "not reached"
    assert cells["pCR / operated"][1] == "0/0"

    safety_text = run(url, "safety", "--cutoff", CUTOFF, user="mon").output
    assert "== all baskets: 12 treated ==" in safety_text
    assert "Pneumonitis" in safety_text and "IIIb" in safety_text
