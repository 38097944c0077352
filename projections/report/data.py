"""What the monitoring report shows, gathered from every subject's derived state."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from m22bol.domain.events import InfusionGiven, RadiotherapyGiven, SurgeryPerformed
from m22bol.domain.rules import assessments
from m22bol.domain.timeline import summary
from m22bol.projections.report.figures import MONTH, PatientCourse, SurvivalRow

if TYPE_CHECKING:
    from m22bol.projections.reader import Reader


@dataclass
class ReportData:
    trial: str
    title: str
    protocol_version: str
    cutoff: date
    known_at: datetime
    seal: dict[str, Any] | None
    # A demo or training ledger (marked at init): the page says so at the top.
    synthetic: bool
    consort: dict[str, Any]
    endpoints: dict[str, Any]
    safety: dict[str, Any]
    deviations: list[dict[str, Any]]
    open_interruptions: list[dict[str, Any]]
    courses: list[PatientCourse] = field(default_factory=list)
    pfs: list[SurvivalRow] = field(default_factory=list)
    os: list[SurvivalRow] = field(default_factory=list)
    # entries no seal covers yet (as known at `known_at` for a report of the past)
    not_yet_sealed: dict[str, Any] | None = None


def gather(reader: Reader, *, known_at: datetime | None = None,
           cutoff: date | None = None) -> ReportData:
    """Tallies and safety exactly as `endpoints` and `safety` print them; each subject's course
    from the same walk through the rules that `patient` shows."""
    walked = reader.walk(known_at=known_at, cutoff=cutoff)
    facts = walked.patients
    summaries, courses, deviations, interruptions = [], [], [], []
    for w in walked.subjects:
        patient, timeline, state = w.patient, w.timeline, w.state
        s = summary(state)
        summaries.append(s)
        for d in s["deviations"]:
            deviations.append({"subject": patient.subject, **d})
        if s.get("interruption"):
            interruptions.append({"subject": patient.subject, "basket": s["basket"],
                                  **s["interruption"]})
        course = _course(s, timeline, state, walked.cutoff)
        if course is not None:
            courses.append(course)
    tallies = reader.endpoints(known_at=known_at, cutoff=cutoff)["baskets"]
    safety = reader.safety(known_at=known_at, cutoff=cutoff)["baskets"]["all"]
    return ReportData(
        trial=walked.protocol.name, title=walked.protocol.title,
        protocol_version=walked.protocol.version, cutoff=walked.cutoff,
        known_at=known_at or _last_recorded(walked), seal=walked.seal,
        synthetic=walked.trial.synthetic,
        consort=consort(summaries, [b.id for b in walked.protocol.baskets]),
        endpoints=tallies, safety=safety,
        deviations=sorted(deviations, key=lambda d: (d["subject"], d["entry"])),
        open_interruptions=sorted(interruptions, key=lambda d: d["subject"]),
        courses=courses,
        not_yet_sealed=reader.not_yet_sealed(known_at=known_at),
        **_survival(facts, walked),
    )


def _survival(facts, walked) -> dict[str, list[SurvivalRow]]:
    """PFS and OS times exactly as the endpoint tallies define them."""
    from m22bol.domain.rules import endpoints

    rows: dict[str, list[SurvivalRow]] = {"pfs": [], "os": []}
    for f in facts:
        outcome = endpoints.outcome(f, walked.protocol, walked.cutoff)
        if outcome is None:
            continue
        rows["pfs"].append(SurvivalRow(f.basket, outcome.pfs_days / MONTH, outcome.pfs_event))
        rows["os"].append(SurvivalRow(f.basket, outcome.os_days / MONTH, outcome.os_event))
    return rows


def consort(summaries: list[dict[str, Any]], baskets: list[str]) -> dict[str, Any]:
    """The CONSORT-style flow: screened down to completed, discontinued, withdrawn, dead."""
    enrolled = [s for s in summaries if s["enrolled"]]
    treated = [s for s in enrolled if s.get("cycles_given")]
    failures = Counter(c.split(":")[0] for s in summaries if s["status"] == "screen-failed"
                       for c in s["failed_criteria"])
    discontinued = Counter(_reason((s.get("discontinued") or {}).get("why", "unknown"))
                           for s in treated if s.get("treatment_state") == "discontinued")
    return {
        "screened": len(summaries),
        "screen_failed": sum(s["status"] == "screen-failed" for s in summaries),
        "screen_failure_reasons": dict(sorted(failures.items())),
        "enrolled": {b: sum(s["basket"] == b for s in enrolled) for b in baskets},
        "treated": len(treated),
        "phases": dict(sorted(Counter(s.get("phase") for s in treated).items(),
                              key=lambda kv: str(kv[0]))),
        "completed": sum(s.get("treatment_state") == "completed" for s in treated),
        "discontinued": dict(sorted(discontinued.items())),
        "withdrawn": sum(s["withdrawn"] is not None for s in summaries),
        "dead": sum(s["death"] is not None for s in summaries),
    }


def _reason(why: str) -> str:
    """A discontinuation reason as a monitor counts it: by AE term, LVEF, or the decision."""
    if match := re.match(r"AE\S* (.+?) grade \d", why):
        return f"adverse event: {match.group(1)}"
    if why.startswith("LVEF"):
        return "LVEF decline or symptomatic heart failure"
    return why


def _course(s: dict[str, Any], timeline, state, cutoff: date) -> PatientCourse | None:
    infusions = sorted(f.date for _, f in timeline if isinstance(f, InfusionGiven))
    if not infusions:
        return None
    day0 = infusions[0]
    rows = [r for _, r in assessments.scan_responses(state) if not r.is_baseline
            and r.overall_response is not None]
    changes = [((r.date - day0).days, r.change_from_baseline_pct) for r in rows
               if r.change_from_baseline_pct is not None]
    first_pd = next((r.date for r in rows if r.overall_response == "PD"), None)
    first_response = next(((r.date, r.overall_response) for r in rows
                           if r.overall_response in ("CR", "PR")), None)
    local = [f.date for _, f in timeline if isinstance(f, SurgeryPerformed)] + [
        f.start for _, f in timeline if isinstance(f, RadiotherapyGiven)]
    death = s["death"]
    last = death or s["last_known_alive"] or day0
    return PatientCourse(
        subject=s["subject"], basket=s["basket"] or "-",
        best_change_pct=min((pct for _, pct in changes), default=None),
        best_response=s.get("best_overall_response"),
        changes=changes,
        infusion_days=[(d - day0).days for d in infusions],
        local_days=sorted((d - day0).days for d in local),
        response_days=[((first_response[0] - day0).days, first_response[1])]
        if first_response else [],
        pd_day=(first_pd - day0).days if first_pd else None,
        death_day=(death - day0).days if death else None,
        last_day=(last - day0).days,
        ongoing=death is None and s["withdrawn"] is None and s.get("treatment_state") in (
            "active", "interrupted"),
    )


def _last_recorded(walked) -> datetime:
    """Without --known-at the report shows everything recorded: name the latest entry's time,
    so the same ledger always gives the same page."""
    events = [*walked.trial.events, *(e for w in walked.subjects for e in w.patient.events)]
    return max(e.recorded_at for e in events)
