"""Write the monitoring report: DIR/index.html with its SVG figures beside it.

jinja2 renders the page because it escapes every value by default: free text entered at a
site (deviation reasons, locations) can never break or inject into the page.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from m22bol.projections.report import figures
from m22bol.projections.report.data import ReportData, gather

TEMPLATE = Path(__file__).with_name("template.html")


def write_report(reader, out: Path, *, known_at: datetime | None = None,
                 cutoff: date | None = None, progress=lambda label: None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    progress("reading the ledger")
    data = gather(reader, known_at=known_at, cutoff=cutoff)
    progress("drawing figures")
    pictures = {
        "waterfall": figures.waterfall(data.courses, out / "waterfall.svg"),
        "swimmer": figures.swimmer(data.courses, out / "swimmer.svg"),
        "spider": figures.spider(data.courses, out / "spider.svg"),
        "km_pfs": figures.kaplan_meier(data.pfs, "Progression-free survival by basket",
                                       out / "km_pfs.svg"),
        "km_os": figures.kaplan_meier(data.os, "Overall survival by basket", out / "km_os.svg"),
    }
    progress("writing the page")
    page = out / "index.html"
    page.write_text(render(data, pictures, generated=datetime.now(UTC)), encoding="utf-8")
    return page


def render(data: ReportData, pictures: dict[str, str], *, generated: datetime) -> str:
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(TEMPLATE.read_text(encoding="utf-8"))
    return template.render(d=data, pictures=pictures, generated=generated.isoformat(
        timespec="seconds"), tallies=_tally_rows(data.endpoints))


# (label, path into one basket's tallies) in the order of spec/endpoints.md
TALLY_ROWS = [
    ("Enrolled", ("enrolled",)), ("Treated", ("treated",)),
    ("Primary: responders (confirmed CR + ctDNA clearance, 1 y)", ("primary", "responders")),
    ("  evaluable", ("primary", "evaluable")),
    ("  confirmed radiologic CR", ("primary", "radiologic_cr")),
    ("  CR before local treatment", ("primary", "radiologic_cr_before_local_treatment")),
    ("  ctDNA cleared (1 y)", ("primary", "ctdna_cleared")),
    ("  ctDNA not informative", ("primary", "ctdna_not_informative")),
    ("PFS events", ("progression_free", "events")),
    ("PFS censored", ("progression_free", "censored")),
    ("PFS median (months)", ("progression_free", "median_months")),
    ("PFS at 12 / 24 / 60 months", ("progression_free", "km")),
    ("OS events", ("overall_survival", "events")),
    ("OS censored", ("overall_survival", "censored")),
    ("OS median (months)", ("overall_survival", "median_months")),
    ("OS at 12 / 24 / 60 months", ("overall_survival", "km")),
    ("pCR / operated", ("pathological_complete_response",)),
    ("Metabolic response / PET evaluable", ("metabolic_response",)),
    ("ctDNA clearance / baseline detected", ("ctdna_clearance",)),
    ("TEAE: patients", ("safety", "patients_with_teae")),
    ("TEAE: grade >= 3", ("safety", "grade3plus")),
    ("TEAE: serious", ("safety", "serious")),
    ("TEAE: grade 5", ("safety", "grade5")),
    ("TEAE: pneumonitis", ("safety", "pneumonitis")),
    ("TEAE: related", ("safety", "related")),
    ("Clavien-Dindo >= IIIa", ("safety", "clavien_dindo_3plus")),
]


def _tally_rows(tallies: dict) -> dict:
    baskets = list(tallies)
    rows = []
    for label, path in TALLY_ROWS:
        cells = []
        for b in baskets:
            value = tallies[b]
            for key in path:
                value = value[key]
            cells.append(_cell(value))
        rows.append((label, cells))
    return {"baskets": baskets, "rows": rows}


def _cell(value) -> str:
    if isinstance(value, dict) and "km" not in value and len(value) == 2:
        a, b = value.values()
        return f"{a} / {b}"
    if isinstance(value, dict):
        return " / ".join("-" if v is None else f"{v:.2f}" for v in value.values())
    if value is None:
        return "not reached"
    return str(value)
