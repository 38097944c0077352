"""Write the monitoring report: DIR/index.html with its SVG figures beside it.

jinja2 renders the page because it escapes every value by default: free text entered at a
site (deviation reasons, locations) can never break or inject into the page.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from m22bol.projections import documents
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
        timespec="seconds"), tallies=documents.endpoint_table(data.endpoints))


