"""Answers read by replaying the events: the past (`--known-at`) and a data cutoff.

`known_at` keeps only the events recorded at or before T (entries and corrections alike, so a
corrected value counts as it was known at T), and the protocol in force at T. `cutoff` drops
facts dated after D before any subject is walked, so nothing after the cutoff can shape a
derived value. The read models answer the present faster; this replay is the reference they
must agree with, and the only way to ask about the past.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from m22bol.domain import clarifications
from m22bol.domain.errors import BadInput
from m22bol.domain.events import EntryCorrected, EntryRetracted, Event, Fact, Registered
from m22bol.domain.patient import Patient, entry_id, project_patient
from m22bol.domain.protocol import Protocol
from m22bol.domain.rules.endpoint_inputs import patient_facts
from m22bol.domain.rules.endpoints import PatientFacts
from m22bol.domain.timeline import State, derive, summary
from m22bol.domain.trial import TRIAL_ID, Trial, project_trial
from m22bol.ledger.app import TrialLedger
from m22bol.projections.documents import annotate_patient, status_counts


def as_known_at(patient: Patient, known_at: datetime | None) -> Patient | None:
    """The subject as the ledger showed it at `known_at`: later entries left out."""
    if known_at is None:
        return patient
    kept = [e for e in patient.events if e.recorded_at <= known_at]
    return project_patient(None, kept) if kept else None


def trial_as_known_at(trial: Trial, known_at: datetime | None) -> Trial:
    """The trial as it stood at `known_at`: the protocol then in force, the grants then held."""
    if known_at is None:
        return trial
    kept = [e for e in trial.events if e.recorded_at <= known_at]
    if not kept:
        raise BadInput(f"known-at: the ledger was not initialised at {known_at}",
                       field="known_at")
    return project_trial(None, kept)


def today_at(ledger: TrialLedger, known_at: datetime | None) -> date:
    """The ledger's today, or the day it was at `known_at` (derivations that count days from
    today must give what they gave then)."""
    today = ledger.clock().date()
    if known_at is None:
        return today
    return min(today, known_at.astimezone(UTC).date())


def patient_view(ledger: TrialLedger, subject: str, *, known_at: datetime | None = None,
                 cutoff: date | None = None) -> dict[str, Any]:
    trial = trial_as_known_at(ledger.require_trial(whole=True), known_at)
    patient = as_known_at(ledger.require_patient(subject), known_at)
    if patient is None:
        raise BadInput(f"subject: {subject} was not registered at {known_at}", field="subject")
    timeline = patient.timeline()
    if cutoff is not None:
        timeline = [(k, f) for k, f in timeline if f.clinical_date <= cutoff]
    state = derive(subject, timeline, trial.protocol, today_at(ledger, known_at))
    document = summary(state)
    document["timeline"] = [
        {"entry": k, "event": type(f).__name__, "date": f.clinical_date, **_values(f)}
        for k, f in sorted(timeline, key=lambda kf: (kf[1].clinical_date, _version(kf[0])))
    ]
    return annotate_patient(document, subject, patient.events)


def _version(entry: str) -> int:
    return int(entry.rpartition("#")[2])


def _values(fact: Fact) -> dict[str, Any]:
    return {k: v for k, v in fact.facts().items() if v not in (None, [], {}, ())}


def signature_view(ledger: TrialLedger, subject: str, *,
                   known_at: datetime | None = None) -> dict[str, Any] | None:
    """The subject's last signature and whether it covers the data, as shown at `known_at`."""
    from m22bol.ledger.signatures import signature_status

    patient = as_known_at(ledger.require_patient(subject), known_at)
    return signature_status(patient) if patient else None


def history_view(ledger: TrialLedger, subject: str, *,
                 known_at: datetime | None = None) -> dict[str, Any]:
    """The audit trail: every event, oldest first, with who, when, why and what it changed."""
    from m22bol.ledger.signatures import signature_status

    patient = as_known_at(ledger.require_patient(subject), known_at)
    events = patient.events if patient else []
    entries = []
    rows: dict[str, dict[str, Any]] = {}
    current: dict[str, dict[str, Any]] = {}
    # entry -> the row whose values are the entry's current ones: a second correction
    # supersedes the first, not the original again.
    latest: dict[str, str] = {}
    for event in events:
        entry = entry_id(subject, event.originator_version)
        row = _audit_row(entry, event)
        row["superseded_by"] = None
        if isinstance(event, (EntryCorrected, EntryRetracted)):
            before = current[event.entry]
            rows[latest[event.entry]]["superseded_by"] = entry
            latest[event.entry] = entry
            if isinstance(event, EntryCorrected):
                row["old_values"] = {k: before.get(k) for k in event.changes}
                row["new_values"] = dict(event.changes)
                current[event.entry] = {**before, **event.changes}
            else:
                row["old_values"], row["new_values"] = dict(before), None
        elif isinstance(event, Fact):
            current[entry] = event.facts()
            latest[entry] = entry
        rows[entry] = row
        entries.append(row)
    # Each clinical entry marked verified against source or not, as things stand at known_at.
    verified = clarifications.verification(subject, events)
    for row in entries:
        if row["entry"] in verified:
            row["verified"] = verified[row["entry"]]["verified"]
    # Each fact held out of the walk for a stored value today's rules refuse (docs/audit.md),
    # with the field and why, as `audit verify` names them; a correction releases it.
    held = patient.held() if patient else {}
    for row in entries:
        if row["entry"] in held:
            row["held"] = [{"field": field, "why": why}
                           for field, why in held[row["entry"]].stored_problems]
    return {"subject": subject, "entries": entries,
            "signature": signature_status(patient) if patient else None}


# Trial events' values not shown in its history: material for guessing passwords, and the
# protocol file itself (its digest and version stay).
_HIDDEN = {"password_hash", "protocol_text"}


def trial_history_view(ledger: TrialLedger, *,
                       known_at: datetime | None = None) -> dict[str, Any]:
    """The trial's own audit trail: protocol versions, grants, passwords set, locks, seals and
    every refused authentication, oldest first."""
    trial = trial_as_known_at(ledger.require_trial(whole=True), known_at)
    entries = []
    for event in trial.events:
        row = _audit_row(f"trial#{event.originator_version}", event)
        row["values"] = {k: v for k, v in row["values"].items() if k not in _HIDDEN}
        row["superseded_by"] = None
        entries.append(row)
    return {"subject": None, "entries": entries, "signature": None,
            "synthetic": trial.synthetic}


def _audit_row(entry: str, event: Event) -> dict[str, Any]:
    return {
        "entry": entry,
        "recorded_at": event.recorded_at.isoformat(),
        "actor": event.actor,
        "event": type(event).__name__,
        "values": event.facts(),
        "reason": event.reason or getattr(event, "deviation_reason", None),
        "source": event.source,
    }


def deviations(ledger: TrialLedger,
               sites: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """Every accepted deviation, with the reason given and who gave it when; only those of the
    subjects of `sites` when given."""
    rows = []
    site_of: dict[UUID, str] = {}
    for _, event in ledger.stored_events():
        if isinstance(event, Registered):  # a subject's first event, before its facts
            site_of[event.originator_id] = event.site
        if sites is not None and site_of.get(event.originator_id) not in sites:
            continue
        if isinstance(event, Fact) and event.deviations:
            rows += [{"entry": d.entry, "rule": d.rule, "message": d.message,
                      "reason": event.deviation_reason, "actor": event.actor,
                      "recorded_at": event.recorded_at.isoformat()} for d in event.deviations]
    return rows


def status_by_replay(ledger: TrialLedger, *, known_at: datetime | None = None,
                     sites: frozenset[str] | None = None) -> dict[str, Any]:
    """Status from the events alone: the reference the read models must agree with, and the
    only way to the status as known at a past moment; only the subjects of `sites` if given."""
    trial = trial_as_known_at(ledger.require_trial(whole=True), known_at)
    today = today_at(ledger, known_at)
    patients = [as_known_at(ledger.require_patient(s), known_at) for s in ledger.subjects()]
    summaries = [summary(derive(p.subject, p.timeline(), trial.protocol, today))
                 for p in patients if p is not None and (sites is None or p.site in sites)]
    return status_counts(summaries, [b.id for b in trial.protocol.baskets])


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


def replay(ledger: TrialLedger, *, known_at: datetime | None = None,
           cutoff: date | None = None, sites: frozenset[str] | None = None) -> Replay:
    """Every subject's endpoint inputs as known at T, cut at D, with the protocol then in force;
    only the subjects of `sites` when given."""
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
        if sites is not None and patient.site not in sites:
            continue
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
