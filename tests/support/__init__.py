"""Shared test helpers: a ledger with the usual people, and one-line entries.

Helpers more than one test module uses live in this package (never imported from another test
module): `databases` (SQLite and PostgreSQL ledgers, empty or copied, read with plain SQL),
`read_models` (read-model snapshots and their agreement with the replay), `protocols` (an
amended protocol), `mini_trial` (the hand-counted mini trial), `timelines` (a subject's facts
walked without a store).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any
from uuid import UUID

import pytest

from m22bol.domain.commands import ResetPassword, SetPassword, parse_command
from m22bol.ledger.app import TrialLedger
from m22bol.ledger.store import MEMORY_URL, events_table
from m22bol.projections import after_save, due_subjects
from tests.support.databases import read_rows

PEOPLE = {"dm": "data-manager", "inv": "investigator", "mon": "monitor", "aud": "auditor"}
# Everyone's ledger password in the tests: `invoke` acts as a person with `--user NAME` and
# this password in M22BOL_PASSWORD, as a script would (conftest makes hashing it cheap).
TEST_PASSWORD = "test passphrase 1"

# Where a ledger test runs (conftest.py reads the marker). A rule test checks what the domain
# decides: the memory store runs the same write path without a database, so most run there and
# a handful per module run end to end on both databases; see docs/decisions.md.
# Who may do what is decided before the store is touched: role matrices run ON_SQLITE alone,
# and the refusal tests check on both databases that a refusal leaves the store unchanged.
IN_MEMORY = pytest.mark.stores("memory")
ON_DATABASES = pytest.mark.stores("sqlite", "postgres")
ON_SQLITE = pytest.mark.stores("sqlite")


class Driver:
    """Drives a real ledger the way the CLI does: primitive values in, outputs back."""

    def __init__(self, ledger: TrialLedger):
        self.ledger = ledger

    def do(self, command: str, actor: str = "dm", **values: Any) -> dict:
        return self.ledger.execute(parse_command(command, values), actor)

    def enrolled(self, subject: str, *, er: str = "positive", prior: str = "none",
                 consent: str = "2025-01-02", enrol: str = "2025-01-10",
                 weight: float = 60, lvef: float = 60, site: str = "S1") -> dict:
        """Register, assess and enrol one eligible subject; the enrolment output."""
        self.do("register", subject=subject, site=site, consent_date=consent)
        self.do("assess-eligibility", subject=subject, date=consent, her2="positive", er=er,
                prior_therapy=prior, distant_lesions=2, all_lesions_curable="yes", lvef=lvef,
                ecog=0)
        return self.do("enrol", subject=subject, date=enrol, weight_kg=weight)


def open_ledger(url: str, **options: Any) -> TrialLedger:
    """A ledger as the CLI opens it: read models kept current after each save (a memory store
    has none: it is read by replay)."""
    if url == MEMORY_URL:
        return TrialLedger(url, **options)
    options.setdefault("due_subjects", due_subjects)
    return TrialLedger(url, after_save=[after_save], **options)


class Clock:
    """A ledger clock the test moves by setting `now`."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def new_ledger(url: str, **options: Any) -> TrialLedger:
    """An initialised ledger whose admin is `admin`, with one person per other role. On a
    database everyone (and `nobody`, who holds no role) has TEST_PASSWORD, so that `invoke`
    can act as them; the session's template ledgers are made here, so their copies carry the
    passwords. A memory ledger is out of the CLI's reach: it skips the hashing."""
    ledger = open_ledger(url, **options)
    driver = Driver(ledger)
    driver.do("init", actor="admin")
    for user, role in PEOPLE.items():
        driver.do("grant", actor="admin", user=user, role=role)
    if url != MEMORY_URL:
        set_passwords(ledger, [*PEOPLE, "nobody"])
    return ledger


def set_passwords(ledger: TrialLedger, users: list[str], *, admin: str = "admin") -> None:
    """Give the admin and each user TEST_PASSWORD, so the CLI can act as them."""
    commands = [ResetPassword(user=user, password=TEST_PASSWORD) for user in users]
    if admin not in ledger.require_trial().password_hashes:
        commands.insert(0, SetPassword(password=TEST_PASSWORD))
        ledger.execute(commands.pop(0), admin)
    ledger.execute_all(commands, admin)


def invoke(args: list[str], *, url: str, user: str = "dm", input: bytes | str | None = None,
           password: str | None = TEST_PASSWORD):
    """Run the CLI in-process, as a person would type it, acting as `user` with `password`
    (None: no password given); the click Result."""
    from click.testing import CliRunner

    from m22bol.cli.main import app

    return CliRunner().invoke(app(), ["--ledger", url, "--user", user, *args], input=input,
                              env={"M22BOL_PASSWORD": password}, catch_exceptions=False)


def store_fingerprint(url: str) -> list[tuple]:
    """Every stored event row, byte for byte, in notification order: what a refused command
    must leave unchanged. Read with plain SQL, because opening a ledger runs its schema
    statements (on PostgreSQL a lock and DDL) and tests take this before and after each try."""
    columns = "originator_id, originator_version, topic, state"
    if url.startswith("sqlite"):
        if not os.path.exists(url.removeprefix("sqlite:///")):
            return []  # a refused first command leaves no ledger file at all (issue 13)
        query = f"SELECT rowid, {columns} FROM {events_table(url)} ORDER BY rowid"
    else:
        query = f"SELECT notification_id, {columns} FROM {events_table(url)} ORDER BY 1"
    # SQLite keeps the aggregate id as 32 hex digits, PostgreSQL as a uuid: one text form.
    return [(n, str(UUID(str(originator))), version, topic, bytes(state))
            for n, originator, version, topic, state in read_rows(url, query)]
