"""Suite-wide pytest setup: ledger URLs for each storage backend, markers, hypothesis profiles.

Tests that should hold for every backend take ``ledger_url`` and run once per backend.
PostgreSQL comes from the server named by ``M22BOL_TEST_POSTGRES`` (``make test`` starts a
throw-away one with scripts/postgres.sh); without it those cases are skipped, not failed,
so a plain ``pytest`` still works on a laptop without PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from functools import partial
from urllib.parse import urlsplit

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from psycopg import sql

from m22bol.cli.db import setup_database
from m22bol.ledger import signatures
from m22bol.ledger.postgres import group_roles

POSTGRES_ENV = "M22BOL_TEST_POSTGRES"

# CI must be reproducible: the same examples on every run, and no flaky timing failures on
# slow shared runners. Locally keep random exploration (that is what finds bugs) but drop
# the deadline, since database round-trips make per-example timings noisy.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# The production scrypt cost (2**15, 32 MiB, ~0.1 s a hash) buys nothing in a test and is paid
# for every password set and every --user checked; the cost is stored with each hash, so
# checking reads it back. test_identity pins the production cost.
TEST_SCRYPT_LOG2_N = 10


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(signatures, "hash_password",
                      partial(signatures.hash_password, log2_n=TEST_SCRYPT_LOG2_N))
        yield


def pytest_configure(config: pytest.Config) -> None:
    # Registered so `-m "not postgres"` / `-m e2e` work and typos in marker names are visible.
    config.addinivalue_line(
        "markers", f"postgres: needs the PostgreSQL server named by {POSTGRES_ENV}"
    )
    config.addinivalue_line("markers", "e2e: end-to-end test through the CLI (slower)")


def _sqlite(tmp_path) -> str:
    # tmp_path is absolute, so this yields the four-slash form SQLAlchemy expects.
    return f"sqlite:///{tmp_path}/ledger.sqlite"


def _fresh_postgres_database() -> Iterator[str]:
    """Yield the URL of a brand-new, empty database; drop it afterwards.

    One database per test keeps tests independent without any cleanup code in the tests,
    and CREATE DATABASE from template1 costs only a few milliseconds.
    """
    server_url = os.environ.get(POSTGRES_ENV)
    if not server_url:
        pytest.skip(f"PostgreSQL not configured: set {POSTGRES_ENV} or run make test")

    # psycopg wants a libpq URL; the server URL is in SQLAlchemy form (postgresql+psycopg://).
    parts = urlsplit(server_url)
    admin_conninfo = parts._replace(scheme="postgresql").geturl()
    name = f"t_{uuid.uuid4().hex}"
    ident = sql.Identifier(name)

    # CREATE/DROP DATABASE cannot run inside a transaction block, hence autocommit.
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    url = parts._replace(path=f"/{name}").geturl()
    try:
        # As a site's owner would: ordinary commands create nothing (`m22bol db setup`).
        setup_database(url)
        yield url
    finally:
        # FORCE: a test that leaked a connection or pool must not make teardown fail.
        with psycopg.connect(admin_conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
            for role in group_roles(url):  # roles are the server's, not the database's
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """SQLAlchemy URL of an empty ledger, once per backend."""
    if request.param == "sqlite":
        yield _sqlite(tmp_path)
    else:
        yield from _fresh_postgres_database()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """SQLAlchemy URL of an empty SQLite ledger, for tests that need only one backend."""
    return _sqlite(tmp_path)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of an empty PostgreSQL database (skipped when none is configured)."""
    yield from _fresh_postgres_database()


# Make the postgres-only fixture carry the marker too, so `-m "not postgres"` deselects it.
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture
def ledger(ledger_url: str):
    """An initialised ledger (admin `admin`; `dm`, `inv`, `mon`, `aud`), on each backend."""
    from tests.support import new_ledger

    ledger = new_ledger(ledger_url)
    yield ledger
    ledger.close()


@pytest.fixture
def driver(ledger):
    from tests.support import Driver

    return Driver(ledger)
