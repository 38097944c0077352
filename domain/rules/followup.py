"""End-of-follow-up facts: contact, death, withdrawal of consent, subsequent therapy.

A new anticancer therapy (`subsequent-therapy`) needs an enrolled subject; the first one
censors progression-free survival (`endpoints.progression_free`). Later ones are kept as facts.
"""

from __future__ import annotations

from datetime import date

from m22bol.domain.errors import RuleViolation
from m22bol.domain.events import (
    ContactRecorded,
    DeathRecorded,
    SubsequentTherapyStarted,
    Withdrawn,
)

_THERAPIES = "subsequent_therapy"


def _death(state, entry: str, fact: DeathRecorded) -> None:
    if state.death:
        raise RuleViolation(f"{entry}: the subject's death is already recorded ({state.death})",
                            rule="death.twice", field="date")
    state.death = fact.date


def _withdrawn(state, entry: str, fact: Withdrawn) -> None:
    if state.withdrawn:
        raise RuleViolation(f"{entry}: withdrawal is already recorded ({state.withdrawn})",
                            rule="withdraw.twice", field="date")
    state.withdrawn = fact.date


def _contact(state, entry: str, fact: ContactRecorded) -> None:
    # Known alive on that date: only the walk's last_fact_date needs it.
    return None


def _subsequent_therapy(state, entry: str, fact: SubsequentTherapyStarted) -> None:
    if state.enrolled is None:
        raise RuleViolation(f"{entry}: a subsequent therapy on {fact.date} needs an enrolled "
                            "subject", rule="subsequent_therapy.before_enrolment", field="date")
    therapies = state.part(_THERAPIES, list)
    therapies.append((fact.date, fact.therapy))
    state.outputs[entry] = {"subsequent_therapy": subsequent_therapy(state)}


def subsequent_therapy(state) -> date | None:
    """The start of the first new anticancer therapy walked so far."""
    return min((d for d, _ in state.part(_THERAPIES, list)), default=None)


HANDLERS = {DeathRecorded: _death, Withdrawn: _withdrawn, ContactRecorded: _contact,
            SubsequentTherapyStarted: _subsequent_therapy}
