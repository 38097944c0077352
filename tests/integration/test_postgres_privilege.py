"""PostgreSQL run with least privilege (spec: audit, "PostgreSQL: least privilege"), with real
logins: staff log in as themselves, members of the writer or reader role that `db setup`
made; the database itself refuses what their ledger role might not stop."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from m22bol.domain.commands import Grant
from m22bol.ledger.app import TrialLedger
from m22bol.ledger.postgres import group_roles
from m22bol.ledger.store import events_table
from m22bol.projections import tables
from tests.support import Clock, Driver, invoke, new_ledger, open_ledger
from tests.support.scenarios import ENROLLED, IMPORT_INPUT, SCENARIOS, TREATED, fill

pytestmark = pytest.mark.postgres

QUERIES = [["patient", "{s}"], ["history", "{s}"], ["status"], ["endpoints"], ["safety"],
           ["deviations"], ["protocol"], ["projections", "status"]]


def conninfo(url: str, login: str | None = None) -> str:
    parts = urlsplit(url)._replace(scheme="postgresql")
    if login is not None:
        parts = parts._replace(netloc=f"{login}@{parts.hostname}:{parts.port}")
    return parts.geturl()


def as_login(url: str, login: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{login}@{parts.hostname}:{parts.port}").geturl()


@pytest.fixture
def site(postgres_url):
    """A ledger set up by its owner; a writer login and a reader login, both data-managers in
    the ledger, so that only the database stands between the reader and an entry."""
    suffix = uuid.uuid4().hex[:10]
    writer, reader = f"w_{suffix}", f"r_{suffix}"
    writer_role, reader_role = group_roles(postgres_url)
    owner = conninfo(postgres_url)
    with psycopg.connect(owner, autocommit=True) as conn:
        for login, role in ((writer, writer_role), (reader, reader_role)):
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                sql.Identifier(login), sql.Identifier(role)))
    try:
        ledger = new_ledger(postgres_url)
        for login in (writer, reader):
            ledger.execute(Grant(user=login, role="data-manager"), "admin")
        ledger.close()
        yield {"url": postgres_url, "writer": writer, "reader": reader,
               "writer_url": as_login(postgres_url, writer),
               "reader_url": as_login(postgres_url, reader)}
    finally:
        with psycopg.connect(owner, autocommit=True) as conn:
            for login in (writer, reader):
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE usename = %s", (login,))
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


def cli(url: str, args: list[str], *, user: str | None = None, input: str | None = None):
    """The CLI as a staff member runs it: their own login in the URL, no --user."""
    from click.testing import CliRunner

    from m22bol.cli.main import app

    return CliRunner().invoke(app(), ["--ledger", url, *(["--user", user] if user else []),
                                      *args], input=input, catch_exceptions=False,
                              env={"M22BOL_USER": None, "M22BOL_PASSWORD": None})


def enrol(site, subject: str) -> None:
    for step in ENROLLED:
        result = cli(site["writer_url"], fill(step, subject))
        assert result.exit_code == 0, result.output


def test_a_writer_login_enters_facts_in_its_own_name_only(site):
    enrol(site, "M22-001")
    history = json.loads(cli(site["writer_url"], ["history", "M22-001", "--json"]).output)
    assert {e["actor"] for e in history["entries"]} == {site["writer"]}

    claimed = cli(site["writer_url"], ["contact", "M22-001", "--date", "2025-02-01", "--json"],
                  user="dm")
    assert claimed.exit_code == 4
    assert json.loads(claimed.output)["error"]["rule"] == "identity.session_user"


@pytest.mark.parametrize("statement", [
    "UPDATE {t} SET topic = topic",
    "DELETE FROM {t}",
    "TRUNCATE {t}",
    "ALTER TABLE {t} DISABLE TRIGGER ALL",
    "ALTER TABLE {t} DISABLE TRIGGER m22bol_actor_check",
    "DROP TRIGGER m22bol_actor_check ON {t}",
    "CREATE OR REPLACE FUNCTION m22bol_actor_is_session_user() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
    "CREATE TABLE m22bol_shadow (x int)",
])
def test_a_writer_login_cannot_change_the_schema_or_stored_events(site, statement):
    enrol(site, "M22-001")
    with psycopg.connect(conninfo(site["url"], site["writer"])) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement.format(t=events_table(site["url"])))


def test_a_writer_login_cannot_store_a_trial_snapshot(site):
    """A forged snapshot granting the writer admin would be obeyed until the next verify: only
    the owner stores snapshots."""
    from m22bol.ledger.store import APP_NAME

    enrol(site, "M22-001")
    with psycopg.connect(conninfo(site["url"], site["writer"])) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("INSERT INTO {} (originator_id, originator_version, topic, state)"
                                 " VALUES (gen_random_uuid(), 1, 'x', 'x')").format(
                sql.Identifier(f"{APP_NAME}_snapshots".lower())))


def last_event(conn, url: str) -> tuple[tuple, dict]:
    """The newest stored row (id, version, topic, state) and its decoded state: a raw insert
    after it is the next event of the same chain."""
    row = conn.execute(sql.SQL("SELECT originator_id, originator_version, topic, state "
                               "FROM {} ORDER BY notification_id DESC LIMIT 1")
                       .format(sql.Identifier(events_table(url)))).fetchone()
    return row, json.loads(bytes(row[3]))


def test_the_database_refuses_a_raw_insert_naming_another_actor(site):
    enrol(site, "M22-001")
    table = sql.Identifier(events_table(site["url"]))
    with psycopg.connect(conninfo(site["url"], site["writer"])) as conn:
        row, state = last_event(conn, site["url"])
        insert = sql.SQL("INSERT INTO {} (originator_id, originator_version, topic, state) "
                         "VALUES (%s, %s, %s, %s)").format(table)
        forged = json.dumps({**state, "actor": "admin"}).encode()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="session user"):
            conn.execute(insert, (row[0], row[1] + 1, row[2], forged))
        conn.rollback()
        # The check is exactly that: the same row in the writer's own name goes in.
        own = json.dumps({**state, "actor": site["writer"]}).encode()
        conn.execute(insert, (row[0], row[1] + 1, row[2], own))
        conn.rollback()


def written(site, topic: str) -> list[tuple[str, str | None]]:
    """(actor, written_by) of each stored event of one type, read as the owner."""
    from m22bol.domain.events import topic_of

    with psycopg.connect(conninfo(site["url"])) as conn:
        rows = conn.execute(sql.SQL("SELECT state, written_by FROM {} WHERE topic = %s "
                                    "ORDER BY notification_id").format(
            sql.Identifier(events_table(site["url"]))), (topic_of(topic),)).fetchall()
    return [(json.loads(bytes(state))["actor"], login) for state, login in rows]


def test_a_writers_entry_raises_the_edit_checks_queries_in_the_systems_name(site):
    """An edit check's query is the system's (spec: queries), written by a writer's command:
    the database takes it, and records which login wrote it."""
    from m22bol.domain.events import QueryOpened

    for step in TREATED:
        assert cli(site["writer_url"], fill(step, "M22-001")).exit_code == 0
    late = cli(site["writer_url"], ["adverse-event", "M22-001", "--term", "Nausea", "--grade",
                                    "3", "--onset", "2025-01-20", "--serious", "hospitalisation",
                                    "--aware-date", "2025-01-20", "--json"])
    assert late.exit_code == 0, late.output
    assert json.loads(late.output)["queries_raised"]
    assert written(site, QueryOpened) == [("system", site["writer"])]


def test_a_writers_first_command_of_a_day_runs_the_days_checks(site):
    from m22bol.domain.commands import Contact
    from m22bol.domain.events import EditChecksRun

    enrol(site, "M22-001")
    ran = len(written(site, EditChecksRun))
    ledger = open_ledger(site["writer_url"],
                         clock=Clock(datetime.now(UTC) + timedelta(days=1)))
    try:
        ledger.execute(Contact(subject="M22-001", date="2025-02-01"), site["writer"])
    finally:
        ledger.close()
    assert written(site, EditChecksRun)[ran:] == [("system", site["writer"])]


def test_the_database_takes_the_systems_name_only_on_the_systems_events(site):
    """A writer cannot pass a fact off as the system's, nor say another login wrote a row."""
    enrol(site, "M22-001")
    table = sql.Identifier(events_table(site["url"]))
    with psycopg.connect(conninfo(site["url"], site["writer"])) as conn:
        row, state = last_event(conn, site["url"])
        insert = sql.SQL("INSERT INTO {} (originator_id, originator_version, topic, state, "
                         "written_by) VALUES (%s, %s, %s, %s, %s) RETURNING written_by"
                         ).format(table)
        as_system = json.dumps({**state, "actor": "system"}).encode()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="session user"):
            conn.execute(insert, (row[0], row[1] + 1, row[2], as_system, site["writer"]))
        conn.rollback()
        own = json.dumps({**state, "actor": site["writer"]}).encode()
        stamped = conn.execute(insert, (row[0], row[1] + 1, row[2], own, "admin")).fetchone()
        assert stamped[0] == site["writer"]
        conn.rollback()


def test_a_reader_login_runs_every_query_and_no_entry(site):
    enrol(site, "M22-001")
    for query in QUERIES:
        result = cli(site["reader_url"], [*fill(query, "M22-001"), "--json"])
        assert result.exit_code == 0, (query, result.output)
    for n, (command, (setup, args)) in enumerate(sorted(SCENARIOS.items())):
        subject = f"M22-{100 + n}"
        for step in setup:
            assert cli(site["writer_url"], fill(step, subject)).exit_code == 0, step
        stdin = IMPORT_INPUT.format(s=subject) if command == "import" else None
        result = cli(site["reader_url"], [*fill(args, subject), "--json"], input=stdin)
        assert result.exit_code == 4, (command, result.output)
        error = json.loads(result.output)["error"]
        # The ledger role allows it: the database's grants are what refuse it.
        assert error["rule"] == "database.privilege", (command, error)


def test_an_admin_with_a_writer_login_rebuilds_the_read_models(site):
    enrol(site, "M22-001")
    owner = TrialLedger(site["url"])
    try:
        Driver(owner).do("grant", actor="admin", user=site["writer"], role="admin")
    finally:
        owner.close()
    before = json.loads(cli(site["writer_url"], ["status", "--json"]).output)
    result = cli(site["writer_url"], ["projections", "rebuild", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(cli(site["reader_url"], ["status", "--json"]).output) == before


def test_a_reader_login_answers_even_when_the_read_models_lag(site):
    """It may not bring the read models up to date, so it answers from a replay of the
    events (counting the entry they lack) and says so on stderr (docs/output.md)."""
    enrol(site, "M22-001")
    bare = TrialLedger(site["url"])  # the owner, writing without keeping the read models
    try:
        Driver(bare).enrolled("M22-002")
    finally:
        bare.close()
    result = cli(site["reader_url"], ["status", "--json"])
    assert result.exit_code == 0, result.output
    assert "this login may not write them" in result.stderr
    assert "replayed from the events" in result.stderr
    counts = json.loads(result.stdout)["baskets"]
    assert counts["all"]["screened"] == 2


def test_an_open_reader_transaction_does_not_block_an_entry(site):
    """As pg_dump holds: one snapshot, ACCESS SHARE on every table, for as long as it runs."""
    enrol(site, "M22-001")
    names = [events_table(site["url"]), *sorted(tables.BY_NAME)]
    with psycopg.connect(conninfo(site["url"], site["reader"])) as dump:
        dump.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        for name in names:
            dump.execute(sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(
                sql.Identifier(name)))
            dump.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name)))
        done: list = []
        entry = threading.Thread(target=lambda: done.append(cli(
            site["writer_url"], ["contact", "M22-001", "--date", "2025-02-01"])))
        started = time.monotonic()
        entry.start()
        entry.join(timeout=20)
        assert done and done[0].exit_code == 0, done and done[0].output
        assert time.monotonic() - started < 20
        dump.rollback()


def test_ordinary_commands_run_no_ddl_even_as_the_owner(postgres_url):
    """After `db setup`, opening the ledger, entries and queries issue no DDL at all: an event
    trigger that refuses every DDL command stays silent."""
    with psycopg.connect(conninfo(postgres_url), autocommit=True) as conn:
        conn.execute("CREATE FUNCTION refuse_ddl() RETURNS event_trigger LANGUAGE plpgsql AS "
                     "$$ BEGIN RAISE EXCEPTION 'DDL during an ordinary command: %', tg_tag; "
                     "END $$")
        conn.execute("CREATE EVENT TRIGGER refuse_ddl ON ddl_command_start "
                     "EXECUTE FUNCTION refuse_ddl()")
    ledger = new_ledger(postgres_url)
    try:
        Driver(ledger).enrolled("M22-001")
    finally:
        ledger.close()
    for args in (["status"], ["patient", "M22-001"], ["history"], ["endpoints"],
                 ["contact", "M22-001", "--date", "2025-02-01"]):
        result = invoke([*args, "--json"], url=postgres_url, user="dm")
        assert result.exit_code == 0, (args, result.output)


class CountingLedger(TrialLedger):
    """A real ledger that counts how often it loads the trial (issue 17: wasted work)."""

    name = TrialLedger.name  # the same tables
    loads = 0

    def trial(self, **kwargs):
        self.loads += 1
        return super().trial(**kwargs)


def test_a_writer_login_never_builds_a_trial_snapshot_it_may_not_store(site, monkeypatch):
    """With the trial many events past its last snapshot, an entry by the owner reads the trial
    back after its commit and stores a snapshot; a writer, which may not, asks the database
    once and then neither reads it back nor sends an insert the database would refuse."""
    from m22bol.cli.db import setup_database
    from m22bol.ledger import trial_snapshots

    monkeypatch.setattr(trial_snapshots, "EVERY", 3)  # init and its grants are far past it
    loads, stored = {}, {}
    for login, url in (("writer", site["writer_url"]), ("owner", site["url"])):
        ledger = CountingLedger(url)
        try:
            actor = site["writer"] if login == "writer" else "dm"
            before = len(trial_snapshots._rows(ledger))
            Driver(ledger).do("register", actor=actor, subject=f"M22-{login}", site="S1",
                              consent_date="2025-01-02")
            loads[login] = ledger.loads
            stored[login] = len(trial_snapshots._rows(ledger)) - before
            assert trial_snapshots.may_store(ledger) == (login == "owner")
        finally:
            ledger.close()
    assert stored == {"writer": 0, "owner": 1}
    assert loads["owner"] == loads["writer"] + 1  # the owner's read-back, and only the owner's

    # Trial events no snapshot follows (as if only writers had written since): the owner's
    # `db setup` says how far commands fold, and takes a snapshot.
    monkeypatch.setattr(trial_snapshots, "EVERY", 10**9)
    owner = Driver(TrialLedger(site["url"]))
    try:
        for n in range(4):
            owner.do("grant", actor="admin", user=f"u{n}", role="monitor")
    finally:
        owner.ledger.close()
    monkeypatch.setattr(trial_snapshots, "EVERY", 3)
    first = setup_database(site["url"])["trial_snapshot"]
    assert first["taken"] and first["events_behind"] >= 4, first
    again = setup_database(site["url"])["trial_snapshot"]
    assert again == {**first, "events_behind": 0, "taken": False}
