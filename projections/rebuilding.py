"""A rebuild from zero: every subject's events read once, derived once, its rows written once.

The catch-up machinery (`runner.advance`) is made for a few subjects: it scans the log to find
the subjects touched, then loads each through the repository, one query per subject. A rebuild
reads the events up to its target once, in (aggregate, version) order, the primary key's order
on both stores, so each subject's chain arrives whole; the memory held is a few subjects'
events at a time, whatever the size of the ledger.

Deriving a subject is pure (its events, the protocol in force, today's date -> its rows) and is
most of the cost, so on a large ledger it runs in worker processes, one per core; the reading,
the trial's rows and every write stay in this process, in the one transaction the caller
holds. A small ledger is derived in process: starting workers costs more than it saves.
Where workers are spawned (PostgreSQL, see `_start_method`), each imports the program's main
module again, as every `multiprocessing` user's does: a script that calls `rebuild` must keep
its top-level code under `if __name__ == "__main__":` (the `m22bol` command does).

Events are decoded with the ledger's own mapper, full pydantic validation included. A rebuild
does not check the hash chains (that is `audit verify`), so it cannot vouch that the bytes are
the ones the ledger validated on the way in; and validation is about 5 % of a rebuild's time
(the rule walk is most of the rest: `bench/README.md`). See `docs/decisions.md`.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import date
from multiprocessing import get_all_start_methods, get_context
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent

from m22bol.domain.patient import project_patient
from m22bol.domain.protocol import Protocol, parse_protocol
from m22bol.domain.trial import TRIAL_ID, Trial
from m22bol.ledger.reading import Snapshot
from m22bol.projections import rows

# (aggregate id, [(version, topic, state), ...]): one subject's stored events, as read
Chain = tuple[UUID, list[tuple[int, str, bytes]]]
# (subject, {projection: its rows}): what one subject's derivation gives the writer
Derived = tuple[str, dict[str, rows.Rows]]

BATCH_EVENTS = 2000  # events per batch handed to a worker: big enough to amortise pickling
PARALLEL_FROM = 20_000  # events; below this a rebuild derives in process
IN_FLIGHT = 2  # batches queued per worker: keeps the workers busy and the memory bounded
WORKERS: int | None = None  # worker processes on a large ledger; None: one per core


def chains(snapshot: Snapshot, target: int) -> Iterator[Chain]:
    """Every aggregate's events stored at or before log position `target`, one chain at a
    time, in primary-key order (so read once, and never all at once)."""
    current = None  # the aggregate id as the column holds it (SQLite: the hex digits)
    events: list[tuple[int, str, bytes]] = []
    for aggregate, version, topic, state in snapshot.stream(
            "SELECT originator_id, originator_version, topic, state FROM {events} "
            "WHERE {pos} <= {p} ORDER BY originator_id, originator_version", (target,),
            name="m22bol_rebuild"):
        if aggregate != current:
            if current is not None:
                yield _uuid(current), events
            current, events = aggregate, []
        events.append((version, topic, bytes(state)))
    if current is not None:
        yield _uuid(current), events


def _uuid(value: UUID | str) -> UUID:
    return value if type(value) is UUID else UUID(value)


def count_subjects(snapshot: Snapshot, target: int) -> int:
    """How many subjects a rebuild to `target` derives (for a progress bar)."""
    (found,), = snapshot.rows(
        "SELECT COUNT(DISTINCT originator_id) FROM {events} WHERE {pos} <= {p}", (target,))
    return max(found - 1, 0)  # less the trial's own chain


class Deriver:
    """Turns subjects' stored events into their rows; pure, so it runs in any process."""

    def __init__(self, mapper: Mapper, protocol: Protocol, today: date,
                 projections: list[str]):
        self.mapper = mapper
        self.protocol = protocol
        self.today = today
        self.projections = projections

    def __call__(self, batch: list[Chain]) -> list[Derived]:
        return [self.one(aggregate, events) for aggregate, events in batch]

    def one(self, aggregate: UUID, stored: list[tuple[int, str, bytes]]) -> Derived:
        events = [self.mapper.to_domain_event(StoredEvent(
            originator_id=aggregate, originator_version=version, topic=topic, state=state))
            for version, topic, state in stored]
        patient = project_patient(None, events)
        derived = rows.derive_subject(patient, self.protocol, self.today)
        return derived.subject, {p: rows.SUBJECT_ROWS[p](derived) for p in self.projections}


# A worker process's own Deriver, made once by `_start_worker`.
_WORKER: Deriver | None = None


def _start_worker(mapper: Mapper, protocol_text: str, protocol_version: str, today: date,
                  projections: list[str]) -> None:
    global _WORKER
    protocol = parse_protocol(protocol_text, source=f"protocol {protocol_version}")
    _WORKER = Deriver(mapper, protocol, today, projections)


def _derive_in_worker(batch: list[Chain]) -> list[Derived]:
    assert _WORKER is not None, "the worker was started without its initializer"
    return _WORKER(batch)


def _batches(subjects: Iterator[Chain]) -> Iterator[list[Chain]]:
    batch: list[Chain] = []
    size = 0
    for chain in subjects:
        batch.append(chain)
        size += len(chain[1])
        if size >= BATCH_EVENTS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def workers_for(events: int) -> int:
    """Worker processes for a rebuild of `events` events: none below PARALLEL_FROM."""
    if events < PARALLEL_FROM:
        return 0
    if WORKERS is not None:
        return WORKERS
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return cores if cores > 1 else 0


def derive_all(ledger, snapshot: Snapshot, target: int, trial: Trial, today: date,
               projections: list[str], workers: int) -> Iterator[list[Derived]]:
    """Every subject's rows as of `target`, a batch at a time, in the order read."""
    subjects = (chain for chain in chains(snapshot, target) if chain[0] != TRIAL_ID)
    batches = _batches(subjects)
    if workers == 0:
        derive = Deriver(ledger.mapper, trial.protocol, today, projections)
        for batch in batches:
            yield derive(batch)
        return
    version, _, text = trial.protocol_texts[-1]
    pool = ProcessPoolExecutor(workers, mp_context=_start_method(),
                               initializer=_start_worker,
                               initargs=(ledger.mapper, text, version, today, projections))
    try:
        yield from _bounded(pool, batches, _derive_in_worker, workers * IN_FLIGHT)
    finally:
        # On a failure (a write refused, a worker's error) nothing queued is worth finishing.
        pool.shutdown(cancel_futures=True)


def _start_method():
    """Forked where that is safe, else spawned. A forked worker starts at once, with this
    process's modules and caches (the protocol, the coding dictionary, scored scans); it never
    touches the database connections it inherits, and leaves without closing them (SQLite's
    locks belong to this process, not to the file descriptors). But a thread of this process
    (PostgreSQL's connection pool) may hold a lock at the moment of the fork that the child
    would wait on forever: then workers are spawned, a fresh interpreter each."""
    if threading.active_count() == 1 and "fork" in get_all_start_methods():
        return get_context("fork")
    return get_context("spawn")


def _bounded(pool: ProcessPoolExecutor, batches: Iterator[list[Chain]],
             work: Callable[[list[Chain]], list[Derived]], window: int) -> Iterator[Any]:
    """Results in submission order, with at most `window` batches submitted and not yet
    taken: the executor would otherwise read the whole ledger into its queue."""
    pending: deque[Future] = deque()
    for batch in batches:
        pending.append(pool.submit(work, batch))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
