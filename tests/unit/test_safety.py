"""The label's tables as pure functions: CTCAE terms and grades, LVEF bands."""

from __future__ import annotations

import pytest

from m22bol.domain import coding
from m22bol.domain.errors import BadInput
from m22bol.domain.protocol import bundled_protocol_text, parse_protocol
from m22bol.domain.rules.safety import lvef_band

SYNONYMS = parse_protocol(bundled_protocol_text()).synonyms("I")


@pytest.mark.parametrize(("term", "graded_as"), [
    ("Interstitial lung disease", "Pneumonitis"),
    ("  interstitial   LUNG disease ", "Pneumonitis"),
    ("PNEUMONITIS", "Pneumonitis"),
    ("neutrophil count decreased", "Neutrophil count decreased"),
    ("Hiccups", "Hiccups"),
])
def test_terms_are_matched_case_insensitively_and_ild_is_pneumonitis(term, graded_as):
    assert coding.code(term, SYNONYMS).term.term == graded_as


@pytest.mark.parametrize(("term", "grades"), [
    ("Febrile neutropenia", {3, 4, 5}),
    ("Alopecia", {1, 2}),
    ("Nausea", {1, 2, 3}),
    ("Fatigue", {1, 2, 3}),
    ("Ejection fraction decreased", {2, 3, 4}),
    ("Interstitial lung disease", {1, 2, 3, 4, 5}),
    ("Neutrophil count decreased", {1, 2, 3, 4}),
    ("Platelet count decreased", {1, 2, 3, 4}),
    ("Heart failure", {1, 2, 3, 4, 5}),
    ("Hiccups", {1, 2, 3}),
])
def test_only_the_grades_ctcae_defines_for_a_term_are_accepted(term, grades):
    coded = coding.code(term, SYNONYMS).term
    for grade in range(1, 6):
        if grade in grades:
            coding.check_grade(coded, grade)
        else:
            with pytest.raises(BadInput):
                coding.check_grade(coded, grade)


# (LVEF now, baseline) -> row of the LVEF table
@pytest.mark.parametrize(("percent", "baseline", "band"), [
    (60, 60, "continue"),
    (46, 65, "continue"),      # > 45 %, drop 19
    (45.5, 65.5, "continue"),  # > 45 %, drop exactly 20
    (46, 66.5, "confirm"),     # > 45 %, drop 20.5
    (45, 54, "watch"),         # 40-45 %, drop 9
    (40, 49.5, "watch"),       # 40 % is in the 40-45 band
    (45, 55, "recover"),       # drop exactly 10
    (40, 60, "recover"),       # drop exactly 20
    (42, 62.5, "confirm"),     # drop 20.5
    (39.9, 45, "confirm"),     # < 40 %, whatever the drop
    (20, 22, "confirm"),
    (44, None, "watch"),       # no baseline: the absolute bands only
    (38, None, "confirm"),
    (50, None, "continue"),
])
def test_lvef_bands(percent, baseline, band):
    assert lvef_band(percent, baseline) == band
