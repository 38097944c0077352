"""Data clarification queries and source data verification (docs/queries.md): the `query`
steps and `verify-source` write through the ledger; `queries` and `sdv` read the read models."""

from __future__ import annotations

from typing import Any

import click
from pydantic import ValidationError

from m22bol.cli.entry import _params, _values
from m22bol.cli.main import Session, cli, handled, shared_options
from m22bol.cli.output import emit, table
from m22bol.domain import commands as c


def _step_command(model: type[c.Command], name: str) -> click.Command:
    @handled
    def run(s: Session, **given: Any) -> None:
        try:
            command = model.model_validate(_values(model, given))
        except ValidationError as exc:
            raise c.describe_validation_error(exc) from None
        emit(s.ledger.execute(command, s.user), s.as_json)

    return shared_options(click.Command(name, callback=run, params=_params(model),
                                        help=model.help))


@cli.group()
def query() -> None:
    """Data clarification queries: open, answer, close, reopen (ids Q-N)."""


for _model in c.QUERY_COMMANDS.values():
    if _model.name.startswith("query "):
        query.add_command(_step_command(_model, _model.name.removeprefix("query ")))
    else:
        cli.add_command(_step_command(_model, _model.name))


@cli.command("queries")
@click.option("--status", type=click.Choice(["open", "answered", "closed"]),
              help="Only queries in this state.")
@click.option("--site", help="Only this site's subjects.")
@click.option("--subject", help="Only this subject.")
@click.option("--refresh", is_flag=True,
              help="First run the time-based edit checks on every subject (monitor, "
                   "data-manager).")
@shared_options
@handled
def queries(s: Session, status: str | None, site: str | None, subject: str | None,
            refresh: bool) -> None:
    """Data clarification queries with their age in days; --json gives each whole thread."""
    raised = s.ledger.execute(c.RefreshQueries(), s.user)["queries_raised"] if refresh else []
    threads = s.reader.queries(status=status, site=site, subject=subject)
    rows = [{k: t[k] for k in ("query_id", "status", "age_days", "subject", "entry", "field",
                               "rule", "last_text")} for t in threads]
    text = table(rows) + (f"\n\nraised now: {', '.join(raised)}" if raised else "")
    emit({"queries": threads, "raised": raised}, s.as_json, text=text)


@cli.command("sdv")
@click.option("--site", help="Only this site.")
@click.option("--subject", help="Only this subject.")
@shared_options
@handled
def sdv(s: Session, site: str | None, subject: str | None) -> None:
    """Source data verification: entries verified over entries per site and subject, and
    every entry not verified yet."""
    doc = s.reader.sdv(site=site, subject=subject)
    lines = []
    for g in doc["sites"]:
        lines.append(f"site {g['site']}: {g['verified']}/{g['entries']} verified "
                     f"({g['percent']}%)")
        lines += [f"  {x['subject']}: {x['verified']}/{x['entries']}" for x in g["subjects"]]
    todo = [{"subject": u["subject"], "entry": u["entry"], "event": u["event"],
             "unverified_by": u.get("unverified_by")} for u in doc["unverified"]]
    emit(doc, s.as_json, text="\n".join(lines or ["(no entries)"]) + "\n\nnot verified:\n"
         + table(todo))


