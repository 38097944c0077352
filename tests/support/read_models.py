"""The SQL read models as rows, the checks that they say what the replay says, and the ledgers
the projection tests build."""

from __future__ import annotations

from typing import Any

from m22bol.domain.commands import parse_command
from m22bol.ledger.app import TrialLedger, _Batch
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



def append_without_projecting(ledger: TrialLedger, command: str, **values: Any) -> None:
    """Save an entry the way a process killed right after its commit would leave it."""
    batch = _Batch(ledger, "dm", ledger.clock())
    batch.apply(parse_command(command, values))
    ledger.save(*batch.pending)


def screening(driver) -> None:
    """Subjects in several baskets and states, with a correction and a retraction."""
    driver.enrolled("P-1")  # basket I
    driver.enrolled("P-2", er="negative")  # basket II
    driver.do("register", subject="P-3", site="S2", consent_date="2025-01-05")
    driver.do("assess-eligibility", subject="P-3", date="2025-01-06", her2="positive",
              er="positive", prior_therapy="none", distant_lesions=9, all_lesions_curable="yes",
              lvef=60, ecog=0)
    driver.do("register", subject="P-4", site="S1", consent_date="2025-01-07")
    driver.do("ctdna", subject="P-1", date="2025-01-09", result="detected")
    driver.do("contact", subject="P-2", date="2025-03-01")
    driver.do("death", subject="P-2", date="2025-03-02", cause="unknown")
    driver.do("correct", subject="P-1", entry="P-1#4", set={"result": "not-detected"},
              reason="transcription error")
    driver.do("retract", subject="P-2", entry="P-2#4", reason="wrong subject")
    driver.do("correct", subject="P-4", entry="P-4#1", set={"site": "S3"}, reason="wrong site")
