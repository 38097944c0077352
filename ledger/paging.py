"""Writing a unit of work in pages inside one open transaction: an import of a million lines
holds one page of decided events in memory, not all of them, and is still all or nothing.

`PagedWriter` opens the store's transaction at the first page and keeps it open; each page
is mapped by the ledger's own mapper (canonical bytes) and inserted in one statement
(`insert_page` of the ledger's recorders, `ledger.log_digest`); the log's running digest is
folded page by page and written once, just before the commit, so the transaction adds one
digest row as any other does. An aggregate evicted from memory is read back through the same
cursor (`events_of`), so it sees the pages written but not yet committed. Leaving the `with`
block commits; an exception (a refusal at the last line, a kill) rolls every page back.

The memory store has no transaction to keep open: there the writer inserts once, when the
unit of work ends (`paged` is False and the caller never flushes before the end).
"""

from __future__ import annotations

from contextlib import ExitStack
from hashlib import sha256
from typing import TYPE_CHECKING
from uuid import UUID

from eventsourcing.application import Recording
from eventsourcing.persistence import Notification

from m22bol.domain.events import Event
from m22bol.ledger.log_digest import Extension
from m22bol.ledger.store import chained_digest

if TYPE_CHECKING:
    from m22bol.ledger.app import TrialLedger

# Decided events per page: large enough that a page costs one statement's overhead among
# thousands of rows, small enough that a page is a few megabytes.
PAGE = 2000


class PagedWriter:
    def __init__(self, ledger: TrialLedger, page: int = PAGE):
        self.ledger = ledger
        self.recorder = ledger.recorder
        self.paged = hasattr(self.recorder, "insert_page")
        self.page = page if self.paged else None  # None: write once, at the end
        self.written = 0
        self.last_page: list[Recording] = []  # what the after-save hooks are handed
        self._stack = ExitStack()
        self._cursor = None
        self._digest: Extension | None = None

    def __enter__(self) -> PagedWriter:
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        """Commit (after writing the digest row) or, on an exception, roll back."""
        if error is None and self._digest is not None:
            try:
                self._digest.write()
            except BaseException as failed:
                # Rolled back and turned into the library's error by the transaction.
                if not self._stack.__exit__(type(failed), failed, failed.__traceback__):
                    raise
                return False
        return bool(self._stack.__exit__(kind, error, traceback))

    @property
    def open(self) -> bool:
        return self._cursor is not None

    def write(self, events: list[Event]) -> list[Recording]:
        """Insert one page (in this transaction). Returns `last_page`: the recording of the
        page's last event, whose position is the log's last one so far; what the after-save
        hooks need. Nobody reads a recording per event, and making one cost about as much as
        inserting the row (bench/README.md, "Writing")."""
        if not events:
            return []
        if self.paged:
            chained = list(map(chained_digest, events))  # before the mapping makes bytes
            rows = list(map(self.ledger.mapper.stored_row, events))
            cursor = self._begin()
            ids = self.recorder.insert_page(cursor, rows)
            if self._digest is None:
                # Read after the first insert, which holds the lock that orders the log, so no
                # other writer's digest row can come after the one read here.
                self._digest = Extension(self.recorder.executor(cursor), self.ledger.url)
            # Where the hash chain hashed the bytes inserted, fold its digest; hash the rest.
            self._digest.fold(ids, rows, [digest or sha256(row[3]).digest()
                                          for digest, row in zip(chained, rows, strict=True)])
            last = rows[-1]
        else:
            stored = list(map(self.ledger.mapper.to_stored_event, events))
            ids = self.recorder.insert_events(stored)
            s = stored[-1]
            last = (s.originator_id, s.originator_version, s.topic, s.state)
        self.written += len(events)
        aggregate, version, topic, state = last
        self.last_page = [Recording(events[-1], Notification(
            id=ids[-1], originator_id=aggregate, originator_version=version, topic=topic,
            state=state))]
        return self.last_page

    def events_of(self, aggregate_id: UUID) -> list[Event]:
        """An aggregate's events as this transaction sees them: committed ones and the pages
        written so far."""
        assert self._cursor is not None, "read through the writer only once it has written"
        to_event = self.ledger.mapper.to_domain_event
        return [to_event(s) for s in self.recorder.select_aggregate(self._cursor, aggregate_id)]

    def _begin(self):
        if self._cursor is None:
            self._cursor = self._stack.enter_context(
                self.recorder.datastore.transaction(commit=True))
        return self._cursor
