"""One subject's contribution to the endpoint tallies: `endpoints.PatientFacts` from its state.

Pure. The caller walks the subject's effective timeline (as known at T, cut at the cutoff) with
`domain.timeline.derive` and hands in both the state and the facts it was derived from.

Whatever a rule derives comes from the state, from the module that owns it: basket and
enrolment (eligibility), death and withdrawal (follow-up), the infusions of the course and the
end of treatment (treatment), each scan's overall response, the PETs and ctDNA samples
(assessments), the CTCAE term an AE is graded as (safety). Plain facts that no rule
reinterprets (dates of surgery and radiotherapy, the pathology components, complication grades,
AE grade histories) are read from the effective facts themselves, so a correction or a
retraction reaches the tallies the same way it reaches every other view.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

from m22bol.domain.events import (
    AdverseEventReported,
    AdverseEventUpdated,
    ComplicationRecorded,
    Fact,
    PathologyReported,
    RadiotherapyGiven,
    SurgeryPerformed,
)
from m22bol.domain.rules import assessments, followup, safety, treatment
from m22bol.domain.rules.endpoints import AdverseEventFacts, PatientFacts


def patient_facts(state, facts: Iterable[tuple[str, Fact]] | Iterable[Fact]) -> PatientFacts:
    """The endpoint inputs of one subject.

    `facts` is the effective timeline `state` was derived from, as (entry, fact) pairs or bare
    facts; only what it holds counts, so cut it at the cutoff before deriving.
    """
    walked = [f[1] if isinstance(f, tuple) else f for f in facts]
    # The walk's order: clinical date, then entry order (the sort is stable).
    walked.sort(key=lambda f: f.clinical_date)
    return PatientFacts(
        subject=state.subject,
        basket=state.basket,
        enrolled=state.enrolled,
        infusions=tuple(assessments.infusion_dates(state)),
        surgeries=tuple(f.date for f in walked if isinstance(f, SurgeryPerformed)),
        radiotherapy=tuple((f.start, f.end) for f in walked if isinstance(f, RadiotherapyGiven)),
        assessments=tuple((r.date, r.overall_response)
                          for _, r in assessments.scan_responses(state)),
        ctdna=tuple((s.date, s.result == "detected") for _, s in assessments.part(state).ctdna),
        pets=tuple((p.date, p.percist) for _, p in assessments.part(state).pets),
        pathology=tuple((f.date, f.ypt, f.ypn, f.viable_metastatic_tumour) for f in walked
                        if isinstance(f, PathologyReported)),
        complications=tuple((f.date, f.clavien_dindo) for f in walked
                            if isinstance(f, ComplicationRecorded)),
        adverse_events=adverse_events(state, walked),
        death=state.death,
        treatment_ended=treatment.treatment_ended(state),
        fact_dates=tuple(sorted({f.clinical_date for f in walked})),
        subsequent_therapy=followup.subsequent_therapy(state),
    )


def adverse_events(state, walked: Sequence[Fact]) -> tuple[AdverseEventFacts, ...]:
    """Each AE with its grade history (the onset grade, then each update in walk order) and
    the coding and SAE deadline the walk derived."""
    reported: dict[str, AdverseEventReported] = {}
    grades: dict[str, list[tuple[date, int]]] = {}
    for f in walked:
        if isinstance(f, AdverseEventReported):
            reported[f.ae_id] = f
            grades[f.ae_id] = [(f.onset, f.grade)]
        elif isinstance(f, AdverseEventUpdated) and f.ae_id in grades:
            grades[f.ae_id].append((f.date, f.grade))
    walked_aes = safety.adverse_events(state)
    result = []
    for ae_id, fact in reported.items():
        ae = walked_aes[ae_id]
        result.append(AdverseEventFacts(
            ae_id=ae_id, term=ae.graded_as, onset=fact.onset, serious=fact.serious,
            grades=tuple(grades[ae_id]), related=fact.related,
            soc=ae.coded.soc if ae.coded else None,
            meddra_code=ae.coded.meddra_code if ae.coded else None, verbatim=fact.verbatim,
            serious_criteria=fact.serious_criteria, report_due=ae.report_due,
            entered_late=ae.entered_late))
    return tuple(result)
