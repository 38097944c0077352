"""A PostgreSQL ledger run with least privilege (spec: audit, "PostgreSQL: least privilege").

`db setup`, run once by the database owner, creates the schema, the append-only and actor-check
triggers, and two group roles that site staff logins join: a writer and a reader. Ordinary
commands then run no DDL and take no lock that blocks a reader.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier, Literal

from m22bol.ledger.log_digest import DIGESTS
from m22bol.ledger.store import APP_NAME, events_table

# An arbitrary constant naming "an insert into the events table" among advisory locks.
_INSERT_LOCK_KEY = 0x6D32_3262_6F6C_0002


class AdvisoryLockRecorder(PostgresApplicationRecorder):
    """The library's recorder, serialising inserts with a transaction advisory lock instead of
    `LOCK TABLE ... IN EXCLUSIVE MODE`.

    Inserts must commit in the order their notification ids were drawn, or a reader tailing
    the log could pass a gap that fills later; the library takes an EXCLUSIVE table lock for
    that. That lock needs UPDATE, DELETE or TRUNCATE privilege on the events table, which the
    writer role must not have; an advisory lock held until commit gives the same order, needs
    no privilege, and, like EXCLUSIVE mode, never blocks a reader (pg_dump, a report).
    """

    def __init__(self, datastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        self.lock_table_statements = [
            SQL("SET LOCAL lock_timeout = '{0}s'").format(self.datastore.lock_timeout),
            SQL("SELECT pg_advisory_xact_lock({0})").format(Literal(_INSERT_LOCK_KEY)),
        ]


def group_roles(url: str) -> tuple[str, str]:
    """The writer and reader group roles of a PostgreSQL ledger, named after its database so
    that staff of one ledger on a shared server hold no rights in another."""
    database = urlsplit(url).path.lstrip("/") or "postgres"
    return f"{database}_writer", f"{database}_reader"


def actor_check_statements(url: str, owner: str) -> list:
    """The database refuses an event whose actor is not the session user, so that not even a
    modified client can write in another person's name. Two exceptions: the owner, who can
    alter the table and its triggers anyway, and whom the ledger asks for a person's password
    before it acts in that person's name (ledger/identity.py); and the system's own events
    (the queries its edit checks raise, the closing of queries on a retracted entry, the day's
    checks run), which a writer's command records. The database writes the session user of
    every row it takes into `written_by`, so the login behind a system event is on record too,
    and no client can set it."""
    from m22bol.domain.clarifications import SYSTEM
    from m22bol.domain.events import EditChecksRun, QueryClosed, QueryOpened, topic_of

    table = Identifier(events_table(url))
    system_topics = Literal([topic_of(kind) for kind in (QueryOpened, QueryClosed, EditChecksRun)])
    return [
        # Rows stored before the database recorded logins keep NULL: unknown, never guessed.
        SQL("ALTER TABLE {0} ADD COLUMN IF NOT EXISTS written_by text").format(table),
        SQL("CREATE OR REPLACE FUNCTION m22bol_actor_is_session_user() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ "
            "DECLARE claimed text := convert_from(NEW.state, 'UTF8')::jsonb ->> 'actor'; "
            "BEGIN "
            "NEW.written_by := session_user; "
            "IF claimed IS DISTINCT FROM session_user "
            "AND NOT (claimed = {system} AND NEW.topic = ANY({topics}::text[])) "
            "AND NOT pg_has_role(session_user, {owner}, 'MEMBER') THEN "
            "RAISE EXCEPTION 'the event names % but the session user is %: an actor is "
            "not the session user', claimed, session_user USING ERRCODE = '42501'; "
            "END IF; RETURN NEW; END $$").format(owner=Literal(owner), topics=system_topics,
                                                 system=Literal(SYSTEM)),
        SQL("DROP TRIGGER IF EXISTS m22bol_actor_check ON {0}").format(table),
        SQL("CREATE TRIGGER m22bol_actor_check BEFORE INSERT ON {0} FOR EACH ROW "
            "EXECUTE FUNCTION m22bol_actor_is_session_user()").format(table),
    ]


def privilege_statements(url: str, database: str, read_models: list[str]) -> list:
    """The writer and reader group roles with exactly what they need: the writer may INSERT
    and SELECT events (draw ids from their sequence) and keep the read models; the reader
    may SELECT. Neither owns anything, so neither can ALTER, DISABLE TRIGGER or TRUNCATE."""
    writer, reader = (Identifier(r) for r in group_roles(url))
    events = Identifier(events_table(url))
    digests = Identifier(DIGESTS)  # the log's running digest, written with each insert
    snapshots = Identifier(f"{APP_NAME}_snapshots")  # the trial's (ledger.trial_snapshots)
    models = SQL(", ").join(Identifier(t) for t in read_models)
    return [
        SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"),
        SQL("REVOKE ALL ON DATABASE {0} FROM PUBLIC").format(Identifier(database)),
        SQL("GRANT CONNECT ON DATABASE {0} TO {1}, {2}").format(Identifier(database), writer,
                                                                reader),
        SQL("GRANT USAGE ON SCHEMA public TO {0}, {1}").format(writer, reader),
        SQL("GRANT SELECT, INSERT ON {0}, {1} TO {2}").format(events, digests, writer),
        # Read only, even for writers: a snapshot decides who holds which role until the next
        # verify, and the actor check guards only the events. The owner takes them (db setup).
        SQL("GRANT SELECT ON {0} TO {1}").format(snapshots, writer),
        SQL("GRANT USAGE ON SEQUENCE {0} TO {1}").format(
            Identifier(f"{events_table(url)}_notification_id_seq"), writer),
        SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {0} TO {1}").format(models, writer),
        SQL("GRANT SELECT ON {0}, {1}, {2}, {3} TO {4}").format(events, digests, snapshots,
                                                                models, reader),
    ]


def create_group_roles(cursor, url: str) -> None:
    for role in group_roles(url):
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if cursor.fetchone() is None:
            cursor.execute(SQL("CREATE ROLE {0} NOLOGIN").format(Identifier(role)))


