"""Local treatment: surgery, radiotherapy, its completion, pathology (pCR), Clavien-Dindo.

See spec/treatment.md ("Schedule", "Surgery complications") and spec/endpoints.md (pCR).
Marking local treatment complete closes the neo-adjuvant phase of the course (`treatment.py`
judges the cycles against it).

Readings of the spec kept here:
- A surgery or radiotherapy dated before the first infusion (or with no infusion yet) is a
  deviation (`local.before_first_infusion`): refused unless accepted with a reason. It is
  judged once the whole timeline is walked, so a same-day cycle 1 entered after the surgery
  still counts as given first. Marking local
  treatment complete before cycle 8 closes the neo-adjuvant phase early: the neo-adjuvant
  cycles after it are deviations ("a neo-adjuvant cycle after it").
- A pathology report needs a surgery on or before its date (`pathology.no_surgery`, exit 3).
- Clavien-Dindo V is death, handled as a grade 5 AE is: accepted at once with a reminder to
  record the death on its date; a death on another date, or two grade V complications on
  different dates, are refused (`complication.grade_v_death_date`, exit 3).
- Local treatment is marked complete once; a second mark is refused (exit 3), like a second
  death: correct the first instead.
- pCR (`pcr_of`, the one rule for `patient` and the tally): ypT in {T0, Tis}, ypN N0 and no
  viable tumour in resected metastases, "not-resected" components ignored; a report with
  nothing resected neither qualifies nor disqualifies (null). Over several reports the subject
  has pCR only if every report that resected something qualifies; null when none did.
- A complication is tied to the latest surgery on or before its date and must lie within the
  protocol's window of it (exit 3 otherwise). Its grade is checked as input (exit 2).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from m22bol.domain.errors import RuleViolation
from m22bol.domain.events import (
    ComplicationRecorded,
    LocalTreatmentCompleted,
    PathologyReported,
    RadiotherapyGiven,
    SurgeryPerformed,
)
from m22bol.domain.rules import treatment

NOT_RESECTED = "not-resected"
GRADE_V = "V"
_PCR_YPT = frozenset({"T0", "Tis"})
_PCR_YPN = frozenset({"N0"})


def pcr(ypt: str, ypn: str, viable_metastatic_tumour: str) -> bool | None:
    """Pathological complete response of one report; None when nothing was resected."""
    verdicts = [
        ypt in _PCR_YPT if ypt != NOT_RESECTED else None,
        ypn in _PCR_YPN if ypn != NOT_RESECTED else None,
        viable_metastatic_tumour == "no" if viable_metastatic_tumour != NOT_RESECTED else None,
    ]
    resected = [v for v in verdicts if v is not None]
    return all(resected) if resected else None


def pcr_of(reports: Iterable[tuple[str, str, str]]) -> bool | None:
    """The subject's pCR over its (ypT, ypN, viable metastatic tumour) reports."""
    verdicts = [v for v in (pcr(*r) for r in reports) if v is not None]
    return all(verdicts) if verdicts else None


@dataclass
class Local:
    surgeries: list[dict[str, Any]] = field(default_factory=list)
    radiotherapy: list[dict[str, Any]] = field(default_factory=list)
    complete: date | None = None
    pathology: list[tuple[str, str, str]] = field(default_factory=list)
    complications: list[dict[str, Any]] = field(default_factory=list)


def _part(state) -> Local:
    return state.part("local", Local)


def _surgery(state, entry: str, fact: SurgeryPerformed) -> None:
    part = _part(state)
    part.surgeries.append({"entry": entry, "date": fact.date, "site": fact.site,
                           "location": fact.location})
    treatment.local_treatment(state, fact.date, fact.date)
    state.outputs[entry] = {"surgeries": len(part.surgeries), "phase": treatment.phase(state)}


def _radiotherapy(state, entry: str, fact: RadiotherapyGiven) -> None:
    if fact.end < fact.start:
        raise RuleViolation(f"{entry}: radiotherapy ends ({fact.end}) before it starts "
                            f"({fact.start})", rule="radiotherapy.dates", field="end")
    if fact.end > state.today:
        raise RuleViolation(f"{entry}: radiotherapy end {fact.end} is after today "
                            f"({state.today})", rule="date.in_future", field="end")
    _part(state).radiotherapy.append({"entry": entry, "start": fact.start, "end": fact.end,
                                      "location": fact.location, "dose_gy": fact.dose_gy,
                                      "fractions": fact.fractions})
    treatment.local_treatment(state, fact.start, fact.end)
    state.outputs[entry] = {"phase": treatment.phase(state)}


def _completed(state, entry: str, fact: LocalTreatmentCompleted) -> None:
    part = _part(state)
    if part.complete is not None:
        raise RuleViolation(f"{entry}: local treatment was marked complete on {part.complete}",
                            rule="local.complete_twice", field="date")
    part.complete = fact.date
    treatment.local_treatment_completed(state, fact.date)
    reg = treatment.regimen(state)
    state.outputs[entry] = {
        "phase": treatment.phase(state),
        "next_cycle": len(treatment.course(state).cycles) + 1 if reg else None,
    }


def _pathology(state, entry: str, fact: PathologyReported) -> None:
    if not any(s["date"] <= fact.date for s in _part(state).surgeries):
        raise RuleViolation(f"{entry}: a pathology report on {fact.date} needs a surgery on or "
                            "before it", rule="pathology.no_surgery", field="date")
    report = (fact.ypt, fact.ypn, fact.viable_metastatic_tumour)
    _part(state).pathology.append(report)
    state.outputs[entry] = {"pcr": pcr(*report)}


def _complication(state, entry: str, fact: ComplicationRecorded) -> None:
    window = state.protocol.safety.complication_within_days_of_surgery
    surgeries = [s for s in _part(state).surgeries if s["date"] <= fact.date]
    if not surgeries:
        raise RuleViolation(f"{entry}: a surgical complication on {fact.date} needs a surgery "
                            f"on or before it", rule="complication.no_surgery", field="date")
    surgery = surgeries[-1]
    days = (fact.date - surgery["date"]).days
    if days > window:
        raise RuleViolation(
            f"{entry}: complication on {fact.date} is {days} days after the last surgery "
            f"({surgery['date']}); it must lie within {window} days of it",
            rule="complication.window", field="date",
        )
    _part(state).complications.append({"entry": entry, "date": fact.date,
                                       "clavien_dindo": fact.clavien_dindo,
                                       "surgery": surgery["entry"]})
    state.outputs[entry] = {"surgery_date": surgery["date"], "days_after_surgery": days}
    if fact.clavien_dindo == GRADE_V:
        treatment.discontinue(state, fact.date, "Clavien-Dindo V (death)")
        state.outputs[entry]["note"] = (
            f"grade V: the death is recorded on {state.death}" if state.death == fact.date
            else f"grade V: record the subject's death dated {fact.date}")


HANDLERS = {
    SurgeryPerformed: _surgery,
    RadiotherapyGiven: _radiotherapy,
    LocalTreatmentCompleted: _completed,
    PathologyReported: _pathology,
    ComplicationRecorded: _complication,
}


def finish(state) -> None:
    """Checks that need the whole timeline walked first."""
    part = _part(state)
    # A course of radiotherapy is dated by its start; its end must respect death and
    # withdrawal too, which the walk has seen only once it is over.
    for course in part.radiotherapy:
        for limit, rule, what in ((state.death, "date.after_death", "the subject's death"),
                                  (state.withdrawn, "date.after_withdrawal",
                                   "withdrawal of consent")):
            if limit is not None and course["end"] > limit:
                raise RuleViolation(
                    f"{course['entry']}: radiotherapy ends {course['end']}, after {what} "
                    f"({limit})", rule=rule, field="end",
                )
    first = treatment.course(state).cycles[0][1] if treatment.course(state).cycles else None
    for item, when in ([(s, s["date"]) for s in part.surgeries]
                       + [(r, r["start"]) for r in part.radiotherapy]):
        if first is None or when < first:
            what = "surgery" if item in part.surgeries else "radiotherapy"
            state.deviation(item["entry"], "local.before_first_infusion",
                            f"{what} on {when} comes before the first infusion"
                            + (f" ({first})" if first else " (none given yet)"))
    deaths = sorted({c["date"] for c in part.complications if c["clavien_dindo"] == GRADE_V})
    if len(deaths) > 1 or (deaths and state.death is not None and state.death != deaths[0]):
        raise RuleViolation(
            "Clavien-Dindo V is death: the death and every grade V complication share one date "
            f"(grade V on {', '.join(map(str, deaths))}; death "
            f"{state.death or 'not recorded'})", rule="complication.grade_v_death_date",
            field="date")


def summarise(state) -> dict[str, Any]:
    part = _part(state)
    return {
        "surgeries": [{k: v for k, v in s.items() if k != "entry"} for s in part.surgeries],
        "radiotherapy": [{k: v for k, v in r.items() if k != "entry"}
                         for r in part.radiotherapy],
        "local_treatment_complete": part.complete,
        "pcr": pcr_of(part.pathology),
        "complications": [{k: v for k, v in c.items() if k != "entry"}
                          for c in part.complications],
    }
