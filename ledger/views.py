"""Answers read by replaying one subject (or, for `--known-at`, the ledger as it was at T).

Current-state monitoring queries over the whole trial read the projections instead.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from m22bol.domain.events import EntryCorrected, EntryRetracted, Event, Fact
from m22bol.domain.patient import Patient, entry_id, project_patient
from m22bol.domain.timeline import derive, summary
from m22bol.domain.trial import Trial, project_trial
from m22bol.ledger.app import TrialLedger


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
        from m22bol.domain.errors import BadInput

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
    trial = trial_as_known_at(ledger.require_trial(), known_at)
    patient = as_known_at(ledger.require_patient(subject), known_at)
    if patient is None:
        from m22bol.domain.errors import BadInput

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
    return document


def _version(entry: str) -> int:
    return int(entry.rpartition("#")[2])


def _values(fact: Fact) -> dict[str, Any]:
    return {k: v for k, v in fact.facts().items() if v not in (None, [], {}, ())}


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
    return {"subject": subject, "entries": entries,
            "signature": signature_status(patient) if patient else None}


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


STATUS_COLUMNS = ("screened", "screen_failed", "enrolled", "on_treatment", "interrupted",
                  "local_treatment", "adjuvant", "completed", "discontinued", "withdrawn", "dead")


def subjects(ledger: TrialLedger) -> list[str]:
    from m22bol.domain.events import Registered

    return [e.subject for _, e in ledger.stored_events() if isinstance(e, Registered)]


def status_counts(summaries: list[dict[str, Any]], basket_ids: list[str]) -> dict[str, Any]:
    """Counts per basket (and `unassigned` for subjects not enrolled) from subject summaries."""
    rows = {b: dict.fromkeys(STATUS_COLUMNS, 0) for b in [*basket_ids, "unassigned", "all"]}
    for s in summaries:
        for key in (s.get("basket") or "unassigned", "all"):
            row = rows.setdefault(key, dict.fromkeys(STATUS_COLUMNS, 0))
            row["screened"] += 1
            row["screen_failed"] += s["status"] == "screen-failed"
            row["enrolled"] += s["enrolled"] is not None
            phase = s.get("treatment_state")
            row["on_treatment"] += phase in ("active", "interrupted")
            row["interrupted"] += phase == "interrupted"
            row["local_treatment"] += s.get("phase") == "local-treatment"
            row["adjuvant"] += s.get("phase") == "adjuvant"
            row["completed"] += phase == "completed"
            row["discontinued"] += phase == "discontinued"
            row["withdrawn"] += s["withdrawn"] is not None
            row["dead"] += s["death"] is not None
    return {"baskets": rows}


def status_by_replay(ledger: TrialLedger, *, known_at: datetime | None = None) -> dict[str, Any]:
    """Status from the events alone: the reference the read models must agree with, and the
    only way to the status as known at a past moment."""
    trial = trial_as_known_at(ledger.require_trial(), known_at)
    today = today_at(ledger, known_at)
    patients = [as_known_at(ledger.require_patient(s), known_at) for s in subjects(ledger)]
    summaries = [summary(derive(p.subject, p.timeline(), trial.protocol, today))
                 for p in patients if p is not None]
    return status_counts(summaries, [b.id for b in trial.protocol.baskets])
