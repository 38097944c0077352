"""A rebuild from zero (`projections.rebuilding`): each subject read, derived and written once,
in process or on worker processes, as of the log position it started at, in bounded memory."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from m22bol.projections import catalog, rebuilding, runner
from tests.support.read_models import (
    append_without_projecting,
    assert_rebuild_changes_nothing,
    screening,
    snapshot,
)


def test_a_rebuild_on_worker_processes_equals_the_upkeep(driver, monkeypatch):
    screening(driver)
    # Every ledger counts as large, and every subject is a batch of its own, so several
    # batches are in flight on the workers at once.
    monkeypatch.setattr(rebuilding, "PARALLEL_FROM", 0)
    monkeypatch.setattr(rebuilding, "WORKERS", 2)
    monkeypatch.setattr(rebuilding, "BATCH_EVENTS", 1)
    rebuilt = assert_rebuild_changes_nothing(driver.ledger)
    assert {r[0] for r in rebuilt[catalog.PATIENT_SUMMARY]} == {"P-1", "P-2", "P-3", "P-4"}


def test_a_rebuild_projects_exactly_up_to_its_target(driver):
    screening(driver)
    ledger = driver.ledger
    kept = snapshot(ledger.url)
    append_without_projecting(ledger, "register", subject="P-9", site="S1",
                              consent_date="2025-02-01")
    head = ledger.recorder.max_notification_id()

    # Stopped at the position before the new registration, as when an entry lands after
    # the rebuild read the head: the rows are the ledger's up to there, and say so.
    runner._rebuild_to(runner.read_models(ledger), head - 1, progress=None)
    assert snapshot(ledger.url) == kept

    runner.catch_up(ledger)
    assert "P-9" in {r[0] for r in snapshot(ledger.url)[catalog.PATIENT_SUMMARY]}
    assert_rebuild_changes_nothing(ledger)


def test_a_rebuild_counts_its_subjects_for_the_progress_bar(driver):
    screening(driver)
    counted: list[int] = []
    advanced: list[int] = []

    class Bar:
        def __init__(self, total: int):
            counted.append(total)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def update(self, n: int) -> None:
            advanced.append(n)

    runner.rebuild(driver.ledger, progress=Bar)
    assert counted == [4]
    assert sum(advanced) == 4


def test_the_batches_in_flight_are_bounded():
    """The executor would otherwise take the whole ledger into its queue at once."""
    taken: list[int] = []

    def batches():
        for n in range(20):
            taken.append(n)
            yield [n]

    with ThreadPoolExecutor(2) as pool:
        results = rebuilding._bounded(pool, batches(), lambda batch: batch, window=3)
        first = next(results)
        assert first == [0]
        assert len(taken) == 3  # read ahead no further than the window
        assert [first, *results] == [[n] for n in range(20)]


@pytest.mark.parametrize("events, workers", [(0, 0), (rebuilding.PARALLEL_FROM - 1, 0)])
def test_a_small_ledger_is_derived_in_process(events, workers):
    assert rebuilding.workers_for(events) == workers
