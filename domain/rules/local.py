"""Local treatment: surgery, radiotherapy, its completion, pathology (pCR), Clavien-Dindo.

See spec/treatment.md ("Schedule", "Surgery complications") and spec/endpoints.md (pCR).
Marking local treatment complete closes the neo-adjuvant phase of the course (`treatment.py`
judges the cycles against it).

Readings of the spec kept here:
- Local treatment "any time after the first infusion" describes the plan; neither list of the
  spec makes an earlier surgery impossible or a deviation, so it is accepted. Marking local
  treatment complete before cycle 8 closes the neo-adjuvant phase early: the neo-adjuvant
  cycles after it are deviations ("a neo-adjuvant cycle after it").
- Local treatment is marked complete once; a second mark is refused (exit 3), like a second
  death: correct the first instead.
- pCR: ypT in {T0, Tis}, ypN N0 and no viable tumour in resected metastases, "not-resected"
  components ignored; with nothing resected the report has no pCR (null). Over several
  reports the subject has pCR only if every report that resected something qualifies.
- A complication is tied to the latest surgery on or before its date and must lie within the
  protocol's window of it (exit 3 otherwise). Its grade is checked as input (exit 2).
"""

from __future__ import annotations

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


@dataclass
class Local:
    surgeries: list[dict[str, Any]] = field(default_factory=list)
    radiotherapy: list[dict[str, Any]] = field(default_factory=list)
    complete: date | None = None
    pathology: list[tuple[date, bool | None]] = field(default_factory=list)
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
    verdict = pcr(fact.ypt, fact.ypn, fact.viable_metastatic_tumour)
    _part(state).pathology.append((fact.date, verdict))
    state.outputs[entry] = {"pcr": verdict}


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


HANDLERS = {
    SurgeryPerformed: _surgery,
    RadiotherapyGiven: _radiotherapy,
    LocalTreatmentCompleted: _completed,
    PathologyReported: _pathology,
    ComplicationRecorded: _complication,
}


def finish(state) -> None:
    """A course of radiotherapy is dated by its start; its end must respect death and
    withdrawal too, which the walk has seen only once it is over."""
    for course in _part(state).radiotherapy:
        for limit, rule, what in ((state.death, "date.after_death", "the subject's death"),
                                  (state.withdrawn, "date.after_withdrawal",
                                   "withdrawal of consent")):
            if limit is not None and course["end"] > limit:
                raise RuleViolation(
                    f"{course['entry']}: radiotherapy ends {course['end']}, after {what} "
                    f"({limit})", rule=rule, field="end",
                )


def summarise(state) -> dict[str, Any]:
    part = _part(state)
    verdicts = [v for _, v in part.pathology if v is not None]
    return {
        "surgeries": [{k: v for k, v in s.items() if k != "entry"} for s in part.surgeries],
        "radiotherapy": [{k: v for k, v in r.items() if k != "entry"}
                         for r in part.radiotherapy],
        "local_treatment_complete": part.complete,
        "pcr": all(verdicts) if verdicts else None,
        "complications": [{k: v for k, v in c.items() if k != "entry"}
                          for c in part.complications],
    }
