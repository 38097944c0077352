"""Which subjects the day's sweep of timed edit checks must load, read from the summary rows.

Each summary row carries `checks_due`, the first day on which a timed edit check may find
something in the subject (`clarifications.checks_due`). The rows are trusted only as far as
they can be checked cheaply here (docs/decisions.md): the summary projection must be at the
log's head with this build's row shape, and every registered subject must have a row; a
subject whose row is missing or whose rules failed is swept anyway. Otherwise the answer is
None and the ledger sweeps every subject, as before the column existed.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from m22bol.projections import catalog
from m22bol.projections.stored import _rows, lag

if TYPE_CHECKING:
    from m22bol.ledger.app import TrialLedger

PROJECTION = "patient_summary"


def due_subjects(ledger: TrialLedger, today: date) -> list[str] | None:
    """The subjects to sweep on `today`, in registration order, or None: sweep them all."""
    try:
        if not _current(ledger):
            return None
        day = today.isoformat() if ledger.url.startswith("sqlite") else today
        found = _rows(ledger, f"SELECT subject, aggregate_id, error IS NOT NULL OR checks_due "
                              f"<= ? AS due FROM {catalog.PATIENT_SUMMARY}", (day,))
    except Exception:  # noqa: BLE001 - a table or column this build cannot read: sweep all
        return None
    rows = {r["aggregate_id"].replace("-", ""): r for r in found}
    due, seen = [], set()
    for aggregate, subject in ledger.registrations():
        if aggregate in seen:
            continue
        seen.add(aggregate)
        row = rows.get(aggregate.hex)
        if row is None:
            due.append(subject())  # no row: its checks are not known, so it is looked at
        elif row["due"]:
            due.append(row["subject"])
    return due


def _current(ledger: TrialLedger) -> bool:
    """The summary rows are of this build's shape and include every event in the log."""
    from m22bol.projections import rows, tables
    from m22bol.projections.recorder import fingerprint

    printed = _rows(ledger, f"SELECT fingerprint FROM {catalog.SCHEMA} WHERE projection = ?",
                    (PROJECTION,))
    wanted = fingerprint(tables.tables_of(PROJECTION), rows.VERSION)
    return lag(ledger, [PROJECTION]) == 0 and [r["fingerprint"] for r in printed] == [wanted]
