"""What the monitoring report shows, gathered from every subject's derived state."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from m22bol.domain.events import InfusionGiven, RadiotherapyGiven, SurgeryPerformed
from m22bol.domain.protocol import Protocol
from m22bol.domain.rules import assessments
from m22bol.domain.timeline import summary
from m22bol.projections import documents
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
    seal_coverage: str
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
    open_queries: list[dict[str, Any]] = field(default_factory=list)  # per site, by age band
    sdv: list[dict[str, Any]] = field(default_factory=list)  # per site
    # entries no seal covers yet (as known at `known_at` for a report of the past)
    not_yet_sealed: dict[str, Any] | None = None


def gather(reader: Reader, *, known_at: datetime | None = None,
           cutoff: date | None = None) -> ReportData:
    """Tallies and safety exactly as `endpoints` and `safety` print them; each subject's course
    as `patient` shows it.

    The present (neither `known_at` nor `cutoff`) is read from the read models, as those
    queries read it: no replay. The past and a cutoff come from one replay, whose walk feeds
    every section (asking the tallies again would replay the whole ledger twice more)."""
    present = reader.present() if known_at is None and cutoff is None else None
    if present is not None:
        return _from_read_models(reader, present)
    walked = reader.walk(known_at=known_at, cutoff=cutoff)
    subjects = []
    for w in walked.subjects:
        s = summary(w.state)
        scans = [(r.date, r.overall_response, r.change_from_baseline_pct)
                 for _, r in assessments.scan_responses(w.state) if not r.is_baseline]
        subjects.append((s, _treatment_dates(w.timeline), scans))
    moment = known_at or _last_recorded(walked)
    return _report(
        reader, walked.trial, walked, subjects, known_at=moment, unsealed_at=known_at,
        **clarification_tallies([w.patient for w in walked.subjects], moment.date()))


def _from_read_models(reader: Reader, present) -> ReportData:
    """The report's inputs from each subject's `patient --json` document and the tallies' own
    read model: the same values the replay derives, as JSON (dates as text, parsed back where
    the report counts days)."""
    subjects = []
    for document in present.documents:
        s = {**document, **{k: _day(document[k]) for k in ("death", "last_known_alive")}}
        infusions = [_day(e["date"]) for e in document["timeline"]
                     if e["event"] == InfusionGiven.__name__]
        local = [_day(e["date"]) for e in document["timeline"]
                 if e["event"] in (SurgeryPerformed.__name__, RadiotherapyGiven.__name__)]
        scans = [(_day(a["date"]), a["overall_response"], a["change_from_baseline_pct"])
                 for a in document["assessments"] if not a["baseline"]]
        subjects.append((s, (infusions, local), scans))
    moment = present.last_recorded
    return _report(reader, present.trial, present.inputs, subjects, known_at=moment,
                   unsealed_at=None, **_stored_clarifications(present, moment.date()))


def _report(reader: Reader, trial, inputs, subjects, *, known_at: datetime,
            unsealed_at: datetime | None, open_queries, sdv) -> ReportData:
    """The page's data from each subject's (summary, treatment dates, scored scans) and the
    tallies' inputs, whichever source they came from."""
    protocol = inputs.protocol
    summaries, courses, deviations, interruptions = [], [], [], []
    for s, (infusions, local), scans in subjects:
        summaries.append(s)
        for d in s["deviations"]:
            deviations.append({"subject": s["subject"], **d})
        if s.get("interruption"):
            interruptions.append({"subject": s["subject"], "basket": s["basket"],
                                  **s["interruption"]})
        course = _course(s, infusions, local, scans)
        if course is not None:
            courses.append(course)
    unsealed = reader.not_yet_sealed(known_at=unsealed_at)
    return ReportData(
        trial=protocol.name, title=protocol.title, protocol_version=protocol.version,
        cutoff=inputs.cutoff, known_at=known_at,
        seal=_last_seal(trial),
        synthetic=trial.synthetic,
        consort=consort(summaries, [b.id for b in protocol.baskets], protocol),
        endpoints=documents.endpoints_document(inputs)["baskets"],
        safety=documents.safety_document(inputs)["baskets"]["all"],
        deviations=sorted(deviations, key=lambda d: (d["subject"], d["entry"])),
        open_interruptions=sorted(interruptions, key=lambda d: d["subject"]),
        courses=courses,
        not_yet_sealed=unsealed,
        seal_coverage=seal_coverage(unsealed),
        **_survival(inputs),
        open_queries=open_queries, sdv=sdv,
    )


def _last_seal(trial) -> dict[str, Any] | None:
    """The latest seal of the trial (as known at T, for a trial replayed to T), if any."""
    if not trial.seals:
        return None
    last = trial.seals[-1]
    return {"digest": last.digest, "event_count": last.event_count, "note": last.note,
            "recorded_at": last.recorded_at.isoformat()}


def _day(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


def _treatment_dates(timeline) -> tuple[list[date], list[date]]:
    """Infusion dates, and surgery and radiotherapy start dates, of a walked timeline."""
    infusions = [f.date for _, f in timeline if isinstance(f, InfusionGiven)]
    local = [f.date for _, f in timeline if isinstance(f, SurgeryPerformed)] + [
        f.start for _, f in timeline if isinstance(f, RadiotherapyGiven)]
    return infusions, local


def seal_coverage(unsealed: dict[str, Any]) -> str:
    """What the last seal covers, as a monitor reads it: "sealed 2026-03-01, 412 entries
    since" (`reader.not_yet_sealed` counts them). Entries after the seal are protected by the
    hash links only."""
    if unsealed["last_seal"] is None:
        return "not sealed"
    since = unsealed["events"]
    entries = "entry" if since == 1 else "entries"
    return f"sealed {unsealed['last_seal_at'][:10]}, {since} {entries} since"


# Age bands of open queries, in days since opened: (label, oldest age in the band).
AGE_BANDS = (("0-7 days", 7), ("8-30 days", 30), ("31-90 days", 90), ("over 90 days", None))


def clarification_tallies(patients, today: date) -> dict[str, list[dict[str, Any]]]:
    """Open (not closed) queries per site by age band, and SDV progress per site, from each
    subject's own events (a replay)."""
    from m22bol.domain import clarifications

    opened: list[tuple[str, date]] = []
    sites: dict[str, Counter] = {}
    for patient in patients:
        checked = sites.setdefault(patient.site, Counter())
        opened += [(patient.site, thread.opened_at.date()) for thread in
                   clarifications.threads(patient.subject, patient.events).values()
                   if thread.status != clarifications.CLOSED]
        for entry in clarifications.verification(patient.subject, patient.events).values():
            checked["entries"] += 1
            checked["verified"] += bool(entry["verified"])
    return _clarification_rows(sites, opened, today)


def _stored_clarifications(present, today: date) -> dict[str, list[dict[str, Any]]]:
    """The same tallies from the read models: every subject's site, the open queries' sites
    and days opened, and the SDV counts per site."""
    sites = {site: Counter() for site in present.sites}
    for row in present.sdv:
        sites[row["site"]].update(entries=row["entries"], verified=row["verified"])
    opened = [(q["site"], _as_day(q["opened_on"])) for q in present.open_queries]
    return _clarification_rows(sites, opened, today)


def _as_day(value: date | str) -> date:
    # SQLite hands a DATE column back as text, PostgreSQL as a date.
    return value if isinstance(value, date) else date.fromisoformat(value)


def _clarification_rows(sites: dict[str, Counter], opened: list[tuple[str, date]],
                        today: date) -> dict[str, list[dict[str, Any]]]:
    """Every site's row, even with nothing open: queries by age band, SDV progress."""
    queries: dict[str, Counter] = {site: Counter() for site in sites}
    for site, day in opened:
        age = (today - day).days
        band = next(label for label, top in AGE_BANDS if top is None or age <= top)
        queries.setdefault(site, Counter())[band] += 1
    return {
        "open_queries": [{"site": site, "total": sum(bands.values()),
                          **{label: bands[label] for label, _ in AGE_BANDS}}
                         for site, bands in sorted(queries.items())],
        "sdv": [{"site": site, "verified": c["verified"], "entries": c["entries"],
                 "percent": round(100 * c["verified"] / c["entries"], 1) if c["entries"] else 0}
                for site, c in sorted(sites.items())],
    }


def _survival(inputs) -> dict[str, list[SurvivalRow]]:
    """PFS and OS times exactly as the endpoint tallies define them."""
    from m22bol.domain.rules import endpoints

    rows: dict[str, list[SurvivalRow]] = {"pfs": [], "os": []}
    for f in inputs.patients:
        outcome = endpoints.outcome(f, inputs.protocol, inputs.cutoff)
        if outcome is None:
            continue
        rows["pfs"].append(SurvivalRow(f.basket, outcome.pfs_days / MONTH, outcome.pfs_event))
        rows["os"].append(SurvivalRow(f.basket, outcome.os_days / MONTH, outcome.os_event))
    return rows


def consort(summaries: list[dict[str, Any]], baskets: list[str],
            protocol: Protocol) -> dict[str, Any]:
    """The CONSORT 2010 flow, every box a count that its parts add up to.

    Assessed = excluded + enrolled + awaiting a decision; per basket, enrolled = treated + not
    treated, and treated = completed + discontinued + still on treatment. The analysed are the
    treated: the endpoint and safety denominators (docs/endpoints.md). A screen failure may
    fail several criteria, so the exclusion reasons may add up to more than the excluded."""
    enrolled = [s for s in summaries if s["enrolled"]]
    failed = [s for s in summaries if s["status"] == "screen-failed"]
    # Left before enrolment without failing screening: CONSORT's "declined" and "other".
    left = [s for s in summaries if not s["enrolled"] and s["status"] != "screen-failed"
            and (s["withdrawn"] is not None or s["death"] is not None)]
    reasons = Counter(exclusion_reason(c, protocol) for s in failed
                      for c in dict.fromkeys(_criterion(c) for c in s["failed_criteria"]))
    reasons.update("withdrew consent before enrolment" if s["withdrawn"] is not None
                   else "died before enrolment" for s in left)
    arms = []
    for basket in baskets:
        mine = [s for s in enrolled if s["basket"] == basket]
        treated = [s for s in mine if s.get("cycles_given")]
        untreated = [s for s in mine if not s.get("cycles_given")]
        stopped = [s for s in treated if s.get("treatment_state") == "discontinued"]
        completed = sum(s.get("treatment_state") == "completed" for s in treated)
        arms.append({
            "basket": basket, "enrolled": len(mine), "treated": len(treated),
            "not_treated": len(untreated),
            "not_treated_reasons": _counted(_untreated_reason(s) for s in untreated),
            "discontinued": len(stopped),
            "discontinued_reasons": _counted(
                discontinuation_reason((s.get("discontinued") or {}).get("why", ""))
                for s in stopped),
            "completed": completed,
            "on_treatment": len(treated) - len(stopped) - completed,
            "analysed": len(treated),
        })
    return {
        "assessed": len(summaries),
        "excluded": len(failed) + len(left),
        "exclusion_reasons": _counted(reasons.elements()),
        "awaiting": len(summaries) - len(failed) - len(left) - len(enrolled),
        "enrolled": len(enrolled),
        "baskets": arms,
        "treated": sum(a["treated"] for a in arms),
    }


def _counted(reasons) -> list[tuple[str, int]]:
    """Reasons, most frequent first, then alphabetical: the order a CONSORT box lists them."""
    return sorted(Counter(reasons).items(), key=lambda kv: (-kv[1], kv[0]))


def _criterion(failure: str) -> str:
    return failure.split(":")[0]


def exclusion_reason(criterion: str, protocol: Protocol) -> str:
    """A failed eligibility criterion in the protocol's words, with its limit."""
    rules = protocol.eligibility
    words = {
        "her2": "HER2 status not accepted",
        "er": "ER status not accepted",
        "prior_therapy": "prior therapy not accepted",
        "strata": "no basket for the HER2, ER and prior-therapy combination",
        "distant_lesions": (f"distant lesions outside {rules.min_distant_lesions}"
                            f"-{rules.max_distant_lesions}"),
        "all_lesions_curable": "not every distant lesion curable by local treatment",
        "lvef": f"LVEF below {rules.min_baseline_lvef_pct:g}%"
        if rules.min_baseline_lvef_pct is not None else "LVEF too low",
        "ecog": f"ECOG performance status above {rules.max_ecog}",
        "consent": "consent dated after the eligibility assessment",
    }
    return words.get(criterion, criterion.replace("_", " "))


def _untreated_reason(s: dict[str, Any]) -> str:
    if s["death"] is not None:
        return "died before the first infusion"
    if s["withdrawn"] is not None:
        return "withdrew consent before the first infusion"
    return "first infusion not yet given"


def discontinuation_reason(why: str) -> str:
    """A discontinuation reason as a monitor counts it: by AE term, LVEF, or the decision."""
    # "AE3 Pneumonitis grade 2: ..." or "AE5 Neutrophil count decreased: a reduction below
    # the last dose level": the coded term is what a monitor counts, not the AE's id.
    if match := re.match(r"AE\S* (.+?)(?: grade \d|:)", why):
        return f"adverse event: {match.group(1)}"
    if why.startswith("LVEF"):
        return "LVEF decline or symptomatic heart failure"
    return why.removeprefix("decision: ") or "reason not recorded"


def _course(s: dict[str, Any], infusions: list[date], local: list[date],
            scans: list[tuple[date, str | None, float | None]]) -> PatientCourse | None:
    """What the figures show of one treated subject; `scans` are its scored follow-up scans
    (date, overall response, % change from baseline), in date order."""
    if not infusions:
        return None
    infusions = sorted(infusions)
    day0 = infusions[0]
    rows = [(when, response, pct) for when, response, pct in scans if response is not None]
    changes = [((when - day0).days, pct) for when, _, pct in rows if pct is not None]
    first_pd = next((when for when, response, _ in rows if response == "PD"), None)
    first_response = next(((when, response) for when, response, _ in rows
                           if response in ("CR", "PR")), None)
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
