"""The present read without the write side (projections/present.py, ledger/readonly.py):
the same answers and the same refusals as the Reader on the full ledger, and no write side
loaded. Whatever it cannot answer as the Reader would, it leaves to the Reader."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from m22bol.cli.main import Session
from m22bol.domain import clarifications
from m22bol.domain.commands import Sign
from m22bol.domain.events import Signed, SourceVerified, topic_of
from m22bol.domain.ids import TRIAL_ID, patient_id
from m22bol.domain.patient import patient_id as aggregate_id
from m22bol.domain.trial import TRIAL_ID as TRIAL_AGGREGATE_ID
from m22bol.ledger import readonly, signatures, trial_snapshots
from m22bol.ledger.identity import os_account
from m22bol.projections.reader import Reader
from tests.support import (
    ON_DATABASES,
    ON_SQLITE,
    TEST_PASSWORD,
    Driver,
    invoke,
    open_ledger,
    set_passwords,
)
from tests.support.databases import forge_trial_snapshot

ROOT = Path(__file__).resolve().parents[2]
WRITE_SIDE = ("eventsourcing.application", "m22bol.ledger.app", "m22bol.domain.events",
              "m22bol.domain.commands", "m22bol.domain.timeline")


def present(url: str, user: str, question: str, *args: str):
    s = Session(ledger_url=url, claimed=user)
    s._password = TEST_PASSWORD
    return s.present(question, *args)


def replayed(url: str, user: str, question: str, *args: str):
    ledger = open_ledger(url)
    try:
        return getattr(Reader(ledger, user), question)(*args)
    finally:
        ledger.close()


def test_the_ids_and_the_signature_neutral_events_are_the_domains():
    assert TRIAL_ID == TRIAL_AGGREGATE_ID and patient_id("M22-001") == aggregate_id("M22-001")
    assert readonly.SIGNATURE_NEUTRAL == {
        topic_of(c) for c in (Signed, *clarifications.QUERY_EVENTS, SourceVerified)}


@ON_DATABASES
def test_status_patient_endpoints_are_the_readers_answers(driver: Driver):
    driver.enrolled("P-1")
    driver.enrolled("P-2", site="S2")
    driver.do("register", subject="P-3", site="S2", consent_date="2025-01-02")
    driver.do("grant", actor="admin", user="mon2", role="monitor", site="S2")
    set_passwords(driver.ledger, ["mon2"])
    url = driver.ledger.url
    for user in ("dm", "admin"):
        assert present(url, user, "status") == replayed(url, user, "status")
        assert present(url, user, "patient", "p-1") == replayed(url, user, "patient", "P-1")
        light, full = present(url, user, "endpoints"), replayed(url, user, "endpoints")
        assert light["baskets"] == full["baskets"] and light["cutoff"] == full["cutoff"]
    # A site-limited reader's tallies count its sites only, as the Reader's do.
    limited = present(url, "mon2", "status")
    assert limited == replayed(url, "mon2", "status")
    assert limited["baskets"]["all"]["screened"] == 2


@ON_DATABASES
def test_a_signature_is_judged_from_the_stored_bytes_as_from_the_events(driver: Driver):
    driver.enrolled("P-1")
    url = driver.ledger.url
    driver.ledger.execute(Sign(subject="P-1", meaning="reviewed", password=TEST_PASSWORD), "inv")
    driver.do("query open", actor="mon", subject="P-1", entry="P-1#1", field="site",
              text="please check")
    covered = present(url, "dm", "patient", "P-1")["signature"]
    assert covered["covers_current_data"]
    assert covered == replayed(url, "dm", "patient", "P-1")["signature"]
    driver.do("contact", subject="P-1", date="2025-02-01")
    changed = present(url, "dm", "patient", "P-1")["signature"]
    assert not changed["covers_current_data"] and changed["changed_since"]
    assert changed == signatures.signature_status(driver.ledger.require_patient("P-1"))


@ON_SQLITE
@pytest.mark.parametrize("args", [("--json", "status"), ("--json", "patient", "P-1"),
                                  ("--json", "endpoints")])
def test_the_present_loads_no_write_side(driver: Driver, args):
    """As the account running it (no password to check: `--user` with one loads the password
    rules, whose scrypt costs more than those imports)."""
    driver.enrolled("P-1")
    driver.do("grant", actor="admin", user=os_account(), role="monitor")
    url = driver.ledger.url
    driver.ledger.close()
    code = ("import sys\nfrom m22bol.cli.main import main\n"
            f"sys.argv = ['m22bol', '--ledger', {url!r}, *{list(args)!r}]\n"
            "try:\n    main()\nexcept SystemExit as stop:\n    assert not stop.code, stop.code\n"
            "print('MODULES', ' '.join(sorted(sys.modules)), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "M22BOL_USER"})
    assert done.returncode == 0, done.stderr
    modules = next(x for x in done.stderr.splitlines() if x.startswith("MODULES ")).split()
    assert not [m for m in WRITE_SIDE if m in modules]


@ON_SQLITE
def test_refusals_are_the_readers(driver: Driver, sqlite_url):
    driver.enrolled("P-1")
    driver.enrolled("P-2", site="S2")
    driver.do("grant", actor="admin", user="mon2", role="monitor", site="S2")
    set_passwords(driver.ledger, ["mon2"])
    url = driver.ledger.url
    # No role at all; another site's subject; a forged identity (a wrong password).
    assert invoke(["--json", "status"], url=url, user="nobody").exit_code == 4
    assert invoke(["--json", "patient", "P-1"], url=url, user="mon2").exit_code == 4
    assert invoke(["--json", "patient", "P-2"], url=url, user="mon2").exit_code == 0
    before = driver.ledger.require_trial().failures.get("dm", 0)
    refused = invoke(["--json", "status"], url=url, user="dm", password="not the password")
    assert refused.exit_code == 4
    # ... recorded on the trial's trail, as by the full ledger.
    assert open_ledger(url).require_trial().failures["dm"] == before + 1


@ON_SQLITE
def test_lagging_read_models_are_caught_up_or_replayed_as_before(driver: Driver):
    driver.enrolled("P-1")
    url = driver.ledger.url
    driver.ledger.after_save = []  # an entry whose process died before projecting it
    driver.do("contact", subject="P-1", date="2025-02-01")
    assert present(url, "dm", "status") is None  # the Reader's to catch up
    shown = invoke(["--json", "patient", "P-1"], url=url)
    assert shown.exit_code == 0
    assert orjson.loads(shown.stdout)["last_known_alive"] == "2025-02-01"
    assert present(url, "dm", "status") is not None  # caught up by that command


@ON_SQLITE
def test_the_trial_snapshot_is_trusted_exactly_as_the_write_side_trusts_it(driver, monkeypatch):
    monkeypatch.setattr(trial_snapshots, "EVERY", 5)
    driver.enrolled("P-1")
    for n in range(6):
        driver.do("grant", actor="admin", user=f"extra{n}", role="monitor")
    url = driver.ledger.url
    driver.ledger.close()

    def revoke_dm(body):
        body["trial"]["grants"] = [g for g in body["trial"]["grants"] if g[0] != "dm"]

    # A snapshot that names the stored head is what both sides obey until `audit verify`
    # names it (test_trial_snapshots) ...
    forge_trial_snapshot(url, revoke_dm)
    assert invoke(["--json", "status"], url=url).exit_code == 4
    assert open_ledger(url).require_trial().roles_of("dm") == set()
    # ... and one that does not is ignored by both: the whole chain is folded.
    forge_trial_snapshot(url, lambda body: body.update(head="0" * 64))
    assert invoke(["--json", "status"], url=url).exit_code == 0
    assert present(url, "dm", "status") is not None
