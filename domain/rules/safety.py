"""Adverse events coded to CTCAE v5.0, the drug's AE table, SAE reporting, the LVEF table.

See docs/safety.md. The tables decide here; the course they act on (interruptions, dose level,
discontinuation) belongs to `treatment.py`. The AE table is data: the rules of the drug of the
subject's basket (`Protocol.ae_table`), keyed by the coded CTCAE term.

Readings of the spec kept here:
- Coding happens when the timeline is walked, with the synonyms of the protocol in force and
  of the subject's drug at that point; the coding printed at entry is stored for the record.
  An AE stored before coding existed (`coded_on_read`) whose term codes to nothing is kept as
  entered: it is shown, tallied under its own words and acts on nothing.
- A grade the CTCAE term list does not define for the term is bad input (exit 2).
- Before treatment (no infusion walked yet) an AE is a baseline condition: it acts on nothing.
  An update or resolution dated once the course has started is judged by the table like any.
- Grade 5: the AE is accepted at once (it is usually entered before the death), treatment is
  discontinued and the output reminds that the death must be recorded with the AE's date. A
  death dated otherwise, or a second grade-5 AE on another date, is refused (exit 3) when the
  timeline is checked, whichever is entered first.
- An interruption's episode: a rule that reduces (neutrophils at grade 4) decides the end of
  the interruption even if the grade went back down (to 3) first.
- "Resolved within 28 days of onset" counts resolution date - onset <= 28 days.
- SAE awareness: the entry time, or the end of `--aware-date` (a date without a time gives the
  site the whole day); the deadline is awareness + the protocol's hours; the entry is late when
  recorded after it. Awareness before the onset, or after the entry, is impossible (exit 3).
- LVEF bands partition the plane: > 45 %, 40-45 % (both ends included), < 40 %; drops
  < 10, 10-20 (both ends included), > 20 points. "Back within 10 points" is a drop < 10, the
  band the table lets continue.
- The repeat after an LVEF interruption is the next LVEF reading, whatever its date: treatment
  stays interrupted until it comes, and a late repeat (beyond 21 days) still confirms or
  clears; the output marks it late. A repeat after "< 40 % or > 20 points" that is neither
  confirmed nor in a continue band (40-45 % with a 10-20 point drop) keeps the interruption
  and asks for the next repeat under that band's rule.
- The baseline is the LVEF of the eligibility assessment; without one, the first reading on or
  before the first infusion. With no baseline at all only the absolute bands apply (40-45 %:
  continue and repeat; < 40 %: interrupt and confirm).
- `lvef --symptomatic` is symptomatic heart failure: discontinue permanently (the label row
  that the AE table carries as "Heart failure >= 2").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from m22bol.domain import coding
from m22bol.domain.errors import BadInput, RuleViolation
from m22bol.domain.events import (
    AdverseEventReported,
    AdverseEventResolved,
    AdverseEventUpdated,
    LvefMeasured,
)
from m22bol.domain.protocol import AeRule
from m22bol.domain.rules import treatment

CONTINUE = "continue"
INTERRUPT = "interrupt"
REDUCE = "reduce"
DISCONTINUE = "discontinue"
RESUME = "resume"
RESUME_REDUCED = "resume-reduced"

LVEF = "LVEF"


@dataclass
class AdverseEvent:
    ae_id: str
    term: str  # as entered
    coded: coding.Term | None  # None only for an uncodable AE stored before coding
    verbatim: str | None
    onset: date
    serious: tuple[str, ...]
    related: bool | None
    grades: list[tuple[date, int]]
    baseline: bool  # onset before the course started
    report_due: datetime | None = None
    entered_late: bool | None = None
    resolved: date | None = None
    # The rule holding the interruption now open, and whether it ends with a reduction.
    hold: AeRule | None = None
    reduce_on_end: bool = False

    @property
    def grade(self) -> int:
        return self.grades[-1][1]

    @property
    def graded_as(self) -> str:
        return self.coded.term if self.coded else self.term


@dataclass
class LvefHold:
    """An LVEF interruption waiting for its repeat reading."""

    since: date
    confirm: bool  # True: "< 40 % or > 20 points" must be confirmed; False: must recover


@dataclass
class Safety:
    events: dict[str, AdverseEvent] = field(default_factory=dict)
    grade5: list[tuple[str, date]] = field(default_factory=list)
    lvef_readings: list[tuple[date, float]] = field(default_factory=list)
    lvef_baseline_fallback: float | None = None
    lvef_hold: LvefHold | None = None
    lvef_repeat_due: date | None = None


def _part(state) -> Safety:
    return state.part("safety", Safety)


def adverse_events(state) -> dict[str, AdverseEvent]:
    """The subject's AEs as walked, by id: coded, graded, with any SAE deadline."""
    return _part(state).events


# --- adverse events ---------------------------------------------------------------------------


def code(state, fact: AdverseEventReported) -> coding.Coded | None:
    """The CTCAE coding of a reported AE under the protocol in force and the subject's drug."""
    try:
        coded = coding.code(fact.term, state.protocol.synonyms(state.basket),
                            verbatim=fact.verbatim)
    except BadInput:
        if fact.coded_on_read:
            return None
        raise
    if not fact.coded_on_read:
        coding.check_grade(coded.term, fact.grade)
    return coded


def _reported(state, entry: str, fact: AdverseEventReported) -> None:
    part = _part(state)
    if fact.ae_id in part.events:
        raise RuleViolation(f"{entry}: AE id {fact.ae_id} is already used for this subject",
                            rule="ae.id_exists", field="ae_id")
    coded = code(state, fact)
    ae = AdverseEvent(fact.ae_id, fact.term, coded.term if coded else None, fact.verbatim,
                      fact.onset, fact.serious_criteria, fact.related, [(fact.onset, fact.grade)],
                      baseline=not _started(state))
    if ae.serious:
        _sae_deadline(state, entry, ae, fact)
    part.events[ae.ae_id] = ae
    outcome = _baseline(state, ae, fact.onset) if ae.baseline else _graded(state, ae,
                                                                            fact.onset)
    _respond(state, entry, ae, fact.onset, outcome, **_coding_output(ae, coded))


def _coding_output(ae: AdverseEvent, coded: coding.Coded | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ctcae_term": coded.term.term if coded else None,
        "meddra_code": coded.term.meddra_code if coded else None,
        "soc": coded.term.soc if coded else None,
        "coded_as": str(coded.term) if coded else f"not coded ({ae.term!r} as entered)",
    }
    if ae.baseline:
        out["baseline"] = True
    if ae.serious:
        out.update(serious=list(ae.serious), report_due=ae.report_due,
                   entered_late=ae.entered_late)
    return out


def _sae_deadline(state, entry: str, ae: AdverseEvent, fact: AdverseEventReported) -> None:
    hours = state.protocol.adverse_events.sae_report_within_hours
    if fact.aware_date is None:
        aware = fact.recorded_at
    else:
        if fact.aware_date < fact.onset:
            raise RuleViolation(f"{entry}: aware date {fact.aware_date} is before the onset "
                                f"{fact.onset}", rule="ae.aware_before_onset",
                                field="aware_date")
        if fact.aware_date > fact.recorded_at.astimezone(UTC).date():
            raise RuleViolation(f"{entry}: aware date {fact.aware_date} is after the entry was "
                                f"made ({fact.recorded_at:%Y-%m-%d})",
                                rule="ae.aware_after_entry", field="aware_date")
        aware = datetime.combine(fact.aware_date + timedelta(days=1), time(), UTC)
    ae.report_due = aware + timedelta(hours=hours)
    ae.entered_late = fact.recorded_at > ae.report_due


def _known(state, entry: str, ae_id: str, when: date) -> AdverseEvent:
    ae = _part(state).events.get(ae_id)
    if ae is None:
        raise RuleViolation(f"{entry}: AE {ae_id} is not reported with an onset on or before "
                            f"{when}", rule="ae.before_onset", field="date")
    if ae.resolved is not None:
        raise RuleViolation(f"{entry}: AE {ae_id} was resolved on {ae.resolved}; record a "
                            f"recurrence as a new AE", rule="ae.resolved", field="date")
    return ae


def _started(state) -> bool:
    return bool(treatment.course(state).cycles)


def _updated(state, entry: str, fact: AdverseEventUpdated) -> None:
    ae = _known(state, entry, fact.ae_id, fact.date)
    if ae.coded is not None:
        coding.check_grade(ae.coded, fact.grade)
    ae.grades.append((fact.date, fact.grade))
    outcome = _graded(state, ae, fact.date) if _started(state) else _baseline(state, ae,
                                                                             fact.date)
    _respond(state, entry, ae, fact.date, outcome)


def _resolved(state, entry: str, fact: AdverseEventResolved) -> None:
    ae = _known(state, entry, fact.ae_id, fact.date)
    ae.resolved = fact.date
    _respond(state, entry, ae, fact.date, _recovered(state, ae, fact.date))


@dataclass
class _Outcome:
    """What one AE or LVEF fact did to the course, before it is named as an action."""

    discontinue: bool = False
    ended: bool = False
    reduced: bool = False
    note: str | None = None


def _grade5(state, ae: AdverseEvent, on: date) -> str:
    _part(state).grade5.append((ae.ae_id, on))
    return (f"grade 5: the death is recorded on {state.death}" if state.death == on else
            f"grade 5: record the subject's death dated {on}")


def _baseline(state, ae: AdverseEvent, on: date) -> _Outcome:
    """Before the first infusion an AE is medical history: it acts on no course."""
    note = "baseline condition (before the first infusion): no action on the course"
    if ae.grade == 5:
        note = _grade5(state, ae, on)
    return _Outcome(note=note)


def _graded(state, ae: AdverseEvent, on: date) -> _Outcome:
    """The drug's AE table for the AE's grade as of this fact."""
    grade, name = ae.grade, f"{ae.ae_id} {ae.graded_as} grade {ae.grade}"
    if grade == 5:
        note = _grade5(state, ae, on)
        treatment.discontinue(state, on, name)
        return _Outcome(discontinue=True, note=note)
    table = state.protocol.ae_table(state.basket)
    rule = table.rule_for(ae.graded_as, grade) if table and ae.coded else None
    if rule is not None and rule.action == "discontinue":
        treatment.discontinue(state, on, f"{name}: discontinue permanently")
        return _Outcome(discontinue=True)
    if rule is not None and rule.action == "record-lvef":
        return _Outcome(note="record the LVEF with `lvef`: the LVEF table decides")
    if rule is not None and rule.action == "interrupt":
        if not _held(state, ae):
            ae.reduce_on_end = False
        ae.hold = rule
        ae.reduce_on_end |= rule.then == "reduce"
        treatment.interrupt(state, ae.ae_id, name, on, _ends_when(ae, rule))
        return _Outcome()
    if ae.hold is not None and ae.hold.until_grade is not None and grade <= ae.hold.until_grade:
        return _release(state, ae, on, reduce=ae.reduce_on_end)
    return _Outcome()


def _ends_when(ae: AdverseEvent, rule: AeRule) -> str:
    then = "one level lower" if ae.reduce_on_end else "the same dose"
    if rule.same_dose_if_resolved_within_days:
        then = (f"the same dose if within {rule.same_dose_if_resolved_within_days} days of "
                f"onset, else one level lower")
    until = "resolved" if rule.until_grade is None else (
        f"at grade <= {rule.until_grade} or resolved")
    return f"{ae.ae_id} {until}, then {then}"


def _recovered(state, ae: AdverseEvent, on: date) -> _Outcome:
    """The drug's AE table when the AE resolves."""
    within = ae.hold.same_dose_if_resolved_within_days if ae.hold else None
    if within is None:
        return _release(state, ae, on, reduce=ae.reduce_on_end)
    days = (on - ae.onset).days
    outcome = _release(state, ae, on, reduce=ae.reduce_on_end and days > within)
    if outcome.ended:
        outcome.note = (f"resolved {days} days after onset "
                        f"({'within' if days <= within else 'more than'} {within} days)")
    return outcome


def _held(state, ae: AdverseEvent) -> bool:
    return treatment.interrupted_by(state, ae.ae_id)


def _release(state, ae: AdverseEvent, on: date, *, reduce: bool) -> _Outcome:
    if not treatment.end_interruption(state, ae.ae_id):
        return _Outcome()
    ae.reduce_on_end, ae.hold = False, None
    if reduce and not treatment.reduce(state, on, f"{ae.ae_id} {ae.graded_as}"):
        return _Outcome(discontinue=True, ended=True, reduced=True)
    return _Outcome(ended=True, reduced=reduce)


def _action(state, outcome: _Outcome) -> str:
    if outcome.discontinue:
        return DISCONTINUE
    # Before enrolment the course shows "not started", yet what the label asks still holds.
    interrupted = treatment.held(state)
    if outcome.ended:
        if interrupted:
            return REDUCE if outcome.reduced else INTERRUPT
        return RESUME_REDUCED if outcome.reduced else RESUME
    return INTERRUPT if interrupted else CONTINUE


def _respond(state, entry: str, ae: AdverseEvent | None, on: date, outcome: _Outcome,
             **extra: Any) -> None:
    state.outputs[entry] = {
        "ae_id": ae.ae_id if ae else None,
        "action": _action(state, outcome),
        "treatment_state": treatment.treatment_state(state),
        "dose_level_mg_per_kg": treatment.dose_level(state),
        "interruption": treatment.interruption_text(state),
        **extra,
        "note": outcome.note,
    }


# --- LVEF -------------------------------------------------------------------------------------


def lvef_band(percent: float, baseline: float | None) -> str:
    """The row of the label's LVEF table: continue, watch, recover or confirm.

    continue: > 45 % and a drop <= 20 points; watch: 40-45 % and a drop < 10 (continue, repeat);
    recover: 40-45 % and a drop of 10-20 (interrupt until back within 10 points);
    confirm: < 40 %, or a drop > 20 (interrupt; discontinue if the repeat confirms it).
    """
    drop = None if baseline is None else baseline - percent
    if percent < 40 or (drop is not None and drop > 20):
        return "confirm"
    if percent > 45:
        return "continue"
    if drop is not None and drop >= 10:
        return "recover"
    return "watch"


def lvef_baseline(state) -> float | None:
    if state.eligibility is not None and state.eligibility.lvef is not None:
        return state.eligibility.lvef
    return _part(state).lvef_baseline_fallback


def _lvef(state, entry: str, fact: LvefMeasured) -> None:
    part = _part(state)
    if part.lvef_baseline_fallback is None and not treatment.course(state).cycles:
        part.lvef_baseline_fallback = fact.percent
    baseline = lvef_baseline(state)
    part.lvef_readings.append((fact.date, fact.percent))
    part.lvef_repeat_due = None
    window = state.protocol.safety.lvef_repeat_within_days
    due = fact.date + timedelta(days=window)
    band = lvef_band(fact.percent, baseline)
    reading = f"LVEF {fact.percent:g}% on {fact.date}" + (
        f" (baseline {baseline:g}%)" if baseline is not None else " (no baseline)")
    extra: dict[str, Any] = {"lvef_baseline": baseline}

    if fact.symptomatic:
        treatment.discontinue(state, fact.date, f"{reading}, symptomatic heart failure")
        part.lvef_hold = None
        outcome = _Outcome(discontinue=True, note="symptomatic: discontinue permanently")
    elif part.lvef_hold is not None and treatment.interrupted_by(state, LVEF):
        hold = part.lvef_hold
        late = (fact.date - hold.since).days > window
        extra["repeat_late"] = late
        confirmed = band == "confirm" if hold.confirm else not (
            baseline is not None and baseline - fact.percent < 10)
        if confirmed:
            treatment.discontinue(state, fact.date, f"{reading} confirms the LVEF of "
                                                    f"{hold.since}: discontinue permanently")
            part.lvef_hold = None
            outcome = _Outcome(discontinue=True, note="confirmed on repeat")
        elif band == "recover":
            # Cleared of "< 40 % / > 20 points" but now in the 10-20 band: that band's rule.
            part.lvef_hold = LvefHold(since=fact.date, confirm=False)
            treatment.interrupt(state, LVEF, reading, fact.date, _recover_ends(baseline, due))
            outcome = _Outcome(note=f"repeat within {window} days, by {due}")
        else:
            treatment.end_interruption(state, LVEF)
            part.lvef_hold = None
            outcome = _Outcome(ended=True, note="back in range: same dose")
            if band == "watch":
                part.lvef_repeat_due = due
    elif band in ("recover", "confirm"):
        part.lvef_hold = LvefHold(since=fact.date, confirm=band == "confirm")
        ends = (_recover_ends(baseline, due) if band == "recover" else
                f"a repeat LVEF by {due} not confirming < 40% or a drop > 20 points")
        treatment.interrupt(state, LVEF, reading, fact.date, ends)
        outcome = _Outcome(note=f"repeat within {window} days, by {due}")
    else:
        if band == "watch":
            part.lvef_repeat_due = due
        outcome = _Outcome(note=f"repeat within {window} days, by {due}" if band == "watch"
                           else None)
    extra["lvef_repeat_due"] = part.lvef_repeat_due
    _respond(state, entry, None, fact.date, outcome, **extra)


def _recover_ends(baseline: float | None, due: date) -> str:
    return (f"a repeat LVEF by {due} within 10 points of baseline ({baseline:g}%), "
            f"else discontinue")


HANDLERS = {
    AdverseEventReported: _reported,
    AdverseEventUpdated: _updated,
    AdverseEventResolved: _resolved,
    LvefMeasured: _lvef,
}


def finish(state) -> None:
    """A grade-5 AE and the death are one event: one date for all of them."""
    grade5 = _part(state).grade5
    dates = sorted({on for _, on in grade5})
    if len(dates) > 1:
        raise RuleViolation(
            "grade 5 adverse events on different dates ("
            + ", ".join(f"{ae_id} {on}" for ae_id, on in grade5) + "); a subject dies once",
            rule="ae.grade5_death_date", field="grade",
        )
    if dates and state.death is not None and state.death != dates[0]:
        ae_id = grade5[0][0]
        raise RuleViolation(
            f"the death must be recorded with the date of the grade 5 AE {ae_id} ({dates[0]}), "
            f"not {state.death}", rule="ae.grade5_death_date", field="date",
        )


def summarise(state) -> dict[str, Any]:
    part = _part(state)
    last = part.lvef_readings[-1] if part.lvef_readings else None
    grade5 = part.grade5[0][1] if part.grade5 else None
    return {
        "adverse_events": [
            {"ae_id": ae.ae_id, "term": ae.term, "verbatim": ae.verbatim,
             "graded_as": ae.graded_as, "meddra_code": ae.coded.meddra_code if ae.coded else None,
             "soc": ae.coded.soc if ae.coded else None, "onset": ae.onset,
             "baseline": ae.baseline, "grade": ae.grade,
             "worst_grade": max(g for _, g in ae.grades), "serious": list(ae.serious),
             "report_due": ae.report_due, "entered_late": ae.entered_late,
             "related": ae.related, "resolved": ae.resolved}
            for ae in part.events.values()
        ],
        "lvef": {
            "baseline": lvef_baseline(state),
            "last": last[1] if last else None,
            "last_date": last[0] if last else None,
            "repeat_due": part.lvef_repeat_due,
            "awaiting_repeat_since": part.lvef_hold.since
            if part.lvef_hold and treatment.interrupted_by(state, LVEF) else None,
        },
        "death_to_record": grade5 if grade5 and state.death is None else None,
    }
