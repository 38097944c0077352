"""End-of-follow-up facts: contact, death, withdrawal of consent."""

from __future__ import annotations

from m22bol.domain.errors import RuleViolation
from m22bol.domain.events import ContactRecorded, DeathRecorded, Withdrawn


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


HANDLERS = {DeathRecorded: _death, Withdrawn: _withdrawn, ContactRecorded: _contact}
