"""`m22bol report`: the monitoring report as one HTML page with its figures."""

from __future__ import annotations

from pathlib import Path

import click

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
from m22bol.cli.output import emit, progress

# The steps write_report announces, in order.
STEPS = ("reading the ledger", "drawing figures", "writing the page")


@cli.command()
@click.option("--out", required=True, help="Folder to write index.html and its figures into.")
@cutoff_option
@known_at_option
@shared_options
@handled
def report(s: Session, out: str, cutoff: str | None, known_at: str | None) -> None:
    """The monitoring report: flow, endpoints, waterfall, swimmer, spider, Kaplan-Meier,
    safety, deviations and open interruptions, readable offline in any browser."""
    from m22bol.projections.report.render import write_report  # matplotlib loads only here

    with progress(len(STEPS), "report", s.as_json) as bar:
        def step(label: str) -> None:
            # The bar names the step under way and counts the steps done.
            bar.label = f"report: {label}"
            bar.update(STEPS.index(label) - bar.pos if label in STEPS else 0)

        page = write_report(s.reader, Path(out), known_at=parse_known_at(known_at),
                            cutoff=parse_cutoff(cutoff), progress=step)
        bar.update(len(STEPS) - bar.pos)
    emit({"report": str(page)}, s.as_json, text=f"report written to {page}")
