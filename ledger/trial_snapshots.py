"""Snapshots of the trial aggregate, so that loading it does not grow with its chain.

Every grant, password, query number, seal, lock and daily edit-check run is an event of the
trial chain, and every command (entries and queries alike) loads the trial. Every `EVERY`
events the ledger stores the trial's state (`domain.trial.summary`) with the version it
covers and the hash of the event at that version, in the library's snapshot table (beside
the events, outside the hash chain, which stays as it was). Loading then reads the latest
snapshot and the events after it.

A snapshot is derived, never a record: it is not hashed into anything, and `audit verify`
(`check`) folds the trial's events again and names any snapshot that differs from that fold,
or that names a head the chain does not have. When loading, a snapshot whose head is not the
stored event at its version is ignored and the whole chain is folded. Deleting snapshots
loses nothing.

On PostgreSQL only the database owner may store one (a forged snapshot granting a role would
be obeyed until the next verify): writer logins ask once whether they may (`may_store`) and
otherwise never build one, and the owner's `db setup` takes them (docs/decisions.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import orjson
from eventsourcing.persistence import PersistenceError, StoredEvent

from m22bol.domain.canonical import canonical
from m22bol.domain.trial import TRIAL_ID, Trial, from_summary, project_trial, summary
from m22bol.ledger.store import event_hash

# Trial events folded on top of the latest snapshot before the next is taken: loading folds
# at most this many (about 5 ms of decoding), whatever the chain's length.
EVERY = 100
TOPIC = "m22bol:trial-snapshot"


@dataclass(frozen=True)
class Snapshot:
    version: int
    head: str  # SHA-256 of the stored bytes of the trial event at `version`
    state: dict  # domain.trial.summary


def recorder(ledger):
    """The snapshot table's recorder, made on first use. None where there is none and none
    can be made: an older ledger opened read-only, or a PostgreSQL login that may not run DDL
    on a database whose `db setup` predates snapshots. The ledger then folds the whole chain."""
    if ledger._trial_snapshots is None:
        try:
            ledger._trial_snapshots = ledger.factory.aggregate_recorder(purpose="snapshots")
        except (PersistenceError, OSError):
            return None
    return ledger._trial_snapshots


def may_store(ledger) -> bool:
    """Whether this login may insert into the snapshot table: asked of the database once per
    ledger object (once per process for the CLI), so that a writer login on PostgreSQL, which
    may only read snapshots, neither re-reads the trial after its commit to build one nor sends
    an insert the database refuses. SQLite and memory ledgers: whoever writes the events may."""
    if ledger._may_store_snapshots is None:
        ledger._may_store_snapshots = _insert_granted(ledger)
    return ledger._may_store_snapshots


def _insert_granted(ledger) -> bool:
    if not ledger.url.startswith("postgres"):
        return True
    import psycopg  # PostgreSQL only: SQLite ledgers never load it

    store = recorder(ledger)
    if store is None:
        return False
    try:
        with store.datastore.transaction(commit=False) as cursor:
            # to_regclass: NULL (not an error) where `db setup` predates the snapshot table.
            cursor.execute("SELECT coalesce(has_table_privilege(to_regclass(%s), 'INSERT'), "
                           "false) AS granted", (store.events_table_name,))
            return bool(cursor.fetchone()["granted"])
    except (PersistenceError, psycopg.Error):
        return False


def behind(trial: Trial) -> int:
    """Trial events loaded on top of the snapshot `trial` was resumed from (all of them when
    there was none): what each command folds until a snapshot is taken."""
    return trial.version - trial.base_version


def latest(ledger) -> Snapshot | None:
    """The snapshot of the highest version, if any decodes."""
    for row in _rows(ledger, desc=True, limit=1):
        return _decoded(row)
    return None


def _rows(ledger, **kwargs) -> list[StoredEvent]:
    store = recorder(ledger)
    if store is None:
        return []
    try:
        return store.select_events(TRIAL_ID, **kwargs)
    except PersistenceError:  # no snapshot table (yet) on this database
        return []


def _decoded(row: StoredEvent) -> Snapshot:
    body = orjson.loads(row.state)
    return Snapshot(row.originator_version, body["head"], body["trial"])


def load(ledger, decode) -> Trial | None:
    """The trial from its latest snapshot and the events after it, or None when there is no
    usable snapshot. `decode` turns stored events into domain events (the ledger's mapper)."""
    try:
        snapshot = latest(ledger)
    except (ValueError, KeyError, TypeError):  # undecodable: verify's finding, not ours
        return None
    if snapshot is None:
        return None
    # The event at the snapshot's version too: its hash must be the snapshot's head.
    events = list(decode(ledger.recorder.select_events(TRIAL_ID, gt=snapshot.version - 1)))
    if not events or events[0].originator_version != snapshot.version or (
            event_hash(events[0]) != snapshot.head):
        return None
    try:
        trial = from_summary(TRIAL_ID, snapshot.state, snapshot.version, snapshot.head)
    except (ValueError, KeyError, TypeError):
        return None
    return project_trial(trial, events[1:])


def take(ledger, trial: Trial) -> bool:
    """Store a snapshot of `trial` (as loaded from the store) if its tail is long enough;
    whether one was stored. Best effort: a ledger that cannot write it (a login without the
    privilege, a concurrent writer that took the same one) loads by folding a few more."""
    if behind(trial) < EVERY or not trial.events or not may_store(ledger):
        return False
    store = recorder(ledger)
    if store is None:
        return False
    body = {"head": event_hash(trial.events[-1]), "trial": summary(trial)}
    try:
        store.insert_events([StoredEvent(originator_id=TRIAL_ID,
                                         originator_version=trial.version,
                                         topic=TOPIC, state=canonical(body))])
    except PersistenceError:
        return False
    return True


def check(ledger, decode) -> Iterator[tuple[str, str]]:
    """(entry, problem) for every stored snapshot that is not what folding the trial's
    events up to its version gives: a forged or stale snapshot. Reads the trial chain once."""
    snapshots = []
    for row in _rows(ledger):
        try:
            snapshots.append(_decoded(row))
        except (ValueError, KeyError, TypeError):
            yield f"trial snapshot at #{row.originator_version}", "does not decode"
    if not snapshots:
        return
    events = decode(ledger.recorder.select_events(TRIAL_ID))
    trial: Trial | None = None
    for snapshot in snapshots:
        entry = f"trial snapshot at #{snapshot.version}"
        for event in events:
            trial = project_trial(trial, [event])
            if trial.version >= snapshot.version:
                break
        if trial is None or trial.version != snapshot.version:
            yield entry, "names a trial version the chain does not have"
            continue
        if event_hash(trial.events[-1]) != snapshot.head:
            yield entry, "names a head that is not the stored trial event at that version"
        elif canonical(summary(trial)) != canonical(snapshot.state):
            differs = sorted(k for k, v in summary(trial).items()
                             if canonical(v) != canonical(snapshot.state.get(k)))
            yield entry, ("differs from the trial's events up to that version in "
                          + ", ".join(differs or ["its fields"]))
