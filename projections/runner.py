"""Keep the read models up to date from the ledger's notification log: catch-up and rebuild.

Every projection's rows are a pure function of a subject's whole effective timeline (a
correction can change anything derived), so the unit of work is a batch of notifications, not
one event: the runner reads the notifications after the positions, finds the subjects they
touch, loads each Patient once *as of the batch's last notification* (its aggregate version then),
derives it once, and replaces that subject's rows in every projection that is behind. The rows
and the new `Tracking` positions commit in one transaction, so after any crash each projection's
rows are exactly those of the ledger up to its position (exactly once, resumable).

The native SQLite store has no subscriptions, so this pulls with `select_notifications` on
both stores. A ledger opened for entries runs `catch_up_after_save` after each save (see
`projections.after_save`); queries call `catch_up` when a projection lags (an earlier process
may have died between committing its events and projecting them).
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, OperationalError, Tracking

from m22bol.domain.events import ProtocolAmended, TrialInitialised, topic_of
from m22bol.domain.patient import Patient, project_patient
from m22bol.domain.trial import TRIAL_ID, Trial, project_trial
from m22bol.ledger.log_digest import query
from m22bol.ledger.store import events_table, is_contention, log_position
from m22bol.projections import catalog, rows, tables
from m22bol.projections.recorder import (
    PositionTaken,
    ProjectionTracking,
    ReadModelStore,
    Sql,
    move_forward,
    positions,
)

if TYPE_CHECKING:
    from eventsourcing.application import Recording

    from m22bol.ledger.app import TrialLedger

log = logging.getLogger("m22bol.projections")

PAGE = 5000  # notifications per read
# Subjects loaded, derived and written per round of statements. It bounds the catch-up's own
# memory on top of the process's: 200 (with the import's 200 cached subjects still held)
# took a 100k-line import from 195 to 274 MiB; a round costs a few statements, so a smaller
# round costs nothing measurable (bench/README.md, "Writing").
CHUNK = 50
MAX_ATTEMPTS = 12
PROTOCOL_TOPICS = frozenset({topic_of(TrialInitialised), topic_of(ProtocolAmended)})

Progress = Callable[[int], AbstractContextManager[Any]]


class ProjectionLag(Exception):
    """The projections could not be brought up to date (they stay consistent, only behind)."""


class ReadModels:
    """The read models of one ledger: their database and each projection's tracking."""

    def __init__(self, ledger: TrialLedger):
        self.ledger = ledger
        self.store = ReadModelStore(ledger)
        self.names = list(catalog.projections())
        self.store.ensure_tables({n: tables.tables_of(n) for n in self.names}, rows.VERSION)
        self.tracking = {n: ProjectionTracking(self.store, n) for n in self.names}

    def positions(self) -> dict[str, int]:
        found = positions(self.store, self.ledger.name)
        return {n: found.get(n, 0) for n in self.names}

    def close(self) -> None:
        self.store.close()


_OPEN: weakref.WeakKeyDictionary[TrialLedger, ReadModels] = weakref.WeakKeyDictionary()


def read_models(ledger: TrialLedger) -> ReadModels:
    """The ledger's read models, opened once per ledger object and closed with it."""
    models = _OPEN.get(ledger)
    if models is None:
        models = _OPEN[ledger] = ReadModels(ledger)
        ledger.on_close.append(lambda: _OPEN.pop(ledger).close())
    return models


# --- what a range of notifications touches --------------------------------------------------


@dataclass
class Seen:
    """What the notifications in (start, stop] touch, read without decoding any event."""

    versions: dict[UUID, int] = field(default_factory=dict)  # aggregate -> last version seen
    last_id: dict[UUID, int] = field(default_factory=dict)  # aggregate -> last notification
    protocol_changed_at: int = 0  # last notification that registered a protocol (0: none)


def scan(ledger: TrialLedger, start: int, stop: int) -> Seen:
    """Read only the columns it needs, with plain SQL: the library's `select_notifications`
    reads every event's state too and makes a frozen `Notification` of each row, which was
    most of the time a catch-up after a large import spent here."""
    seen = Seen()
    sql = (f"SELECT {log_position(ledger.url)}, originator_id, originator_version, topic "
           f"FROM {events_table(ledger.url)} WHERE {log_position(ledger.url)} > {{p}} AND "
           f"{log_position(ledger.url)} <= {{p}} ORDER BY {log_position(ledger.url)} "
           f"LIMIT {PAGE}")
    versions: dict[Any, int] = {}  # keyed by the id as stored (SQLite: hex text)
    last_id: dict[Any, int] = {}
    while start < stop:
        page = query(ledger, sql, (start, stop))
        for position, aggregate, version, topic in page:
            # Within one aggregate, versions are written in order, so the last one seen in the
            # range is the aggregate's version as of `stop`.
            versions[aggregate] = version
            last_id[aggregate] = position
            if topic in PROTOCOL_TOPICS:
                seen.protocol_changed_at = position
        if len(page) < PAGE:
            break
        start = page[-1][0]
    seen.versions = {_uuid(a): v for a, v in versions.items()}
    seen.last_id = {_uuid(a): n for a, n in last_id.items()}
    return seen


def _uuid(stored: Any) -> UUID:
    return stored if isinstance(stored, UUID) else UUID(stored)


# --- one step: from the positions to `target`, in one transaction ---------------------------


def _load(ledger: TrialLedger, aggregate_id: UUID, version: int,
          known: dict[UUID, Any], projector) -> Any:
    cached = known.get(aggregate_id)
    if cached is not None and cached.version == version:
        return cached
    return ledger.repository.get(aggregate_id, version=version, projector_func=projector)


def _chunks(items: list[UUID], size: int) -> Iterator[list[UUID]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _replace(conn: Sql, projection: str, subjects: list[str], found: rows.Rows) -> None:
    for table in tables.tables_of(projection):
        conn.delete_subjects(table, subjects)
        if found.get(table.name):
            conn.insert(table, found[table.name])


def _replace_trial(conn: Sql, trial: Trial) -> None:
    for table in tables.tables_of("trial"):
        conn.run(f"DELETE FROM {table.name}")
    for name, new in rows.trial_rows(trial).items():
        conn.insert(tables.BY_NAME[name], new)


def advance(models: ReadModels, behind: dict[str, int], target: int, *,
            known: dict[UUID, Any] | None = None, reset: bool = False,
            progress: Progress | None = None) -> None:
    """Move every projection in `behind` (name -> position) to `target` in one transaction.

    Raises the library's IntegrityError when a concurrent updater has already moved one of them
    to `target` or beyond (nothing is written; re-read the positions), OperationalError when the
    database stays locked.
    """
    ledger = models.ledger
    known = known or {}
    start = min(behind.values())
    seen = scan(ledger, start, target)
    subject_projections = [p for p in behind if p != "trial"]
    # A new protocol can change what every subject's facts mean, so it touches them all.
    everyone = None
    if any(seen.protocol_changed_at > behind[p] for p in subject_projections):
        everyone = seen if start == 0 else scan(ledger, 0, target)
    versions = everyone.versions if everyone else seen.versions
    touched: dict[str, set[UUID]] = {}
    for p in subject_projections:
        if everyone is not None and seen.protocol_changed_at > behind[p]:
            touched[p] = set(everyone.versions) - {TRIAL_ID}
        else:
            touched[p] = {a for a, n in seen.last_id.items() if n > behind[p]} - {TRIAL_ID}
    subjects = sorted(set().union(*touched.values()), key=str)

    trial_version = versions.get(TRIAL_ID)
    trial: Trial | None = (
        _load(ledger, TRIAL_ID, trial_version, known, project_trial) if trial_version
        # No trial event in the range: the protocol in force now (the entry's own trial if it
        # came from an entry). Should a protocol registered after `target` be used a little
        # early, the step that covers it re-derives everyone.
        else known.get(TRIAL_ID) or ledger.trial()
    )
    if trial is None and subjects:
        raise ProjectionLag("subjects without a trial: the ledger is not initialised")
    today = ledger.clock().date()
    tracking = Tracking(ledger.name, target)

    bar = progress(len(subjects)) if progress else nullcontext(None)
    with models.store.transaction(lock_timeout=600 if reset else 10) as conn, bar as shown:
        if reset:
            # Rows deleted, not tables recreated: their shape is current (ensure_tables), and
            # a writer login on PostgreSQL may change rows but not the schema.
            models.store.empty(conn, [t.name for p in behind for t in tables.tables_of(p)])
            for p in behind:
                models.tracking[p].forget(conn)
        # Positions first: on PostgreSQL the first upsert takes the row lock that makes a
        # concurrent updater of the same projection wait, then fail, instead of interleaving.
        move_forward(conn, [models.tracking[p] for p in sorted(behind)], tracking)
        trial_touched = seen.last_id.get(TRIAL_ID, 0) > behind.get("trial", target)
        if trial_touched and trial is not None:
            _replace_trial(conn, trial)
        for chunk in _chunks(subjects, CHUNK):
            derived = {
                a: rows.derive_subject(_load(ledger, a, versions[a], known, project_patient),
                                       trial.protocol, today)
                for a in chunk
            }
            for p in subject_projections:
                mine = [derived[a] for a in chunk if a in touched[p]]
                if not mine:
                    continue
                found: rows.Rows = {}
                for d in mine:
                    for name, new in rows.SUBJECT_ROWS[p](d).items():
                        found.setdefault(name, []).extend(new)
                _replace(conn, p, [d.subject for d in mine], found)
            if shown is not None:
                shown.update(len(chunk))


# --- the loops ---------------------------------------------------------------------------------


def catch_up(ledger: TrialLedger, *, until: int | None = None,
             known: dict[UUID, Any] | None = None) -> dict[str, int]:
    """Bring every projection to the ledger's last notification (or at least to `until`).

    Tolerates concurrent updaters: when one of them got there first the positions are re-read
    and only what is still missing is done. Returns the positions reached.
    """
    models = read_models(ledger)
    for attempt in range(MAX_ATTEMPTS):
        positions = models.positions()
        if until is not None and min(positions.values()) >= until:
            return positions
        target = ledger.recorder.max_notification_id() or 0
        behind = {p: n for p, n in positions.items() if n < target}
        if not behind:
            return positions
        try:
            advance(models, behind, target, known=known)
        except PositionTaken:
            continue  # someone else projected part of it: re-read the positions
        except IntegrityError as error:
            # Rows that collide are no race (updaters of a projection queue on its position):
            # trying again would fail the same way, at the full cost of the step each time.
            raise ProjectionLag(f"the read-model rows do not fit the tables: {error}") from error
        except OperationalError as error:
            if not is_contention(error):
                raise  # a read-only file or a full disk stays so: retrying only waits
            # Locked by another writer for longer than the lock timeout: back off, then retry.
            time.sleep(random.uniform(0, 0.05 * 2 ** min(attempt, 5)))
            continue
        if until is not None and target >= until:
            return {**positions, **dict.fromkeys(behind, target)}
    raise ProjectionLag(f"projections still behind after {MAX_ATTEMPTS} attempts")


def catch_up_after_save(ledger: TrialLedger, recordings: list[Recording],
                        known: list[Patient | Trial | None]) -> None:
    """After an entry: project what was just saved (and anything else not yet projected).

    The events are committed already, so a failure here must not turn a successful entry into
    an error: it is logged, the projections stay consistent but behind, and the next entry or
    query catches up.
    """
    if not recordings:
        return
    try:
        catch_up(ledger, until=max(r.notification.id for r in recordings),
                 known={a.id: a for a in known if a is not None})
    except Exception as error:  # even a bug: the exit code must say the entry was written
        # Said on stderr whatever logging is set up to do: the person must learn that the
        # entry is in but the read models are behind (`projections status` shows the lag).
        print(f"warning: the entry is recorded, but the read models were not brought up to "
              f"date ({type(error).__name__}: {error}); the next command catches up",
              file=sys.stderr)
        log.debug("read-model upkeep failed", exc_info=bool(os.environ.get("M22BOL_DEBUG")))


def rebuild(ledger: TrialLedger, progress: Progress | None = None) -> dict[str, int]:
    """Empty every read-model table, project the whole ledger from zero, then catch up.

    The emptying and the projection up to the last notification at the start are one
    transaction: readers see the old rows until the new ones are complete, and a crash leaves
    the old ones. On SQLite that transaction holds the database's write lock, so entries wait
    meanwhile. Each subject is read, derived and written once (`projections.rebuilding`).
    """
    models = read_models(ledger)
    target = ledger.recorder.max_notification_id() or 0
    for attempt in range(MAX_ATTEMPTS):
        try:
            _rebuild_to(models, target, progress)
            break
        except OperationalError:
            time.sleep(random.uniform(0, 0.05 * 2 ** min(attempt, 5)))
    else:
        raise ProjectionLag(f"rebuild: the database stayed locked for {MAX_ATTEMPTS} attempts")
    return catch_up(ledger)


def _rebuild_to(models: ReadModels, target: int, progress: Progress | None) -> None:
    """Every projection from nothing to `target`, in one transaction."""
    from m22bol.ledger.reading import Snapshot
    from m22bol.projections import rebuilding

    ledger = models.ledger
    subject_projections = [p for p in models.names if p != "trial"]
    today = ledger.clock().date()
    with Snapshot(ledger) as snapshot:
        trial = _trial_at(ledger, snapshot, target)
        subjects = rebuilding.count_subjects(snapshot, target) if progress else 0
        bar = progress(subjects) if progress else nullcontext(None)
        with models.store.transaction(lock_timeout=600) as conn, bar as shown:
            # Rows deleted, not tables recreated: their shape is current (ensure_tables), and
            # a writer login on PostgreSQL may change rows but not the schema.
            models.store.empty(conn, [t.name for p in models.names
                                      for t in tables.tables_of(p)])
            for p in models.names:
                models.tracking[p].forget(conn)
            move_forward(conn, [models.tracking[p] for p in sorted(models.names)],
                         Tracking(ledger.name, target))
            if trial is None:
                if target:
                    raise ProjectionLag("subjects without a trial: the ledger is not initialised")
                return  # nothing recorded yet
            _replace_trial(conn, trial)
            workers = rebuilding.workers_for(target)
            for batch in rebuilding.derive_all(ledger, snapshot, target, trial, today,
                                               subject_projections, workers):
                subjects_in_batch = [subject for subject, _ in batch]
                for p in subject_projections:
                    found: rows.Rows = {}
                    for _, derived in batch:
                        for name, new in derived[p].items():
                            found.setdefault(name, []).extend(new)
                    _replace(conn, p, subjects_in_batch, found)
                if shown is not None:
                    shown.update(len(batch))


def _trial_at(ledger: TrialLedger, snapshot, target: int) -> Trial | None:
    """The trial as of log position `target` (None before `init`)."""
    (version,), = snapshot.rows(
        "SELECT MAX(originator_version) FROM {events} WHERE originator_id = {p} "
        "AND {pos} <= {p}", (_stored_id(ledger, TRIAL_ID), target))
    if not version:
        return None
    return ledger.repository.get(TRIAL_ID, version=version, projector_func=project_trial)


def _stored_id(ledger: TrialLedger, aggregate: UUID) -> UUID | str:
    """An aggregate id as its store's column holds it (SQLite: the hex digits)."""
    return aggregate.hex if ledger.url.startswith("sqlite") else aggregate


def status(ledger: TrialLedger) -> dict[str, Any]:
    """Each projection's position in the notification log and how far behind it is."""
    models = read_models(ledger)
    head = ledger.recorder.max_notification_id() or 0
    positions = models.positions()
    return {
        "max_notification_id": head,
        "caught_up": all(p >= head for p in positions.values()),
        "projections": [
            {"name": name, "position": positions[name], "lag": head - positions[name],
             "tables": list(catalog.projections()[name])}
            for name in models.names
        ],
    }
