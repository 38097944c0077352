"""A ledger opened only to read the present: the store's database connection, without the
event-sourcing application, the event and command models or the rules.

A question about the present (`projections.present`) needs who the store authenticated, the
trial's grants and last seal, a subject's stored events for its signature, and plain SQL on
the read models. Opening this costs one connection and imports no model; nothing here writes.

The trial is read as the write side reads it (`ledger.trial_snapshots`): from its latest
snapshot, used only when its head is the SHA-256 of the stored event at its version, and the
events after it; without a usable snapshot, from the whole chain. Only what a reader's access
and the answers need is folded (grants, protocol versions, the last seal), from the stored
JSON, which names its own type (the write side refuses bytes whose type differs from the topic
column, and so does this, by stepping aside).

Whatever this cannot read exactly as the full ledger would (no such file, no tables, bytes
that do not decode) raises `Unavailable`: the caller then opens the full ledger, which answers
or refuses as it always did.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from m22bol.domain.ids import TRIAL_ID, patient_id
from m22bol.ledger.places import (
    APP_NAME,
    events_table,
    log_position,
    postgres_params,
    snapshots_table,
)
from m22bol.ledger.places import sqlite_name as sqlite_file_name

_TOPIC = "domain.events:"  # how stored events name their type (`domain.events.topic_of`)
# Subject events that change no data, so a signature still covers the data after them
# (`ledger.signatures.signature_status`; a test keeps the two lists equal).
SIGNATURE_NEUTRAL = frozenset(_TOPIC + name for name in (
    "Signed", "QueryOpened", "QueryAnswered", "QueryClosed", "QueryReopened", "SourceVerified"))


class Unavailable(Exception):
    """This ledger cannot be read here as the full ledger would read it; open that instead."""


class Grant(NamedTuple):
    user: str
    role: str
    site: str | None = None


@dataclass
class TrialAccess:
    """What a query reads of the trial: the grants, the passwords and failed attempts (to
    authenticate --user), the protocol versions and the last seal."""

    grants: set[Grant] = field(default_factory=set)
    password_hashes: dict[str, str] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    protocol_texts: list[tuple[str, str, str]] = field(default_factory=list)
    last_seal: tuple[int, str] | None = None  # (trial version, ISO time it was made)

    def roles_of(self, user: str) -> set[Grant]:
        return {g for g in self.grants if g.user == user}

    def locked_out(self, user: str) -> bool:
        from m22bol.domain.trial import LOCKOUT_AFTER  # asked only with a password to check

        return self.failures.get(user, 0) >= LOCKOUT_AFTER

    def fold(self, topic: str, state: dict[str, Any]) -> None:
        """One stored trial event, as `domain.trial.project_trial` folds it (its other events
        touch nothing a query reads)."""
        kind = topic.removeprefix(_TOPIC)
        if kind in ("TrialInitialised", "ProtocolAmended"):
            self.protocol_texts.append((state["protocol_version"], state["protocol_digest"],
                                        state["protocol_text"]))
            if kind == "TrialInitialised":
                self.grants.add(Grant(state["admin"], "admin"))
        elif kind == "RoleGranted":
            self.grants.add(Grant(state["user"], state["role"], state.get("site")))
        elif kind == "RoleRevoked":
            self.grants.discard(Grant(state["user"], state["role"], state.get("site")))
        elif kind == "PasswordSet":
            self.password_hashes[state["user"]] = state["password_hash"]
            self.failures.pop(state["user"], None)
        elif kind == "AuthenticationFailed":
            self.failures[state["user"]] = self.failures.get(state["user"], 0) + 1
        elif kind == "AuthenticationSucceeded":
            self.failures.pop(state["user"], None)
        elif kind == "Sealed":
            self.last_seal = (state["originator_version"], _iso(state["recorded_at"]))


def _iso(stamp: str) -> str:
    """A stored timestamp as the decoded event's `isoformat()` prints it."""
    return datetime.fromisoformat(stamp).isoformat()


class _Connection:
    """The part of the library's recorder interface that the store's readers use
    (`recorder.datastore.transaction`, `recorder.max_notification_id`), on one connection."""

    def __init__(self, url: str):
        self.url = url
        self.sqlite = url.startswith("sqlite")
        # `database_errors`: what the driver raises, a store this cannot read as the full
        # ledger would (the caller then opens that, which names the problem).
        self._connection, self.database_errors = _connect(url)
        self.datastore = self

    @contextmanager
    def transaction(self, commit: bool = False) -> Iterator[Any]:
        assert not commit, "a read-only ledger never writes"
        if self.sqlite:
            cursor = self._connection.cursor()
            cursor.execute("BEGIN")
            try:
                yield cursor
            finally:
                cursor.execute("ROLLBACK")
                cursor.close()
        else:
            with self._connection.transaction(), self._connection.cursor() as cursor:
                yield cursor

    def max_notification_id(self) -> int | None:
        with self.transaction() as cursor:
            cursor.execute(f"SELECT max({log_position(self.url)}) AS head "
                           f"FROM {events_table(self.url)}")
            row = cursor.fetchone()
        return row["head"] if row is not None else None

    def close(self) -> None:
        self._connection.close()


class ReadOnlyLedger:
    """`url`, `clock`, `name`, `recorder` and `on_close` as on `TrialLedger`, for the readers
    that only need those (`projections.stored`, `ledger.seen`, `ledger.coverage`)."""

    name = APP_NAME  # the application's name, as the read models' tracking rows hold it

    def __init__(self, url: str, clock: Callable[[], datetime] | None = None):
        self.url = url
        self.clock = clock or (lambda: datetime.now(UTC))
        self.on_close: list[Callable[[], None]] = []
        try:
            self.recorder = _Connection(url)
        except Unavailable:
            raise
        except Exception as error:  # the full ledger names what is wrong (exit 7)
            raise Unavailable(str(error)) from None

    @property
    def account(self) -> str:
        from m22bol.ledger import identity

        return identity.account_of(self)

    def rows(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        """Rows of one statement, as dicts; `?` is the placeholder on every database."""
        if not self.recorder.sqlite:
            sql = sql.replace("?", "%s")
        with self.recorder.datastore.transaction() as cursor:
            cursor.execute(sql, params)
            return [dict(row) for row in cursor.fetchall()]

    def _id(self, uuid) -> Any:
        return uuid.hex if self.recorder.sqlite else uuid

    def trial(self) -> TrialAccess | None:
        """The trial's grants, protocols and last seal; None when it has no events."""
        table = events_table(self.url)
        trial, since = self._from_snapshot()
        rows = self.rows(f"SELECT originator_version AS version, topic, state FROM {table} "
                         "WHERE originator_id = ? AND originator_version > ? "
                         "ORDER BY originator_version", (self._id(TRIAL_ID), since))
        if trial is None and not rows:
            return None
        trial = trial or TrialAccess()
        try:
            for row in rows:
                state = orjson.loads(row["state"])
                if state.get("event_type", row["topic"]) != row["topic"]:
                    raise Unavailable("a trial event names another type than its topic")
                trial.fold(row["topic"], state)
        except (ValueError, KeyError, TypeError) as error:
            raise Unavailable(f"a trial event does not decode ({error})") from None
        return trial

    def _from_snapshot(self) -> tuple[TrialAccess | None, int]:
        """The latest snapshot's trial and version, if its head is the stored event's hash."""
        try:
            found = self.rows(f"SELECT originator_version AS version, state FROM "
                              f"{snapshots_table(self.url)} WHERE originator_id = ? "
                              "ORDER BY originator_version DESC LIMIT 1",
                              (self._id(TRIAL_ID),))
        except Exception:  # no snapshot table on this database: the whole chain
            return None, 0
        if not found:
            return None, 0
        version = found[0]["version"]
        head = self.rows(f"SELECT state FROM {events_table(self.url)} WHERE originator_id = ? "
                         "AND originator_version = ?", (self._id(TRIAL_ID), version))
        try:
            body = orjson.loads(found[0]["state"])
            if not head or hashlib.sha256(head[0]["state"]).hexdigest() != body["head"]:
                return None, 0
            state = body["trial"]
            seal = state["last_seal"]
            return TrialAccess(
                grants={Grant(*g) for g in state["grants"]},
                password_hashes=dict(state["password_hashes"]), failures=dict(state["failures"]),
                protocol_texts=[tuple(p) for p in state["protocol_texts"]],
                last_seal=(seal["originator_version"], _iso(seal["recorded_at"]))
                if seal else None), version
        except (ValueError, KeyError, TypeError):  # as the write side: fold the whole chain
            return None, 0

    def subject_events(self, subject: str) -> list[dict[str, Any]]:
        """The subject's stored events (version, topic, state), oldest first."""
        return self.rows(f"SELECT originator_version AS version, topic, state FROM "
                         f"{events_table(self.url)} WHERE originator_id = ? "
                         "ORDER BY originator_version", (self._id(patient_id(subject)),))

    def close(self) -> None:
        while self.on_close:
            self.on_close.pop()()
        self.recorder.close()


def _connect(url: str) -> tuple[Any, tuple[type[Exception], ...]]:
    """A connection to the ledger's database, and the errors its driver raises."""
    if url.startswith("sqlite"):
        import sqlite3

        path = url.split("///", 1)[1] if "///" in url else ""
        if not path or not os.path.isfile(path):  # the full ledger says why, or makes none
            raise Unavailable(f"no ledger file {path}")
        connection = sqlite3.connect(sqlite_file_name(path), uri=True, isolation_level=None,
                                     timeout=30)
        connection.row_factory = sqlite3.Row
        return connection, (sqlite3.Error,)
    if url.startswith("postgres"):
        import psycopg
        from psycopg.rows import dict_row

        return psycopg.connect(**postgres_params(url), autocommit=True, row_factory=dict_row,
                               connect_timeout=10), (psycopg.Error,)
    raise Unavailable(f"not a database URL: {url}")


def signature_status(subject: str, events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The subject's last signature and whether it still covers the current data, from its
    stored events: `ledger.signatures.signature_status` without decoding them (the signed
    head's hash is the SHA-256 of its stored bytes, as there)."""
    signed = [e for e in events if e["topic"] == _TOPIC + "Signed"]
    if not signed:
        return None
    last = orjson.loads(signed[-1]["state"])
    covers = last["covers_version"]
    since = [f"{subject}#{e['version']}" for e in events[covers:]
             if e["topic"] not in SIGNATURE_NEUTRAL]
    return {
        "entry": f"{subject}#{last['originator_version']}",
        "signer": last["actor"],
        "signed_at": _iso(last["recorded_at"]),
        "meaning": last["meaning"],
        "covers": f"{subject}#{covers}",
        "head_digest": last["head_digest"],
        "covers_current_data": (
            hashlib.sha256(events[covers - 1]["state"]).hexdigest() == last["head_digest"]
            and not since),
        "changed_since": since,
    }
