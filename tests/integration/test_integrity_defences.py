"""The defences one by one, through the CLI: sealing keys (`audit keygen`, `audit seal --key`,
`audit verify --trusted-key`), the witness file, what an account remembers, the log's running
digest, and the count of entries no seal covers yet. The attacks themselves are in
test_integrity_attacks.py."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest

from m22bol.ledger import log_digest
from m22bol.ledger.app import TrialLedger
from m22bol.ledger.seen import Account
from tests.support import Driver, invoke, new_ledger, store_fingerprint

PASSPHRASE = "a sealing passphrase"


@pytest.fixture
def url(ledger_url):
    ledger = new_ledger(ledger_url)
    Driver(ledger).enrolled("M22-001")
    ledger.close()
    return ledger_url


@pytest.fixture
def key(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("M22BOL_KEY_PASSPHRASE", PASSPHRASE)
    path = str(tmp_path / "seal.key")
    result = invoke(["audit", "keygen", "--out", path, "--json"], url="sqlite:///unused")
    assert result.exit_code == 0, result.output
    return path


def verify(url: str, *args: str) -> tuple[int, dict]:
    result = invoke(["audit", "verify", "--json", *args], url=url, user="aud")
    return result.exit_code, json.loads(result.output)


# --- sealing keys ---------------------------------------------------------------------------


def test_keygen_writes_an_encrypted_private_key_readable_by_its_owner_only(key):
    private, public = Path(key).read_bytes(), Path(key + ".pub").read_bytes()

    assert private.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert public.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


def test_keygen_never_overwrites_a_key_and_wants_a_long_passphrase(key, tmp_path, monkeypatch):
    before = Path(key).read_bytes()
    again = invoke(["audit", "keygen", "--out", key, "--json"], url="sqlite:///unused")
    monkeypatch.setenv("M22BOL_KEY_PASSPHRASE", "short")
    short = invoke(["audit", "keygen", "--out", str(tmp_path / "other.key"), "--json"],
                   url="sqlite:///unused")

    assert again.exit_code == 2 and "never overwritten" in again.output
    assert Path(key).read_bytes() == before
    assert short.exit_code == 2 and "passphrase" in short.output
    assert not (tmp_path / "other.key").exists()


def test_a_signed_seal_verifies_against_its_trusted_key(url, key):
    sealed = invoke(["audit", "seal", "--note", "cutoff", "--key", key, "--json"], url=url,
                    user="admin")
    assert sealed.exit_code == 0, sealed.output
    signed_by = json.loads(sealed.output)["signed_by"]

    code, report = verify(url, "--trusted-key", key + ".pub")

    assert code == 0, report
    assert report["seals"][0]["signed_by"] == signed_by


def test_an_unsigned_seal_fails_when_a_trusted_key_is_asked_for(url, key):
    assert invoke(["audit", "seal", "--note", "cutoff"], url=url, user="admin").exit_code == 0

    assert verify(url)[0] == 0
    code, report = verify(url, "--trusted-key", key + ".pub")
    assert code == 5
    assert report["seals"][0]["problems"] == ["not signed by a trusted key"]


def test_a_wrong_passphrase_seals_nothing(url, key, monkeypatch):
    before = store_fingerprint(url)
    monkeypatch.setenv("M22BOL_KEY_PASSPHRASE", "not the passphrase")

    result = invoke(["audit", "seal", "--note", "cutoff", "--key", key, "--json"], url=url,
                    user="admin")

    assert result.exit_code == 4
    assert json.loads(result.output)["error"]["rule"] == "seal.key"
    assert store_fingerprint(url) == before


def test_a_missing_key_file_is_bad_input(url, tmp_path):
    result = invoke(["audit", "verify", "--trusted-key", str(tmp_path / "none.pub")], url=url,
                    user="aud")
    assert result.exit_code == 2


# --- the witness file -----------------------------------------------------------------------


def test_the_witness_file_gets_each_seal_and_verify_checks_them_all(url, tmp_path):
    witness = tmp_path / "witness.jsonl"
    for note in ("visit 1", "visit 2"):
        result = invoke(["audit", "seal", "--note", note, "--witness", str(witness)], url=url,
                        user="admin")
        assert result.exit_code == 0, result.output

    lines = [json.loads(line) for line in witness.read_text().splitlines()]
    first, second = (int(line["entry"].removeprefix("trial#")) for line in lines)
    assert second == first + 1  # the two seals, one after the other on the trial chain
    assert verify(url, "--witness", str(witness))[0] == 0

    # A digest the ledger never held (another ledger's, or a history since replaced).
    with witness.open("a") as out:
        out.write(json.dumps({**lines[0], "digest": "0" * 64}) + "\n")
    code, report = verify(url, "--witness", str(witness))
    assert code == 5
    assert [f["kind"] for f in report["failures"]] == ["witness"]
    assert "line 3" in report["failures"][0]["message"]


def test_an_unreadable_witness_file_is_bad_input(url, tmp_path):
    garbled = tmp_path / "witness.jsonl"
    garbled.write_text("not json\n")

    assert invoke(["audit", "verify", "--witness", str(tmp_path / "none")], url=url,
                  user="aud").exit_code == 2
    result = invoke(["audit", "verify", "--witness", str(garbled)], url=url, user="aud")
    assert result.exit_code == 2 and "line 1" in result.output


# --- the log's running digest ---------------------------------------------------------------


def test_every_write_records_one_digest_in_its_own_transaction(url):
    ledger = TrialLedger(url)
    try:
        before = log_digest.recorded_after(ledger, 0)
        top = ledger.recorder.max_notification_id()
        assert before[-1][0] == top  # the newest write recorded the newest position
        refused = invoke(["contact", "M22-404", "--date", "2025-02-01"], url=url)
        assert refused.exit_code == 2
        assert log_digest.recorded_after(ledger, 0) == before  # nothing written on refusal
        assert invoke(["contact", "M22-001", "--date", "2025-02-01"], url=url).exit_code == 0
        after = log_digest.recorded_after(ledger, 0)
        assert after[:-1] == before and after[-1][0] == top + 1
        # Each row is the digest of the log up to it, from the row before.
        assert log_digest.fold_rows(before[-1][1], log_digest.query(
            ledger, log_digest.events_query(url), (top, top + 1))) == (top + 1, after[-1][1])
    finally:
        ledger.close()


def test_the_log_digest_table_is_append_only(sqlite_url):
    new_ledger(sqlite_url).close()
    with closing(sqlite3.connect(sqlite_url.split("///", 1)[1])) as con:
        for statement in (f"UPDATE {log_digest.DIGESTS} SET digest = 'x'",
                          f"DELETE FROM {log_digest.DIGESTS}"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                con.execute(statement)


# --- what an account remembers ----------------------------------------------------------------


def test_an_account_remembers_the_newest_position_it_saw(url):
    assert invoke(["status"], url=url, user="aud").exit_code == 0
    ledger = TrialLedger(url)
    try:
        newest = log_digest.recorded_after(ledger, 0)[-1]
    finally:
        ledger.close()

    account = Account(url)
    seen = account.load()

    assert account.path.is_relative_to(os.environ["XDG_STATE_HOME"])
    assert (seen.position, seen.digest) == (newest[0], newest[1].hex())


def test_a_ledger_replaced_by_another_is_refused_naming_the_position(sqlite_url, tmp_path):
    new_ledger(sqlite_url).close()
    assert invoke(["contact", "M22-404", "--date", "2025-02-01"], url=sqlite_url).exit_code == 2
    seen = Account(sqlite_url).load()
    path = Path(sqlite_url.split("///", 1)[1])
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    new_ledger(sqlite_url).close()  # same place, another history of the same length

    result = invoke(["status"], url=sqlite_url, user="aud")

    assert result.exit_code == 5
    assert f"log position {seen.position}" in result.output
    assert "remove" in result.output  # and says how to accept a deliberate replacement


def test_an_unreadable_account_state_is_an_integrity_failure(url):
    assert invoke(["status"], url=url, user="aud").exit_code == 0
    Account(url).path.write_text("{")

    result = invoke(["status"], url=url, user="aud")

    assert result.exit_code == 5 and "unreadable" in result.output


# --- the read-model check ---------------------------------------------------------------------


def test_the_read_models_of_a_whole_demo_trial_match_a_replay(ledger_url):
    """Every kind of fact, corrections included: no row may differ only because a stored JSON
    document lists its keys in another order than a fresh derivation."""
    assert invoke(["demo", "--patients", "6", "--seed", "1"], url=ledger_url,
                  user="admin").exit_code == 0

    result = invoke(["audit", "verify", "--json"], url=ledger_url, user="admin")
    report = json.loads(result.output)

    assert result.exit_code == 0, report["read_models"]["differences"][:5]
    assert report["read_models"] == {"ok": True, "differences": []}


# --- what no seal covers yet --------------------------------------------------------------------


def test_status_and_verify_count_the_entries_after_the_last_seal(url):
    def counted() -> tuple[dict, dict]:
        status = json.loads(invoke(["status", "--json"], url=url, user="aud").output)
        return status["not_yet_sealed"], verify(url)[1]["not_yet_sealed"]

    status, verified = counted()
    assert status == verified and status["last_seal"] is None
    assert status["events"] == len(store_fingerprint(url))

    assert invoke(["audit", "seal", "--note", "visit"], url=url, user="admin").exit_code == 0
    assert invoke(["contact", "M22-001", "--date", "2025-02-01"], url=url).exit_code == 0
    status, verified = counted()

    assert status == verified
    assert status["events"] == 1 and status["last_seal"].startswith("trial#")
    text = invoke(["status"], url=url, user="aud").output
    assert "not yet sealed: 1 entries recorded after the last seal (trial#" in text


def test_the_report_says_how_many_entries_no_seal_covers_yet(sqlite_url, tmp_path):
    ledger = new_ledger(sqlite_url)
    Driver(ledger).enrolled("M22-001")
    ledger.close()
    assert invoke(["audit", "seal", "--note", "visit"], url=sqlite_url,
                  user="admin").exit_code == 0
    assert invoke(["contact", "M22-001", "--date", "2025-02-01"], url=sqlite_url).exit_code == 0

    result = invoke(["report", "--out", str(tmp_path / "report")], url=sqlite_url, user="mon")

    assert result.exit_code == 0, result.output
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert re.search(r"<th>Not yet sealed</th><td>1 entries recorded after the last seal "
                     r"\(trial#\d+, ", page)
