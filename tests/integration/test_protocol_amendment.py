"""A protocol amendment adds a basket as data: no code change, and new subjects enter it."""

import pytest

from m22bol.domain.errors import BadInput, RuleViolation
from tests.support.protocols import BASKET_V, amendment


def test_amendment_adds_basket_v_and_new_subjects_enter_it(driver, tmp_path):
    before = driver.do("register", subject="M22-101", site="S1", consent_date="2025-01-02")
    driver.do("assess-eligibility", subject="M22-101", date="2025-01-03", her2="negative",
              er="positive", prior_therapy="none", distant_lesions=1, all_lesions_curable="yes",
              lvef=60, ecog=0)
    assert before["entry"] == "M22-101#1"
    with pytest.raises(RuleViolation, match="not eligible"):
        driver.do("enrol", subject="M22-101", date="2025-01-04", weight_kg=70)

    out = driver.do("amend-protocol", actor="admin", file=amendment(tmp_path),
                    reason="basket V opened")
    assert out["protocol_version"] == "2.0"

    driver.do("register", subject="M22-102", site="S1", consent_date="2025-02-02")
    assessed = driver.do("assess-eligibility", subject="M22-102", date="2025-02-03",
                         her2="negative", er="positive", prior_therapy="none",
                         distant_lesions=2, all_lesions_curable="yes", lvef=60, ecog=0)
    assert assessed["eligible"] is True
    assert driver.do("enrol", subject="M22-102", date="2025-02-04", weight_kg=70)["basket"] == "V"
    # Subjects of the first version keep their baskets.
    assert driver.enrolled("M22-103", er="negative")["basket"] == "II"
    trial = driver.ledger.trial()
    assert [v for v, _, _ in trial.protocol_texts] == ["1.0", "2.0"]
    assert [b.id for b in trial.protocol.baskets] == ["I", "II", "III", "IV", "V"]


def test_amendment_is_validated_and_needs_admin(driver, tmp_path):
    from m22bol.domain.errors import NotPermitted

    with pytest.raises(NotPermitted):
        driver.do("amend-protocol", actor="dm", file=amendment(tmp_path), reason="x")
    clash = BASKET_V.replace('her2 = "negative"', 'her2 = "positive"').replace(
        'er = "positive"', 'er = "negative"')
    with pytest.raises(BadInput, match="share the same strata"):
        driver.do("amend-protocol", actor="admin", file=amendment(tmp_path, extra=clash),
                  reason="x")
    with pytest.raises(RuleViolation, match="already registered"):
        driver.do("amend-protocol", actor="admin", file=amendment(tmp_path, version="1.0"),
                  reason="x")
    with pytest.raises(BadInput, match="cannot read"):
        driver.do("amend-protocol", actor="admin", file=str(tmp_path / "missing.toml"),
                  reason="x")
