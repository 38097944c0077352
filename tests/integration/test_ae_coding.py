"""Adverse events coded to CTCAE v5.0 through the ledger: synonyms act exactly as their term
does (CLI and import), unknown terms are refused, baseline AEs act on nothing, SAE deadlines,
per-drug tables after an amendment, and ledgers written before coding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from eventsourcing.persistence import StoredEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m22bol.domain import coding
from m22bol.domain.errors import BadInput, DeviationRefused, RuleViolation
from m22bol.ledger.integrity import verify
from m22bol.ledger.store import canonical, event_hash
from m22bol.projections.reader import Reader
from m22bol.projections.replay import history_view, patient_view
from tests.support import (
    TEST_PASSWORD,
    Clock,
    Driver,
    invoke,
    new_ledger,
    open_ledger,
    store_fingerprint,
)
from tests.support.protocols import amendment

S = "M22-001"

# (synonym as a data manager types it, its CTCAE term, grade, the action the term gives)
SYNONYMS = [
    ("ILD", "Pneumonitis", 2, "discontinue"),
    ("Interstitial lung disease", "Pneumonitis", 2, "discontinue"),
    ("Neutropenia", "Neutrophil count decreased", 4, "interrupt"),
    ("Thrombocytopenia", "Platelet count decreased", 4, "interrupt"),
    ("Febrile neutropaenia", "Febrile neutropenia", 3, "interrupt"),
]
SPELLINGS = [str, str.lower, str.upper]


def started(url: str) -> None:
    """Through the CLI, on a ledger with the usual people and their passwords: a subject
    enrolled on 2025-01-10 and given cycle 1 on 2025-01-15."""
    new_ledger(url).close()
    steps = [
        (["register", S, "--site", "S1", "--consent-date", "2025-01-02"], "dm"),
        (["assess-eligibility", S, "--date", "2025-01-03", "--her2", "positive", "--er",
          "positive", "--prior-therapy", "none", "--distant-lesions", "2",
          "--all-lesions-curable", "yes", "--lvef", "60", "--ecog", "0"], "dm"),
        (["enrol", S, "--date", "2025-01-10", "--weight-kg", "60"], "dm"),
        (["infuse", S, "--cycle", "1", "--date", "2025-01-15", "--weight-kg", "60",
          "--dose-mg", "324"], "dm"),
    ]
    for args, user in steps:
        result = invoke(args, url=url, user=user)
        assert result.exit_code == 0, result.output


def cli_ae(url: str, term: str, grade: int, *extra: str):
    return invoke(["adverse-event", S, "--term", term, "--grade", str(grade), "--onset",
                   "2025-01-25", "--json", *extra], url=url)


def next_infusion(url: str):
    return invoke(["infuse", S, "--cycle", "2", "--date", "2025-02-05", "--weight-kg", "60",
                   "--dose-mg", "324", "--json"], url=url)


@pytest.mark.parametrize("spell", SPELLINGS, ids=["as-listed", "lower", "upper"])
@pytest.mark.parametrize(("synonym", "term", "grade", "action"), SYNONYMS,
                         ids=[s[0] for s in SYNONYMS])
def test_a_synonym_in_any_case_acts_exactly_as_its_ctcae_term(
        tmp_path, synonym, term, grade, action, spell):
    outcomes = []
    for typed in (term, spell(synonym)):
        url = f"sqlite:///{tmp_path}/{len(outcomes)}.sqlite"
        started(url)
        entered = cli_ae(url, typed, grade)
        assert entered.exit_code == 0, entered.output
        out = json.loads(entered.output)
        refusal = next_infusion(url)
        outcomes.append((out["action"], out["treatment_state"], out["ctcae_term"],
                         refusal.exit_code, json.loads(refusal.output)["error"]["rule"]))
        assert out["coded_as"].startswith(f"{term} (MedDRA ")
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == action and outcomes[0][3] == 3  # the infusion is a deviation


@pytest.mark.parametrize(("synonym", "term", "grade", "action"), SYNONYMS,
                         ids=[s[0] for s in SYNONYMS])
def test_the_import_codes_synonyms_too_and_the_safety_table_has_one_row(
        ledger_url, tmp_path, synonym, term, grade, action):
    started(ledger_url)
    lines = [{"command": "adverse-event", "subject": S, "term": synonym.lower(),
              "grade": grade, "onset": "2025-01-20", "id": "A1"},
             {"command": "adverse-event", "subject": S, "term": term, "grade": grade,
              "onset": "2025-01-21", "id": "A2"}]
    path = tmp_path / "aes.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    result = invoke(["import", str(path)], url=ledger_url)
    assert result.exit_code == 0, result.output

    doc = json.loads(invoke(["patient", S, "--json"], url=ledger_url).output)
    assert [(a["term"], a["graded_as"]) for a in doc["adverse_events"]] == [
        (synonym.lower(), term), (term, term)]
    assert doc["treatment_state"] == {"discontinue": "discontinued",
                                      "interrupt": "interrupted"}[action]
    safety = json.loads(invoke(["safety", "--json"], url=ledger_url, user="mon").output)
    rows = safety["baskets"]["all"]["teae_by_term"]
    assert [(r["term"], r["patients"], r["pct"]) for r in rows] == [(term, 1, 100.0)]


def test_an_unknown_term_is_refused_with_the_closest_terms_and_nothing_written(sqlite_url):
    started(sqlite_url)
    before = store_fingerprint(sqlite_url)
    result = cli_ae(sqlite_url, "xyzzy", 4)
    assert result.exit_code == 2
    error = json.loads(result.output)["error"]
    assert error["code"] == "bad-input" and "closest CTCAE terms" in error["message"]
    misspelt = cli_ae(sqlite_url, "Pnuemonitis", 2)
    assert misspelt.exit_code == 2 and "Pneumonitis" in misspelt.output
    assert store_fingerprint(sqlite_url) == before


def test_other_specify_needs_the_verbatim_term_which_is_kept(sqlite_url):
    started(sqlite_url)
    term = "Eye disorders - Other, specify"
    assert cli_ae(sqlite_url, term, 2).exit_code == 2
    result = cli_ae(sqlite_url, term, 2, "--verbatim", "ocular discomfort")
    assert result.exit_code == 0, result.output
    [ae] = json.loads(invoke(["patient", S, "--json"], url=sqlite_url).output)["adverse_events"]
    assert (ae["graded_as"], ae["verbatim"], ae["soc"]) == (term, "ocular discomfort",
                                                            "Eye disorders")


def test_grades_ctcae_lacks_are_refused_through_the_cli(sqlite_url):
    started(sqlite_url)
    for term, grade in (("Febrile neutropaenia", 2), ("Alopecia", 3), ("Ejection fraction "
                                                                       "decreased", 1)):
        result = cli_ae(sqlite_url, term, grade)
        assert result.exit_code == 2, (term, grade)
        assert json.loads(result.output)["error"]["message"].startswith("grade:")


TERMS = sorted(coding.dictionary().values(), key=lambda t: t.term)


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(term=st.sampled_from(TERMS), grade=st.integers(min_value=1, max_value=5),
       verbatim=st.booleans())
def test_through_the_ledger_only_grades_the_term_list_defines_are_accepted(
        treated_sqlite, term, grade, verbatim):
    driver, url = treated_sqlite
    before = store_fingerprint(url)
    values = {"subject": S, "term": term.term.upper(), "grade": grade, "onset": "2025-01-25"}
    if verbatim:
        values["verbatim"] = "the investigator's words"
    if grade in term.grades and (verbatim or not term.other_specify):
        out = driver.do("adverse-event", **values)
        assert (out["ctcae_term"], out["meddra_code"]) == (term.term, term.meddra_code)
        return
    with pytest.raises(BadInput) as refusal:
        driver.do("adverse-event", **values)
    assert refusal.value.exit_code == 2
    assert refusal.value.field == ("grade" if verbatim or not term.other_specify
                                   else "verbatim")
    assert store_fingerprint(url) == before


@pytest.fixture
def treated_sqlite(sqlite_url):
    ledger = open_ledger(sqlite_url)
    driver = Driver(ledger)
    driver.do("init", actor="admin")
    driver.do("grant", actor="admin", user="dm", role="data-manager")
    driver.enrolled(S)
    driver.do("infuse", subject=S, cycle=1, date="2025-01-15", weight_kg=60, dose_mg=324)
    yield driver, sqlite_url
    ledger.close()


def test_ejection_fraction_decreased_reminds_to_record_the_lvef(driver):
    driver.enrolled(S)
    driver.do("infuse", subject=S, cycle=1, date="2025-01-15", weight_kg=60, dose_mg=324)
    out = driver.do("adverse-event", subject=S, term="LVEF decreased", grade=2,
                    onset="2025-01-25")
    assert (out["action"], out["ctcae_term"]) == ("continue", "Ejection fraction decreased")
    assert "record the LVEF" in out["note"]
    # Heart failure stays with the label: symptomatic (grade >= 2) discontinues.
    out = driver.do("adverse-event", subject=S, term="heart failure", grade=2,
                    onset="2025-01-26")
    assert out["action"] == "discontinue"


# --- before treatment ---------------------------------------------------------------------------


def test_pneumonitis_before_the_first_infusion_is_a_baseline_condition(driver):
    driver.do("register", subject=S, site="S1", consent_date="2025-01-02")
    out = driver.do("adverse-event", subject=S, term="ILD", grade=2, onset="2025-01-04")
    assert (out["action"], out["treatment_state"], out["baseline"]) == (
        "continue", "not started", True)
    driver.do("assess-eligibility", subject=S, date="2025-01-05", her2="positive",
              er="positive", prior_therapy="none", distant_lesions=1,
              all_lesions_curable="yes", lvef=60, ecog=0)
    driver.do("enrol", subject=S, date="2025-01-10", weight_kg=60)
    out = driver.do("infuse", subject=S, cycle=1, date="2025-01-15", weight_kg=60, dose_mg=324)
    assert "deviations" not in out and out["treatment_state"] == "active"
    safety = Reader(driver.ledger, "mon").safety(cutoff=datetime(2025, 2, 28).date())
    assert safety["baskets"]["all"]["teae_by_term"] == []  # medical history, not a TEAE

    # Worsening on treatment: the table acts, and it becomes treatment-emergent at grade 3.
    out = driver.do("update-adverse-event", subject=S, ae_id="AE1", date="2025-01-25", grade=3)
    assert out["action"] == "discontinue"
    safety = Reader(driver.ledger, "mon").safety(cutoff=datetime(2025, 2, 28).date())
    [row] = safety["baskets"]["all"]["teae_by_term"]
    assert (row["term"], row["grade_2"], row["grade_3"]) == ("Pneumonitis", 0, 1)


def test_a_grade_reached_after_the_window_is_not_the_worst_grade_in_the_table(driver):
    driver.enrolled(S)
    driver.do("infuse", subject=S, cycle=1, date="2025-01-15", weight_kg=60, dose_mg=324)
    driver.do("adverse-event", subject=S, term="Nausea", grade=1, onset="2025-01-20",
              related=True)
    driver.do("discontinue", subject=S, date="2025-01-22", reason="by decision")
    # The window closes 30 days after the last treatment (2025-01-15): 2025-02-14.
    driver.do("update-adverse-event", subject=S, ae_id="AE1", date="2025-03-01", grade=3)
    safety = Reader(driver.ledger, "mon").safety(cutoff=datetime(2025, 3, 31).date())
    [row] = safety["baskets"]["all"]["teae_by_term"]
    assert (row["grade_1"], row["grade_3"], row["related"], row["related_pct"]) == (1, 0, 1,
                                                                                    100.0)
    tallies = Reader(driver.ledger, "mon").endpoints(cutoff=datetime(2025, 3, 31).date())
    assert tallies["baskets"]["all"]["safety"]["related"] == 1


# --- serious AEs --------------------------------------------------------------------------------

T1 = datetime(2025, 2, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def timed(ledger_url):
    clock = Clock(T1)
    ledger = new_ledger(ledger_url, clock=clock)
    driver = Driver(ledger)
    driver.enrolled(S)
    driver.do("infuse", subject=S, cycle=1, date="2025-01-15", weight_kg=60, dose_mg=324)
    yield driver, clock
    ledger.close()


def test_saes_are_listed_with_criteria_deadline_and_lateness(timed):
    driver, clock = timed
    # Entered the moment the site knew: due 24 hours later, in time.
    now = driver.do("adverse-event", subject=S, term="Febrile neutropenia", grade=3,
                    onset="2025-02-02", serious=["hospitalisation"])
    assert (now["report_due"], now["entered_late"]) == (T1 + timedelta(hours=24), False)
    # Aware on 2025-01-30 (the whole day), entered on 2025-02-03: late.
    late = driver.do("adverse-event", subject=S, term="Pneumonitis", grade=1,
                     onset="2025-01-29", serious=["life-threatening", "hospitalisation"],
                     aware_date="2025-01-30")
    assert (late["report_due"], late["entered_late"]) == (
        datetime(2025, 2, 1, tzinfo=UTC), True)
    # The flag of the first release: medically important.
    old_flag = driver.do("adverse-event", subject=S, term="Nausea", grade=2,
                         onset="2025-02-01", serious=True, aware_date="2025-02-02")
    assert (old_flag["serious"], old_flag["entered_late"]) == (["medically-important"], False)

    clock.now = T1 + timedelta(hours=1)
    saes = Reader(driver.ledger, "mon").safety()["baskets"]["all"]["serious"]
    assert [(s["ae_id"], s["term"], s["criteria"], s["entered_late"]) for s in saes] == [
        ("AE2", "Pneumonitis", ["life-threatening", "hospitalisation"], True),
        ("AE3", "Nausea", ["medically-important"], False),
        ("AE1", "Febrile neutropenia", ["hospitalisation"], False)]  # by onset
    assert saes[0]["report_due"] == "2025-02-01T00:00:00+00:00"
    # The same list through a replay (a cutoff) and in the report's data.
    replayed = Reader(driver.ledger, "mon").safety(cutoff=datetime(2025, 2, 3).date())
    assert replayed["baskets"]["all"]["serious"] == saes


def test_awareness_before_onset_or_after_the_entry_is_impossible(timed):
    driver, _ = timed
    for aware, rule in (("2025-01-28", "ae.aware_before_onset"),
                        ("2025-02-04", "ae.aware_after_entry")):
        with pytest.raises(RuleViolation) as refusal:
            driver.do("adverse-event", subject=S, term="Nausea", grade=1, onset="2025-01-29",
                      serious=["hospitalisation"], aware_date=aware)
        assert (refusal.value.rule, refusal.value.exit_code) == (rule, 3)


def test_the_safety_text_lists_saes_with_their_deadline(sqlite_url):
    started(sqlite_url)
    result = cli_ae(sqlite_url, "Neutropenia", 4, "--serious", "--serious", "hospitalisation")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["serious"] == ["medically-important", "hospitalisation"]
    text = invoke(["safety"], url=sqlite_url, user="mon").output
    assert "Blood and lymphatic system disorders" not in text  # an investigation, not a SOC
    assert "Investigations" in text and "Neutrophil count decreased" in text
    assert "medically-important, hospitalisation" in text and "in time" in text


# --- the drug's own table -----------------------------------------------------------------------


def test_a_basket_with_another_drug_does_not_inherit_the_t_dxd_table(driver, tmp_path):
    driver.do("amend-protocol", actor="admin", file=amendment(tmp_path), reason="basket V")
    driver.do("register", subject="M22-501", site="S1", consent_date="2025-01-02")
    driver.do("assess-eligibility", subject="M22-501", date="2025-01-03", her2="negative",
              er="positive", prior_therapy="none", distant_lesions=1, all_lesions_curable="yes",
              lvef=60, ecog=0)
    assert driver.do("enrol", subject="M22-501", date="2025-01-10",
                     weight_kg=60)["basket"] == "V"
    driver.do("infuse", subject="M22-501", cycle=1, date="2025-01-15", weight_kg=60,
              dose_mg=360)
    for term, grade in (("Pneumonitis", 2), ("ILD", 3), ("Neutropenia", 4)):
        out = driver.do("adverse-event", subject="M22-501", term=term, grade=grade,
                        onset="2025-01-25")
        assert (out["action"], out["treatment_state"]) == ("continue", "active"), term
    out = driver.do("infuse", subject="M22-501", cycle=2, date="2025-02-05", weight_kg=60,
                    dose_mg=360)
    assert "deviations" not in out
    # A T-DXd subject in the same ledger still gets the label's rules.
    driver.enrolled(S)
    driver.do("infuse", subject=S, cycle=1, date="2025-01-15", weight_kg=60, dose_mg=324)
    out = driver.do("adverse-event", subject=S, term="ILD", grade=2, onset="2025-01-25")
    assert out["action"] == "discontinue"


def test_a_drug_may_carry_its_own_table_and_synonyms(driver, tmp_path):
    own = ('\n[regimens.datod.adverse_events]\nsynonyms = { "Stomatitis NOS" = "Mucositis oral" }'
           '\n[[regimens.datod.adverse_events.rules]]\nterm = "Mucositis oral"\ngrades = [3, 4]'
           '\naction = "interrupt"\nuntil_grade = 1\nthen = "reduce"\n')
    from tests.support.protocols import BASKET_V

    driver.do("amend-protocol", actor="admin", file=amendment(tmp_path, extra=BASKET_V + own),
              reason="basket V with its label")
    driver.do("register", subject="M22-501", site="S1", consent_date="2025-01-02")
    driver.do("assess-eligibility", subject="M22-501", date="2025-01-03", her2="negative",
              er="positive", prior_therapy="none", distant_lesions=1, all_lesions_curable="yes",
              lvef=60, ecog=0)
    driver.do("enrol", subject="M22-501", date="2025-01-10", weight_kg=60)
    driver.do("infuse", subject="M22-501", cycle=1, date="2025-01-15", weight_kg=60,
              dose_mg=360)
    out = driver.do("adverse-event", subject="M22-501", term="stomatitis nos", grade=3,
                    onset="2025-01-25")
    assert (out["action"], out["ctcae_term"]) == ("interrupt", "Mucositis oral")
    out = driver.do("update-adverse-event", subject="M22-501", ae_id="AE1", date="2025-02-01",
                    grade=1)
    assert out["action"] == "resume-reduced"
    # Only that drug's subjects know its synonym.
    driver.enrolled(S)
    with pytest.raises(BadInput, match="Stomatitis NOS"):
        driver.do("adverse-event", subject=S, term="Stomatitis NOS", grade=1,
                  onset="2025-01-12")


def test_an_amendment_naming_a_term_ctcae_lacks_is_refused(driver, tmp_path):
    text = Path(amendment(tmp_path)).read_text(encoding="utf-8").replace(
        '"Neutropenia" = "Neutrophil count decreased"', '"Neutropenia" = "Low neutrophils"')
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BadInput, match="Low neutrophils"):
        driver.do("amend-protocol", actor="admin", file=str(path), reason="x")


# --- ledgers written before coding ---------------------------------------------------------------


def store_version_1_ae(ledger, subject: str, ae_id: str, term: str, grade: int, onset: str,
                       serious: bool) -> None:
    """Append an AE exactly as the first release stored it (no coding, a bare serious flag)."""
    patient = ledger.patient(subject)
    version = patient.version + 1
    state = {
        "originator_id": str(patient.id), "originator_version": version,
        "recorded_at": "2025-02-01T09:00:00+00:00", "actor": "dm", "reason": None,
        "source": None, "prev_hash": event_hash(patient.events[-1]),
        "deviation_reason": None, "deviations": [], "ae_id": ae_id, "term": term,
        "grade": grade, "onset": onset, "serious": serious, "related": None,
        "ctcae_version": "5.0", "action": "continue",
        "event_type": "domain.events:AdverseEventReported",
    }
    ledger.recorder.insert_events([StoredEvent(
        originator_id=patient.id, originator_version=version,
        topic="domain.events:AdverseEventReported", state=canonical(state))])


def test_aes_stored_before_coding_are_coded_on_read_and_history_is_unchanged(ledger_url):
    ledger = new_ledger(ledger_url)
    driver = Driver(ledger)
    driver.enrolled(S)
    driver.do("infuse", subject=S, cycle=1, date="2025-01-15", weight_kg=60, dose_mg=324)
    store_version_1_ae(ledger, S, "AE1", "interstitial lung disease", 1, "2025-01-20", True)
    store_version_1_ae(ledger, S, "AE2", "xyzzy", 4, "2025-01-21", False)
    ledger.close()

    ledger = open_ledger(ledger_url)  # a fresh process reads the old events
    driver = Driver(ledger)
    aes = patient_view(ledger, S)["adverse_events"]
    assert [(a["term"], a["graded_as"], a["soc"], a["serious"]) for a in aes] == [
        ("interstitial lung disease", "Pneumonitis",
         "Respiratory, thoracic and mediastinal disorders", ["medically-important"]),
        ("xyzzy", "xyzzy", None, [])]  # kept as entered: accepted when it was made
    rows = history_view(ledger, S)["entries"][-2:]
    for row, (term, grade, serious) in zip(rows, (("interstitial lung disease", 1, True),
                                                  ("xyzzy", 4, False)), strict=True):
        stored = {k: row["values"][k] for k in ("term", "grade", "serious", "action")}
        assert stored == {"term": term, "grade": grade, "serious": serious,
                          "action": "continue"}
        assert row["values"]["coded_on_read"] is True
    assert verify(ledger).ok  # the chain names the bytes as stored

    # The subject keeps taking entries; the old pneumonitis still holds its interruption.
    with pytest.raises(DeviationRefused):
        driver.do("infuse", subject=S, cycle=2, date="2025-02-05", weight_kg=60, dose_mg=324)
    out = driver.do("resolve-adverse-event", subject=S, ae_id="AE1", date="2025-02-06")
    assert out["action"] == "resume"
    safety = Reader(ledger, "mon").safety(cutoff=datetime(2025, 2, 28).date())
    assert [(r["soc"], r["term"]) for r in safety["baskets"]["all"]["teae_by_term"]] == [
        ("Respiratory, thoracic and mediastinal disorders", "Pneumonitis"),
        ("not coded", "xyzzy")]
    # The read models, kept from the notification log, agree with the replay.
    present = Reader(ledger, "mon").safety()["baskets"]["all"]["teae_by_term"]
    assert present == safety["baskets"]["all"]["teae_by_term"]
    ledger.close()


def test_entries_that_are_not_aes_never_read_the_term_list(sqlite_url):
    started(sqlite_url)
    code = f"""
from m22bol.cli.main import app
from m22bol.domain import coding
import sys
try:
    app()(["--ledger", "{sqlite_url}", "--user", "dm", "infuse", "{S}", "--cycle", "2",
           "--date", "2025-02-05", "--weight-kg", "60", "--dose-mg", "324"],
          standalone_mode=False)
finally:
    print("READ", coding.dictionary.cache_info().currsize, file=sys.stderr)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "M22BOL_PASSWORD": TEST_PASSWORD})
    assert done.returncode == 0, done.stderr
    assert "READ 0" in done.stderr
