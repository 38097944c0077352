"""The documents the monitoring queries print, computed from their inputs (no I/O here).

Inputs come from the read models (the present) or from a replay (the past, a cutoff); see
`reader.py`. Each counting rule lives once, here or in `domain/rules/endpoints.py`, whichever
source fed it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `status` counts without loading the protocol model or the tallies' rules
    from m22bol.domain.protocol import Protocol
    from m22bol.domain.rules.endpoints import PatientFacts
    from m22bol.projections.replay import Replay

# Clavien-Dindo grades in order; "-d" (present at discharge) is counted under its grade.
CLAVIEN_DINDO = ("I", "II", "IIIa", "IIIb", "IVa", "IVb", "V")
CTCAE_GRADES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Inputs:
    """What the tallies need: every subject's endpoint facts and the protocol in force."""

    protocol: Protocol
    cutoff: date
    known_at: datetime
    patients: list[PatientFacts]


def endpoints_document(r: Inputs | Replay) -> dict[str, Any]:
    """The `endpoints --json` document: the tallies per basket at the cutoff."""
    from m22bol.domain.rules import endpoints

    return {
        "cutoff": r.cutoff.isoformat(),
        "known_at": r.known_at.isoformat(),
        "baskets": endpoints.tally(r.patients, r.protocol, r.cutoff),
    }


# One row per tally, in the order of the counting rules: (label, section, key). A key with a
# `_ci95` sibling is a proportion of its denominator (`endpoints.PROPORTIONS`); `km:12` is the
# Kaplan-Meier estimate at 12 months.
_ENDPOINT_ROWS = [
    ("enrolled", None, "enrolled"), ("treated", None, "treated"),
    ("primary: responders (confirmed CR + ctDNA clearance, 1 y)", "primary", "responders"),
    ("  confirmed radiologic CR", "primary", "radiologic_cr"),
    ("  CR before local treatment", "primary", "radiologic_cr_before_local_treatment"),
    ("  ctDNA cleared (1 y)", "primary", "ctdna_cleared"),
    ("  ctDNA not informative", "primary", "ctdna_not_informative"),
    *((f"{name}: {label}", section, key)
      for name, section in (("PFS", "progression_free"), ("OS", "overall_survival"))
      for label, key in (("events", "events"), ("censored", "censored"),
                         ("median (months)", "median_months"), ("at 12 months", "km:12"),
                         ("at 24 months", "km:24"), ("at 60 months", "km:60"))),
    ("pCR / operated", "pathological_complete_response", "patients"),
    ("metabolic response / PET evaluable", "metabolic_response", "patients"),
    ("ctDNA clearance / baseline detected", "ctdna_clearance", "patients"),
    ("TEAE: patients", "safety", "patients_with_teae"),
    ("TEAE: grade >= 3", "safety", "grade3plus"),
    ("TEAE: serious", "safety", "serious"),
    ("TEAE: grade 5", "safety", "grade5"),
    ("TEAE: pneumonitis", "safety", "pneumonitis"),
    ("TEAE: related", "safety", "related"),
    ("Clavien-Dindo >= IIIa", "safety", "clavien_dindo_3plus"),
]


def endpoint_table(baskets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The tallies as the text output and the report show them: one row per tally, one
    cell per basket, each proportion as "n/N (x%, 95% CI a-b%)"."""
    rows = []
    for label, section, key in _ENDPOINT_ROWS:
        rows.append((label, [_endpoint_cell(t, section, key) for t in baskets.values()]))
    return {"baskets": list(baskets), "rows": rows}


def _endpoint_cell(tallies: dict[str, Any], section: str | None, key: str) -> str:
    values = tallies if section is None else tallies[section]
    if key.startswith("km:"):
        months = key.partition(":")[2]
        return estimate_text(values["km"][months], values["km_ci95"][months], "{:.2f}")
    if key == "median_months":
        return estimate_text(values[key], values["median_months_ci95"], "{:.2f}",
                             missing="not reached")
    from m22bol.domain.rules import endpoints

    denominator = endpoints.PROPORTIONS.get((section, key))
    if denominator is None:
        return str(values[key])
    total = values.get(denominator, tallies.get(denominator))
    return proportion_text(values[key], total, values[f"{key}_ci95"])


def proportion_text(n: int, total: int, ci: list[float] | None) -> str:
    """`n/N (x%, 95% CI a-b%)`; just `n/N` when N is 0."""
    if not total or ci is None:
        return f"{n}/{total}"
    return (f"{n}/{total} ({100 * n / total:.1f}%, 95% CI "
            f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}%)")


def estimate_text(value: float | None, ci: list[float | None] | None, fmt: str,
                  missing: str = "-") -> str:
    """An estimate with its 95% interval; a bound never reached reads "not reached"."""
    if value is None:
        shown = missing
        if ci is None or all(b is None for b in ci):
            return shown
    else:
        shown = fmt.format(value)
    if ci is None:
        return shown
    low, high = ("not reached" if b is None else fmt.format(b) for b in ci)
    return f"{shown} (95% CI {low}-{high})"


# --- safety -----------------------------------------------------------------------------------


def safety_document(r: Inputs | Replay) -> dict[str, Any]:
    """TEAEs by SOC and coded term, serious AEs, and the Clavien-Dindo table, per basket.

    Counts are of treated patients: a patient counts once per coded term, at the worst grade
    that term reached inside the TEAE window; rows go in MedDRA's SOC order, terms alphabetical
    within a SOC, with the share of the treated. Treatment emergence and the window are decided
    by `endpoints.py`, the one home of that rule. Serious AEs are listed whether
    treatment-emergent or not (flagged), for every enrolled subject, with their ICH E2A
    criteria and reporting deadline.
    """
    from m22bol.domain.rules import endpoints

    scopes = [b.id for b in r.protocol.baskets]
    tables = {scope: _SafetyTable() for scope in [*scopes, "all"]}
    for facts in r.patients:
        timeline = endpoints.as_of(facts, r.cutoff)
        if timeline is None:
            continue
        treated = bool(timeline.infusions)
        for scope in ({facts.basket, "all"} & tables.keys()):
            tables[scope].add(facts, timeline, treated, r)
    return {
        "cutoff": r.cutoff.isoformat(),
        "known_at": r.known_at.isoformat(),
        "baskets": {scope: table.document() for scope, table in tables.items()},
    }


@dataclass
class _TermRow:
    soc: str | None
    meddra_code: int | None
    worst: dict[str, int] = field(default_factory=dict)  # subject -> worst grade in window
    related: set[str] = field(default_factory=set)  # subjects with a related TEAE of the term


class _SafetyTable:
    def __init__(self) -> None:
        self.treated = 0
        self.terms: dict[str, _TermRow] = {}
        self.serious: list[dict[str, Any]] = []
        # grade -> (complications, subjects)
        self.clavien_dindo: dict[str, list[Any]] = {g: [0, set()] for g in CLAVIEN_DINDO}

    def add(self, facts: PatientFacts, timeline, treated: bool, r: Inputs | Replay) -> None:
        from m22bol.domain.rules import endpoints

        emergent = (endpoints.treatment_emergent_grades(facts, r.protocol, r.cutoff)
                    if treated else {})
        for ae in facts.adverse_events:
            if ae.onset > r.cutoff:
                continue
            if ae.ae_id in emergent:
                row = self.terms.setdefault(ae.term, _TermRow(ae.soc, ae.meddra_code))
                row.worst[facts.subject] = max(emergent[ae.ae_id],
                                               row.worst.get(facts.subject, 0))
                if ae.related:
                    row.related.add(facts.subject)
            if ae.serious:
                self.serious.append({
                    "subject": facts.subject, "basket": facts.basket, "ae_id": ae.ae_id,
                    "term": ae.term, "verbatim": ae.verbatim, "onset": ae.onset.isoformat(),
                    "worst_grade": max(g for d, g in ae.grades if d <= r.cutoff),
                    "criteria": list(ae.serious_criteria),
                    "report_due": ae.report_due.isoformat() if ae.report_due else None,
                    "entered_late": ae.entered_late,
                    "treatment_emergent": ae.ae_id in emergent})
        if not treated:
            return
        self.treated += 1
        window = r.protocol.safety.complication_within_days_of_surgery
        for when, grade in timeline.complications:
            if not any(0 <= (when - s).days <= window for s in timeline.surgeries):
                continue
            row = self.clavien_dindo[_clavien_dindo_grade(grade)]
            row[0] += 1
            row[1].add(facts.subject)

    def document(self) -> dict[str, Any]:
        from m22bol.domain import coding

        def pct(n: int) -> float | None:
            return round(100 * n / self.treated, 1) if self.treated else None

        by_term = []
        order = sorted(self.terms.items(),
                       key=lambda kv: (coding.soc_rank(kv[1].soc), kv[0].casefold()))
        for term, row in order:
            worst = row.worst.values()
            by_term.append({
                "soc": row.soc or "not coded", "term": term, "meddra_code": row.meddra_code,
                "patients": len(worst), "pct": pct(len(worst)),
                **{f"grade_{g}": sum(1 for w in worst if w == g) for g in CTCAE_GRADES},
                "grade_3plus": sum(1 for w in worst if w >= 3),
                "related": len(row.related), "related_pct": pct(len(row.related))})
        return {
            "treated": self.treated,
            "teae_by_term": by_term,
            "serious": sorted(self.serious, key=lambda s: (s["subject"], s["onset"], s["ae_id"])),
            "clavien_dindo": [{"grade": g, "complications": n, "patients": len(who)}
                              for g, (n, who) in self.clavien_dindo.items()],
        }


def _clavien_dindo_grade(grade: str) -> str:
    base = grade.strip().removesuffix("-d")
    for g in CLAVIEN_DINDO:
        if g.casefold() == base.casefold():
            return g
    raise ValueError(f"not a Clavien-Dindo grade: {grade!r}")


# --- status ---------------------------------------------------------------------------------


STATUS_COLUMNS = ("screened", "screen_failed", "enrolled", "on_treatment", "interrupted",
                  "local_treatment", "adjuvant", "completed", "discontinued", "withdrawn", "dead")


def status_counts(summaries: list[dict[str, Any]], basket_ids: list[str]) -> dict[str, Any]:
    """Counts per basket (and `unassigned` for subjects not enrolled) from subject summaries.
    A summary with `subjects: n` stands for n subjects alike (the read models' GROUP BY), so
    the counting costs the groups, not the subjects."""
    rows = {b: dict.fromkeys(STATUS_COLUMNS, 0) for b in [*basket_ids, "unassigned", "all"]}
    for s in summaries:
        n = s.get("subjects", 1)
        for key in (s.get("basket") or "unassigned", "all"):
            row = rows.setdefault(key, dict.fromkeys(STATUS_COLUMNS, 0))
            row["screened"] += n
            row["screen_failed"] += n * (s["status"] == "screen-failed")
            row["enrolled"] += n * (s["enrolled"] is not None)
            phase = s.get("treatment_state")
            row["on_treatment"] += n * (phase in ("active", "interrupted"))
            row["interrupted"] += n * (phase == "interrupted")
            row["local_treatment"] += n * (s.get("phase") == "local-treatment")
            row["adjuvant"] += n * (s.get("phase") == "adjuvant")
            row["completed"] += n * (phase == "completed")
            row["discontinued"] += n * (phase == "discontinued")
            row["withdrawn"] += n * (s["withdrawn"] is not None)
            row["dead"] += n * (s["death"] is not None)
    return {"baskets": rows}


# --- source data verification ----------------------------------------------------------------


def sdv_from_rows(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """What `stored.sdv` reads with SQL, counted from the rows themselves (a memory store)."""
    import orjson

    groups: dict[tuple, dict[str, Any]] = {}
    for r in entries:
        g = groups.setdefault((r["site"], r["subject"]), {
            "site": r["site"], "subject": r["subject"], "verified": 0, "entries": 0})
        g["entries"] += 1
        g["verified"] += bool(r["verified"])
    return {"groups": [groups[k] for k in sorted(groups)],
            "unverified": [{"subject": r["subject"], "entry": r["entry"], "event": r["event"],
                            **orjson.loads(r["document"])}
                           for r in sorted(entries, key=lambda r: (r["subject"], r["entry"]))
                           if not r["verified"]]}


def sdv_document(found: dict[str, Any]) -> dict[str, Any]:
    """Verified over entries per site (with its subjects) and what is left to verify."""
    sites: dict[str, dict[str, Any]] = {}
    for g in found["groups"]:
        site = sites.setdefault(g["site"], {"site": g["site"], "verified": 0, "entries": 0,
                                            "subjects": []})
        site["verified"] += g["verified"]
        site["entries"] += g["entries"]
        site["subjects"].append({"subject": g["subject"], "verified": g["verified"],
                                 "entries": g["entries"]})
    for site in sites.values():
        site["percent"] = round(100 * site["verified"] / site["entries"], 1)
    return {"sites": list(sites.values()), "unverified": found["unverified"]}


# --- queries and SDV in `patient` and `history` ----------------------------------------------


def annotate_patient(document: dict[str, Any], subject: str, events: list, *,
                     threads: dict | None = None, verified: dict | None = None
                     ) -> dict[str, Any]:
    """The subject's queries not closed, and each timeline entry marked verified or not. Both
    come from the chain's query and SDV events; no derivation reads them. `threads` and
    `verified`, where the caller has them folded already (`clarifications.patient_threads`,
    `patient_verification`), are not folded again."""
    from m22bol.domain import clarifications

    if threads is None:
        threads = clarifications.threads(subject, events)
    document["open_queries"] = [
        {k: v for k, v in t.as_dict().items() if k != "thread"}
        for t in threads.values() if t.status != clarifications.CLOSED]
    if verified is None:
        verified = clarifications.verification(subject, events)
    for row in document.get("timeline", []):
        row["verified"] = verified.get(row["entry"], {}).get("verified", False)
    return document
