"""The SQL read models as rows, and the checks that they say what the replay says."""

from __future__ import annotations

from m22bol.ledger.app import TrialLedger
from m22bol.projections import runner, stored, tables
from m22bol.projections.document_json import plain
from m22bol.projections.recorder import ReadModelStore
from m22bol.projections.replay import patient_view, status_by_replay


def snapshot(url: str) -> dict[str, list[tuple]]:
    """Every read-model row, table by table, in primary-key order; positions under `_tracking`."""
    ledger = TrialLedger(url)
    try:
        with ReadModelStore(ledger).reading() as sql:
            found = {}
            for table in tables.ALL:
                key = "_tracking" if table is tables.tracking else table.name
                found[key] = [tuple(r.values()) for r in sql.rows(
                    f"SELECT * FROM {table.name} ORDER BY {', '.join(table.primary_key)}")]
            return found
    finally:
        ledger.close()


def assert_agrees_with_replay(ledger: TrialLedger) -> None:
    """The projections are at the head of the log, and say what replaying the events says."""
    head = ledger.recorder.max_notification_id()
    assert set(runner.read_models(ledger).positions().values()) == {head}
    assert stored.status(ledger) == status_by_replay(ledger)
    for subject in ledger.subjects():
        assert stored.patient(ledger, subject) == plain(patient_view(ledger, subject))


def assert_rebuild_changes_nothing(ledger: TrialLedger) -> dict[str, list[tuple]]:
    kept = snapshot(ledger.url)
    runner.rebuild(ledger)
    rebuilt = snapshot(ledger.url)
    assert rebuilt == kept
    return rebuilt
