"""CTCAE v5.0 terms and grades, the T-DXd label's AE table and its LVEF table.

See spec/treatment.md ("Rules triggered by adverse events and LVEF"). The tables decide here;
the course they act on (interruptions, dose level, discontinuation) belongs to `treatment.py`.

Readings of the spec kept here:
- A grade that does not exist for a known term is bad input (exit 2, "value out of range"),
  like a grade outside 1-5. Terms the engine does not know accept grades 1-5.
- Grade 5: the AE is accepted at once (it is usually entered before the death), treatment is
  discontinued and the output reminds that the death must be recorded with the AE's date. A
  death dated otherwise, or a second grade-5 AE on another date, is refused (exit 3) when the
  timeline is checked, whichever is entered first.
- An interruption's episode: neutrophils or platelets that reached grade 4 while interrupted
  lead to a reduction when the interruption ends, even if the grade went back to 3 first.
- Pneumonitis grade 1: "within 28 days of onset" counts resolution date - onset <= 28 days.
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
  that the AE table carries as "Heart failure (symptomatic) >= 2").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from m22bol.domain.errors import BadInput, RuleViolation
from m22bol.domain.events import (
    AdverseEventReported,
    AdverseEventResolved,
    AdverseEventUpdated,
    LvefMeasured,
)
from m22bol.domain.rules import treatment

CONTINUE = "continue"
INTERRUPT = "interrupt"
REDUCE = "reduce"
DISCONTINUE = "discontinue"
RESUME = "resume"
RESUME_REDUCED = "resume-reduced"

PNEUMONITIS = "Pneumonitis"
NEUTROPHILS = "Neutrophil count decreased"
FEBRILE_NEUTROPENIA = "Febrile neutropenia"
PLATELETS = "Platelet count decreased"
HEART_FAILURE = "Heart failure"

# CTCAE v5.0 grades that exist for the terms the engine knows.
GRADES: dict[str, range] = {
    PNEUMONITIS: range(1, 6),
    NEUTROPHILS: range(1, 5),
    FEBRILE_NEUTROPENIA: range(3, 6),
    PLATELETS: range(1, 5),
    HEART_FAILURE: range(1, 6),
    "Alopecia": range(1, 3),
    "Nausea": range(1, 4),
    "Fatigue": range(1, 4),
    "Ejection fraction decreased": range(2, 5),
}
ALIASES = {"interstitial lung disease": PNEUMONITIS}
_KNOWN = {term.casefold(): term for term in GRADES}

LVEF = "LVEF"


def canonical_term(term: str) -> str:
    """The CTCAE term a reported term is graded as; unknown terms come back as given."""
    key = " ".join(term.split()).casefold()
    return ALIASES.get(key) or _KNOWN.get(key) or term.strip()


def check_grade(term: str, grade: int) -> None:
    allowed = GRADES.get(canonical_term(term), range(1, 6))
    if grade not in allowed:
        graded = canonical_term(term)
        raise BadInput(
            f"grade: {grade} does not exist for {graded} in CTCAE v5.0 "
            f"(grades {allowed.start}-{allowed.stop - 1})", field="grade",
        )


@dataclass
class AdverseEvent:
    ae_id: str
    term: str
    graded_as: str
    onset: date
    serious: bool
    related: bool | None
    grades: list[tuple[date, int]]
    resolved: date | None = None
    # Reached grade 4 during the interruption now open: reduce when it ends.
    reduce_on_end: bool = False

    @property
    def grade(self) -> int:
        return self.grades[-1][1]


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


# --- adverse events ---------------------------------------------------------------------------


def _reported(state, entry: str, fact: AdverseEventReported) -> None:
    part = _part(state)
    if fact.ae_id in part.events:
        raise RuleViolation(f"{entry}: AE id {fact.ae_id} is already used for this subject",
                            rule="ae.id_exists", field="ae_id")
    check_grade(fact.term, fact.grade)
    ae = AdverseEvent(fact.ae_id, fact.term, canonical_term(fact.term), fact.onset, fact.serious,
                      fact.related, [(fact.onset, fact.grade)])
    part.events[ae.ae_id] = ae
    _respond(state, entry, ae, fact.onset, _graded(state, ae, fact.onset))


def _known(state, entry: str, ae_id: str, when: date) -> AdverseEvent:
    ae = _part(state).events.get(ae_id)
    if ae is None:
        raise RuleViolation(f"{entry}: AE {ae_id} is not reported with an onset on or before "
                            f"{when}", rule="ae.before_onset", field="date")
    if ae.resolved is not None:
        raise RuleViolation(f"{entry}: AE {ae_id} was resolved on {ae.resolved}; record a "
                            f"recurrence as a new AE", rule="ae.resolved", field="date")
    return ae


def _updated(state, entry: str, fact: AdverseEventUpdated) -> None:
    ae = _known(state, entry, fact.ae_id, fact.date)
    check_grade(ae.term, fact.grade)
    ae.grades.append((fact.date, fact.grade))
    _respond(state, entry, ae, fact.date, _graded(state, ae, fact.date))


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


def _graded(state, ae: AdverseEvent, on: date) -> _Outcome:
    """The label's AE table for the AE's grade as of this fact."""
    grade, term, name = ae.grade, ae.graded_as, f"{ae.ae_id} {ae.graded_as} grade {ae.grade}"
    if grade == 5:
        _part(state).grade5.append((ae.ae_id, on))
        treatment.discontinue(state, on, f"{name}")
        note = (f"grade 5: the death is recorded on {state.death}" if state.death == on else
                f"grade 5: record the subject's death dated {on}")
        return _Outcome(discontinue=True, note=note)
    if term in (PNEUMONITIS, HEART_FAILURE) and grade >= 2:
        treatment.discontinue(state, on, f"{name}: discontinue permanently")
        return _Outcome(discontinue=True)
    if term == PNEUMONITIS:
        within = state.protocol.safety.pneumonitis_grade1_same_dose_within_days
        treatment.interrupt(state, ae.ae_id, name, on,
                            f"{ae.ae_id} resolved (the same dose if within {within} days of "
                            f"onset, else one level lower)")
        return _Outcome()
    if term in (NEUTROPHILS, PLATELETS):
        recovered = 2 if term == NEUTROPHILS else 1
        if grade >= 3:
            if not _held(state, ae):
                ae.reduce_on_end = False
            ae.reduce_on_end |= grade == 4
            then = "one level lower" if ae.reduce_on_end else "the same dose"
            treatment.interrupt(state, ae.ae_id, name, on,
                                f"{ae.ae_id} at grade <= {recovered} or resolved, then {then}")
            return _Outcome()
        if grade <= recovered:
            return _release(state, ae, on, reduce=ae.reduce_on_end)
        return _Outcome()
    if term == FEBRILE_NEUTROPENIA:
        treatment.interrupt(state, ae.ae_id, name, on,
                            f"{ae.ae_id} resolved, then one level lower")
        return _Outcome()
    return _Outcome()


def _recovered(state, ae: AdverseEvent, on: date) -> _Outcome:
    """The label's AE table when the AE resolves."""
    if ae.graded_as == PNEUMONITIS:
        within = state.protocol.safety.pneumonitis_grade1_same_dose_within_days
        days = (on - ae.onset).days
        outcome = _release(state, ae, on, reduce=days > within)
        if outcome.ended:
            outcome.note = (f"resolved {days} days after onset "
                            f"({'within' if days <= within else 'more than'} {within} days)")
        return outcome
    if ae.graded_as == FEBRILE_NEUTROPENIA:
        return _release(state, ae, on, reduce=True)
    return _release(state, ae, on, reduce=ae.reduce_on_end)


def _held(state, ae: AdverseEvent) -> bool:
    return treatment.interrupted_by(state, ae.ae_id)


def _release(state, ae: AdverseEvent, on: date, *, reduce: bool) -> _Outcome:
    if not treatment.end_interruption(state, ae.ae_id):
        return _Outcome()
    ae.reduce_on_end = False
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
            {"ae_id": ae.ae_id, "term": ae.term, "graded_as": ae.graded_as, "onset": ae.onset,
             "grade": ae.grade, "worst_grade": max(g for _, g in ae.grades),
             "serious": ae.serious, "related": ae.related, "resolved": ae.resolved}
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
