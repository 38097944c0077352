"""`audit verify` and `audit seal` on every store: a clean ledger verifies, a seal is one digest
over every chain head and the event count, `--seal DIGEST` checks a copy against a digest
handed out earlier, and only the roles of spec/audit.md may seal or verify."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
from contextlib import closing
from urllib.parse import urlsplit

import psycopg
import pytest

from m22bol.domain import commands as c
from m22bol.domain.patient import patient_id
from m22bol.domain.trial import TRIAL_ID, seal_digest
from m22bol.ledger import integrity
from m22bol.ledger.store import events_table
from tests.support import ON_SQLITE, TEST_PASSWORD, Driver, invoke, new_ledger, store_fingerprint


@pytest.fixture
def trial(driver):
    driver.enrolled("M22-001")
    driver.enrolled("M22-002", er="negative")
    driver.do("correct", subject="M22-001", entry="M22-001#3", reason="weighed again",
              set=["weight_kg=61"])
    driver.do("retract", subject="M22-002", entry="M22-002#3", reason="wrong patient")
    driver.ledger.execute(c.Sign(subject="M22-001", meaning="reviewed",
                                 password=TEST_PASSWORD), "inv")
    return driver


def run(driver, *args: str, user: str = "aud"):
    return invoke([*args], url=driver.ledger.url, user=user)


def seal(driver, note: str = "monitoring visit 1") -> dict:
    result = run(driver, "audit", "seal", "--note", note, "--json", user="admin")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_an_untouched_ledger_verifies_clean(trial):
    result = run(trial, "audit", "verify")

    assert result.exit_code == 0, result.output
    assert "OK: every chain and every seal verifies" in result.output
    report = json.loads(run(trial, "audit", "verify", "--json").output)
    events = len(store_fingerprint(trial.ledger.url))
    assert report == {"ok": True, "events": events, "chains": 3, "failures": [], "seals": [],
                      "not_yet_sealed": {"events": events, "last_seal": None,
                                         "last_seal_at": None},
                      "read_models": {"ok": True, "differences": []}}


def test_a_seal_is_one_digest_over_every_chain_head_and_the_event_count(trial):
    stored = store_fingerprint(trial.ledger.url)

    text = run(trial, "audit", "seal", "--note", "database lock", user="admin").output

    digest = re.search(r"digest: ([0-9a-f]{64})", text).group(1)
    event = trial.ledger.require_trial().seals[-1]
    heads = {}
    for _, aggregate, version, _, state in stored:
        heads[aggregate] = (version, hashlib.sha256(state).hexdigest())
    assert event.digest == digest == seal_digest(event)
    assert event.event_count == len(stored)
    assert list(event.heads) == sorted((a, v, h) for a, (v, h) in heads.items())
    assert event.note == "database lock" and event.actor == "admin"
    # The seal is itself in the trial chain, linked to the trial head it records.
    assert event.prev_hash == heads[str(TRIAL_ID)][1]


def test_a_seal_asked_of_the_ledger_without_verified_heads_is_a_bug_and_writes_nothing(trial):
    stored = store_fingerprint(trial.ledger.url)

    with pytest.raises(TypeError, match="audit seal: the ledger must vouch for seal_heads"):
        trial.ledger.execute(c.Seal(note="no verification"), "admin")

    assert store_fingerprint(trial.ledger.url) == stored


def test_verify_rechecks_every_seal_and_a_digest_received_earlier(trial):
    first = seal(trial)
    trial.do("contact", subject="M22-001", date="2025-03-01")  # after a seal: still fine
    second = seal(trial, "interim analysis")

    ok = run(trial, "audit", "verify", "--seal", first["digest"], "--json")
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.output)
    assert [(s["digest"], s["ok"]) for s in report["seals"]] == [
        (first["digest"], True), (second["digest"], True)]
    assert first["event_count"] + 2 == second["event_count"]  # the contact and the first seal

    unknown = run(trial, "audit", "verify", "--seal", "0" * 64, "--json")
    assert unknown.exit_code == 5
    doc = json.loads(unknown.output)
    assert doc["error"]["code"] == "integrity"
    assert [(f["kind"], f["entry"]) for f in doc["failures"]] == [("seal", "-")]


@ON_SQLITE
@pytest.mark.parametrize("user, action, allowed", [
    ("admin", "seal", True), ("dm", "seal", False), ("inv", "seal", False),
    ("aud", "seal", False), ("mon", "seal", False),
    ("aud", "verify", True), ("mon", "verify", True), ("admin", "verify", True),
    ("dm", "verify", False), ("inv", "verify", False),
])
def test_who_may_seal_and_verify(trial, user, action, allowed):
    args = ["audit", action, "--json"] + (["--note", "n"] if action == "seal" else [])
    before = store_fingerprint(trial.ledger.url)

    result = run(trial, *args, user=user)

    assert result.exit_code == (0 if allowed else 4), result.output
    if not allowed:
        assert store_fingerprint(trial.ledger.url) == before


def test_a_seal_note_is_required(trial):
    assert run(trial, "audit", "seal", user="admin").exit_code == 2
    assert run(trial, "audit", "seal", "--note", "  ", user="admin").exit_code == 2


def test_verification_streams_the_store_in_pages(trial, monkeypatch):
    whole = integrity.verify(trial.ledger)
    monkeypatch.setattr(integrity, "PAGE", 3)

    paged = integrity.verify(trial.ledger)

    assert paged.ok and paged.events == whole.events and paged.heads == whole.heads


def flip_first_byte_of_value(state: bytes, text: bytes) -> bytes:
    at = state.index(text)
    return state[:at] + bytes([state[at] ^ 1]) + state[at + 1:]


def test_a_store_that_does_not_verify_is_not_sealed(sqlite_url):
    ledger = new_ledger(sqlite_url)
    Driver(ledger).enrolled("M22-001")
    ledger.close()
    url, path = sqlite_url, sqlite_url.split("///", 1)[1]
    with closing(sqlite3.connect(path)) as con:
        con.execute("DROP TRIGGER stored_events_no_update")
        rowid, state = con.execute("SELECT rowid, state FROM stored_events "
                                   "WHERE originator_version = 2 AND topic LIKE '%Eligibility%'"
                                   " ORDER BY rowid LIMIT 1").fetchone()
        con.execute("UPDATE stored_events SET state = ? WHERE rowid = ?",
                    (flip_first_byte_of_value(state, b'"lvef":60'), rowid))
        con.commit()
    before = store_fingerprint(url)

    result = invoke(["audit", "seal", "--note", "lock", "--json"], url=url, user="admin")

    assert result.exit_code == 5, result.output
    assert "M22-001#2" in json.loads(result.output)["error"]["message"]
    assert store_fingerprint(url) == before


@pytest.mark.postgres
def test_a_modified_event_on_postgres_is_named(postgres_url):
    ledger = new_ledger(postgres_url)
    Driver(ledger).enrolled("M22-001")
    ledger.close()
    table = events_table(postgres_url)
    conninfo = urlsplit(postgres_url)._replace(scheme="postgresql").geturl()
    with psycopg.connect(conninfo, autocommit=True) as con:
        # What a database owner could do; the application role should not own the table.
        con.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")
        con.execute(f"UPDATE {table} SET state = convert_to(replace(convert_from(state, "
                    "'UTF8'), '\"lvef\":60.0', '\"lvef\":66.0'), 'UTF8') "
                    "WHERE topic LIKE '%EligibilityAssessed'")

    result = invoke(["audit", "verify", "--json"], url=postgres_url, user="aud")

    assert result.exit_code == 5
    failures = json.loads(result.output)["failures"]
    assert [(f["kind"], f["entry"]) for f in failures if f["kind"] != "log"] == [
        ("modified", "M22-001#2")]


def test_a_copy_is_checked_against_the_digest_handed_out(sqlite_url, tmp_path):
    ledger = new_ledger(sqlite_url)
    Driver(ledger).enrolled("M22-001")
    digest = integrity.seal(ledger, "database lock", "admin")["digest"]
    ledger.close()
    copy = tmp_path / "copy.sqlite"
    shutil.copy(sqlite_url.split("///", 1)[1], copy)
    copy_url = f"sqlite:///{copy}"

    assert invoke(["audit", "verify", "--seal", digest], url=copy_url,
                  user="aud").exit_code == 0

    # The copy's holder re-sealed nothing, but someone rewrote the whole chain of M22-001,
    # links included: every link holds, only the digest shows the history is not the sealed one.
    with closing(sqlite3.connect(copy)) as con:
        con.execute("DROP TRIGGER stored_events_no_update")
        rows = con.execute("SELECT rowid, state FROM stored_events WHERE originator_id = ? "
                           "ORDER BY originator_version",
                           (patient_id("M22-001").hex,)).fetchall()
        previous = None
        for rowid, state in rows:
            doc = json.loads(state)
            doc["prev_hash"] = previous
            if doc.get("weight_kg") == 60.0:
                doc["weight_kg"] = 66.0
            new = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
            con.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (new, rowid))
            previous = hashlib.sha256(new).hexdigest()
        con.commit()

    result = invoke(["audit", "verify", "--seal", digest, "--json"], url=copy_url, user="aud")

    assert result.exit_code == 5
    doc = json.loads(result.output)
    # (The log's running digest notices the rewrite too: see test_integrity_attacks.py.)
    assert [(f["kind"], f["entry"]) for f in doc["failures"] if f["kind"] != "log"] == [
        ("modified", "M22-001#3")]
    assert doc["seals"][0]["problems"] == ["M22-001#3 modified"]
