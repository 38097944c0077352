"""Suite-wide pytest setup: ledger URLs for each store, markers, hypothesis profiles.

Tests that take ``ledger_url`` or ``ledger`` (or ``driver``) run once per store: SQLite and
PostgreSQL unless the test or its module says otherwise with ``@pytest.mark.stores(...)``.
The rule tests run on ``memory`` (the same write path with an in-memory store: no database,
no read models, read by replay) and mark a handful of their tests to run end to end on
``sqlite`` and ``postgres``.
PostgreSQL comes from the server named by ``M22BOL_TEST_POSTGRES`` (``make test`` starts a
throw-away one with scripts/postgres.sh); without it those cases are skipped, not failed,
so a plain ``pytest`` still works on a laptop without PostgreSQL.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from functools import partial
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, settings

from m22bol.ledger import signatures
from m22bol.ledger.app import TrialLedger
from m22bol.ledger.store import MEMORY_URL
from tests.support import Driver, new_ledger, open_ledger
from tests.support.databases import (
    POSTGRES_ENV,
    copy_sqlite_ledger,
    fresh_postgres_database,
    sqlite_url,
)

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
# `pytest --hypothesis-profile nightly`: the same suites, many more examples (suites that set
# their own example count take the larger of the two).
settings.register_profile("nightly", parent=settings.get_profile("ci"), max_examples=20_000)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# The production scrypt cost (2**15, 32 MiB, ~0.1 s a hash) buys nothing in a test and is paid
# for every password set, every --user checked and every signature checked; 2**10 is ~30 times
# cheaper. The cost is stored with each hash, so checking reads it back; test_signatures and
# test_identity pin the production cost. Session scope: hypothesis refuses function-scoped
# fixtures around its examples, and the template ledgers are made with the cheap cost too.
TEST_SCRYPT_LOG2_N = 10


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(signatures, "hash_password",
                      partial(signatures.hash_password, log2_n=TEST_SCRYPT_LOG2_N))
        yield


DATABASES = ("sqlite", "postgres")
STORES = ("memory", *DATABASES)


def pytest_configure(config: pytest.Config) -> None:
    # What accounts remember of ledgers (ledger.seen) never goes to the real state folder, not
    # even from module-scoped fixtures that run before the per-test folder below is set.
    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="m22bol-test-state-")
    # Registered so `-m "not postgres"` / `-m e2e` work and typos in marker names are visible.
    config.addinivalue_line(
        "markers", f"postgres: needs the PostgreSQL server named by {POSTGRES_ENV}"
    )
    config.addinivalue_line("markers", "e2e: end-to-end test through the CLI (slower)")
    config.addinivalue_line(
        "markers", f"stores(*names): the stores a ledger test runs on, of {STORES} "
                   f"(default {DATABASES})"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One run per store the closest `stores` marker names (the test's, else its module's)."""
    if "store" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("stores")
    stores = marker.args if marker else DATABASES
    unknown = set(stores) - set(STORES)
    if unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: unknown stores {unknown}")
    metafunc.parametrize(
        "store",
        [pytest.param(s, marks=pytest.mark.postgres) if s == "postgres" else s for s in stores],
        indirect=True,
    )


@pytest.fixture
def store(request: pytest.FixtureRequest) -> str:
    """The store of this run: memory, sqlite or postgres (see `pytest_generate_tests`)."""
    return request.param


@pytest.fixture
def ledger_url(store: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of an empty ledger on the store of this run."""
    if store == "memory":
        yield MEMORY_URL
    elif store == "sqlite":
        yield sqlite_url(request.getfixturevalue("tmp_path"))
    else:
        with fresh_postgres_database() as url:
            yield url


@pytest.fixture(name="sqlite_url")
def sqlite_url_fixture(tmp_path) -> str:
    """URL of an empty SQLite ledger, for tests that need only one backend."""
    return sqlite_url(tmp_path)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of an empty PostgreSQL database (skipped when none is configured)."""
    with fresh_postgres_database() as url:
        yield url


# Make the postgres-only fixture carry the marker too, so `-m "not postgres"` deselects it.
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


# Initialising a ledger (init and four grants, each kept in the read models) costs more than
# most tests that start from one: each database gets one initialised ledger a session, copied.
@pytest.fixture(scope="session")
def initialised_sqlite(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = sqlite_url(tmp_path_factory.mktemp("initialised"))
    new_ledger(url).close()
    return url


@pytest.fixture(scope="session")
def initialised_postgres() -> Iterator[str]:
    """The name of the database; CREATE DATABASE ... TEMPLATE copies it."""
    with fresh_postgres_database() as url:
        new_ledger(url).close()
        yield urlsplit(url).path.lstrip("/")


@pytest.fixture
def ledger(store: str, request: pytest.FixtureRequest) -> Iterator[TrialLedger]:
    """An initialised ledger (admin `admin`; `dm`, `inv`, `mon`, `aud`), on each store."""
    with ExitStack() as stack:
        if store == "memory":
            ledger = new_ledger(MEMORY_URL)
        elif store == "sqlite":
            ledger = open_ledger(copy_sqlite_ledger(request.getfixturevalue("initialised_sqlite"),
                                                    request.getfixturevalue("tmp_path")))
        else:
            template = request.getfixturevalue("initialised_postgres")
            ledger = open_ledger(stack.enter_context(fresh_postgres_database(template)))
        stack.callback(ledger.close)
        yield ledger


@pytest.fixture
def driver(ledger: TrialLedger) -> Driver:
    return Driver(ledger)


@pytest.fixture(autouse=True)
def account_state(tmp_path_factory, monkeypatch) -> Iterator[None]:
    """What each account remembers of a ledger (ledger.seen) goes to a folder of this test's
    own, never to the user's real state folder."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
    yield


@pytest.fixture
def schemas():
    """The ODM 1.3.2 schemas every export is validated against (tests/support/odm.py)."""
    from tests.support.odm import odm_schemas

    return odm_schemas()
