"""One SQLAlchemy-style URL -> the event store: the library's native SQLite or PostgreSQL
recorder, pydantic events stored in the canonical JSON form (`m22bol.domain.canonical`), and
append-only triggers.

The native recorders were chosen over `eventsourcing-sqlalchemy` because they write about three
times faster and import in a fraction of the time (measured in bench/, see bench/README.md);
the read models are kept in the same database, on the store's own connection (projections/).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit
from uuid import UUID

import orjson
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder
from eventsourcing.utils import get_topic
from pydantic import TypeAdapter, ValidationError

from m22bol.domain.canonical import canonical
from m22bol.domain.errors import BadInput, EnvironmentProblem
from m22bol.domain.events import event_class, topic_of

# Named here as before; their home is `places`, which a read-only query loads without this module.
from m22bol.ledger.places import (  # noqa: F401
    APP_NAME,
    events_table,
    log_position,
    read_only,
    sqlite_name,
)


class TopicMismatch(ValueError):
    """The topic column names another event type than the hashed bytes do: tampering."""


def stored_state(event) -> dict[str, Any]:
    """The event's state as stored: its JSON fields, its type (so the hash chain covers what
    kind of fact it is, not only its values: a contact and a withdrawal have the same fields),
    and its class version once above 1."""
    state = event.model_dump(mode="json")
    state["event_type"] = topic_of(type(event))
    if type(event).class_version > 1:
        state["class_version"] = type(event).class_version
    return state


# The bytes and digest are pydantic private attributes; they are read and set through the
# model's `__pydantic_private__` dict, since pydantic's attribute hook costs about 2.5 us an
# access (bench/README.md, "Writing"), several times what the rest of the mapping costs.


def stored_bytes(event) -> bytes:
    """The event's canonical stored bytes, made once and kept on the event: on the write path
    the next event's hash link needs them, then the mapper stores them (serialising twice was
    about a tenth of an import). Events are frozen, and a changed copy drops them."""
    private = event.__pydantic_private__
    data = private["_stored_bytes"]
    if data is None:
        data = private["_stored_bytes"] = canonical(stored_state(event))
    return data


def event_hash(event) -> str:
    """SHA-256 of the event's stored bytes: what the next event's `prev_hash` names. Kept on
    the event once made: a new event is hashed when the next one links to it, again when the
    log digest folds it, and its aggregate's next command links to it once more."""
    private = event.__pydantic_private__
    digest = private["_stored_digest"]
    if digest is None:
        digest = private["_stored_digest"] = hashlib.sha256(stored_bytes(event)).hexdigest()
    return digest


def chained_digest(event) -> bytes | None:
    """The SHA-256 the hash chain made of the bytes this process made for the event, or None:
    not hashed yet, or read from the store, whose digest is of the bytes it was read from,
    which it need not serialise back to (an upcast event is written in today's form). Asked
    before the event is mapped for writing, so that the log digest can fold what it inserts
    without hashing every event a second time."""
    private = event.__pydantic_private__
    digest = private["_stored_digest"]
    return bytes.fromhex(digest) if digest and private["_stored_bytes"] is not None else None


def upcast(cls, state: dict[str, Any]) -> dict[str, Any]:
    version = state.pop("class_version", 1)
    while version < cls.class_version:
        state = getattr(cls, f"upcast_v{version}_v{version + 1}")(state)
        version += 1
    return state


class CanonicalTranscoder(Transcoder):
    def encode(self, obj: Any) -> bytes:
        return canonical(obj)

    def decode(self, data: bytes) -> Any:
        return _loads(data)[0]


def _loads(data: bytes) -> tuple[Any, bool]:
    """The decoded bytes, and whether they may hold a non-finite number. orjson refuses every
    one (NaN, Infinity, and 1e999, which overflows to infinity); Python's own JSON writer (an
    older version's) wrote them, so bytes orjson refuses are read by Python's reader, as the
    floats they are, for the mapper to name. Anything else that is not JSON still fails."""
    try:
        return orjson.loads(data), False
    except orjson.JSONDecodeError:
        return json.loads(bytes(data)), True


class PydanticMapper(Mapper):
    """Stores `event.model_dump(mode="json")` canonically, so the stored bytes are what the
    hash chain hashes; rebuilds the event class named by the topic, upcast to its version."""

    def to_stored_event(self, domain_event) -> StoredEvent:
        return StoredEvent(*self.stored_row(domain_event))

    def stored_row(self, domain_event) -> tuple[UUID, int, str, bytes]:
        """(originator_id, originator_version, topic, state): what the ledger's recorders
        insert (`insert_page`), without the library's frozen `StoredEvent`, whose
        construction alone cost about a fifth of writing an event."""
        if isinstance(self.transcoder, CanonicalTranscoder):
            state = stored_bytes(domain_event)
        else:
            state = self.transcoder.encode(stored_state(domain_event))
        if self.compressor:
            state = self.compressor.compress(state)
        if self.cipher:
            state = self.cipher.encrypt(state)
        return (domain_event.originator_id, domain_event.originator_version,
                topic_of(type(domain_event)), state)

    def to_domain_event(self, stored_event: StoredEvent):
        state = stored_event.state
        if self.cipher:
            state = self.cipher.decrypt(state)
        if self.compressor:
            state = self.compressor.decompress(state)
        cls = event_class(stored_event.topic)
        if isinstance(self.transcoder, CanonicalTranscoder):
            decoded, lenient = _loads(state)
        else:
            decoded, lenient = self.transcoder.decode(state), True
        if decoded.pop("event_type", stored_event.topic) != stored_event.topic:
            raise TopicMismatch(f"stored as {stored_event.topic} but its bytes say otherwise")
        decoded = upcast(cls, decoded)
        try:
            event = cls.model_validate(decoded)
        except ValidationError as refused:
            event = _tolerant(cls, decoded, refused)
        else:
            if lenient:  # a non-finite number passes a float field's validation
                event._stored_problems = tuple(_non_finite(decoded))
        digest = hashlib.sha256(stored_event.state).hexdigest()
        event.__pydantic_private__["_stored_digest"] = digest
        return event


# Bytes that verify but whose values fail today's rules were written by the ledger itself (an
# older version, a past bug): they are decoded, never refused, so that one bad value cannot
# stop its subject; the event carries (field, why) for each, `domain.patient` holds such a fact
# out of the walk until corrected, and `audit verify` names it (docs/audit.md).
_ENVELOPE = ("originator_id", "originator_version", "recorded_at")


def _tolerant(cls, state: dict[str, Any], refused: ValidationError):
    """The event as stored, with every field today's model accepts validated and every other
    value kept as stored (a field no longer known is left out), marked with its problems. The
    envelope must validate: without it the event has no place in any chain."""
    problems: dict[str, str] = {}
    for error in refused.errors():
        loc = [str(part) for part in error["loc"]] or ["-"]
        if loc[0] in _ENVELOPE:
            raise refused
        why = "is not a field of this event today; left out" if (
            error["type"] == "extra_forbidden") else error["msg"]
        problems.setdefault(loc[0], f"{'.'.join(loc)}: {why}")
    values: dict[str, Any] = {}
    for name in cls.model_fields:
        if name in problems:
            values[name] = state.get(name)  # a required value that is missing reads as None
            continue
        if name not in state:
            continue
        try:
            values[name] = _field_adapter(cls, name).validate_python(state[name])
        except ValidationError as error:
            problems[name] = f"{name}: {error.errors()[0]['msg']}"
            values[name] = state[name]
    event = cls.model_construct(**values)
    event._stored_problems = tuple(sorted(problems.items())) + tuple(
        _non_finite({name: state[name] for name in values if name in state}))
    return event


@cache
def _field_adapter(cls, name: str) -> TypeAdapter:
    info = cls.model_fields[name]
    return TypeAdapter(Annotated[info.annotation, *info.metadata] if info.metadata
                       else info.annotation)


def _non_finite(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(field, why) for each NaN or infinity in a decoded state, by its top-level field."""
    if isinstance(value, float) and not math.isfinite(value):
        field = path.split(".", 1)[0]
        yield field, f"{path}: not a finite number ({value})"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _non_finite(item, f"{path}.{i}")


# A store that lives as long as its ledger object: the same write path (unit of work, mapper,
# canonical bytes, hash chain) without a database, for fast tests of the rules. It has no
# append-only triggers and no read models; it reads by replay only.
MEMORY_URL = "memory:"


def store_env(url: str, *, create_tables: bool = False) -> dict[str, str]:
    """The eventsourcing settings for a ledger URL. PostgreSQL tables are created only when
    asked (`db setup`): ordinary commands run no DDL and may hold no right to."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    env = {
        "PERSISTENCE_MODULE": "",
        "MAPPER_TOPIC": get_topic(PydanticMapper),
        "TRANSCODER_TOPIC": get_topic(CanonicalTranscoder),
    }
    # The database recorders also keep the running digest of the log (ledger.log_digest).
    from m22bol.ledger import log_digest

    if url == MEMORY_URL:
        env.update(PERSISTENCE_MODULE="eventsourcing.popo")
    elif scheme == "sqlite":
        path = url.split("///", 1)[1] if "///" in url else ""
        if not path or path == ":memory:":
            raise BadInput("ledger: a SQLite ledger needs a file, e.g. sqlite:///m22bol.sqlite",
                           field="ledger")
        env.update(PERSISTENCE_MODULE="eventsourcing.sqlite", SQLITE_DBNAME=sqlite_name(path),
                   SQLITE_LOCK_TIMEOUT="30",
                   APPLICATION_RECORDER_TOPIC=get_topic(log_digest.SQLiteLedgerRecorder))
    elif scheme in ("postgresql", "postgres"):
        env.update(
            PERSISTENCE_MODULE="eventsourcing.postgres",
            POSTGRES_DBNAME=parts.path.lstrip("/") or "postgres",
            POSTGRES_HOST=parts.hostname or "localhost",
            POSTGRES_PORT=str(parts.port or 5432),
            POSTGRES_USER=unquote(parts.username or ""),
            POSTGRES_PASSWORD=unquote(parts.password or ""),
            POSTGRES_LOCK_TIMEOUT="30",
            POSTGRES_POOL_SIZE="2",
            CREATE_TABLE="yes" if create_tables else "no",
            # Named, not imported: importing it loads psycopg, which SQLite ledgers never need.
            # It keeps the log's running digest and orders inserts without a table lock.
            APPLICATION_RECORDER_TOPIC="m22bol.ledger.log_digest_postgres:PostgresLedgerRecorder",
        )
    else:
        raise BadInput(f"ledger: unsupported URL {url!r} (use sqlite:///FILE or "
                       "postgresql+psycopg://user@host/db)", field="ledger")
    return env


def append_only_statements(url: str) -> list[str]:
    """Triggers that make the database itself refuse any UPDATE or DELETE of stored events
    (and of the log's running digests, which are as much a record as the events)."""
    if url == MEMORY_URL:
        return []  # nothing outside the ledger object can reach a memory store
    from m22bol.ledger.log_digest import DIGESTS

    tables = (events_table(url), DIGESTS)
    if url.startswith("sqlite"):
        return [
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'the event store is append-only: {op} refused'); END"
            for table in tables for op in ("UPDATE", "DELETE")
        ]
    return [
        "CREATE OR REPLACE FUNCTION m22bol_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION 'the event store is append-only: % refused', TG_OP; END $$",
        *(statement for table in tables for statement in (
            f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION m22bol_append_only()")),
    ]


@contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """Serialise the schema statements of `db setup` on one PostgreSQL server.

    The library's CREATE TABLE IF NOT EXISTS / CREATE OR REPLACE FUNCTION and the trigger
    statements fail with "tuple concurrently updated" when run at the same moment (measured:
    13 of 32 simultaneous runs). A session advisory lock makes them take turns.
    """
    if not url.startswith("postgres"):
        yield
        return
    import psycopg

    env = store_env(url)
    with psycopg.connect(host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"],
                         user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"] or None,
                         dbname=env["POSTGRES_DBNAME"], autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK_KEY,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK_KEY,))


def reach(url: str) -> None:
    """Connect to a PostgreSQL ledger once and hang up. The library's pool retries a failed
    connection in the background and says only "couldn't get a connection after 30 sec"; this
    fails at once with the driver's own words (server unreachable, no such database, login
    refused), which `environment_problem` turns into exit 7. It runs no statement at all."""
    if not url.startswith("postgres"):
        return
    import psycopg

    env = store_env(url)
    psycopg.connect(host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"],
                    user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"] or None,
                    dbname=env["POSTGRES_DBNAME"], connect_timeout=10).close()


# An arbitrary constant naming "schema statements of an m22bol ledger" among advisory locks.
_SCHEMA_LOCK_KEY = 0x6D32_3262_6F6C_0001


# --- what the environment can do to a ledger ----------------------------------------------------


def ledger_name(url: str) -> str:
    """The ledger as a message names it: the file, or user@host:port/database (no password)."""
    if url.startswith("sqlite"):
        return url.split("///", 1)[-1]
    parts = urlsplit(url)
    user = f"{unquote(parts.username)}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{user}{parts.hostname or 'localhost'}{port}{parts.path or '/'}"


# (what the database driver says, what it means) in the order they are tried; the drivers
# say these in text only, the same from sqlite3, psycopg and the eventsourcing wrappers.
_CAUSES = (
    ("file is not a database", "the file is not a SQLite database"),
    ("readonly database", "the ledger is read-only here; entries cannot be written"),
    ("read-only", "the ledger is read-only here; entries cannot be written"),
    ("database or disk is full", "the disk is full (or the database reached its size limit)"),
    ("disk i/o error", "the disk could not be read or written"),
    ("no space left", "the disk is full"),
    ("connection refused", "the database server is unreachable"),
    ("could not translate host name", "the database server's host name is unknown"),
    ("name or service not known", "the database server's host name is unknown"),
    ("timeout expired", "the database server did not answer"),
    ("password authentication failed", "the database refused the login"),
    ("does not exist", "the database does not exist"),
    ("permission denied", "permission denied"),
)
# What a concurrent writer causes: worth retrying, unlike everything above.
_CONTENTION = ("database is locked", "lock timeout", "could not serialize", "deadlock",
               "tuple concurrently updated")


def _is_driver_error(error: BaseException) -> bool:
    module = type(error).__module__
    return isinstance(error, OSError) or module.split(".")[0] in (
        "sqlite3", "psycopg", "psycopg_pool", "eventsourcing", "sqlalchemy")


def is_contention(error: BaseException) -> bool:
    return any(s in str(error).lower() for s in _CONTENTION)


def environment_problem(url: str, error: BaseException) -> EnvironmentProblem | None:
    """The refusal (exit 7) a database or file error stands for, or None when it is none of
    the environment's doing (a bug, or a concurrent writer)."""
    if not _is_driver_error(error) or is_contention(error):
        return None
    text = str(error).lower()
    cause = next((meaning for said, meaning in _CAUSES if said in text), None)
    if cause is None and "unable to open database file" in text and url.startswith("sqlite"):
        cause = _unopenable(ledger_name(url))
    if cause is None and "connection failed" in text:
        cause = "the database server is unreachable"
    if cause is None:
        return None
    return EnvironmentProblem(f"ledger {ledger_name(url)}: {cause}", rule="environment",
                              field="ledger")


def _unopenable(path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"the folder {folder} does not exist"
    if os.path.isdir(path):
        return "it is a folder, not a ledger file"
    return "the file cannot be opened (permissions?)"
