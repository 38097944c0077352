"""`endpoints` and `safety`: the trial's tallies per basket.

Kept light on imports: neither command loads a statistics, plotting or data-frame package
(the Kaplan-Meier estimator on this path is `domain/rules/survival.py`).
"""

from __future__ import annotations

from typing import Any

from m22bol.cli.main import (
    Session,
    cli,
    cutoff_option,
    handled,
    known_at_option,
    parse_cutoff,
    parse_known_at,
    shared_options,
)
from m22bol.cli.output import align_numbers, emit, table
from m22bol.projections import documents


@cli.command()
@cutoff_option
@known_at_option
@shared_options
@handled
def endpoints(s: Session, cutoff: str | None, known_at: str | None) -> None:
    """Endpoint tallies per basket with 95% CIs (docs/endpoints.md); facts after --cutoff never
    count."""
    known_at, cutoff = parse_known_at(known_at), parse_cutoff(cutoff)
    doc = s.present("endpoints") if known_at is None and cutoff is None else None
    if doc is None:
        doc = s.reader.endpoints(known_at=known_at, cutoff=cutoff)
    emit(doc, s.as_json, text=endpoints_text(doc) if not s.as_json else None)


@cli.command()
@cutoff_option
@known_at_option
@shared_options
@handled
def safety(s: Session, cutoff: str | None, known_at: str | None) -> None:
    """Treatment-emergent AEs by term and worst grade, serious AEs, Clavien-Dindo."""
    doc = s.reader.safety(known_at=parse_known_at(known_at), cutoff=parse_cutoff(cutoff))
    emit(doc, s.as_json, text=_safety_text(doc) if not s.as_json else None)


# --- text -------------------------------------------------------------------------------------


def endpoints_text(doc: dict[str, Any]) -> str:
    """One row per tally, one column per basket (and all): the baskets side by side."""
    shown = documents.endpoint_table(doc["baskets"])
    columns = [align_numbers([cells[i] for _, cells in shown["rows"]])
               for i in range(len(shown["baskets"]))]
    rows = [{"tally": label, **{b: columns[i][r] for i, b in enumerate(shown["baskets"])}}
            for r, (label, _) in enumerate(shown["rows"])]
    head = f"endpoints at cutoff {doc['cutoff']}, as known at {doc['known_at']}"
    note = ("proportions: n/N (%, exact 95% CI); Kaplan-Meier estimates and medians with "
            "their 95% CI (Greenwood, log-log)")
    return head + "\n" + note + "\n\n" + table(rows, ["tally", *shown["baskets"]])


def _safety_text(doc: dict[str, Any]) -> str:
    parts = [f"safety at cutoff {doc['cutoff']}, as known at {doc['known_at']}"]
    for basket, t in doc["baskets"].items():
        title = "all baskets" if basket == "all" else f"basket {basket}"
        parts.append(f"== {title}: {t['treated']} treated ==")
        parts.append("treatment-emergent AEs by SOC and CTCAE term (patients at the worst "
                     "grade inside the window; % of treated):\n" + _teae_table(t))
        if t["serious"]:
            parts.append("serious AEs (ICH E2A; reporting deadline from awareness):\n"
                         + table([_sae_row(s) for s in t["serious"]]))
        graded = [row for row in t["clavien_dindo"] if row["complications"]]
        parts.append("Clavien-Dindo (complications within the window of a surgery):\n"
                     + table(graded))
    return "\n\n".join(parts)


def _teae_table(t: dict[str, Any]) -> str:
    """The SOC is named once, on the first row of its terms."""
    rows, soc = [], None
    for r in t["teae_by_term"]:
        rows.append({"SOC": r["soc"] if r["soc"] != soc else "", "term": r["term"],
                     "patients": f"{r['patients']} ({r['pct']}%)",
                     **{f"G{g}": r[f"grade_{g}"] for g in range(1, 6)},
                     "G>=3": r["grade_3plus"],
                     "related": f"{r['related']} ({r['related_pct']}%)"})
        soc = r["soc"]
    return table(rows, ["SOC", "term", "patients", "G1", "G2", "G3", "G4", "G5", "G>=3",
                        "related"])


def _sae_row(s: dict[str, Any]) -> dict[str, Any]:
    return {"subject": s["subject"], "basket": s["basket"], "ae_id": s["ae_id"],
            "term": s["term"], "onset": s["onset"], "worst grade": s["worst_grade"],
            "criteria": ", ".join(s["criteria"]), "report due": s["report_due"],
            "entered": "late" if s["entered_late"] else "in time",
            "TEAE": "yes" if s["treatment_emergent"] else "no"}
