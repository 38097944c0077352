"""Who is acting, authenticated rather than claimed (spec: audit, "People, identity").

The store authenticates an account first: PostgreSQL its session user (by whatever the site's
pg_hba.conf demands), SQLite the operating-system account of the process, read from the
effective user id because environment variables such as USER are whatever the caller typed.
Acting as another ledger user (`--user NAME`) then needs NAME's ledger password, and a refusal
is recorded on the trial chain before the command fails (exit 4). On PostgreSQL only the
database owner may act as another user this way: every other login is its own user, and the
actor check of `db setup` makes the database refuse any event naming someone else.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable

from m22bol.domain.errors import NotPermitted


def os_account() -> str:
    """The effective uid's account name (its number when the account has no name)."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def account_of(ledger) -> str:
    if ledger.url.startswith("postgres"):
        return _database_login(ledger)[0]
    return os_account()  # SQLite, and the memory store of the tests


def _database_login(ledger) -> tuple[str, bool]:
    """(session user, whether it owns the events table): the owner may act as others."""
    cached = getattr(ledger, "_database_login", None)
    if cached is None:
        from m22bol.ledger.places import events_table

        with ledger.recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                "SELECT session_user AS login, COALESCE(pg_has_role(session_user, "
                "(SELECT tableowner FROM pg_tables WHERE tablename = %s LIMIT 1), 'MEMBER'), "
                "false) AS owner", (events_table(ledger.url),))
            row = cursor.fetchone()
        cached = ledger._database_login = (row["login"], bool(row["owner"]))
    return cached


def may_act_as_others(ledger) -> bool:
    """Whether this login may act as another ledger user (with that user's password): on
    PostgreSQL only the owner of the events table; on SQLite every account."""
    return not ledger.url.startswith("postgres") or _database_login(ledger)[1]


def authenticate(ledger, claimed: str | None, password: Callable[[], str | None]) -> str:
    """The ledger user this command acts as. `password` is asked only when it is needed."""
    from m22bol.ledger import signatures  # a password to check: the trial's models

    account = ledger.account
    if claimed is None or claimed == account:
        return account
    if not may_act_as_others(ledger):
        message = (f"--user {claimed}: you are logged in to the database as {account}; "
                   "on PostgreSQL you act as your own login")
        ledger.record_failure(account, claimed, account, "session-user", message)
        raise NotPermitted(message, rule="identity.session_user", field="user")
    trial = ledger.trial()
    if trial is None:
        # Only `init` (and `demo`, which starts with it) can act on a new ledger: whoever
        # creates it names its first admin, and that admin's password is set with it.
        return claimed
    try:
        signatures.check_password(trial, claimed, password(), attempt="password",
                                  what=f"--user {claimed}")
    except signatures.PasswordRefused as refused:
        ledger.record_failure(account, claimed, account, refused.attempt, refused.message)
        raise
    if trial.failures.get(claimed):
        ledger.record_success(claimed)
    return claimed
