"""The endpoint tallies of spec/endpoints.md, computed from per-patient facts.

Pure: the caller gathers each patient's facts (already restricted to what was known at T, with
corrections applied and retractions removed) and passes the protocol in force and the cutoff.
The cutoff is applied here, before anything is derived, so that no caller can forget it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from m22bol.domain.protocol import Protocol
from m22bol.domain.rules.intervals import rounded_interval
from m22bol.domain.rules.survival import KMCurve, kaplan_meier

DAYS_PER_MONTH = 30.4375

_METABOLIC_RESPONSE = frozenset({"CMR", "PMR"})
_NOT_EVALUABLE = "NE"

# Every proportion the tallies report: (section, count) -> the count it is a proportion of.
# Each gets `<count>_ci95` beside it; the text and the report show them as n/N (x%, 95% CI).
PROPORTIONS: dict[tuple[str, str], str] = {
    **{("primary", k): "evaluable" for k in (
        "responders", "radiologic_cr", "radiologic_cr_before_local_treatment", "ctdna_cleared",
        "ctdna_not_informative")},
    ("pathological_complete_response", "patients"): "operated",
    ("metabolic_response", "patients"): "pet_evaluable",
    ("ctdna_clearance", "patients"): "baseline_detected",
    **{("safety", k): "treated" for k in (
        "patients_with_teae", "grade3plus", "serious", "grade5", "pneumonitis", "related",
        "clavien_dindo_3plus")},
}

# Clavien-Dindo order; a bare "III"/"IV" (sub-grade not given) is placed at its lowest sub-grade.
_CLAVIEN_DINDO_RANK = {
    "i": 1, "ii": 2, "iii": 3, "iiia": 3, "iiib": 4, "iv": 5, "iva": 5, "ivb": 6, "v": 7,
}
_CLAVIEN_DINDO_IIIA = _CLAVIEN_DINDO_RANK["iiia"]


@dataclass(frozen=True)
class AdverseEventFacts:
    ae_id: str
    term: str  # the coded CTCAE term: "Pneumonitis" for ILD
    onset: date
    serious: bool
    grades: tuple[tuple[date, int], ...]  # (date, grade) history, first = the onset grade
    related: bool | None = None
    # What the safety tables show beside the counts: the coding, and for an SAE its ICH E2A
    # criteria and 24-hour reporting deadline (docs/safety.md).
    soc: str | None = None  # None: an uncodable term stored before coding
    meddra_code: int | None = None
    verbatim: str | None = None
    serious_criteria: tuple[str, ...] = ()
    report_due: datetime | None = None
    entered_late: bool | None = None


@dataclass(frozen=True)
class PatientFacts:
    subject: str
    basket: str | None
    enrolled: date | None
    infusions: tuple[date, ...]
    surgeries: tuple[date, ...]
    radiotherapy: tuple[tuple[date, date], ...]  # (start, end)
    assessments: tuple[tuple[date, str | None], ...]  # CT/MRI: (date, overall response or None)
    ctdna: tuple[tuple[date, bool], ...]  # (date, detected)
    pets: tuple[tuple[date, str | None], ...]  # (date, PERCIST category, None for a baseline)
    pathology: tuple[tuple[date, str, str, str], ...]  # (date, ypT, ypN, viable metastatic)
    complications: tuple[tuple[date, str], ...]  # (date, Clavien-Dindo grade, e.g. "IIIb")
    adverse_events: tuple[AdverseEventFacts, ...]
    death: date | None
    treatment_ended: date | None  # treatment ended for good; None while it goes on
    # The clinical date of every fact of the subject, of any kind (contacts, LVEF readings, AE
    # updates and resolutions included): last known alive is the latest one up to the cutoff.
    fact_dates: tuple[date, ...] = ()
    subsequent_therapy: date | None = None  # start of the first new anticancer therapy

    @classmethod
    def from_plain(cls, d: dict) -> PatientFacts:
        """Rebuild from the JSON form the read model stores (dates as ISO text)."""
        day = _day

        return cls(
            subject=d["subject"], basket=d["basket"], enrolled=day(d["enrolled"]),
            infusions=tuple(map(day, d["infusions"])),
            surgeries=tuple(map(day, d["surgeries"])),
            radiotherapy=tuple((day(a), day(b)) for a, b in d["radiotherapy"]),
            assessments=tuple((day(a), r) for a, r in d["assessments"]),
            ctdna=tuple((day(a), bool(r)) for a, r in d["ctdna"]),
            pets=tuple((day(a), r) for a, r in d["pets"]),
            pathology=tuple((day(a), t, n, v) for a, t, n, v in d["pathology"]),
            complications=tuple((day(a), g) for a, g in d["complications"]),
            adverse_events=tuple(
                AdverseEventFacts(ae_id=ae["ae_id"], term=ae["term"], onset=day(ae["onset"]),
                                  serious=ae["serious"],
                                  grades=tuple((day(a), int(g)) for a, g in ae["grades"]),
                                  related=ae.get("related"), soc=ae.get("soc"),
                                  meddra_code=ae.get("meddra_code"),
                                  verbatim=ae.get("verbatim"),
                                  serious_criteria=tuple(ae.get("serious_criteria") or ()),
                                  report_due=ae.get("report_due")
                                  and datetime.fromisoformat(ae["report_due"]),
                                  entered_late=ae.get("entered_late"))
                for ae in d["adverse_events"]),
            death=day(d["death"]), treatment_ended=day(d["treatment_ended"]),
            fact_dates=tuple(map(day, d["fact_dates"])),
            subsequent_therapy=day(d["subsequent_therapy"]),
        )


def _day(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


@dataclass(frozen=True)
class Timeline:
    """One patient's facts dated on or before the cutoff, each list sorted by date."""

    basket: str | None
    infusions: tuple[date, ...]
    surgeries: tuple[date, ...]
    radiotherapy_starts: tuple[date, ...]
    radiotherapy_ends: tuple[date, ...]
    assessments: tuple[tuple[date, str | None], ...]
    ctdna: tuple[tuple[date, bool], ...]
    pets: tuple[tuple[date, str | None], ...]
    pathology: tuple[tuple[date, str, str, str], ...]
    complications: tuple[tuple[date, str], ...]
    adverse_events: tuple[AdverseEventFacts, ...]  # grade histories cut at the cutoff too
    death: date | None
    treatment_ended: date | None
    last_known_alive: date  # the latest date of any fact of the patient up to the cutoff
    subsequent_therapy: date | None


@dataclass(frozen=True)
class Outcome:
    """What one treated patient contributes to each tally (times in days from day 0)."""

    responder: bool
    radiologic_cr: bool
    radiologic_cr_before_local_treatment: bool
    ctdna_cleared_within_window: bool
    ctdna_baseline_detected: bool
    ctdna_cleared: bool
    pfs_days: int
    pfs_event: bool
    pfs_reason: str  # see progression_free()
    os_days: int
    os_event: bool
    operated: bool
    pcr: bool
    pet_evaluable: bool
    metabolic_response: bool
    teae: bool
    teae_grade3plus: bool
    teae_serious: bool
    teae_grade5: bool
    teae_pneumonitis: bool
    teae_related: bool
    clavien_dindo_3plus: bool


def tally(patients: Iterable[PatientFacts], protocol: Protocol, cutoff: date) -> dict:
    """Per-basket tallies plus "all", in the shape of spec/endpoints.md.

    Every basket of the protocol appears, even if empty. A patient whose basket is not one of
    the protocol's counts under "all" only.
    """
    basket_ids = [b.id for b in protocol.baskets]
    enrolled: dict[str, int] = dict.fromkeys(basket_ids, 0)
    treated: dict[str, list[Outcome]] = {b: [] for b in basket_ids}
    enrolled_all = 0
    treated_all: list[Outcome] = []
    for facts in patients:
        timeline = as_of(facts, cutoff)
        if timeline is None:
            continue
        enrolled_all += 1
        if timeline.basket in enrolled:
            enrolled[timeline.basket] += 1
        if not timeline.infusions:
            continue
        contribution = _assess(timeline, protocol, cutoff)
        treated_all.append(contribution)
        if timeline.basket in treated:
            treated[timeline.basket].append(contribution)
    result = {b: _summarise(enrolled[b], treated[b], protocol) for b in basket_ids}
    result["all"] = _summarise(enrolled_all, treated_all, protocol)
    return result


def outcome(facts: PatientFacts, protocol: Protocol, cutoff: date) -> Outcome | None:
    """One patient's contribution at the cutoff; None unless enrolled and treated by then.

    Public so that figures (e.g. survival curves) use the very times and events of the tallies.
    """
    timeline = as_of(facts, cutoff)
    if timeline is None or not timeline.infusions:
        return None
    return _assess(timeline, protocol, cutoff)


def treatment_emergent_ae_ids(
    facts: PatientFacts, protocol: Protocol, cutoff: date
) -> frozenset[str]:
    """Ids of the patient's AEs that are treatment-emergent at the cutoff (empty if untreated)."""
    return frozenset(treatment_emergent_grades(facts, protocol, cutoff))


def treatment_emergent_grades(facts: PatientFacts, protocol: Protocol,
                              cutoff: date) -> dict[str, int]:
    """AE id -> the worst grade it reached inside the TEAE window, for each treatment-emergent
    AE at the cutoff (empty if untreated). The grade every tally and table counts."""
    timeline = as_of(facts, cutoff)
    if timeline is None or not timeline.infusions:
        return {}
    return {ae.ae_id: grade for ae, grade in _treatment_emergent(timeline, protocol, cutoff)}


def as_of(p: PatientFacts, cutoff: date) -> Timeline | None:
    """The patient as the data stood at the cutoff; None when not enrolled by then."""
    if p.enrolled is None or p.enrolled > cutoff:
        return None

    def upto(d: date | None) -> date | None:
        return d if d is not None and d <= cutoff else None

    def dated(items):
        # Stable sort: entries of the same day keep the order they were given in.
        return tuple(sorted((x for x in items if x[0] <= cutoff), key=lambda x: x[0]))

    adverse_events = tuple(
        dataclasses.replace(ae, grades=dated(ae.grades))
        for ae in p.adverse_events if ae.onset <= cutoff
    )
    infusions = tuple(sorted(d for d in p.infusions if d <= cutoff))
    surgeries = tuple(sorted(d for d in p.surgeries if d <= cutoff))
    # A course running past the cutoff: its start is a fact by then, its end is not yet.
    rt_starts = tuple(sorted(s for s, _ in p.radiotherapy if s <= cutoff))
    rt_ends = tuple(sorted(e for _, e in p.radiotherapy if e <= cutoff))
    assessments = dated(p.assessments)
    ctdna, pets = dated(p.ctdna), dated(p.pets)
    pathology, complications = dated(p.pathology), dated(p.complications)
    death = upto(p.death)
    # Last known alive: every fact up to the cutoff counts, whatever its kind (`fact_dates`
    # holds them all when built from the walk; the named facts are facts of the patient too).
    alive = [p.enrolled, *infusions, *surgeries, *rt_starts, *filter(None, [death])]
    alive += [d for d in p.fact_dates if d <= cutoff]
    alive += [d for d, *_ in (*assessments, *ctdna, *pets, *pathology, *complications)]
    alive += [d for ae in adverse_events for d, _ in ae.grades]

    return Timeline(
        basket=p.basket,
        infusions=infusions,
        surgeries=surgeries,
        radiotherapy_starts=rt_starts,
        radiotherapy_ends=rt_ends,
        assessments=assessments,
        ctdna=ctdna,
        pets=pets,
        pathology=pathology,
        complications=complications,
        adverse_events=adverse_events,
        death=death,
        treatment_ended=upto(p.treatment_ended),
        last_known_alive=max(alive),
        subsequent_therapy=upto(p.subsequent_therapy),
    )


def progression_free(day0: date, assessments: Sequence[tuple[date, str | None]],
                     death: date | None, subsequent_therapy: date | None,
                     protocol: Protocol) -> tuple[date, bool, str]:
    """(date, event?, why) of progression-free survival, by the FDA guidance (2018).

    `assessments` are the CT/MRI assessments in date order with their overall response (None
    for a baseline). An adequate assessment is one scored other than NE. Why is one of
    `progression`, `death`, `no event`, `no adequate assessment`, `subsequent therapy`,
    `missed assessments`. Shared by `patient` and the tallies, so they cannot disagree.
    """
    adequate = [d for d, r in assessments if r is not None and r != _NOT_EVALUABLE
                and d >= day0]

    def last_adequate(on_or_before: date, strictly: bool = False) -> date:
        return max((d for d in adequate if d < on_or_before or (not strictly
                                                                and d == on_or_before)),
                   default=day0)

    first_pd = next((d for d, r in assessments if r == "PD"), None)
    events = [(d, why) for d, why in ((first_pd, "progression"), (death, "death"))
              if d is not None]
    event_on, why = min(events) if events else (None, None)
    if subsequent_therapy is not None and (event_on is None or subsequent_therapy < event_on):
        return last_adequate(subsequent_therapy), False, "subsequent therapy"
    if event_on is not None:
        before = last_adequate(event_on, strictly=True)
        r = protocol.response
        allowed = 2 * r.assessment_interval_days + r.assessment_window_days
        if (event_on - before).days > allowed:
            return before, False, "missed assessments"
        return event_on, True, why
    if not adequate:
        return day0, False, "no adequate assessment"
    return adequate[-1], False, "no event"


def _assess(t: Timeline, protocol: Protocol, cutoff: date) -> Outcome:
    day0 = t.infusions[0]

    def within(d: date, days: int) -> bool:
        return day0 <= d <= day0 + timedelta(days=days)

    primary_days = protocol.endpoints.primary_window_days

    # Confirmed CR. The earliest confirming assessment is the one to look for: "no PD on or
    # before the second" and "before local treatment" only get harder for a later one.
    first_pd = next((d for d, r in t.assessments if r == "PD"), None)
    crs = [d for d, r in t.assessments if r == "CR" and within(d, primary_days)]
    gap = timedelta(days=protocol.response.confirmation_min_days)
    confirmed_on = None
    for second in crs:
        if first_pd is not None and first_pd <= second:
            break
        if crs[0] <= second - gap:
            confirmed_on = second
            break
    local = [*t.surgeries, *t.radiotherapy_starts]
    first_local = min(local) if local else None
    radiologic_cr = confirmed_on is not None
    cr_before_local = radiologic_cr and (first_local is None or confirmed_on < first_local)

    baseline_ctdna = [(d, det) for d, det in t.ctdna if d <= day0]
    if baseline_ctdna:
        baseline_date = baseline_ctdna[-1][0]
        # Two samples on the baseline day: a detection is not undone by a negative the same day.
        baseline_detected = any(det for d, det in baseline_ctdna if d == baseline_date)
        negatives_after = [d for d, det in t.ctdna if not det and d > baseline_date]
    else:
        baseline_detected = False
        negatives_after = []
    ctdna_cleared = baseline_detected and bool(negatives_after)
    ctdna_cleared_window = baseline_detected and any(
        within(d, primary_days) for d in negatives_after
    )

    pfs_on, pfs_event, pfs_reason = progression_free(
        day0, t.assessments, t.death, t.subsequent_therapy, protocol)
    os_days = ((t.death or t.last_known_alive) - day0).days

    # Imported here: `local` loads the event models, which the tallies of the present (read
    # from the read models) never need otherwise.
    from m22bol.domain.rules.local import pcr_of

    operated = bool(t.surgeries)
    pcr = operated and bool(pcr_of((ypt, ypn, v) for _, ypt, ypn, v in t.pathology))

    metabolic_days = protocol.endpoints.metabolic_window_days
    baseline_pets = [d for d, _ in t.pets if d <= day0]
    followups = [(d, c) for d, c in t.pets
                 if baseline_pets and d > baseline_pets[-1] and within(d, metabolic_days)]
    pet_evaluable = bool(followups)
    metabolic = any(c in _METABOLIC_RESPONSE for _, c in followups)

    teaes = _treatment_emergent(t, protocol, cutoff)
    worst = [grade for _, grade in teaes]

    cd_days = timedelta(days=protocol.safety.complication_within_days_of_surgery)
    clavien_dindo_3plus = any(
        _clavien_dindo_rank(grade) >= _CLAVIEN_DINDO_IIIA
        and any(s <= d <= s + cd_days for s in t.surgeries)
        for d, grade in t.complications
    )

    return Outcome(
        responder=radiologic_cr and ctdna_cleared_window,
        radiologic_cr=radiologic_cr,
        radiologic_cr_before_local_treatment=cr_before_local,
        ctdna_cleared_within_window=ctdna_cleared_window,
        ctdna_baseline_detected=baseline_detected,
        ctdna_cleared=ctdna_cleared,
        # A fact dated before day 0 cannot make a time negative.
        pfs_days=max(0, (pfs_on - day0).days),
        pfs_event=pfs_event,
        pfs_reason=pfs_reason,
        os_days=max(0, os_days),
        os_event=t.death is not None,
        operated=operated,
        pcr=pcr,
        pet_evaluable=pet_evaluable,
        metabolic_response=metabolic,
        teae=bool(teaes),
        teae_grade3plus=any(g >= 3 for g in worst),
        teae_serious=any(ae.serious for ae, _ in teaes),
        teae_grade5=any(g >= 5 for g in worst),
        teae_pneumonitis=any(ae.term.strip().casefold() == "pneumonitis" for ae, _ in teaes),
        teae_related=any(ae.related for ae, _ in teaes),
        clavien_dindo_3plus=clavien_dindo_3plus,
    )


def teae_window(t: Timeline, protocol: Protocol, cutoff: date) -> tuple[date, date]:
    """The first and last day on which an AE onset or worsening is treatment-emergent."""
    last_treatment = max(
        [*t.infusions, *t.surgeries, *t.radiotherapy_starts, *t.radiotherapy_ends]
    )
    # Death ends treatment even when nobody recorded the end of treatment separately.
    ended = t.treatment_ended is not None or t.death is not None
    closes = (
        last_treatment + timedelta(days=protocol.safety.teae_window_days) if ended else cutoff
    )
    return t.infusions[0], closes


def _treatment_emergent(t: Timeline, protocol: Protocol,
                        cutoff: date) -> list[tuple[AdverseEventFacts, int]]:
    """Each treatment-emergent AE with the worst grade it reached inside the window."""
    opens, closes = teae_window(t, protocol, cutoff)

    def in_window(d: date) -> bool:
        return opens <= d <= closes

    emergent = []
    for ae in t.adverse_events:
        worsened = any(
            g > prev and in_window(d)
            for (_, prev), (d, g) in zip(ae.grades, ae.grades[1:], strict=False)
        )
        if in_window(ae.onset) or worsened:
            # A grade reached before day 0 or after the window closed does not count; an
            # emergent AE has at least one grade dated inside (its onset or the worsening).
            emergent.append((ae, max(g for d, g in ae.grades if in_window(d))))
    return emergent


def _clavien_dindo_rank(grade: str) -> int:
    key = grade.strip().lower().removesuffix("-d")
    try:
        return _CLAVIEN_DINDO_RANK[key]
    except KeyError:
        raise ValueError(f"not a Clavien-Dindo grade: {grade!r}") from None


def _summarise(enrolled: int, treated: list[Outcome], protocol: Protocol) -> dict:
    def count(attr: str) -> int:
        return sum(1 for o in treated if getattr(o, attr))

    baseline_detected = count("ctdna_baseline_detected")
    tallies = {
        "enrolled": enrolled,
        "treated": len(treated),
        "primary": {
            "responders": count("responder"),
            "evaluable": len(treated),
            "radiologic_cr": count("radiologic_cr"),
            "radiologic_cr_before_local_treatment": count("radiologic_cr_before_local_treatment"),
            "ctdna_cleared": count("ctdna_cleared_within_window"),
            "ctdna_not_informative": len(treated) - baseline_detected,
        },
        "progression_free": _survival(
            [o.pfs_days for o in treated], [o.pfs_event for o in treated], protocol
        ),
        "overall_survival": _survival(
            [o.os_days for o in treated], [o.os_event for o in treated], protocol
        ),
        "pathological_complete_response": {
            "patients": count("pcr"),
            "operated": count("operated"),
        },
        "metabolic_response": {
            "patients": count("metabolic_response"),
            "pet_evaluable": count("pet_evaluable"),
        },
        "ctdna_clearance": {
            "patients": count("ctdna_cleared"),
            "baseline_detected": baseline_detected,
        },
        "safety": {
            "patients_with_teae": count("teae"),
            "grade3plus": count("teae_grade3plus"),
            "serious": count("teae_serious"),
            "grade5": count("teae_grade5"),
            "pneumonitis": count("teae_pneumonitis"),
            "related": count("teae_related"),
            "clavien_dindo_3plus": count("clavien_dindo_3plus"),
        },
    }
    return _with_intervals(tallies)


def _with_intervals(tallies: dict) -> dict:
    """Each proportion's exact 95% interval placed right after its count."""
    for section, values in tallies.items():
        if not isinstance(values, dict):
            continue
        out = {}
        for key, value in values.items():
            out[key] = value
            denominator = PROPORTIONS.get((section, key))
            if denominator is not None:
                total = values.get(denominator, tallies.get(denominator))
                out[f"{key}_ci95"] = rounded_interval(value, total)
        tallies[section] = out
    return tallies


def _survival(days: list[int], events: list[bool], protocol: Protocol) -> dict:
    curve: KMCurve = kaplan_meier([d / DAYS_PER_MONTH for d in days], events)
    median = curve.median()
    km, km_ci = {}, {}
    for months in protocol.endpoints.km_months:
        s = curve.survival_at(float(months))
        ci = curve.interval_at(float(months))
        km[str(months)] = None if s is None else round(s, 4)
        km_ci[str(months)] = None if ci is None else [round(ci[0], 4), round(ci[1], 4)]

    def months(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    median_ci = [months(m) for m in curve.median_interval()] if days else None
    return {
        "events": sum(events),
        "censored": len(events) - sum(events),
        "median_months": months(median),
        "median_months_ci95": median_ci,
        "km": km,
        "km_ci95": km_ci,
    }
