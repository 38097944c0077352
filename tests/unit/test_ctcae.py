"""The CTCAE v5.0 term list as shipped, coding against it, and the protocol's AE sections."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m22bol.domain import coding
from m22bol.domain.commands import parse_command
from m22bol.domain.errors import BadInput
from m22bol.domain.protocol import bundled_protocol_text, parse_protocol

SHARED = Path("/work/shared/ctcae-5.0/ctcae-5.0.csv")
PROTOCOL = parse_protocol(bundled_protocol_text())
SYNONYMS = PROTOCOL.synonyms("I")
TERMS = sorted(coding.dictionary().values(), key=lambda t: t.term)
OTHER = [t for t in TERMS if t.other_specify]
PLAIN = [t for t in TERMS if not t.other_specify]


def test_the_term_list_is_complete_and_as_published():
    assert len(TERMS) == 837
    assert len({t.meddra_code for t in TERMS}) == 837
    assert {t.soc for t in TERMS} == set(coding.SOC_ORDER)
    assert len(OTHER) == 26  # one "Other, specify" per SOC
    if SHARED.exists():  # the team's reviewed copy, where the repository sits beside it
        with SHARED.open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert {(int(r["meddra_code"]), r["soc"], r["term"],
                 frozenset(int(g) for g in r["grades"].split(","))) for r in rows} == {
            (t.meddra_code, t.soc, t.term, t.grades) for t in TERMS}


@pytest.mark.parametrize(("term", "code", "grades"), [
    ("Pneumonitis", 10035742, {1, 2, 3, 4, 5}),
    ("Febrile neutropenia", 10016288, {3, 4, 5}),
    ("Ejection fraction decreased", 10050528, {2, 3, 4}),
    ("Eosinophilia", 10014950, {1, 3}),
    ("Asystole", 10003586, {1, 4, 5}),
    ("Death NOS", 10011914, {5}),
])
def test_spot_checks_against_the_published_sheet(term, code, grades):
    found = coding.term(term)
    assert (found.meddra_code, set(found.grades)) == (code, grades)


@given(st.sampled_from(PLAIN), st.integers(min_value=1, max_value=5),
       st.sampled_from([str, str.upper, str.lower, lambda s: f"  {s} "]))
def test_grades_the_term_list_defines_are_accepted_the_others_refused(term, grade, spell):
    coded = coding.code(spell(term.term), SYNONYMS)
    assert coded.term == term and coded.synonym is None
    if grade in term.grades:
        coding.check_grade(coded.term, grade)
    else:
        with pytest.raises(BadInput) as refusal:
            coding.check_grade(coded.term, grade)
        assert refusal.value.exit_code == 2 and refusal.value.field == "grade"


@given(st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "Zs")),
               min_size=1, max_size=40))
def test_unknown_strings_are_refused_with_three_closest_terms(text):
    if coding.lookup(text) is not None or coding.key(text) in SYNONYMS:
        return
    with pytest.raises(BadInput) as refusal:
        coding.code(text, SYNONYMS)
    assert refusal.value.exit_code == 2 and refusal.value.field == "term"
    suggestions = coding.suggest(text)
    assert len(suggestions) == 3
    assert all(s in refusal.value.message for s in suggestions)


def test_a_misspelling_is_refused_and_the_intended_term_suggested():
    with pytest.raises(BadInput, match="closest CTCAE terms: Pneumonitis"):
        coding.code("pneumonitiss", SYNONYMS)


@given(st.sampled_from(OTHER))
def test_other_specify_needs_the_verbatim_term(term):
    with pytest.raises(BadInput) as refusal:
        coding.code(term.term.lower(), SYNONYMS)
    assert refusal.value.field == "verbatim"
    with pytest.raises(BadInput):
        coding.code(term.term, SYNONYMS, verbatim="   ")
    assert coding.code(term.term, SYNONYMS, verbatim="a words of the investigator").term == term


@pytest.mark.parametrize(("typed", "coded"), [
    ("ILD", "Pneumonitis"), ("ild", "Pneumonitis"), ("Interstitial LUNG disease", "Pneumonitis"),
    ("NEUTROPENIA", "Neutrophil count decreased"), ("thrombocytopenia", "Platelet count decreased"),
    ("Febrile Neutropaenia", "Febrile neutropenia"), ("diarrhoea", "Diarrhea"),
])
def test_synonyms_code_to_their_term_in_any_case(typed, coded):
    found = coding.code(typed, SYNONYMS)
    assert (found.term.term, found.synonym) == (coded, typed)


def test_the_bundled_protocol_names_only_ctcae_terms_and_grades():
    PROTOCOL.check_coding()
    table = PROTOCOL.ae_table("I")
    assert table.rule_for("Pneumonitis", 2).action == "discontinue"
    assert table.rule_for("Pneumonitis", 5) is None  # grade 5 is every drug's: a death
    assert PROTOCOL.ae_table(None) is None


@pytest.mark.parametrize(("section", "message"), [
    ('[adverse_events.synonyms]\n"Neutro" = "Neutropenia"\n', "not a CTCAE v5.0 term"),
    ('[adverse_events.synonyms]\n"nausea" = "Vomiting"\n', "itself a CTCAE term"),
    ('[adverse_events.synonyms]\n"Lung" = "pneumonitis"\n', "did you mean 'Pneumonitis'"),
])
def test_a_protocol_naming_what_ctcae_lacks_is_refused(section, message):
    text = bundled_protocol_text().replace("[adverse_events.synonyms]\n", section, 1)
    with pytest.raises(BadInput, match=message):
        parse_protocol(text).check_coding()


def test_a_rule_on_a_grade_the_term_lacks_is_refused():
    text = bundled_protocol_text().replace('term = "Febrile neutropenia"\ngrades = [3, 4]',
                                           'term = "Febrile neutropenia"\ngrades = [2, 3]')
    with pytest.raises(BadInput, match="no grade"):
        parse_protocol(text).check_coding()


def test_a_protocol_written_before_the_ae_sections_keeps_the_label_table_of_its_drug():
    text = bundled_protocol_text()
    legacy = text[:text.index("# Adverse events are coded")] + text[text.index("[response]"):]
    cut = legacy.index("\n# The T-DXd label's AE table")
    legacy = legacy[:cut] + legacy[legacy.index("\n[[baskets]]"):]
    assert "adverse_events" not in legacy
    old = parse_protocol(legacy)
    assert old.ae_table("I") == PROTOCOL.ae_table("I")
    assert old.synonyms("I") == SYNONYMS


@pytest.mark.parametrize(("given_", "criteria"), [
    (True, ("medically-important",)), (False, ()), ("death", ("death",)),
    (["hospitalisation", "life-threatening", "hospitalisation"],
     ("hospitalisation", "life-threatening")),
])
def test_seriousness_takes_ich_e2a_criteria_and_the_old_flag(given_, criteria):
    command = parse_command("adverse-event", {"subject": "S1", "term": "Nausea", "grade": 1,
                                              "onset": "2025-01-02", "serious": given_})
    assert command.serious == criteria


def test_an_unknown_criterion_is_bad_input():
    with pytest.raises(BadInput, match="serious"):
        parse_command("adverse-event", {"subject": "S1", "term": "Nausea", "grade": 1,
                                        "onset": "2025-01-02", "serious": ["hospitalised"]})


def test_nothing_reads_the_term_list_until_an_ae_needs_it():
    # A fresh process: loading the protocol and walking a subject without AEs leaves the
    # term list unread.
    code = """
from m22bol.domain import coding
from m22bol.domain.protocol import bundled_protocol_text, parse_protocol
p = parse_protocol(bundled_protocol_text())
p.synonyms("I")
assert coding.dictionary.cache_info().currsize == 0, "read too early"
coding.code("ILD", p.synonyms("I"))
assert coding.dictionary.cache_info().currsize == 1
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
