"""`m22bol db setup`: a PostgreSQL ledger's schema, triggers and group roles, made once by the
database owner, so that staff logins run every command with no right to change the schema."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from m22bol.cli.main import Session, cli, handled, shared_options
from m22bol.cli.output import emit
from m22bol.domain.errors import BadInput


@cli.group()
@shared_options
def db() -> None:
    """The database of a PostgreSQL ledger."""


@db.command()
@shared_options
@handled
def setup(s: Session) -> None:
    """Create the schema, the append-only and actor-check triggers and the writer and reader
    group roles (PostgreSQL; run once by the database owner, again after an upgrade).

    Staff then log in as their own PostgreSQL users, members of one of the two roles:
    GRANT <database>_writer TO alice;  GRANT <database>_reader TO bob;
    """
    if not s.ledger_url.startswith("postgres"):
        raise BadInput("db setup: PostgreSQL only; a SQLite ledger is made by its first "
                       "command", field="ledger")
    result = setup_database(s.ledger_url)
    emit(result, s.as_json, text=(
        f"database {result['database']} set up by its owner {result['owner']}\n"
        f"writer role: {result['writer_role']} (entries and queries)\n"
        f"reader role: {result['reader_role']} (queries only)\n"
        f"give staff logins one of them, e.g. GRANT {result['writer_role']} TO alice;"
        + (f"\n{snapshot_text(result['trial_snapshot'])}" if result["trial_snapshot"] else "")))


def snapshot_text(snapshot: dict[str, Any]) -> str:
    """What a command folded to load the trial before, and whether a snapshot was taken."""
    lag = (f"loading the trial folded {snapshot['events_behind']} events on top of the last "
           "snapshot")
    if snapshot["taken"]:
        return f"trial snapshot: taken at trial#{snapshot['version']} ({lag}, now none)"
    return f"trial snapshot: not needed ({lag}; one is taken at {snapshot['every']})"


def setup_database(url: str) -> dict[str, Any]:
    """Idempotent: every statement creates what is missing or replaces it as it should be."""
    from m22bol.ledger import postgres
    from m22bol.ledger.app import TrialLedger
    from m22bol.ledger.store import append_only_statements, events_table, schema_lock
    from m22bol.projections import tables
    from m22bol.projections.runner import read_models

    database = urlsplit(url).path.lstrip("/") or "postgres"
    with schema_lock(url):
        ledger = TrialLedger(url, create_tables=True)
        try:
            read_models(ledger)  # the read-model tables, created by their own code
            with ledger.recorder.datastore.transaction(commit=True) as cursor:
                cursor.execute("SELECT current_user AS owner")
                owner = cursor.fetchone()["owner"]
                postgres.create_group_roles(cursor, url)
                statements = [*append_only_statements(url),
                              *postgres.actor_check_statements(url, owner),
                              *postgres.privilege_statements(url, database,
                                                             sorted(tables.BY_NAME))]
                for statement in statements:
                    cursor.execute(statement)
            # Only the owner stores the trial's snapshots (writers may only read them, so that
            # a forged one cannot grant a role): running `db setup` again, say nightly, keeps
            # loading the trial flat on a busy PostgreSQL ledger. Folded whole, so that a
            # forged snapshot is never copied forward.
            snapshot = _snapshot(ledger)
        finally:
            ledger.close()
    writer, reader = postgres.group_roles(url)
    return {"database": database, "owner": owner, "events_table": events_table(url),
            "writer_role": writer, "reader_role": reader, "trial_snapshot": snapshot}


def _snapshot(ledger) -> dict[str, Any] | None:
    """Take a trial snapshot if commands fold `EVERY` or more events on top of the last one;
    how many they folded, and whether one was taken. None before `init`."""
    from m22bol.ledger import trial_snapshots

    trial = ledger.trial(whole=True)
    if trial is None:
        return None
    try:
        last = trial_snapshots.latest(ledger)
    except (ValueError, KeyError, TypeError):  # undecodable: `audit verify` names it
        last = None
    behind = trial.version - (last.version if last else 0)
    taken = behind >= trial_snapshots.EVERY and trial_snapshots.take(ledger, trial)
    return {"version": trial.version, "events_behind": behind, "taken": taken,
            "every": trial_snapshots.EVERY}
