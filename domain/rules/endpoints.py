"""The endpoint tallies of spec/endpoints.md, computed from per-patient facts.

Pure: the caller gathers each patient's facts (already restricted to what was known at T, with
corrections applied and retractions removed) and passes the protocol in force and the cutoff.
The cutoff is applied here, before anything is derived, so that no caller can forget it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from m22bol.domain.protocol import Protocol
from m22bol.domain.rules.survival import KMCurve, kaplan_meier

DAYS_PER_MONTH = 30.4375

_PCR_YPT = frozenset({"T0", "Tis", "not-resected"})
_PCR_YPN = frozenset({"N0", "not-resected"})
_PCR_VIABLE = frozenset({"no", "not-resected"})
_METABOLIC_RESPONSE = frozenset({"CMR", "PMR"})

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
    # criteria and 24-hour reporting deadline (spec/treatment.md).
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
    last_known_alive: date | None  # an extra contact date (e.g. a follow-up contact)

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
            last_known_alive=day(d["last_known_alive"]),
        )


def _day(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


@dataclass(frozen=True)
class _AdverseEvent:
    ae_id: str
    term: str
    onset: date
    serious: bool
    grades: tuple[tuple[date, int], ...]
    related: bool | None = None


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
    adverse_events: tuple[_AdverseEvent, ...]
    death: date | None
    treatment_ended: date | None
    last_known_alive: date | None  # latest date of any fact above


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
    timeline = as_of(facts, cutoff)
    if timeline is None or not timeline.infusions:
        return frozenset()
    return frozenset(ae.ae_id for ae in _treatment_emergent(timeline, protocol, cutoff))


def as_of(p: PatientFacts, cutoff: date) -> Timeline | None:
    """The patient as the data stood at the cutoff; None when not enrolled by then."""
    if p.enrolled is None or p.enrolled > cutoff:
        return None

    def upto(d: date | None) -> date | None:
        return d if d is not None and d <= cutoff else None

    def dated(items):
        return tuple(sorted((x for x in items if x[0] <= cutoff), key=lambda x: x[0]))

    adverse_events = tuple(
        _AdverseEvent(
            ae_id=ae.ae_id,
            term=ae.term,
            onset=ae.onset,
            serious=ae.serious,
            # Stable sort: entries of the same day keep the order they were given in.
            grades=dated(ae.grades),
            related=ae.related,
        )
        for ae in p.adverse_events
        if ae.onset <= cutoff
    )
    infusions = tuple(sorted(d for d in p.infusions if d <= cutoff))
    surgeries = tuple(sorted(d for d in p.surgeries if d <= cutoff))
    # A course running past the cutoff: its start is a fact by then, its end is not yet.
    rt_starts = tuple(sorted(s for s, _ in p.radiotherapy if s <= cutoff))
    rt_ends = tuple(sorted(e for _, e in p.radiotherapy if e <= cutoff))
    assessments = dated(p.assessments)
    ctdna = dated(p.ctdna)
    pets = dated(p.pets)
    pathology = dated(p.pathology)
    complications = dated(p.complications)
    death = upto(p.death)
    treatment_ended = upto(p.treatment_ended)

    fact_dates = [p.enrolled, *infusions, *surgeries, *rt_starts, *rt_ends]
    fact_dates += [d for d, *_ in (*assessments, *ctdna, *pets, *pathology, *complications)]
    for ae in adverse_events:
        fact_dates.append(ae.onset)
        fact_dates += [d for d, _ in ae.grades]
    fact_dates += [d for d in (death, treatment_ended, upto(p.last_known_alive)) if d]

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
        treatment_ended=treatment_ended,
        last_known_alive=max(fact_dates),
    )


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

    pfs_event_on = min((d for d in (first_pd, t.death) if d is not None), default=None)
    if pfs_event_on is not None:
        pfs_days = (pfs_event_on - day0).days
    else:
        last_assessment = t.assessments[-1][0] if t.assessments else day0
        pfs_days = (max(day0, last_assessment) - day0).days
    os_days = ((t.death or t.last_known_alive) - day0).days

    operated = bool(t.surgeries)
    pcr = operated and bool(t.pathology) and all(_is_pcr(*r[1:]) for r in t.pathology)

    metabolic_days = protocol.endpoints.metabolic_window_days
    baseline_pets = [d for d, _ in t.pets if d <= day0]
    pet_evaluable = bool(baseline_pets) and any(
        d > baseline_pets[-1] and within(d, metabolic_days) for d, _ in t.pets
    )
    metabolic = any(c in _METABOLIC_RESPONSE and within(d, metabolic_days) for d, c in t.pets)

    teaes = _treatment_emergent(t, protocol, cutoff)
    max_grades = [max((g for _, g in ae.grades), default=0) for ae in teaes]

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
        pfs_days=max(0, pfs_days),
        pfs_event=pfs_event_on is not None,
        os_days=max(0, os_days),
        os_event=t.death is not None,
        operated=operated,
        pcr=pcr,
        pet_evaluable=pet_evaluable,
        metabolic_response=metabolic,
        teae=bool(teaes),
        teae_grade3plus=any(g >= 3 for g in max_grades),
        teae_serious=any(ae.serious for ae in teaes),
        teae_grade5=any(g >= 5 for g in max_grades),
        teae_pneumonitis=any(ae.term.strip().casefold() == "pneumonitis" for ae in teaes),
        teae_related=any(ae.related for ae in teaes),
        clavien_dindo_3plus=clavien_dindo_3plus,
    )


def teae_worst_grades(facts: PatientFacts, protocol: Protocol, cutoff: date) -> dict[str, int]:
    """Each treatment-emergent AE's worst grade inside the TEAE window, by AE id (spec: a grade
    reached before day 0 or after the window closed does not count)."""
    timeline = as_of(facts, cutoff)
    if timeline is None or not timeline.infusions:
        return {}
    in_window = _teae_window(timeline, protocol, cutoff)
    return {ae.ae_id: max(g for d, g in ae.grades if in_window(d))
            for ae in _treatment_emergent(timeline, protocol, cutoff)}


def _teae_window(t: Timeline, protocol: Protocol, cutoff: date):
    day0 = t.infusions[0]
    last_treatment = max(
        [*t.infusions, *t.surgeries, *t.radiotherapy_starts, *t.radiotherapy_ends]
    )
    # Death ends treatment even when nobody recorded the end of treatment separately.
    ended = t.treatment_ended is not None or t.death is not None
    closes = (
        last_treatment + timedelta(days=protocol.safety.teae_window_days) if ended else cutoff
    )

    def in_window(d: date) -> bool:
        return day0 <= d <= closes

    return in_window


def _treatment_emergent(t: Timeline, protocol: Protocol, cutoff: date) -> list[_AdverseEvent]:
    in_window = _teae_window(t, protocol, cutoff)
    emergent = []
    for ae in t.adverse_events:
        worsened = any(
            g > prev and in_window(d)
            for (_, prev), (d, g) in zip(ae.grades, ae.grades[1:], strict=False)
        )
        if in_window(ae.onset) or worsened:
            emergent.append(ae)
    return emergent


def _is_pcr(ypt: str, ypn: str, viable: str) -> bool:
    components = (ypt, ypn, viable)
    return (
        ypt in _PCR_YPT
        and ypn in _PCR_YPN
        and viable in _PCR_VIABLE
        and any(c != "not-resected" for c in components)
    )


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
    return {
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


def _survival(days: list[int], events: list[bool], protocol: Protocol) -> dict:
    curve: KMCurve = kaplan_meier([d / DAYS_PER_MONTH for d in days], events)
    median = curve.median()
    km = {}
    for months in protocol.endpoints.km_months:
        s = curve.survival_at(float(months))
        km[str(months)] = None if s is None else round(s, 4)
    return {
        "events": sum(events),
        "censored": len(events) - sum(events),
        "median_months": None if median is None else round(median, 2),
        "km": km,
    }
