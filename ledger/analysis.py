"""Endpoint and safety reports, answered by replaying every subject from the event store.

`known_at` keeps only the events recorded at or before T (entries and corrections alike, so a
corrected value counts as it was known at T), and the protocol in force at T. `cutoff` drops
facts dated after D before any subject is walked, so nothing after the cutoff can shape a
derived value. The projections answer the current-state questions faster; this replay is the
reference they must agree with, and the only way to ask about the past.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from m22bol.domain.errors import BadInput
from m22bol.domain.events import Event, Fact, Registered
from m22bol.domain.patient import Patient, project_patient
from m22bol.domain.protocol import Protocol
from m22bol.domain.rules import endpoints
from m22bol.domain.rules.endpoint_inputs import patient_facts
from m22bol.domain.rules.endpoints import PatientFacts
from m22bol.domain.timeline import State, derive
from m22bol.domain.trial import TRIAL_ID, Trial, project_trial
from m22bol.ledger.app import TrialLedger

# Clavien-Dindo grades in order; "-d" (present at discharge) is counted under its grade.
CLAVIEN_DINDO = ("I", "II", "IIIa", "IIIb", "IVa", "IVb", "V")
CTCAE_GRADES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Walked:
    """One subject as known at T and cut at D: its facts, derived state and endpoint inputs."""

    patient: Patient
    timeline: list[tuple[str, Fact]]
    state: State
    facts: PatientFacts


@dataclass(frozen=True)
class Replay:
    protocol: Protocol
    cutoff: date
    known_at: datetime
    trial: Trial
    subjects: list[Walked]

    @property
    def patients(self) -> list[PatientFacts]:
        return [w.facts for w in self.subjects]

    @property
    def seal(self) -> dict[str, Any] | None:
        """The latest seal known at T, if any."""
        if not self.trial.seals:
            return None
        last = self.trial.seals[-1]
        return {"digest": last.digest, "event_count": last.event_count, "note": last.note,
                "recorded_at": last.recorded_at.isoformat()}


def replay(ledger: TrialLedger, *, known_at: datetime | None = None,
           cutoff: date | None = None) -> Replay:
    """Every subject's endpoint inputs as known at T, cut at D, with the protocol then in force."""
    now = ledger.clock()
    moment = known_at or now
    cutoff = cutoff or now.date()
    today = now.date()
    trial_events: list[Event] = []
    subjects: dict[UUID, list[Event]] = defaultdict(list)
    for _, event in ledger.stored_events():
        if known_at is not None and event.recorded_at > known_at:
            continue
        if event.originator_id == TRIAL_ID:
            trial_events.append(event)
        else:
            subjects[event.originator_id].append(event)
    trial = project_trial(None, trial_events) if trial_events else None
    if trial is None:
        raise BadInput(f"ledger: not initialised at {moment.isoformat()}"
                       if known_at else "ledger: not initialised; run `m22bol init` first",
                       field="known_at" if known_at else "ledger")
    protocol = trial.protocol
    walked = []
    for patient in _patients(subjects.values()):
        timeline = [(k, f) for k, f in patient.timeline() if f.clinical_date <= cutoff]
        state = derive(patient.subject, timeline, protocol, today)
        walked.append(Walked(patient, timeline, state, patient_facts(state, timeline)))
    return Replay(protocol=protocol, cutoff=cutoff, known_at=moment, trial=trial,
                  subjects=walked)


def _patients(groups) -> Iterator[Patient]:
    for events in groups:
        events.sort(key=lambda e: e.originator_version)
        if events and isinstance(events[0], Registered):
            patient = project_patient(None, events)
            if patient is not None:
                yield patient


@dataclass(frozen=True)
class Inputs:
    """What the tallies need: every subject's endpoint facts and the protocol in force."""

    protocol: Protocol
    cutoff: date
    known_at: datetime
    patients: list[PatientFacts]


def inputs(ledger: TrialLedger, *, known_at: datetime | None = None,
           cutoff: date | None = None) -> Inputs | Replay:
    """The current state from the read models (no replay); the past by replaying to T.

    The read model keeps each subject's facts uncut: the tallies apply the cutoff themselves,
    and every derived value in the facts (a scan's response) depends only on earlier facts.
    """
    if known_at is not None:
        return replay(ledger, known_at=known_at, cutoff=cutoff)
    from m22bol.projections.queries import endpoint_inputs

    now = ledger.clock()
    return Inputs(protocol=ledger.require_trial().protocol, cutoff=cutoff or now.date(),
                  known_at=now, patients=endpoint_inputs(ledger))


def endpoints_report(ledger: TrialLedger, *, known_at: datetime | None = None,
                     cutoff: date | None = None) -> dict[str, Any]:
    """The JSON document of spec/endpoints.md."""
    r = inputs(ledger, known_at=known_at, cutoff=cutoff)
    return {
        "cutoff": r.cutoff.isoformat(),
        "known_at": r.known_at.isoformat(),
        "baskets": endpoints.tally(r.patients, r.protocol, r.cutoff),
    }


# --- safety -----------------------------------------------------------------------------------


def safety_report(ledger: TrialLedger, *, known_at: datetime | None = None,
                  cutoff: date | None = None) -> dict[str, Any]:
    """TEAEs by term and worst grade, serious AEs, and the Clavien-Dindo table, per basket.

    Counts are of treated patients (spec/endpoints.md): a patient counts once per term, at the
    worst grade that term reached up to the cutoff. Treatment emergence is decided by
    `endpoints.py`, the one home of that rule. Serious AEs are listed whether treatment-emergent
    or not (flagged), for every enrolled subject; the counts take treatment-emergent ones only.
    """
    return safety_document(inputs(ledger, known_at=known_at, cutoff=cutoff))


def safety_document(r: Inputs | Replay) -> dict[str, Any]:
    """The safety tables of a replay, per basket and for all baskets."""
    scopes = [b.id for b in r.protocol.baskets]
    tables = {scope: _SafetyTable() for scope in [*scopes, "all"]}
    for facts in r.patients:
        timeline = endpoints.as_of(facts, r.cutoff)
        if timeline is None:
            continue
        treated = bool(timeline.infusions)
        for scope in ({facts.basket, "all"} & tables.keys()):
            tables[scope].add(facts, timeline, treated, r)
    return {
        "cutoff": r.cutoff.isoformat(),
        "known_at": r.known_at.isoformat(),
        "baskets": {scope: table.document() for scope, table in tables.items()},
    }


class _SafetyTable:
    def __init__(self) -> None:
        self.treated = 0
        # term -> subject -> worst grade
        self.worst: dict[str, dict[str, int]] = defaultdict(dict)
        self.serious: list[dict[str, Any]] = []
        # grade -> (complications, subjects)
        self.clavien_dindo: dict[str, list[Any]] = {g: [0, set()] for g in CLAVIEN_DINDO}

    def add(self, facts: PatientFacts, timeline, treated: bool, r: Inputs | Replay) -> None:
        emergent = (endpoints.treatment_emergent_ae_ids(facts, r.protocol, r.cutoff)
                    if treated else frozenset())
        for ae in facts.adverse_events:
            if ae.onset > r.cutoff:
                continue
            worst = max(g for d, g in ae.grades if d <= r.cutoff)
            if ae.ae_id in emergent:
                subjects = self.worst[ae.term]
                subjects[facts.subject] = max(worst, subjects.get(facts.subject, 0))
            if ae.serious:
                self.serious.append({
                    "subject": facts.subject, "basket": facts.basket, "ae_id": ae.ae_id,
                    "term": ae.term, "onset": ae.onset.isoformat(), "worst_grade": worst,
                    "treatment_emergent": ae.ae_id in emergent})
        if not treated:
            return
        self.treated += 1
        window = r.protocol.safety.complication_within_days_of_surgery
        for when, grade in timeline.complications:
            if not any(0 <= (when - s).days <= window for s in timeline.surgeries):
                continue
            row = self.clavien_dindo[_clavien_dindo_grade(grade)]
            row[0] += 1
            row[1].add(facts.subject)

    def document(self) -> dict[str, Any]:
        by_term = []
        for term in sorted(self.worst, key=str.casefold):
            worst = self.worst[term].values()
            by_term.append({
                "term": term, "patients": len(worst),
                **{f"grade_{g}": sum(1 for w in worst if w == g) for g in CTCAE_GRADES},
                "grade_3plus": sum(1 for w in worst if w >= 3)})
        return {
            "treated": self.treated,
            "teae_by_term": by_term,
            "serious": sorted(self.serious, key=lambda s: (s["subject"], s["onset"], s["ae_id"])),
            "clavien_dindo": [{"grade": g, "complications": n, "patients": len(who)}
                              for g, (n, who) in self.clavien_dindo.items()],
        }


def _clavien_dindo_grade(grade: str) -> str:
    base = grade.strip().removesuffix("-d")
    for g in CLAVIEN_DINDO:
        if g.casefold() == base.casefold():
            return g
    raise ValueError(f"not a Clavien-Dindo grade: {grade!r}")
