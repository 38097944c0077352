"""`m22bol projections status|rebuild`: the read models' positions, and a rebuild from zero."""

from __future__ import annotations

from m22bol.cli.main import Session, cli, handled, shared_options
from m22bol.cli.output import emit, progress, table


@cli.group("projections")
def projections_group() -> None:
    """The SQL read models that the current-state queries read."""


@projections_group.command("status")
@shared_options
@handled
def status(s: Session) -> None:
    """Each projection's position in the notification log, and its lag behind the ledger."""
    from m22bol.projections.runner import status as projection_status

    s.reader.allow("projections status")
    doc = projection_status(s.ledger)
    rows = [{k: p[k] for k in ("name", "position", "lag")} for p in doc["projections"]]
    behind = "" if doc["caught_up"] else (
        "\nbehind: the read models lag the ledger (an upkeep after an entry failed?); the next "
        "query or entry catches up, or run `m22bol projections rebuild`")
    emit(doc, s.as_json,
         text=f"ledger at notification {doc['max_notification_id']}\n\n" + table(rows) + behind)


@projections_group.command("rebuild")
@shared_options
@handled
def rebuild(s: Session) -> None:
    """Drop every read model and rebuild it from the first event (admin only)."""
    from m22bol.projections.runner import rebuild as rebuild_projections
    from m22bol.projections.runner import status as projection_status

    s.reader.allow("projections rebuild")

    rebuild_projections(s.ledger, progress=lambda total: progress(
        total, "rebuilding projections (subjects)", s.as_json))
    doc = projection_status(s.ledger)
    emit(doc, s.as_json, text="rebuilt: " + ", ".join(
        f"{p['name']} at {p['position']}" for p in doc["projections"]))
