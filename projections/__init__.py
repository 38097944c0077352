"""The read side: everything that answers a question about the ledger, never writes a fact.

`reader.Reader` is the one door for queries (access checked, then read model or replay);
`replay` answers the past and cutoffs from the events; `stored` reads the SQL read models that
`runner` keeps current from the notification log; `documents` shapes the answers; `report`
draws them as a page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import date

    from m22bol.ledger.app import TrialLedger


def after_save(ledger: TrialLedger, recordings: list, aggregates: list) -> None:
    """The hook a ledger opened for entries runs after each save: bring the read models up to
    date before the entry returns (imported here lazily, so opening a ledger stays cheap)."""
    from m22bol.projections.runner import catch_up_after_save

    catch_up_after_save(ledger, recordings, aggregates)


def due_subjects(ledger: TrialLedger, today: date) -> list[str] | None:
    """The hook a ledger opened for entries asks which subjects the day's sweep must load
    (`projections.due`; imported lazily, as above)."""
    from m22bol.projections.due import due_subjects as due

    return due(ledger, today)
