"""Eligibility (spec/trial.md) and basket stratification, read from the protocol.

Every criterion of the protocol in force must be assessed: an assessment without a value the
protocol judges (baseline LVEF, ECOG) is bad input (exit 2) naming what is missing, never
passed by default.
"""

from __future__ import annotations

from datetime import date

from m22bol.domain.errors import BadInput, RuleViolation
from m22bol.domain.events import EligibilityAssessed, Enrolled, Registered
from m22bol.domain.protocol import STRATUM_FIELDS, Protocol, Strata


def missing_criteria(protocol: Protocol, *, lvef: float | None,
                     ecog: int | None) -> tuple[str, ...]:
    """The criteria of the protocol that an assessment leaves unassessed."""
    rules = protocol.eligibility
    return tuple(name for name, judged, value in (
        ("lvef", rules.min_baseline_lvef_pct is not None, lvef),
        ("ecog", rules.max_ecog is not None, ecog)) if judged and value is None)


def failed_criteria(
    protocol: Protocol, *, consent_date: date, date: date, her2: str, er: str,
    prior_therapy: str, distant_lesions: int, all_lesions_curable: bool,
    lvef: float | None = None, ecog: int | None = None,
) -> tuple[str, ...]:
    """Every criterion that fails, each as `criterion: why`; empty means eligible."""
    rules = protocol.eligibility
    strata = {"her2": her2, "er": er, "prior_therapy": prior_therapy}
    failures: list[str] = []
    for name in STRATUM_FIELDS:
        accepted = sorted({getattr(b.strata, name) for b in protocol.baskets})
        if strata[name] not in accepted:
            failures.append(
                f"{name}: {strata[name]} is not accepted (baskets take {', '.join(accepted)})"
            )
    if not failures and protocol.basket_for(Strata(**strata)) is None:
        failures.append("strata: no basket for this combination of HER2, ER and prior therapy")
    if not rules.min_distant_lesions <= distant_lesions <= rules.max_distant_lesions:
        failures.append(
            f"distant_lesions: {distant_lesions} outside "
            f"{rules.min_distant_lesions}-{rules.max_distant_lesions}"
        )
    if not all_lesions_curable:
        failures.append("all_lesions_curable: not every distant lesion is amenable to "
                        "curative-intent local treatment")
    if lvef is not None and rules.min_baseline_lvef_pct is not None and (
            lvef < rules.min_baseline_lvef_pct):
        failures.append(f"lvef: {lvef:g}% below {rules.min_baseline_lvef_pct:g}%")
    if ecog is not None and rules.max_ecog is not None and ecog > rules.max_ecog:
        failures.append(f"ecog: {ecog} above {rules.max_ecog}")
    if consent_date > date:
        failures.append(f"consent: dated {consent_date}, after the assessment")
    return tuple(failures)


def basket_of(protocol: Protocol, fact: EligibilityAssessed) -> str | None:
    basket = protocol.basket_for(
        Strata(her2=fact.her2, er=fact.er, prior_therapy=fact.prior_therapy)
    )
    return basket.id if basket else None


def _registered(state, entry: str, fact: Registered) -> None:
    if state.enrolled or state.eligibility:
        raise RuleViolation(f"{entry}: registration must come first", rule="register.order")


def _assessed(state, entry: str, fact: EligibilityAssessed) -> None:
    if state.enrolled:
        raise RuleViolation(
            f"{entry}: eligibility assessed after enrolment ({state.enrolled})",
            rule="eligibility.after_enrolment", field="date",
        )
    if missing := missing_criteria(state.protocol, lvef=fact.lvef, ecog=fact.ecog):
        raise BadInput(
            f"{entry}: eligibility criteria not assessed: {', '.join(missing)} (protocol "
            f"{state.protocol.version} judges every one; give --{' and --'.join(missing)})",
            rule="eligibility.not_assessed", field=missing[0])
    state.eligibility = fact
    state.failed_criteria = failed_criteria(
        state.protocol, consent_date=state.consent_date, date=fact.date, her2=fact.her2,
        er=fact.er, prior_therapy=fact.prior_therapy, distant_lesions=fact.distant_lesions,
        all_lesions_curable=fact.all_lesions_curable, lvef=fact.lvef, ecog=fact.ecog,
    )
    state.outputs[entry] = {
        "eligible": not state.failed_criteria,
        "failed_criteria": list(state.failed_criteria),
    }


def _enrolled(state, entry: str, fact: Enrolled) -> None:
    if state.enrolled:
        raise RuleViolation(f"{entry}: the subject is already enrolled ({state.enrolled})",
                            rule="enrol.twice")
    if state.eligibility is None:
        raise RuleViolation(f"{entry}: no eligibility assessment on or before {fact.date}",
                            rule="enrol.not_assessed", field="date")
    if state.failed_criteria:
        raise RuleViolation(
            f"{entry}: the subject is not eligible: " + "; ".join(state.failed_criteria),
            rule="enrol.ineligible",
        )
    state.enrolled = fact.date
    state.basket = basket_of(state.protocol, state.eligibility)
    state.outputs[entry] = {"basket": state.basket}


HANDLERS = {Registered: _registered, EligibilityAssessed: _assessed, Enrolled: _enrolled}
