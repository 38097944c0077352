"""The treatment course: infusions, schedule, dose levels and the treatment state.

See spec/treatment.md ("Schedule", "Dose", "Treatment state"). Every number is read from the
regimen of the subject's basket. This module owns the course; `safety.py` (the label's AE and
LVEF tables) and `local.py` (local treatment) change it only through the functions below, so
one place decides what "interrupted", "discontinued" and "the dose level in force" mean.

Readings of the spec kept here:
- An interruption has a cause. A decision (`interrupt`) is ended by a decision (`resume`); an
  interruption caused by an AE or an LVEF reading ends only when the fact the label names is
  recorded. A `resume` therefore does not lift an AE or LVEF interruption: the spec lists an
  infusion during it as a deviation and names no other way out. Several causes may hold at
  once; treatment is interrupted while any of them does.
- Decisions that change nothing (resume with nothing to resume, interrupt or reduce a course
  that is over, discontinue twice) are accepted as recorded facts without effect: neither of
  the spec's lists (impossible facts, deviations) names them.
- Withdrawal of consent or death ends a course that is still going: it is shown as
  `discontinued` (why: withdrawal of consent / death), so a withdrawn or dead subject is never
  counted as on treatment. The subject's own `status` says withdrawn or dead.
- `phase` is `not-started` before the first infusion; `neoadjuvant` from the first infusion;
  `local-treatment` once the last neo-adjuvant cycle is given or any surgery or radiotherapy
  is recorded, until local treatment is marked complete; `adjuvant` after that; `completed`
  when every cycle is given; `discontinued` when the course was stopped for good. A
  discontinued or completed course shows that phase whatever else holds.
- `next_cycle_due` is the previous infusion date + cycle length (the rhythm restarts from a
  delayed dose); null before the first infusion and once the course is over.
- A cycle number above the regimen's total is bad input (exit 2, the spec's "cycle 1-16");
  one given twice or skipping a cycle is impossible (exit 3).
- A dose that matches a higher dose level than the one in force is named a re-escalation;
  any other dose outside the tolerance is named out of tolerance. One dose deviation per
  infusion.
- AE and LVEF facts may precede enrolment; what the label makes of them (an interruption, a
  reduction, a discontinuation) already holds for the course that has not started yet. Until
  enrolment the subject's summary shows the course as `not started`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from m22bol.domain.errors import BadInput, RuleViolation
from m22bol.domain.events import (
    DoseReduced,
    InfusionGiven,
    TreatmentDiscontinued,
    TreatmentInterrupted,
    TreatmentResumed,
)
from m22bol.domain.protocol import Regimen, Strata

NOT_STARTED = "not started"
ACTIVE = "active"
INTERRUPTED = "interrupted"
DISCONTINUED = "discontinued"
COMPLETED = "completed"

DECISION = "decision"


@dataclass
class Interruption:
    cause: str  # "decision", an AE id, or "LVEF"
    why: str
    since: date
    ends_when: str

    def as_dict(self) -> dict[str, Any]:
        return {"cause": self.cause, "why": self.why, "since": self.since,
                "ends_when": self.ends_when}


@dataclass
class Course:
    cycles: list[tuple[int, date]] = field(default_factory=list)
    level_index: int = 0
    interruptions: dict[str, Interruption] = field(default_factory=dict)
    discontinued: tuple[date, str] | None = None
    completed: date | None = None
    local_started: date | None = None
    local_complete: date | None = None
    last_local_treatment: date | None = None

    @property
    def over(self) -> bool:
        return self.discontinued is not None or self.completed is not None

    @property
    def last_infusion(self) -> date | None:
        return self.cycles[-1][1] if self.cycles else None


def course(state) -> Course:
    return state.part("treatment", Course)


def regimen(state) -> Regimen | None:
    """The regimen of the subject's basket; before enrolment, of the basket the eligibility
    assessment points to (an AE may precede enrolment and already change the dose level)."""
    if state.basket:
        return state.protocol.regimen_of(state.basket)
    if state.eligibility is not None:
        basket = state.protocol.basket_for(Strata(her2=state.eligibility.her2,
                                                  er=state.eligibility.er,
                                                  prior_therapy=state.eligibility.prior_therapy))
        if basket is not None:
            return state.protocol.regimens[basket.regimen]
    return None


def dose_level(state) -> float | None:
    reg = regimen(state)
    return reg.dose_levels_mg_per_kg[course(state).level_index] if reg else None


def treatment_state(state) -> str:
    c = course(state)
    if state.enrolled is None:
        return NOT_STARTED
    if c.discontinued:
        return DISCONTINUED
    if c.completed:
        return COMPLETED
    if c.interruptions:
        return INTERRUPTED
    return ACTIVE if c.cycles else NOT_STARTED


def phase(state) -> str:
    c = course(state)
    if state.enrolled is None:
        return "not-started"
    if c.discontinued:
        return "discontinued"
    if c.completed:
        return "completed"
    if not c.cycles:
        return "not-started"
    if c.local_complete:
        return "adjuvant"
    reg = regimen(state)
    if c.local_started or (reg and len(c.cycles) >= reg.neoadjuvant_cycles):
        return "local-treatment"
    return "neoadjuvant"


def interruption(state) -> dict[str, Any] | None:
    """The interruption in force, combining its causes: why, since when, what ends it."""
    c = course(state)
    if c.over or not c.interruptions:
        return None
    causes = sorted(c.interruptions.values(), key=lambda i: i.since)
    return {
        "why": "; ".join(i.why for i in causes),
        "since": causes[0].since,
        "ends_when": "; ".join(i.ends_when for i in causes),
        "causes": [i.as_dict() for i in causes],
    }


def interruption_text(state) -> str | None:
    """The interruption in force in one line, for the output of an entry."""
    c = course(state)
    if c.over or not c.interruptions:
        return None
    return "; ".join(f"{i.why} since {i.since}, until {i.ends_when}"
                     for i in sorted(c.interruptions.values(), key=lambda i: i.since))


# --- changes other rule modules make to the course --------------------------------------------


def interrupt(state, cause: str, why: str, since: date, ends_when: str) -> None:
    """Open an interruption for `cause`; one already open for it keeps its start date."""
    c = course(state)
    if c.over:
        return
    held = c.interruptions.get(cause)
    c.interruptions[cause] = Interruption(cause, why, held.since if held else since, ends_when)


def held(state) -> bool:
    """Whether any interruption holds, enrolled or not yet."""
    c = course(state)
    return not c.over and bool(c.interruptions)


def interrupted_by(state, cause: str) -> bool:
    c = course(state)
    return not c.over and cause in c.interruptions


def end_interruption(state, cause: str) -> bool:
    """Close the interruption of `cause`; whether there was one."""
    return course(state).interruptions.pop(cause, None) is not None


def reduce(state, on: date, why: str) -> bool:
    """One dose level down; below the last level the course is discontinued for good.

    Returns False when the reduction discontinued the course.
    """
    c = course(state)
    reg = regimen(state)
    if c.over or reg is None:
        return not c.discontinued
    if c.level_index + 1 >= len(reg.dose_levels_mg_per_kg):
        discontinue(state, on, f"{why}: a reduction below the last dose level "
                               f"({reg.dose_levels_mg_per_kg[-1]:g} mg/kg)")
        return False
    c.level_index += 1
    return True


def discontinue(state, on: date, why: str) -> None:
    c = course(state)
    if c.over:
        return
    c.discontinued = (on, why)
    # A new dict, not clear(): the finishers call this on a shallow copy of the course, whose
    # dict the walk kept for the next entry still holds (`timeline.finish`).
    c.interruptions = {}


def local_treatment(state, start: date, end: date) -> None:
    c = course(state)
    c.local_started = min(filter(None, (c.local_started, start)))
    c.last_local_treatment = max(filter(None, (c.last_local_treatment, end)))


def local_treatment_completed(state, on: date) -> None:
    course(state).local_complete = on


# --- handlers ---------------------------------------------------------------------------------


def _infusion(state, entry: str, fact: InfusionGiven) -> None:
    reg = regimen(state)
    c = course(state)
    if fact.cycle > reg.total_cycles:
        raise BadInput(f"cycle: {fact.cycle} is outside 1-{reg.total_cycles}", field="cycle")
    expected_cycle = len(c.cycles) + 1
    if fact.cycle != expected_cycle:
        given = "was given already" if fact.cycle < expected_cycle else "skips a cycle"
        raise RuleViolation(
            f"{entry}: cycle {fact.cycle} on {fact.date} {given}; the next cycle is "
            f"{expected_cycle}", rule="treatment.cycle_sequence", field="cycle",
        )
    _check_state(state, entry, fact)
    _check_schedule(state, entry, fact, reg)
    level = dose_level(state)
    expected = round(level * fact.weight_kg, 2)
    _check_dose(state, entry, fact, reg, expected)

    c.cycles.append((fact.cycle, fact.date))
    if fact.cycle == reg.total_cycles:
        c.completed = fact.date
    last = fact.cycle == reg.total_cycles
    state.outputs[entry] = {
        "expected_dose_mg": expected,
        "dose_level_mg_per_kg": level,
        "next_cycle_due": None if last else fact.date + timedelta(days=reg.cycle_length_days),
        "treatment_state": treatment_state(state),
        "duration_min": fact.duration_min,
        "expected_duration_min": expected_duration(reg, fact.cycle),
    }


def expected_duration(reg: Regimen, cycle: int) -> int | None:
    """The regimen's infusion duration for a cycle: the first one longer, later ones shorter
    if tolerated. Recorded and shown beside the duration given, never enforced."""
    return reg.first_infusion_minutes if cycle == 1 else reg.later_infusion_minutes


def _check_state(state, entry: str, fact: InfusionGiven) -> None:
    c = course(state)
    if c.discontinued:
        when, why = c.discontinued
        state.deviation(entry, "treatment.after_discontinuation",
                        f"cycle {fact.cycle} on {fact.date}: treatment was discontinued on "
                        f"{when} ({why})")
    elif c.interruptions:
        now = interruption(state)
        state.deviation(entry, "treatment.while_interrupted",
                        f"cycle {fact.cycle} on {fact.date}: treatment is interrupted since "
                        f"{now['since']} ({now['why']}) until {now['ends_when']}")


def _check_schedule(state, entry: str, fact: InfusionGiven, reg: Regimen) -> None:
    c = course(state)
    if fact.cycle == 1:
        days = (fact.date - state.enrolled).days
        if days > reg.first_cycle_within_days_of_enrolment:
            state.deviation(entry, "schedule.first_cycle_late",
                            f"cycle 1 on {fact.date} is {days} days after enrolment "
                            f"({state.enrolled}); allowed: "
                            f"{reg.first_cycle_within_days_of_enrolment}")
    else:
        days = (fact.date - c.last_infusion).days
        if days < reg.min_days_between_cycles:
            state.deviation(entry, "schedule.too_early",
                            f"cycle {fact.cycle} on {fact.date} is {days} days after cycle "
                            f"{fact.cycle - 1} ({c.last_infusion}); at least "
                            f"{reg.min_days_between_cycles} days apart")
    neo = reg.neoadjuvant_cycles
    if fact.cycle <= neo and c.local_complete:
        state.deviation(entry, "schedule.neoadjuvant_after_local",
                        f"cycle {fact.cycle} is neo-adjuvant (1-{neo}) but local treatment was "
                        f"marked complete on {c.local_complete}")
    elif fact.cycle > neo and not c.local_complete:
        state.deviation(entry, "schedule.adjuvant_before_local",
                        f"cycle {fact.cycle} is adjuvant (after cycle {neo}) but local treatment "
                        f"is not marked complete")


def _check_dose(state, entry: str, fact: InfusionGiven, reg: Regimen, expected: float) -> None:
    tolerance = reg.dose_tolerance_pct / 100
    # A hair of slack so that a dose typed exactly at the boundary is not lost to rounding.
    if abs(fact.dose_mg - expected) <= expected * tolerance + 1e-9:
        return
    level = dose_level(state)
    higher = [lv for lv in reg.dose_levels_mg_per_kg if lv > level
              and abs(fact.dose_mg - lv * fact.weight_kg) <= lv * fact.weight_kg * tolerance]
    if higher:
        state.deviation(entry, "dose.re_escalation",
                        f"cycle {fact.cycle}: {fact.dose_mg:g} mg is the {higher[-1]:g} mg/kg "
                        f"level; the level in force is {level:g} mg/kg (no re-escalation)")
        return
    low, high = expected * (1 - tolerance), expected * (1 + tolerance)
    state.deviation(entry, "dose.out_of_tolerance",
                    f"cycle {fact.cycle}: {fact.dose_mg:g} mg given, expected {expected:.2f} mg "
                    f"({level:g} mg/kg x {fact.weight_kg:g} kg, ±{reg.dose_tolerance_pct:g}%: "
                    f"{low:.2f}-{high:.2f} mg)")


def _decision_output(state) -> dict[str, Any]:
    c = course(state)
    return {
        "treatment_state": treatment_state(state),
        "dose_level_mg_per_kg": dose_level(state),
        "interruption": interruption_text(state),
        "discontinued": f"{c.discontinued[0]}: {c.discontinued[1]}" if c.discontinued else None,
    }


def _interrupted(state, entry: str, fact: TreatmentInterrupted) -> None:
    interrupt(state, DECISION, f"decision: {fact.reason}", fact.date, "a decision to resume")
    state.outputs[entry] = _decision_output(state)


def _resumed(state, entry: str, fact: TreatmentResumed) -> None:
    end_interruption(state, DECISION)
    state.outputs[entry] = _decision_output(state)


def _reduced(state, entry: str, fact: DoseReduced) -> None:
    reduce(state, fact.date, f"decision: {fact.reason}")
    state.outputs[entry] = _decision_output(state)


def _discontinued(state, entry: str, fact: TreatmentDiscontinued) -> None:
    discontinue(state, fact.date, f"decision: {fact.reason}")
    state.outputs[entry] = _decision_output(state)


HANDLERS = {
    InfusionGiven: _infusion,
    TreatmentInterrupted: _interrupted,
    TreatmentResumed: _resumed,
    DoseReduced: _reduced,
    TreatmentDiscontinued: _discontinued,
}


def finish(state) -> None:
    """Conclusions drawn once the whole timeline is walked."""
    # The walk refuses every treatment fact after withdrawal or death, so ending the course
    # here, rather than in the follow-up handlers, sees the same facts.
    if state.enrolled is None:
        return
    if state.death:
        discontinue(state, state.death, "death")
    elif state.withdrawn:
        discontinue(state, state.withdrawn, "withdrawal of consent")


def treatment_ended(state) -> date | None:
    """The date treatment ended for good (discontinued or completed); None while it goes on."""
    c = course(state)
    if c.discontinued:
        return c.discontinued[0]
    return c.completed


def summarise(state) -> dict[str, Any]:
    c = course(state)
    reg = regimen(state)
    enrolled = state.enrolled is not None
    going_on = enrolled and reg is not None and not c.over
    return {
        "cycles_given": len(c.cycles),
        "dose_level_mg_per_kg": dose_level(state) if enrolled else None,
        "treatment_state": treatment_state(state),
        "phase": phase(state),
        "interruption": interruption(state) if enrolled else None,
        "discontinued": ({"date": c.discontinued[0], "why": c.discontinued[1]}
                         if enrolled and c.discontinued else None),
        "next_cycle": len(c.cycles) + 1 if going_on else None,
        "next_cycle_due": (c.last_infusion + timedelta(days=reg.cycle_length_days)
                           if going_on and c.cycles else None),
        "last_infusion_date": c.last_infusion,
        "last_treatment_date": max(filter(None, (c.last_infusion, c.last_local_treatment)),
                                   default=None),
        "treatment_ended": treatment_ended(state) if enrolled else None,
    }
