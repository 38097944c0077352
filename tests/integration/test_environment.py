"""What the environment does to a ledger: each fault is exit 7 with a message naming the ledger
and the cause, nothing is written, and a query on a ledger that is not there leaves no file.

The read-only and full-disk tests use a small tmpfs where this machine lets the tests mount one
(root in a container); a full disk is also made with SQLite's max_page_count, which works
everywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from m22bol.domain.commands import parse_command
from m22bol.domain.errors import EnvironmentProblem
from tests.support import invoke, store_fingerprint
from tests.support.databases import POSTGRES_ENV, copy_sqlite_ledger, sqlite_url

CONTACT = ["contact", "M22-001", "--date", "2025-02-01"]
REGISTER = ["register", "M22-001", "--site", "S1", "--consent-date", "2025-01-02"]


def environment(result, *words: str) -> None:
    assert result.exit_code == 7, result.output
    for word in words:
        assert word in result.output, (word, result.output)


def test_a_missing_folder(tmp_path):
    url = f"sqlite:///{tmp_path}/nowhere/ledger.sqlite"
    for args, user in ((REGISTER, "dm"), (["status"], "mon"), (["init"], "admin")):
        environment(invoke(args, url=url, user=user), "nowhere", "does not exist")
    assert not (tmp_path / "nowhere").exists()


def test_a_folder_as_the_ledger(tmp_path):
    (tmp_path / "ledger.sqlite").mkdir()
    environment(invoke(REGISTER, url=sqlite_url(tmp_path)), "ledger.sqlite", "folder")
    assert list((tmp_path / "ledger.sqlite").iterdir()) == []


def test_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"subject list, not a ledger\n")
    for args, user in ((REGISTER, "dm"), (["status"], "mon"), (["history", "M22-001"], "aud")):
        environment(invoke(args, url=sqlite_url(tmp_path), user=user), "ledger.sqlite",
                    "not a SQLite database")
    assert path.read_bytes() == b"subject list, not a ledger\n"


def test_a_query_on_a_ledger_that_does_not_exist_creates_no_file(tmp_path):
    url = sqlite_url(tmp_path)
    assert invoke(["status"], url=url, user="mon").exit_code == 2
    assert invoke(CONTACT, url=url).exit_code == 2
    assert list(tmp_path.iterdir()) == []


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def initialised(initialised_sqlite, tmp_path) -> str:
    folder = tmp_path / "copy"
    folder.mkdir()
    url = copy_sqlite_ledger(initialised_sqlite, folder)
    assert invoke(REGISTER, url=url).exit_code == 0
    return url


QUERIES = [(["status"], "mon"), (["patient", "M22-001"], "mon"), (["history", "M22-001"], "aud"),
           (["deviations"], "mon"), (["safety"], "mon"), (["endpoints"], "mon"),
           (["projections", "status"], "admin"), (["audit", "verify"], "aud")]


def test_a_read_only_ledger_answers_every_query_and_refuses_entries(initialised, tmp_path):
    source = Path(initialised.removeprefix("sqlite:///"))
    before = source.read_bytes()
    if os.geteuid() == 0:  # root writes through file modes: make the file system read-only
        folder = tmp_path / "ro"
        with tmpfs(folder, "16m"):
            shutil.copy(source, folder / "ledger.sqlite")
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
            _read_only_checks(sqlite_url(folder))
            assert (folder / "ledger.sqlite").read_bytes() == before
    else:
        source.chmod(0o444)
        _read_only_checks(initialised)
        assert source.read_bytes() == before


def _read_only_checks(url: str) -> None:
    for args, user in QUERIES:
        result = invoke(args, url=url, user=user)
        assert result.exit_code == 0, (args, result.output)
    environment(invoke(CONTACT, url=url), "ledger.sqlite", "read-only")


def test_a_read_only_ledger_whose_read_models_lag_answers_from_a_replay(initialised, tmp_path):
    """Another process committed an entry and died before projecting it; the file is now
    read-only here. The present is replayed from the events, so the answers count that entry,
    and stderr names the lag."""
    from m22bol.ledger.app import TrialLedger

    unprojected = TrialLedger(initialised)  # no after-save hook: the read models lag
    for command in ("assess-eligibility", "enrol"):
        values = ENROLMENT[command]
        unprojected.execute(parse_command(command, {"subject": "M22-001", **values}), "dm")
    unprojected.close()
    source = Path(initialised.removeprefix("sqlite:///"))
    if os.geteuid() != 0:
        pytest.skip("a read-only file system needs a tmpfs (root)")
    folder = tmp_path / "ro"
    with tmpfs(folder, "16m"):
        shutil.copy(source, folder / "ledger.sqlite")
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        url = sqlite_url(folder)
        patient = invoke(["patient", "M22-001", "--json"], url=url, user="mon")
        assert patient.exit_code == 0, patient.output
        assert json.loads(patient.stdout)["basket"] is not None  # the unprojected enrolment
        assert "2 event(s) behind" in patient.stderr and "replayed" in patient.stderr
        status = invoke(["status", "--json"], url=url, user="mon")
        assert status.exit_code == 0, status.output
        assert json.loads(status.stdout)["baskets"]["all"]["enrolled"] == 1
        for args, user in QUERIES:
            result = invoke(args, url=url, user=user)
            assert result.exit_code == 0, (args, result.output)


ENROLMENT = {
    "assess-eligibility": {"date": "2025-01-02", "her2": "positive", "er": "negative",
                           "prior_therapy": "none", "distant_lesions": 2,
                           "all_lesions_curable": "yes", "lvef": 62, "ecog": 0},
    "enrol": {"date": "2025-01-06", "weight_kg": 64},
}


def test_a_full_disk_is_exit_7_not_a_conflict(initialised_sqlite, tmp_path):
    with tmpfs(tmp_path / "small", "600k") as folder:
        url = copy_sqlite_ledger(initialised_sqlite, folder)
        filler = folder / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as handle:
            while True:
                handle.write(b"\0" * 4096)
                handle.flush()
        big = "x" * 2000
        environment(invoke([*REGISTER, "--source", big], url=url), "ledger.sqlite", "full")
        filler.unlink()  # room again, to read the store back
        assert store_fingerprint(url) == store_fingerprint(initialised_sqlite)


def test_a_database_at_its_size_limit_is_exit_7(initialised_sqlite, tmp_path):
    """The full disk everywhere: SQLite's max_page_count caps the file where it stands."""
    from m22bol.ledger.app import TrialLedger

    url = copy_sqlite_ledger(initialised_sqlite, tmp_path)
    ledger = TrialLedger(url)
    try:
        with ledger.recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute("PRAGMA page_count")
            pages = cursor.fetchone()[0]
            cursor.execute(f"PRAGMA max_page_count = {pages}")
        before = store_fingerprint(url)
        command = parse_command("register", {"subject": "M22-009", "site": "S1",
                                             "consent_date": "2025-01-02",
                                             "source": "x" * 2000})
        with pytest.raises(EnvironmentProblem, match="full"):
            for _ in range(50):  # a page may still have room for the first few
                ledger.execute(command.model_copy(update={"subject": f"M22-{_:03d}"}), "dm")
        assert store_fingerprint(url)[: len(before)] == before
    finally:
        ledger.close()


def _postgres() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} not set")
    return url


def test_an_unreachable_server(tmp_path):
    url = "postgresql+psycopg://m22bol@127.0.0.1:1/postgres"
    for args, user in ((CONTACT, "dm"), (["status"], "mon")):
        environment(invoke(args, url=url, user=user), "127.0.0.1:1", "unreachable")


def test_a_missing_database():
    parts = urlsplit(_postgres())
    url = parts._replace(path="/m22bol_no_such_database").geturl()
    for args, user in ((CONTACT, "dm"), (["status"], "mon")):
        environment(invoke(args, url=url, user=user), "m22bol_no_such_database",
                    "does not exist")
