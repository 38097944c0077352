"""Tumour assessments: CT/MRI scans scored by RECIST 1.1 (`recist.py`), FDG-PET, ctDNA.

Nobody types a response category for a CT/MRI assessment: each scan's response is derived from
the measurements of every scan walked so far. The walk goes in clinical order, so when a scan
is walked, every earlier scan and every infusion on or before its date is known; that is all its
response depends on (baseline: the last scan on or before the first infusion; nadir: earlier
sums). A late-entered earlier scan therefore changes the responses of the scans after it, which
is intended: responses are always derived, never stored for use.

Readings of `spec/recist.md` and `spec/cli.md` this module makes:

- A scan is validated when it is walked, as the baseline if it is the baseline at that point
  (no infusion before it yet) or as a follow-up otherwise, and the `RuleViolation` of the engine
  refuses the entry (exit 3). So a screening scan later superseded by a newer baseline was still
  checked as a baseline when it was the latest one.
- The scan output (`spec/cli.md`) is printed flat and also kept under `response`, which the
  decided event stores for the record; derivations never read it back.
- PET: a PET dated on or before the first infusion is a baseline PET and must carry no PERCIST
  category; a PET after it must carry one. A late-entered earlier infusion that turns a
  category-less PET into a follow-up PET is refused with the same rule. When the baseline PET
  and the follow-up both give SULpeak, the category must agree with PERCIST 1.0
  (`pet.percist_sulpeak`, exit 3): CMR/PMR need a fall of at least 30% and 0.8 SUL units, PMD
  a rise of at least 30% and 0.8 units or new lesions, SMD neither. The comparison is exact on
  the decimals as written, so a fall of exactly 30% qualifies.
- ctDNA baseline: the latest sample on or before the first infusion (before any infusion, the
  latest sample so far). Samples on the baseline day are read together: one `detected` makes the
  baseline detected (a negative the same day does not undo it), as `endpoints.py` counts it.
  Clearance: a `not-detected` sample dated after the baseline day, with no time limit.
- `ctdna_status`, one of:
  - `null`: no ctDNA sample at all;
  - `not-informative`: treated, but no sample on or before the first infusion;
  - `not-detected-baseline`: the baseline sample was not detected (also not informative for
    the primary endpoint: such a patient cannot clear);
  - `detected`: baseline detected, no `not-detected` sample since;
  - `cleared`: baseline detected, a later sample not detected, and the latest sample not
    detected;
  - `detected-after-clearance`: cleared once, then detected again in the latest sample (still
    counted as clearance by the endpoints, which ask whether it cleared at all).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from typing import Any

from m22bol.domain.errors import RuleViolation
from m22bol.domain.events import CtdnaRecorded, PetRecorded, ScanRecorded
from m22bol.domain.rules import endpoints, followup, recist, treatment

PART = "assessments"

# The scan output of spec/cli.md, in its order.
RESPONSE_KEYS = ("target_sum_mm", "baseline_sum_mm", "nadir_sum_mm", "change_from_baseline_pct",
                 "change_from_nadir_pct", "target_response", "non_target_response",
                 "new_lesions", "overall_response")


@dataclass
class Assessments:
    """This module's part of the state: the assessment facts walked so far, in walk order."""

    scans: list[tuple[str, recist.Assessment]] = field(default_factory=list)
    pets: list[tuple[str, PetRecorded]] = field(default_factory=list)
    ctdna: list[tuple[str, CtdnaRecorded]] = field(default_factory=list)
    # The scans' responses as last scored: each new scan is scored on from there
    # (`recist.score_next`), never the whole list again.
    scored: recist.Scored | None = None


def part(state) -> Assessments:
    return state.part(PART, Assessments)


# --- what the other rule modules know -----------------------------------------------------------


def infusion_dates(state) -> list[date]:
    """Dates of the infusions walked so far; the treatment module owns them."""
    return sorted(when for _, when in treatment.course(state).cycles)


def first_infusion(state) -> date | None:
    """Day 0: the first infusion walked so far (the true one once the walk is past it)."""
    return min((when for _, when in treatment.course(state).cycles), default=None)


# --- CT/MRI -----------------------------------------------------------------------------------


def assessment_of(fact: ScanRecorded) -> recist.Assessment:
    """The RECIST engine's view of a recorded scan; nodes are targets measured by short axis."""
    targets = tuple(recist.Target(t.lesion_id, t.organ, False, t.mm) for t in fact.targets)
    nodes = tuple(recist.Target(n.lesion_id, n.organ, True, n.mm) for n in fact.nodes)
    non_targets = tuple(recist.NonTarget(nt.lesion_id, nt.organ, nt.status)
                        for nt in fact.non_targets)
    return recist.Assessment(date=fact.date, targets=targets + nodes, non_targets=non_targets,
                             new_lesions=tuple(fact.new_lesions))


def scan_responses(state) -> list[tuple[str, recist.AssessmentResponse]]:
    """(entry, response) for every scan walked so far, in date order.

    Raises the engine's `RuleViolation` for an invalid baseline or follow-up.
    """
    scans = part(state).scans
    # The part is in walk order (date, then entry), the order the engine scores in, so the
    # i-th response belongs to the i-th scan.
    return [(entry, r) for (entry, _), r in zip(scans, _responses(state), strict=True)]


def _responses(state) -> list[recist.AssessmentResponse]:
    """The scans' responses, scored on from the last time where that gives what scoring them
    all gives: the scans added since are dated on or after every scan scored, and day 0 lets
    the baseline be the same (`recist.resumable`). A walk always meets this; anything else
    scores them all."""
    assessments = part(state)
    scans, day0, params = assessments.scans, first_infusion(state), state.protocol.response
    done = assessments.scored
    if done is not None and len(done.responses) <= len(scans) \
            and recist.resumable(done, day0, params) \
            and _in_date_order(scans, max(len(done.responses), 1)):
        for _, a in scans[len(done.responses):]:
            recist.score_next(done, a, day0)
    elif _in_date_order(scans, 1):
        done = recist.scored([a for _, a in scans], day0, params)
    else:  # not the walk's order: scored, not kept
        assessments.scored = None
        return recist.evaluate([a for _, a in scans], day0, params)
    assessments.scored = done
    return done.responses


def _in_date_order(scans: list[tuple[str, recist.Assessment]], start: int) -> bool:
    """Whether the scans from index `start` on are each dated on or after the one before."""
    return all(scans[i - 1][1].date <= scans[i][1].date for i in range(start, len(scans)))


def response_output(r: recist.AssessmentResponse) -> dict[str, Any]:
    return {key: getattr(r, key) for key in RESPONSE_KEYS}


def _scan(state, entry: str, fact: ScanRecorded) -> None:
    part(state).scans.append((entry, assessment_of(fact)))
    try:
        response = _responses(state)[-1]
    except RuleViolation as error:
        # Every scan before this one passed when it was walked, so this one is at fault.
        error.message = f"{entry}: {error.message}"
        error.args = (error.message,)
        raise
    shown = response_output(response)
    state.outputs[entry] = {**shown, "response": dict(shown)}


# --- PET --------------------------------------------------------------------------------------


def _pet(state, entry: str, fact: PetRecorded) -> None:
    day0 = first_infusion(state)
    baseline = day0 is None or fact.date <= day0
    if baseline and fact.percist is not None:
        raise RuleViolation(
            f"{entry}: the PET of {fact.date} is a baseline PET (on or before the first "
            f"infusion{f' of {day0}' if day0 else ''}) and takes no PERCIST category "
            f"(given {fact.percist})", rule="pet.baseline_category", field="percist")
    if not baseline and fact.percist is None:
        raise RuleViolation(
            f"{entry}: the PET of {fact.date} is after the first infusion ({day0}) and needs "
            "a PERCIST category (CMR, PMR, SMD or PMD)", rule="pet.category_required",
            field="percist")
    base = baseline_pet(part(state).pets, day0)
    if not baseline and base is not None:
        _check_percist(entry, fact, base)
    part(state).pets.append((entry, fact))
    state.outputs[entry] = {
        "pet": "baseline" if baseline else "follow-up",
        "percist": fact.percist,
        "sulpeak": fact.sulpeak,
        "baseline_sulpeak": base.sulpeak if base is not None and not baseline else None,
    }


_PERCIST_FRACTION = Fraction(30, 100)
_PERCIST_SUL_UNITS = Fraction(8, 10)


def percist_from_sulpeak(baseline: float, now: float, new_lesions: bool) -> str:
    """The PERCIST 1.0 class the SULpeak change allows: "response" (CMR or PMR), "PMD" or
    "SMD"."""
    base, value = Fraction(repr(float(baseline))), Fraction(repr(float(now)))
    change = value - base
    if new_lesions or (change >= _PERCIST_SUL_UNITS and change >= base * _PERCIST_FRACTION):
        return "PMD"
    if -change >= _PERCIST_SUL_UNITS and -change >= base * _PERCIST_FRACTION:
        return "response"
    return "SMD"


def _check_percist(entry: str, fact: PetRecorded, base: PetRecorded) -> None:
    if base.sulpeak is None or fact.sulpeak is None:
        if fact.new_lesions and fact.percist != "PMD":
            raise RuleViolation(
                f"{entry}: the PET of {fact.date} shows new lesions, which PERCIST 1.0 scores "
                f"PMD (given {fact.percist})", rule="pet.percist_sulpeak", field="percist")
        return
    allowed = percist_from_sulpeak(base.sulpeak, fact.sulpeak, fact.new_lesions)
    given = "response" if fact.percist in ("CMR", "PMR") else fact.percist
    if given != allowed:
        shown = "CMR or PMR" if allowed == "response" else allowed
        raise RuleViolation(
            f"{entry}: PERCIST {fact.percist} does not agree with SULpeak {fact.sulpeak:g} "
            f"against the baseline {base.sulpeak:g} of {base.date}"
            + (" with new lesions" if fact.new_lesions else "")
            + f": PERCIST 1.0 makes it {shown} (PMR/CMR: a fall of at least 30% and 0.8 SUL "
            "units; PMD: a rise of at least 30% and 0.8 units, or new lesions)",
            rule="pet.percist_sulpeak", field="percist")


def baseline_pet(pets: Sequence[tuple[str, PetRecorded]], day0: date | None) -> PetRecorded | None:
    """The last PET on or before day 0 (before any infusion, the latest)."""
    before = [p for _, p in pets if day0 is None or p.date <= day0]
    return max(before, key=lambda p: p.date) if before else None


# --- ctDNA ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CtdnaSummary:
    status: str | None
    baseline_date: date | None
    baseline_detected: bool | None
    cleared_on: date | None  # the first not-detected sample after a detected baseline


def ctdna_summary(samples: Sequence[CtdnaRecorded], day0: date | None,
                  treated: bool) -> CtdnaSummary:
    """ctDNA baseline, clearance and status (see the module docstring for the categories)."""
    if not samples:
        return CtdnaSummary(None, None, None, None)
    ordered = sorted(samples, key=lambda s: s.date)
    at_baseline = [s for s in ordered if day0 is None or s.date <= day0]
    if not at_baseline:
        status = "not-informative" if treated else None
        return CtdnaSummary(status, None, None, None)
    baseline_date = at_baseline[-1].date
    detected = any(s.result == "detected" for s in at_baseline if s.date == baseline_date)
    if not detected:
        return CtdnaSummary("not-detected-baseline", baseline_date, False, None)
    after = [s for s in ordered if s.date > baseline_date]
    cleared_on = next((s.date for s in after if s.result == "not-detected"), None)
    if cleared_on is None:
        status = "detected"
    else:
        last_day = after[-1].date
        relapsed = any(s.result == "detected" for s in after if s.date == last_day)
        status = "detected-after-clearance" if relapsed else "cleared"
    return CtdnaSummary(status, baseline_date, True, cleared_on)


def _ctdna(state, entry: str, fact: CtdnaRecorded) -> None:
    part(state).ctdna.append((entry, fact))
    day0 = first_infusion(state)
    summary = ctdna_summary([s for _, s in part(state).ctdna], day0, treated=day0 is not None)
    state.outputs[entry] = {
        "ctdna_baseline": day0 is None or fact.date <= day0,
        "ctdna_status": summary.status,
    }


HANDLERS = {ScanRecorded: _scan, PetRecorded: _pet, CtdnaRecorded: _ctdna}


# --- the subject's summary --------------------------------------------------------------------


def summarise(state) -> dict[str, Any]:
    """Response, PET, ctDNA and survival status for `patient`; keys merged into its JSON.

    Survival status is the tallies' own rule for one patient, up to the last fact walked (a
    `patient --cutoff` view walks only the facts up to its cutoff): progression-free survival
    from `endpoints.progression_free` (with `why`: the event, or why it is censored where it
    is); overall survival event = death, else censored at the last date the patient was known
    alive. Both are null for a subject not treated.
    """
    day0 = first_infusion(state)
    responses = scan_responses(state)
    rows = [r for _, r in responses]
    bor = recist.best_overall_response(rows, day0, state.protocol.response)
    confirmations = recist.confirmed(rows, state.protocol.response) if day0 else []
    scored = [(e, r) for e, r in responses if r.overall_response is not None or r.is_baseline]
    last = scored[-1] if scored else None
    first_pd = next((r.date for r in rows if r.overall_response == recist.PD), None)
    pets = part(state).pets
    base_pet = baseline_pet(pets, day0)
    ctdna = ctdna_summary([s for _, s in part(state).ctdna], day0, treated=day0 is not None)
    return {
        "best_overall_response": bor,
        "confirmed_responses": [
            {"date": c.date, "response": c.response, "confirmed_as": c.confirmed_as,
             "confirmed_on": c.confirmed_on} for c in confirmations],
        "first_progression": first_pd,
        "last_assessment": None if last is None else {
            "entry": last[0], "date": last[1].date, "baseline": last[1].is_baseline,
            "target_sum_mm": last[1].target_sum_mm,
            "overall_response": last[1].overall_response},
        "assessments": [
            {"entry": e, "date": r.date, "baseline": r.is_baseline, **response_output(r)}
            for e, r in responses],
        "pet_baseline": None if base_pet is None else {"date": base_pet.date,
                                                       "sulpeak": base_pet.sulpeak},
        "pet_categories": [{"date": p.date, "percist": p.percist, "sulpeak": p.sulpeak}
                           for _, p in sorted(pets, key=lambda ep: ep[1].date)
                           if p.percist is not None],
        "ctdna_status": ctdna.status,
        "ctdna_baseline": None if ctdna.baseline_date is None else {
            "date": ctdna.baseline_date, "detected": ctdna.baseline_detected},
        "ctdna_cleared_on": ctdna.cleared_on,
        "subsequent_therapy": followup.subsequent_therapy(state),
        **_survival_status(state, day0, rows),
    }


def _survival_status(state, day0: date | None, rows) -> dict[str, Any]:
    if day0 is None:
        return {"progression_free": None, "overall_survival": None}
    when, event, why = endpoints.progression_free(
        day0, [(r.date, r.overall_response) for r in rows], state.death,
        followup.subsequent_therapy(state), state.protocol)
    pfs = {"status": "event" if event else "censored", "event": why if event else None,
           "date": when, "why": why}
    if state.death is not None:
        os_ = {"status": "event", "event": "death", "date": state.death}
    else:
        os_ = {"status": "censored", "event": None, "date": state.last_fact_date}
    for status in (pfs, os_):
        status["days"] = max(0, (status["date"] - day0).days)
    return {"progression_free": pfs, "overall_survival": os_}
