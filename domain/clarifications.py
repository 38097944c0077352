"""Data clarification queries, edit checks and source data verification: pure rules.

A query is a thread of events on the subject's chain (opened, answered, closed, reopened); its
state is a fold of those events. Edit checks look at a subject's walked state and name the
entries that look wrong in ways the protocol can name; each check raises a query at most once
per (rule, entry), whatever happened to the query since. Verification is a fold too: an entry
is verified when a `SourceVerified` follows its last correction. None of this is a `Fact`, so
the walk that derives dose, response and endpoints never sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from m22bol.domain import commands as c
from m22bol.domain import events as e
from m22bol.domain.errors import BadInput, RuleViolation
from m22bol.domain.patient import Patient, entry_id
from m22bol.domain.timeline import State

SYSTEM = "system"  # the actor of every query an edit check raises

OPEN, ANSWERED, CLOSED = "open", "answered", "closed"

# Edit-check rule -> the field its query names.
RULES = {
    "check.infusion_deviation": "deviations",
    "check.assessment_missing": "date",
    "check.sae_late": "aware_date",
    "check.lvef_repeat_missing": "date",
}


@dataclass
class Step:
    step: str  # opened, answered, closed, reopened
    actor: str
    recorded_at: datetime
    text: str | None
    correction: str | None = None


@dataclass
class Thread:
    query_id: str
    subject: str
    entry: str
    field: str
    rule: str | None
    steps: list[Step] = field(default_factory=list)

    @property
    def status(self) -> str:
        last = self.steps[-1].step
        return {"opened": OPEN, "reopened": OPEN, "answered": ANSWERED}.get(last, CLOSED)

    @property
    def opened_at(self) -> datetime:
        return self.steps[0].recorded_at

    def last_text(self) -> str | None:
        return next((s.text for s in reversed(self.steps) if s.text), None)

    def as_dict(self, today: date | None = None) -> dict[str, Any]:
        doc = {"query_id": self.query_id, "subject": self.subject, "entry": self.entry,
               "field": self.field, "rule": self.rule, "status": self.status,
               "opened_by": self.steps[0].actor, "opened_at": self.opened_at,
               "last_text": self.last_text(),
               "thread": [{"step": s.step, "actor": s.actor, "recorded_at": s.recorded_at,
                           "text": s.text, "correction": s.correction} for s in self.steps]}
        if today is not None:
            doc["age_days"] = (today - self.opened_at.date()).days
        return doc


_STEPS = {e.QueryOpened: "opened", e.QueryAnswered: "answered", e.QueryClosed: "closed",
          e.QueryReopened: "reopened"}
QUERY_EVENTS = tuple(_STEPS)


def threads(subject: str, events: list[e.Event]) -> dict[str, Thread]:
    """Every query of one subject, by id, as its events tell it."""
    found: dict[str, Thread] = {}
    for event in events:
        _thread_step(subject, found, event)
    return found


def patient_threads(patient: Patient) -> dict[str, Thread]:
    """`threads` of the patient's events, kept on the patient and advanced over new events
    only (`Patient.fold`). Read it, never change it."""
    subject = patient.subject
    return patient.fold("threads", dict, lambda found, event: _thread_step(subject, found, event))


def _thread_step(subject: str, found: dict[str, Thread], event: e.Event) -> dict[str, Thread]:
    if isinstance(event, QUERY_EVENTS):
        if isinstance(event, e.QueryOpened):
            found[event.query_id] = Thread(event.query_id, subject, event.entry, event.field,
                                           event.rule)
        found[event.query_id].steps.append(Step(
            _STEPS[type(event)], event.actor, event.recorded_at, event.text,
            getattr(event, "correction", None)))
    return found


def raised_checks(patient: Patient) -> set[tuple[str, str]]:
    """(rule, entry) of every query an edit check has raised on the subject, whatever became
    of it since: a check raises its query once. Kept on the patient (`Patient.fold`)."""
    return patient.fold("raised checks", set, _raised_step)


def _raised_step(raised: set[tuple[str, str]], event: e.Event) -> set[tuple[str, str]]:
    if isinstance(event, e.QueryOpened) and event.rule:
        raised.add((event.rule, event.entry))
    return raised


def verification(subject: str, events: list[e.Event]) -> dict[str, dict[str, Any]]:
    """Every live clinical entry -> whether it is verified against source, and by whom. A
    correction after the verification un-verifies it: the new value was not checked."""
    entries: dict[str, dict[str, Any]] = {}
    for event in events:
        _verification_step(subject, entries, event)
    return entries


def patient_verification(patient: Patient) -> dict[str, dict[str, Any]]:
    """`verification` of the patient's events, kept on the patient (`Patient.fold`). Read it,
    never change it."""
    subject = patient.subject
    return patient.fold("verification", dict,
                        lambda entries, event: _verification_step(subject, entries, event))


def _verification_step(subject: str, entries: dict[str, dict[str, Any]],
                       event: e.Event) -> dict[str, dict[str, Any]]:
    if isinstance(event, (e.EntryCorrected, e.EntryRetracted)):
        if isinstance(event, e.EntryRetracted):
            entries.pop(event.entry, None)
        elif event.entry in entries:
            entries[event.entry] = {"verified": False, "unverified_by": entry_id(
                subject, event.originator_version)}
    elif isinstance(event, e.Fact):
        entries[entry_id(subject, event.originator_version)] = {"verified": False}
    elif isinstance(event, e.SourceVerified) and event.entry in entries:
        entries[event.entry] = {"verified": True, "verified_by": event.actor,
                                "verified_at": event.recorded_at, "note": event.note}
    return entries


# --- deciding ----------------------------------------------------------------------------------


def decide(command: c.Command, patient: Patient, envelope: dict[str, Any],
           query_id: str | None = None) -> tuple[e.Event, dict[str, Any]]:
    """A person's query step or verification: the event and what to print. `query_id` is the
    id the ledger numbered for a new query."""
    match command:
        case c.QueryOpen():
            _live_entry(patient, command.entry)
            assert query_id is not None
            event = e.QueryOpened(**envelope, query_id=query_id, entry=command.entry,
                                  field=command.field, text=command.text)
            return event, {"query_id": query_id, "status": OPEN, "entry": command.entry}
        case c.VerifySource():
            _live_entry(patient, command.entry)
            if patient_verification(patient)[command.entry]["verified"]:
                raise RuleViolation(f"{command.entry} is already verified against source",
                                    rule="sdv.already_verified", field="entry")
            event = e.SourceVerified(**envelope, entry=command.entry, note=command.note)
            return event, {"entry": command.entry, "verified": True}
    thread = patient_threads(patient)[command.query_id]
    allowed = {c.QueryAnswer: (OPEN,), c.QueryClose: (OPEN, ANSWERED),
               c.QueryReopen: (ANSWERED, CLOSED)}[type(command)]
    if thread.status not in allowed:
        raise RuleViolation(f"{command.query_id} is {thread.status}; {command.name} needs it "
                            + " or ".join(allowed), rule="query.status", field="query_id")
    match command:
        case c.QueryAnswer():
            if command.correction is not None:
                _correction_of(patient, command.correction, thread.entry)
            event: e.Event = e.QueryAnswered(**envelope, query_id=command.query_id,
                                             text=command.text, correction=command.correction)
        case c.QueryClose():
            event = e.QueryClosed(**envelope, query_id=command.query_id, text=command.text)
        case c.QueryReopen():
            event = e.QueryReopened(**envelope, query_id=command.query_id, text=command.text)
    return event, {"query_id": command.query_id,
                   "status": {c.QueryAnswer: ANSWERED, c.QueryClose: CLOSED}.get(
                       type(command), OPEN)}


def _live_entry(patient: Patient, entry: str) -> None:
    event = patient.event_of(entry)
    if not isinstance(event, e.Fact) or isinstance(event, (e.EntryCorrected, e.EntryRetracted)):
        raise BadInput(f"entry: {entry} is not a clinical fact", field="entry")
    if entry not in patient.facts_of(type(event)):
        raise RuleViolation(f"{entry} was retracted", rule="query.retracted", field="entry")


def _correction_of(patient: Patient, correction: str, entry: str) -> None:
    event = patient.event_of(correction)
    if not isinstance(event, e.EntryCorrected) or event.entry != entry:
        raise BadInput(f"correction: {correction} is not a correction of {entry}",
                       field="correction")


def closed_by_retraction(patient: Patient, retraction: e.EntryRetracted,
                         envelope: dict[str, Any]) -> list[e.Event]:
    """A retraction closes every query on the retracted entry, with the retraction's reason."""
    return [e.QueryClosed(**{**envelope, "actor": retraction.actor}, query_id=t.query_id,
                          text=f"entry retracted: {retraction.reason}")
            for t in patient_threads(patient).values()
            if t.entry == retraction.entry and t.status != CLOSED]


# --- edit checks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    rule: str
    entry: str
    text: str
    # Found by the passing of time rather than by an entry: looked for once a day (and by
    # `queries --refresh`), not on each entry of the subject.
    timed: bool = False


def edit_checks(patient: Patient, state: State, today: date, *,
                timed: bool = False) -> list[Finding]:
    """What the edit checks find in a walked subject that no earlier check query covers: the
    checks an entry can trigger, and with `timed` also those that fall due with time."""
    found = [f for f, due in _candidates(patient, state, timed=timed)
             if due is None or today > due]
    return [f for f in found if timed or not f.timed]


def checks_due(patient: Patient, state: State) -> date | None:
    """The first day on which `edit_checks(..., timed=True)` finds something in this subject
    if nothing else is entered: `date.min` when it finds something on any day, None when it
    finds nothing on any day. The daily sweep loads only the subjects due by today
    (docs/decisions.md); the walk does not change with a later day, so neither does this."""
    days = [date.min if due is None else due + timedelta(days=1)
            for _, due in _candidates(patient, state, timed=True)]
    return min(days, default=None)


def _candidates(patient: Patient, state: State, *,
                timed: bool) -> list[tuple[Finding, date | None]]:
    """Each finding no earlier check query covers, with the last day on which it is not yet
    found (None: found on any day). `timed` also scores the scans for a missing assessment."""
    from m22bol.domain.rules import assessments, safety, treatment

    raised = raised_checks(patient)
    found: list[tuple[Finding, date | None]] = []
    infusions = patient.facts_of(e.InfusionGiven)
    for entry, fact in infusions.items():
        if fact.deviations:
            rules = ", ".join(d.rule for d in fact.deviations)
            found.append((Finding("check.infusion_deviation", entry,
                                  f"infusion accepted as a protocol deviation ({rules}): "
                                  f"please confirm the dose and date against source"), None))
    for ae in safety.adverse_events(state).values():
        if ae.entered_late:
            entry = _ae_entry(patient.facts_of(e.AdverseEventReported), ae.ae_id)
            found.append((Finding("check.sae_late", entry,
                                  f"SAE {ae.ae_id} entered after its reporting deadline "
                                  f"({ae.report_due:%Y-%m-%d %H:%M} UTC): please confirm the "
                                  f"awareness date and the expedited report"), None))
    lvefs = list(patient.facts_of(e.LvefMeasured).items())
    window = state.protocol.safety.lvef_repeat_within_days
    for i, (entry, fact) in enumerate(lvefs):
        out = _asked_repeat(state, entry)
        if not out:
            continue
        due = fact.date + timedelta(days=window)
        later = [f.date for _, f in lvefs[i + 1:] if f.date > fact.date]
        if later and later[0] <= due:
            continue
        # Repeated late: found whatever the day; not repeated: found once `due` has passed.
        found.append((Finding("check.lvef_repeat_missing", entry,
                              f"LVEF of {fact.date} was not repeated within {window} days "
                              f"(by {due}): please enter the repeat or its reason",
                              timed=not later), None if later else due))
    # A missing assessment is found only by the passing of time (the finding is `timed`, and
    # left out below unless `timed`): not looked for on each entry, where scoring every scan
    # again cost a tenth of an import.
    if (timed and state.enrolled and not state.death and not state.withdrawn
            and not treatment.course(state).discontinued):
        responses = [r for _, r in assessments.scan_responses(state)]
        progressed = any(r.overall_response == "PD" for r in responses)
        scans = assessments.part(state).scans
        start = assessments.first_infusion(state)
        if start and not progressed:
            last_entry, last = (scans[-1][0], scans[-1][1].date) if scans else (
                _first_infusion_entry(infusions), start)
            p = state.protocol.response
            due = max(last, start) + timedelta(days=p.assessment_interval_days
                                               + p.assessment_window_days)
            found.append((Finding("check.assessment_missing", last_entry,
                                  f"no tumour assessment since {max(last, start)}: the next "
                                  f"was due by {due} (interval {p.assessment_interval_days}"
                                  f" + window {p.assessment_window_days} days)",
                                  timed=True), due))
    return [(f, due) for f, due in found if (f.rule, f.entry) not in raised]


def _asked_repeat(state: State, entry: str) -> bool:
    """Whether the reading at this entry asked for a repeat (a watch band or an interruption)."""
    out = state.outputs.get(entry, {})
    return bool(out.get("lvef_repeat_due")) or "repeat within" in str(out.get("note", ""))


def _ae_entry(reported: dict[str, e.Fact], ae_id: str) -> str:
    return next(k for k, f in reported.items() if f.ae_id == ae_id)


def _first_infusion_entry(infusions: dict[str, e.Fact]) -> str:
    return min((f.date, k) for k, f in infusions.items())[1]
