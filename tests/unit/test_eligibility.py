"""Eligibility and stratification rules, driven by hypothesis against spec/trial.md."""

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from m22bol.domain.protocol import Strata, bundled_protocol_text, parse_protocol
from m22bol.domain.rules.eligibility import failed_criteria, missing_criteria

PROTOCOL = parse_protocol(bundled_protocol_text())
TABLE = {  # spec/trial.md: (ER, prior therapy) -> basket, all HER2-positive
    ("positive", "none"): "I", ("negative", "none"): "II",
    ("positive", "chemo-anti-her2"): "III", ("negative", "chemo-anti-her2"): "IV",
}

SCREENING = st.fixed_dictionaries({
    "her2": st.sampled_from(["positive", "negative"]),
    "er": st.sampled_from(["positive", "negative"]),
    "prior_therapy": st.sampled_from(["none", "chemo-anti-her2"]),
    "distant_lesions": st.integers(0, 8),
    "all_lesions_curable": st.booleans(),
    "lvef": st.none() | st.floats(20, 80),
    "ecog": st.none() | st.integers(0, 4),
    "consent_offset": st.integers(-5, 30),
})


@given(SCREENING)
def test_eligible_exactly_when_every_criterion_holds(s):
    assessed = date(2025, 3, 1)
    failures = failed_criteria(
        PROTOCOL, consent_date=assessed - timedelta(days=s["consent_offset"]), date=assessed,
        her2=s["her2"], er=s["er"], prior_therapy=s["prior_therapy"],
        distant_lesions=s["distant_lesions"], all_lesions_curable=s["all_lesions_curable"],
        lvef=s["lvef"], ecog=s["ecog"],
    )
    expected = {
        "her2": s["her2"] != "positive",
        "distant_lesions": not 1 <= s["distant_lesions"] <= 3,
        "all_lesions_curable": not s["all_lesions_curable"],
        "lvef": s["lvef"] is not None and s["lvef"] < 50,
        "ecog": s["ecog"] is not None and s["ecog"] > 1,
        "consent": s["consent_offset"] < 0,
    }
    assert {f.split(":")[0] for f in failures} == {k for k, v in expected.items() if v}


@given(st.sampled_from(sorted(TABLE)))
def test_basket_follows_from_the_strata_alone(key):
    er, prior = key
    basket = PROTOCOL.basket_for(Strata(her2="positive", er=er, prior_therapy=prior))
    assert basket is not None and basket.id == TABLE[key]
    assert PROTOCOL.basket_for(Strata(her2="negative", er=er, prior_therapy=prior)) is None


def test_every_criterion_the_protocol_judges_must_be_assessed():
    assert missing_criteria(PROTOCOL, lvef=None, ecog=None) == ("lvef", "ecog")
    assert missing_criteria(PROTOCOL, lvef=55, ecog=None) == ("ecog",)
    assert missing_criteria(PROTOCOL, lvef=55, ecog=0) == ()
    no_lvef = PROTOCOL.model_copy(update={"eligibility": PROTOCOL.eligibility.model_copy(
        update={"min_baseline_lvef_pct": None})})
    assert missing_criteria(no_lvef, lvef=None, ecog=1) == ()
