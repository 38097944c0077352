"""Locks: an admin locks the whole ledger (database lock for an analysis) or one subject; while
locked, entries are refused with exit 4 and nothing is written; unlocking needs a reason and is
itself an audited event."""

from __future__ import annotations

import json

import pytest

from tests.support import ON_SQLITE, TEST_PASSWORD, invoke, store_fingerprint

S, OTHER = "M22-001", "M22-002"
ENTRIES = [
    ["register", "M22-003", "--site", "S1", "--consent-date", "2025-02-01"],
    ["contact", S, "--date", "2025-03-01"],
    ["infuse", S, "--cycle", "1", "--date", "2025-01-13", "--weight-kg", "60", "--dose-mg", "324"],
    ["correct", S, f"{S}#3", "--set", "weight_kg=61", "--reason", "weighed again"],
    ["retract", S, f"{S}#3", "--reason", "wrong patient"],
]


@pytest.fixture
def two(driver):
    driver.enrolled(S)
    driver.enrolled(OTHER)
    return driver


def run(driver, *args: str, user: str = "dm", input: str | None = None):
    return invoke([*args, "--json"], url=driver.ledger.url, user=user, input=input)


def lock(driver, *args: str, command: str = "lock"):
    result = run(driver, command, *args, user="admin")
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda a: a[0])
def test_a_locked_ledger_refuses_every_entry_with_exit_4(two, entry):
    lock(two, "--reason", "database lock for the interim analysis")
    before = store_fingerprint(two.ledger.url)

    result = run(two, *entry)

    assert result.exit_code == 4, result.output
    assert json.loads(result.output)["error"]["rule"] == "lock.ledger"
    assert store_fingerprint(two.ledger.url) == before


def test_a_locked_ledger_refuses_an_import_and_a_signature_but_answers_queries(two, tmp_path):
    lock(two, "--reason", "database lock")
    before = store_fingerprint(two.ledger.url)
    path = tmp_path / "late.jsonl"
    path.write_text(json.dumps({"command": "contact", "subject": OTHER, "date": "2025-03-01"})
                    + "\n")

    assert run(two, "import", str(path)).exit_code == 4
    assert run(two, "sign", S, "--meaning", "approved", "--password-stdin", user="inv",
               input=TEST_PASSWORD + "\n").exit_code == 4
    assert store_fingerprint(two.ledger.url) == before
    assert run(two, "patient", S, user="mon").exit_code == 0
    assert run(two, "history", S, user="mon").exit_code == 0


def test_a_subject_lock_refuses_that_subject_only(two):
    lock(two, "--subject", S, "--reason", "query resolution pending")

    refused = run(two, "contact", S, "--date", "2025-03-01")
    accepted = run(two, "contact", OTHER, "--date", "2025-03-01")

    assert refused.exit_code == 4
    assert json.loads(refused.output)["error"]["rule"] == "lock.subject"
    assert accepted.exit_code == 0, accepted.output


def test_unlocking_needs_a_reason_and_lets_entries_in_again(two):
    lock(two, "--reason", "database lock")

    assert run(two, "unlock", user="admin").exit_code == 2
    assert run(two, "unlock", "--reason", "  ", user="admin").exit_code == 2
    assert run(two, "contact", S, "--date", "2025-03-01").exit_code == 4
    lock(two, "--reason", "analysis re-run needs one more contact date", command="unlock")

    assert run(two, "contact", S, "--date", "2025-03-01").exit_code == 0


def test_lock_and_unlock_are_audited_with_who_when_and_why(two, tmp_path):
    lock(two, "--subject", S, "--reason", "source data verification")
    lock(two, "--subject", S, "--reason", "verification finished", command="unlock")
    out = tmp_path / "trail.jsonl"

    assert run(two, "audit", "export", "--format", "jsonl", "--out", str(out),
               user="aud").exit_code == 0

    records = [json.loads(line) for line in out.read_text().splitlines()]
    changes = [(r["event"], r["envelope"]["actor"], r["envelope"]["reason"], r["values"])
               for r in records if r["event"] in ("LedgerLocked", "LedgerUnlocked")]
    assert changes == [
        ("LedgerLocked", "admin", "source data verification", {"subject": S}),
        ("LedgerUnlocked", "admin", "verification finished", {"subject": S}),
    ]
    assert all(r["envelope"]["recorded_at"] for r in records)


@ON_SQLITE
@pytest.mark.parametrize("user", ["dm", "inv", "mon", "aud"])
def test_only_an_admin_locks_and_unlocks(two, user):
    assert run(two, "lock", "--reason", "x", user=user).exit_code == 4
    lock(two, "--reason", "database lock")
    assert run(two, "unlock", "--reason", "x", user=user).exit_code == 4


def test_a_lock_that_is_already_in_place_or_absent_is_bad_input(two):
    assert run(two, "unlock", "--reason", "nothing locked", user="admin").exit_code == 2
    lock(two, "--reason", "database lock")
    assert run(two, "lock", "--reason", "again", user="admin").exit_code == 2
    assert run(two, "unlock", "--subject", S, "--reason", "not locked alone",
               user="admin").exit_code == 2
