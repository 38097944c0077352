"""`m22bol report`: the monitoring report as one HTML page with its figures."""

from __future__ import annotations

import sys
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
from m22bol.cli.output import emit


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

    def progress(label: str) -> None:
        if not s.as_json and sys.stderr.isatty():
            click.echo(f"report: {label}", err=True)

    page = write_report(s.reader, Path(out), known_at=parse_known_at(known_at),
                        cutoff=parse_cutoff(cutoff), progress=progress)
    emit({"report": str(page)}, s.as_json, text=f"report written to {page}")
