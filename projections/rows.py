"""A subject's read-model rows: pure functions of its derived state and effective timeline.

Nothing here reads the database. The runner derives each touched subject once per batch and
asks every projection for its rows; corrections and retractions need no special handling,
because the rows are rebuilt from the whole corrected timeline every time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from uuid import UUID

from m22bol.domain import clarifications
from m22bol.domain.events import CtdnaRecorded, Event, Fact, PetRecorded, ScanRecorded
from m22bol.domain.patient import Patient
from m22bol.domain.protocol import Protocol
from m22bol.domain.timeline import TREATMENT_FACTS, State, summary, walked_state
from m22bol.domain.trial import Trial
from m22bol.projections import catalog
from m22bol.projections.document_json import to_json
from m22bol.projections.documents import annotate_patient

ASSESSMENT_FACTS = (ScanRecorded, PetRecorded, CtdnaRecorded)

Rows = dict[str, list[dict[str, Any]]]

# Part of every projection's schema fingerprint (projections.recorder): bump it when what the
# rows hold changes without a change of columns, and existing databases rebuild on next use.
VERSION = 6  # 2: AEs coded to CTCAE, with SAE deadlines; 3: endpoint inputs by the sharpened rules;
# 4: data clarification queries and source data verification; 5: a summary's site is access's;
# 6: a summary's checks_due, the first day the daily sweep must look at the subject


@dataclass
class Derived:
    """One subject as of a notification position: its timeline and what the rules make of it."""

    aggregate_id: UUID
    subject: str
    version: int
    site: str | None
    today: date
    timeline: list[tuple[str, Fact]]
    events: list[Event] = field(default_factory=list)  # the whole chain: queries, SDV
    # The subject's query threads and source verification, as the patient keeps them folded.
    threads: dict[str, clarifications.Thread] = field(default_factory=dict)
    verified: dict[str, dict[str, Any]] = field(default_factory=dict)
    state: State | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None
    checks_due: date | None = None  # clarifications.checks_due: when the sweep must look
    # Made once, read by several projections: the timeline in the walk's order, and each
    # fact's own values (`Fact.facts`, a pydantic dump) by entry.
    _in_order: list[tuple[str, Fact]] | None = field(default=None, repr=False)
    _values: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def in_order(self) -> list[tuple[str, Fact]]:
        """The timeline in the walk's order: clinical date, then entry."""
        if self._in_order is None:
            self._in_order = sorted(self.timeline,
                                    key=lambda kf: (kf[1].clinical_date, _version(kf[0])))
        return self._in_order

    def values(self, entry: str, fact: Fact) -> dict[str, Any]:
        """`fact.facts()`, made once per entry. Shared: read it, never change it."""
        found = self._values.get(entry)
        if found is None:
            found = self._values[entry] = fact.facts()
        return found


def derive_subject(patient: Patient, protocol: Protocol, today: date) -> Derived:
    from m22bol.domain.errors import LedgerError

    d = Derived(aggregate_id=patient.id, subject=patient.subject, version=patient.version,
                site=patient.site, today=today, timeline=[], events=patient.events,
                threads=clarifications.patient_threads(patient),
                verified=clarifications.patient_verification(patient))
    try:
        d.timeline = patient.timeline()
        # The walk the entry was just decided with, when the patient came from the entry.
        d.state = walked_state(patient, protocol, today)
        d.summary = summary(d.state)
        d.checks_due = clarifications.checks_due(patient, d.state)
    except LedgerError as error:
        # The facts were accepted when entered; if the rules in force now refuse them (a
        # protocol amendment, a rule change), the projection records why and moves on instead
        # of stopping every subject behind this one.
        d.state = d.summary = None
        d.error = f"{type(error).__name__}: {error.message}"
    return d


# --- one function per projection --------------------------------------------------------------


def _version(entry: str) -> int:
    return int(entry.rpartition("#")[2])


def _given(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, [], {}, ())}


def patient_document(d: Derived) -> dict[str, Any]:
    """The `patient --json` document: the summary and the timeline in clinical order."""
    assert d.summary is not None
    document = dict(d.summary)
    document["timeline"] = [
        {"entry": k, "event": type(f).__name__, "date": f.clinical_date, **_given(d.values(k, f))}
        for k, f in d.in_order()
    ]
    return annotate_patient(document, d.subject, d.events, threads=d.threads,
                            verified=d.verified)


def patient_summary_rows(d: Derived) -> Rows:
    # The site is the subject's as access knows it (the registration as corrected), even when
    # the walk could not start from a held registration.
    row: dict[str, Any] = {
        "subject": d.subject, "aggregate_id": str(d.aggregate_id), "version": d.version,
        "site": d.site, "derived_on": d.today, "error": d.error, "document": None,
        "checks_due": d.checks_due,
        "status": None, "basket": None, "consent_date": None, "enrolled": None, "death": None,
        "withdrawn": None, "treatment_state": None, "phase": None, "last_known_alive": None,
    }
    if d.summary is not None:
        s = d.summary
        row.update(
            status=s["status"], basket=s["basket"], consent_date=s["consent_date"],
            enrolled=s["enrolled"], death=s["death"], withdrawn=s["withdrawn"],
            treatment_state=s.get("treatment_state"), phase=s.get("phase"),
            last_known_alive=s.get("last_known_alive"), document=to_json(patient_document(d)),
        )
    return {catalog.PATIENT_SUMMARY: [row]}


def _ordered(d: Derived, kinds: tuple[type[Fact], ...]) -> list[tuple[str, Fact]]:
    """The subject's facts of these kinds in the walk's order: clinical date, then entry."""
    return [(k, f) for k, f in d.in_order() if isinstance(f, kinds)]


def _outputs(d: Derived, entry: str) -> dict[str, Any]:
    assert d.state is not None
    return d.state.outputs.get(entry, {})


def treatment_rows(d: Derived) -> Rows:
    if d.summary is None:
        return {}
    s = d.summary
    details = {k: s.get(k) for k in ("interruption", "discontinued", "surgeries", "radiotherapy",
                                     "complications", "last_treatment_date") if k in s}
    subject_row = {
        "subject": d.subject, "basket": s["basket"], "enrolled": s["enrolled"],
        "treatment_state": s.get("treatment_state"), "phase": s.get("phase"),
        "cycles_given": s.get("cycles_given"),
        "dose_level_mg_per_kg": s.get("dose_level_mg_per_kg"),
        "next_cycle": s.get("next_cycle"), "next_cycle_due": s.get("next_cycle_due"),
        "last_infusion_date": s.get("last_infusion_date"),
        "treatment_ended": s.get("treatment_ended"),
        "local_treatment_complete": (None if s.get("local_treatment_complete") is None
                                     else bool(s.get("local_treatment_complete"))),
        "pcr": s.get("pcr"), "details": to_json(details),
    }
    events = [
        {"entry": entry, "subject": d.subject, "event": type(fact).__name__,
         "date": fact.clinical_date, "cycle": getattr(fact, "cycle", None),
         "dose_mg": getattr(fact, "dose_mg", None), "fact": to_json(d.values(entry, fact)),
         "derived": to_json(_outputs(d, entry))}
        for entry, fact in _ordered(d, TREATMENT_FACTS)
    ]
    return {catalog.TREATMENT: [subject_row], catalog.TREATMENT_EVENTS: events}


def adverse_event_rows(d: Derived) -> Rows:
    if d.summary is None:
        return {}
    rows = [
        {"subject": d.subject, "ae_id": ae["ae_id"], "term": ae["term"],
         "graded_as": ae.get("graded_as"), "onset": ae["onset"], "grade": ae.get("grade"),
         "worst_grade": ae.get("worst_grade"), "serious": bool(ae.get("serious")),
         "related": ae.get("related"), "resolved": ae.get("resolved"), "document": to_json(ae)}
        for ae in d.summary.get("adverse_events") or []
    ]
    return {catalog.ADVERSE_EVENTS: rows}


def assessment_rows(d: Derived) -> Rows:
    if d.summary is None:
        return {}
    scans = {a["entry"]: a for a in d.summary.get("assessments") or [] if "entry" in a}
    rows = []
    for entry, fact in _ordered(d, ASSESSMENT_FACTS):
        derived = scans.get(entry) or _outputs(d, entry)
        if isinstance(fact, ScanRecorded):
            result, baseline = derived.get("overall_response"), derived.get("baseline")
        elif isinstance(fact, PetRecorded):
            result, baseline = fact.percist, fact.percist is None
        else:
            result, baseline = fact.result, None
        rows.append({"entry": entry, "subject": d.subject, "event": type(fact).__name__,
                     "date": fact.clinical_date, "baseline": baseline, "result": result,
                     "fact": to_json(d.values(entry, fact)), "derived": to_json(derived)})
    return {catalog.ASSESSMENTS: rows}


def endpoint_input_rows(d: Derived) -> Rows:
    if d.state is None:
        return {}
    from m22bol.domain.rules.endpoint_inputs import patient_facts

    facts = patient_facts(d.state, d.timeline)
    return {catalog.ENDPOINT_INPUTS: [
        {"subject": d.subject, "basket": facts.basket, "facts": to_json(facts)}]}


def query_rows(d: Derived) -> Rows:
    """One row per query thread; the age is counted when asked, from `opened_on`."""
    return {catalog.QUERIES: [
        {"query_id": t.query_id, "number": int(t.query_id[2:]), "subject": d.subject,
         "site": d.site, "entry": t.entry, "field": t.field, "rule": t.rule,
         "status": t.status, "opened_on": t.opened_at.date(), "last_text": t.last_text(),
         "thread": to_json(t.as_dict())}
        for t in d.threads.values()]}


def sdv_rows(d: Derived) -> Rows:
    """One row per live clinical entry: verified against source or not (spec: a correction
    after the verification un-verifies it)."""
    kinds = {entry_of: type(f).__name__ for entry_of, f in d.timeline}
    return {catalog.SDV: [
        {"entry": entry, "subject": d.subject, "site": d.site, "event": kinds.get(entry, ""),
         "verified": bool(v["verified"]), "document": to_json(v)}
        for entry, v in d.verified.items()]}


SUBJECT_ROWS: dict[str, Callable[[Derived], Rows]] = {
    "queries": query_rows,
    "sdv": sdv_rows,
    "patient_summary": patient_summary_rows,
    "treatment": treatment_rows,
    "adverse_events": adverse_event_rows,
    "assessments": assessment_rows,
    "endpoint_inputs": endpoint_input_rows,
}


def trial_rows(trial: Trial) -> Rows:
    protocol = trial.protocol
    version, digest, _ = trial.protocol_texts[-1]
    return {
        catalog.TRIAL: [{"name": trial.name, "version": trial.version,
                         "protocol_version": version, "protocol_digest": digest,
                         "locked": trial.locked}],
        catalog.BASKETS: [
            {"id": b.id, "ordinal": i, "description": b.description, "regimen": b.regimen,
             "her2": b.strata.her2, "er": b.strata.er, "prior_therapy": b.strata.prior_therapy}
            for i, b in enumerate(protocol.baskets)
        ],
    }
