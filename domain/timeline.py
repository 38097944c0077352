"""Walk a subject's effective timeline in clinical order and derive everything from it.

Each fact is checked against the state built from the facts before it. An impossible fact
raises `RuleViolation`; a protocol deviation is noted in `state.deviations` and the caller
decides whether a deviation reason covers it. The rule modules in `domain/rules` own the
handlers; this module owns only the order of the walk and the checks every fact shares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from copy import copy
from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Any

from m22bol.domain.errors import LedgerError, RuleViolation
from m22bol.domain.events import (
    ComplicationRecorded,
    ContactRecorded,
    DeathRecorded,
    Deviation,
    DoseReduced,
    EligibilityAssessed,
    Fact,
    InfusionGiven,
    LocalTreatmentCompleted,
    PathologyReported,
    RadiotherapyGiven,
    Registered,
    SurgeryPerformed,
    TreatmentDiscontinued,
    TreatmentInterrupted,
    TreatmentResumed,
)
from m22bol.domain.protocol import Protocol

if TYPE_CHECKING:
    from m22bol.domain.patient import Patient

# Facts that need an enrolled subject (spec/treatment.md, "Impossible facts"); also the
# facts the treatment read model lists.
TREATMENT_FACTS = (
    InfusionGiven, TreatmentInterrupted, TreatmentResumed, DoseReduced, TreatmentDiscontinued,
    SurgeryPerformed, ComplicationRecorded, RadiotherapyGiven, LocalTreatmentCompleted,
    PathologyReported,
)
# What may still be recorded after withdrawal of consent.
AFTER_WITHDRAWAL = (DeathRecorded, ContactRecorded)


@dataclass
class State:
    """Everything derived from a subject's timeline, as of the last fact walked."""

    protocol: Protocol
    today: date
    subject: str
    site: str | None = None
    consent_date: date | None = None
    eligibility: EligibilityAssessed | None = None
    failed_criteria: tuple[str, ...] = ()
    basket: str | None = None
    enrolled: date | None = None
    death: date | None = None
    withdrawn: date | None = None
    last_fact_date: date | None = None
    deviations: list[Deviation] = field(default_factory=list)
    # What the ledger concluded at each entry, for the person at the keyboard.
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Rule modules keep their own derived state here, keyed by module.
    parts: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.death:
            return "dead"
        if self.withdrawn:
            return "withdrawn"
        if self.enrolled:
            return "enrolled"
        if self.eligibility is not None and self.failed_criteria:
            return "screen-failed"
        return "registered"

    def deviation(self, entry: str, rule: str, message: str) -> None:
        self.deviations.append(Deviation(entry=entry, rule=rule, message=message))

    def part(self, key: str, factory: Callable[[], Any]) -> Any:
        if key not in self.parts:
            self.parts[key] = factory()
        return self.parts[key]


Handler = Callable[[State, str, Fact], None]


def _handlers() -> dict[type[Fact], Handler]:
    # Imported here so each rule module can import State without a cycle.
    from m22bol.domain.rules import assessments, eligibility, followup, local, safety, treatment

    table: dict[type[Fact], Handler] = {}
    for module in (eligibility, treatment, safety, local, assessments, followup):
        table.update(module.HANDLERS)
    return table


_HANDLERS: dict[type[Fact], Handler] | None = None


def derive(
    subject: str, entries: Sequence[tuple[str, Fact]], protocol: Protocol, today: date
) -> State:
    """The state after every fact, walked in clinical order (entry order breaks ties)."""
    return finish(walk(subject, entries, protocol, today))


def walk(
    subject: str, entries: Sequence[tuple[str, Fact]], protocol: Protocol, today: date
) -> State:
    """The state after every fact, before the finishers: a walk `extend` can resume."""
    state = State(protocol=protocol, today=today, subject=subject)
    # The registration goes first whatever its date: it sets the consent date every other
    # fact is checked against.
    order = sorted(range(len(entries)), key=lambda i: (
        not isinstance(entries[i][1], Registered), entries[i][1].clinical_date, i))
    for i in order:
        _step(state, *entries[i])
    return state


def resumes(state: State, fact: Fact, protocol: Protocol, today: date) -> bool:
    """Whether walking `state` on by `fact` gives what a full walk with it would: the fact
    sorts last (a new entry comes last among facts of its date), under the same protocol, and
    today has not gone back (facts walked against a later today could now be in the future;
    `today` is read only by checks that a later today still passes)."""
    return (not isinstance(fact, Registered) and state.protocol is protocol
            and today >= state.today and state.last_fact_date is not None
            and fact.clinical_date >= state.last_fact_date)


def extend(state: State, entry: str, fact: Fact, today: date) -> None:
    """Walk one more fact, in place (only where `resumes` holds). A refusal leaves `state`
    part-changed: the caller drops it."""
    state.today = today
    _step(state, entry, fact)


def _step(state: State, entry: str, fact: Fact) -> None:
    global _HANDLERS
    if _HANDLERS is None:
        _HANDLERS = _handlers()
    try:
        _check_dates(state, entry, fact)
        handler = _HANDLERS.get(type(fact))
        if handler is not None:
            handler(state, entry, fact)
    except LedgerError as error:
        # Which fact refused: a retraction's refusal names the later entry to deal with.
        error.entry = error.entry or entry
        raise
    state.last_fact_date = max(filter(None, (state.last_fact_date, fact.clinical_date)))


def finish(walked: State) -> State:
    """The walk concluded: the finishers run on a copy, so `walked` can still be extended.

    The copy is shallow (the lists and dicts each rule module keeps are shared), so a finisher
    may set attributes of a part and add deviations but never change a part's containers in
    place; a finished state is read before its walk goes on, never after."""
    state = replace(walked, deviations=list(walked.deviations),
                    parts={key: copy(part) for key, part in walked.parts.items()})
    for handler in _finishers():
        handler(state)
    return state


def walked_state(patient: Patient, protocol: Protocol, today: date) -> State:
    """The subject's state now: the patient's kept walk finished where it is current, else a
    full walk, which the patient then keeps."""
    walked = patient.kept_walk(protocol, today)
    if walked is None:
        walked = walk(patient.subject, patient.timeline(), protocol, today)
        patient.keep_walk(walked)
    state = finish(walked)
    state.today = today
    return state


def _finishers() -> list[Callable[[State], None]]:
    from m22bol.domain.rules import local, safety, treatment

    return [treatment.finish, safety.finish, local.finish]


def _check_dates(state: State, entry: str, fact: Fact) -> None:
    when = fact.clinical_date
    name = type(fact).__name__
    if isinstance(fact, Registered):
        state.consent_date = fact.consent_date
        state.site = fact.site
    if when > state.today:
        raise RuleViolation(
            f"{entry}: {name} dated {when} is after today ({state.today})",
            rule="date.in_future", field=fact.date_field,
        )
    if state.consent_date and when < state.consent_date:
        raise RuleViolation(
            f"{entry}: {name} dated {when} is before consent ({state.consent_date})",
            rule="date.before_consent", field=fact.date_field,
        )
    if state.death and when > state.death:
        raise RuleViolation(
            f"{entry}: {name} dated {when} is after the subject's death ({state.death})",
            rule="date.after_death", field=fact.date_field,
        )
    if state.withdrawn and when > state.withdrawn and not isinstance(fact, AFTER_WITHDRAWAL):
        raise RuleViolation(
            f"{entry}: {name} dated {when} is after withdrawal of consent ({state.withdrawn})",
            rule="date.after_withdrawal", field=fact.date_field,
        )
    if isinstance(fact, TREATMENT_FACTS) and state.enrolled is None:
        raise RuleViolation(
            f"{entry}: {name} dated {when} comes before enrolment",
            rule="treatment.before_enrolment", field=fact.date_field,
        )


def summary(state: State) -> dict[str, Any]:
    """The subject's current state in primitive values; each rule module adds its part."""
    from m22bol.domain.rules import assessments, local, safety, treatment

    document: dict[str, Any] = {
        "subject": state.subject,
        "site": state.site,
        "status": state.status,
        "basket": state.basket,
        "consent_date": state.consent_date,
        "enrolled": state.enrolled,
        "failed_criteria": list(state.failed_criteria),
        "death": state.death,
        "withdrawn": state.withdrawn,
        "last_known_alive": state.last_fact_date,
    }
    for module in (treatment, safety, local, assessments):
        summarise = getattr(module, "summarise", None)
        if summarise:
            document.update(summarise(state))
    document["deviations"] = [d.model_dump() for d in state.deviations]
    return document
