"""What a new user reads: `patient` in sections, `history` folded to the terminal,
`deviations` saying what happened, refusals naming only entries that exist, and subject and AE
ids completed in the shell. The JSON documents stay as they were."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from m22bol.cli.main import app
from m22bol.cli.output import to_json
from m22bol.projections.reader import Reader
from tests.support import ON_SQLITE, TEST_PASSWORD, invoke, store_fingerprint

pytestmark = ON_SQLITE  # what is printed, not where it is stored
S = "M22-001"
SECTIONS = ("subject M22-001", "course", "dosing", "adverse events", "LVEF",
            "scans and responses (RECIST 1.1)", "ctDNA", "local treatment", "timeline")


@pytest.fixture
def treated(driver):
    driver.enrolled(S)  # entries 1-3, enrolled 2025-01-10 at 60 kg
    driver.do("scan", subject=S, date="2025-01-11", target=["L1:liver:30"])  # 4
    driver.do("infuse", subject=S, cycle=1, date="2025-01-13", weight_kg=60, dose_mg=324.0)
    driver.do("adverse-event", subject=S, term="Nausea", grade=1, onset="2025-01-15")  # 6
    driver.do("infuse", subject=S, cycle=2, date="2025-02-03", weight_kg=60, dose_mg=250.0,
              deviation_reason="pharmacy prepared the wrong bag")  # 7
    return driver


def _run(url: str, *args: str, env: dict | None = None, user: str = "mon"):
    return CliRunner(env={"COLUMNS": None, "M22BOL_PASSWORD": TEST_PASSWORD, **(env or {})}).invoke(
        app(), ["--ledger", url, "--user", user, *args], catch_exceptions=False)


def test_patient_reads_in_labelled_sections_without_python_reprs(treated):
    text = _run(treated.ledger.url, "patient", S).output
    lines = text.splitlines()
    assert [t for t in SECTIONS if t in lines] == list(SECTIONS)
    assert "{'" not in text and "[{" not in text and "None" not in text
    assert re.search(r"dose level\s+5\.4 mg/kg", text)
    assert re.search(r"AE1\s+Nausea\s+1\s+1\s+2025-01-15", text)


def test_the_json_of_patient_is_the_readers_document_unchanged(treated):
    shown = json.loads(_run(treated.ledger.url, "patient", S, "--json").output)
    assert shown == json.loads(to_json(Reader(treated.ledger, "mon").patient(S)))


def test_history_folds_to_the_terminal_and_stays_whole_in_a_pipe(treated):
    folded = _run(treated.ledger.url, "history", S, env={"COLUMNS": "120"}).output
    assert max(len(line) for line in folded.splitlines()) <= 120
    piped = _run(treated.ledger.url, "history", S).output
    # One line per entry when piped: grep finds an entry with everything it says.
    assert re.search(r"M22-001#6 .*term=Nausea.*meddra_code=10028813", piped)


def test_deviations_say_what_happened_then_who_accepted_it_and_why(treated):
    text = _run(treated.ledger.url, "deviations").output
    assert text.splitlines()[0].startswith(
        f"{S}#7: cycle 2: 250 mg given, expected 324.00 mg")
    assert "[dose.out_of_tolerance]" in text
    assert re.search(r"accepted by dm on \d{4}-\d\d-\d\d \d\d:\d\d: pharmacy prepared the "
                     r"wrong bag", text)


def test_a_refusal_never_names_the_entry_it_would_have_written(treated):
    url = treated.ledger.url
    before = store_fingerprint(url)
    refused = invoke(["infuse", S, "--cycle", "4", "--date", "2025-02-24", "--weight-kg", "60",
                      "--dose-mg", "324"], url=url)
    assert refused.exit_code == 3
    assert "cycle 4 on 2025-02-24 skips a cycle; the next cycle is 3" in refused.output
    assert f"{S}#8" not in refused.output  # the id it would have had: never written
    assert store_fingerprint(url) == before


def test_a_refused_retraction_names_the_later_entry_to_deal_with_first(treated):
    url = treated.ledger.url
    before = store_fingerprint(url)
    refused = invoke(["retract", S, f"{S}#3", "--reason", "enrolled in error"], url=url)
    assert refused.exit_code == 3
    # The first infusion (#5) rests on the enrolment (#3).
    assert (f"{S}#5 depends on {S}#3: correct or retract {S}#5 before retracting {S}#3"
            in refused.output)
    assert store_fingerprint(url) == before


def test_subject_ids_and_ae_ids_complete_in_the_shell(treated):
    def complete(*words: str) -> list[str]:
        env = {"_M22BOL_COMPLETE": "bash_complete", "COMP_WORDS": " ".join(["m22bol", *words]),
               "COMP_CWORD": str(len(words)), "M22BOL_LEDGER": treated.ledger.url,
               "M22BOL_USER": "mon", "M22BOL_PASSWORD": TEST_PASSWORD}
        done = CliRunner(env=env).invoke(app(), [], prog_name="m22bol")
        return [line.partition(",")[2] for line in done.output.splitlines() if line]

    assert complete("patient", "M22") == [S]
    assert complete("infuse", "X") == []
    assert complete("update-adverse-event", S, "A") == ["AE1"]
    assert "positive" in complete("assess-eligibility", S, "--her2", "")


def test_completion_offers_a_user_limited_to_sites_only_their_subjects(treated):
    from tests.support import set_passwords

    treated.do("grant", actor="admin", user="mon2", role="monitor", site="S2")
    set_passwords(treated.ledger, ["mon2"])

    def complete(user: str, *words: str) -> list[str]:
        env = {"_M22BOL_COMPLETE": "bash_complete", "COMP_WORDS": " ".join(["m22bol", *words]),
               "COMP_CWORD": str(len(words)), "M22BOL_LEDGER": treated.ledger.url,
               "M22BOL_USER": user, "M22BOL_PASSWORD": TEST_PASSWORD}
        done = CliRunner(env=env).invoke(app(), [], prog_name="m22bol")
        return [line.partition(",")[2] for line in done.output.splitlines() if line]

    assert complete("mon", "patient", "M22") == [S]  # S is at site S1
    assert complete("mon2", "patient", "M22") == []
    assert complete("mon2", "update-adverse-event", S, "A") == []
