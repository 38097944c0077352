"""Start-up: an entry or a query imports what it uses and nothing else (issue 17, part 2).

Time is measured in bench/bench_startup.py, never here; these tests hold the imports that the
time depends on: no SQLAlchemy (the read models are written on the store's own connection), no
other command's module (the group loads commands lazily).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from m22bol.domain.patient import patient_id
from m22bol.projections import catalog, runner
from m22bol.projections.runner import ProjectionLag
from tests.support import ON_SQLITE, TEST_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
OTHER_COMMANDS = ("audit", "demo", "report", "clarifications", "db", "read_models")


def _imports(url: str, user: str, *args: str) -> list[str]:
    return _after(url, user, *args)["MODULES"]


def _after(url: str, user: str, *args: str) -> dict[str, list[str]]:
    """What one command's process left loaded: its modules, and the commands the group holds
    built (the others are only listed)."""
    code = (
        "import sys\n"
        "from m22bol.cli.main import cli, main\n"
        f"sys.argv = ['m22bol', '--ledger', {url!r}, '--user', {user!r}, *{list(args)!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as stop:\n"
        "    assert not stop.code, stop.code\n"
        "print('MODULES', ' '.join(sorted(sys.modules)), file=sys.stderr)\n"
        "print('BUILT', ' '.join(sorted(cli.commands)), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "M22BOL_PASSWORD": TEST_PASSWORD})
    assert done.returncode == 0, done.stderr
    return {tag: rest.split() for tag, _, rest in (
        line.partition(" ") for line in done.stderr.splitlines()) if tag in ("MODULES", "BUILT")}


@ON_SQLITE
@pytest.mark.parametrize("args", [
    ("contact", "P-1", "--date", "2025-02-01"),
    ("--json", "status"),
    ("--json", "patient", "P-1"),
    ("--json", "endpoints"),
])
def test_an_entry_or_a_query_imports_no_sqlalchemy_and_no_other_command(driver, args):
    driver.enrolled("P-1")
    url = driver.ledger.url
    driver.ledger.close()
    modules = _imports(url, "dm", *args)
    assert not [m for m in modules if m.split(".")[0] == "sqlalchemy"]
    for other in OTHER_COMMANDS:
        assert f"m22bol.cli.{other}" not in modules, other


@ON_SQLITE
def test_an_entry_builds_its_own_command_only(driver):
    """Entry commands are made from their models when asked for: running one builds that one
    (and `import`, declared in the module), not the options and help of every other."""
    driver.enrolled("P-1")
    url = driver.ledger.url
    driver.ledger.close()
    after = _after(url, "dm", "contact", "P-1", "--date", "2025-02-01")
    assert after["BUILT"] == ["contact", "import"]
    # Nor pydantic's plugin loader, with plugins disabled (cli.main), and what it imports.
    assert "importlib.metadata" not in after["MODULES"]


def test_rows_that_do_not_fit_stop_the_catch_up_at_once(driver):
    """A row the tables refuse is no race with another updater: the catch-up says the read
    models are behind after one try, instead of repeating the whole step."""
    driver.enrolled("P-1")
    ledger = driver.ledger
    models = runner.read_models(ledger)
    # A stray row holding the aggregate id P-2 will have: P-2's summary row collides with it.
    with models.store.transaction() as sql:
        sql.run(f"INSERT INTO {catalog.PATIENT_SUMMARY} (subject, aggregate_id, version, "
                "derived_on) VALUES (?, ?, ?, ?)",
                ("STRAY", str(patient_id("P-2")), 1, "2025-01-01"))
    driver.do("register", subject="P-2", site="S1", consent_date="2025-01-02")  # written
    with pytest.raises(ProjectionLag, match="do not fit"):  # not "after 12 attempts"
        runner.catch_up(ledger)
