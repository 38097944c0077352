"""Who acts is authenticated, never merely claimed (spec: audit, "People, identity"): on
SQLite the operating-system account, or `--user NAME` with NAME's password; every refused
attempt leaves a security event on the trial chain and nothing else; 5 in a row lock the user
out until an admin resets the password; nobody hands themselves a role or removes the last
admin; global options win over the environment."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from m22bol.cli.main import app
from m22bol.domain.trial import LOCKOUT_AFTER
from m22bol.ledger.identity import os_account
from m22bol.ledger.signatures import hash_password
from tests.support import TEST_PASSWORD, invoke, new_ledger, open_ledger, store_fingerprint
from tests.support.odm import valid_odm

CONTACT = ["contact", "M22-001", "--date", "2025-02-01"]
REGISTER = ["register", "M22-001", "--site", "S1", "--consent-date", "2025-01-02"]


@pytest.fixture
def url(ledger_url):
    new_ledger(ledger_url).close()
    assert invoke(REGISTER, url=ledger_url).exit_code == 0
    return ledger_url


def written_since(url: str, before: list) -> list[str]:
    return [row[3].split(":")[-1] for row in store_fingerprint(url)[len(before):]]


def trial_events(url: str):
    ledger = open_ledger(url)
    try:
        return ledger.require_trial()
    finally:
        ledger.close()


def account(url: str) -> str:
    """Who the store authenticates: the OS account (SQLite), the session user (PostgreSQL)."""
    ledger = open_ledger(url)
    try:
        return ledger.account
    finally:
        ledger.close()


@pytest.mark.parametrize("password", [None, "", "not the password"])
def test_an_entry_as_another_user_without_their_password_writes_only_the_attempt(url,
                                                                                password):
    before = store_fingerprint(url)

    result = invoke([*CONTACT, "--json"], url=url, user="dm", password=password)

    assert result.exit_code == 4, result.output
    assert json.loads(result.output)["error"]["rule"] == "identity.password"
    assert written_since(url, before) == ["AuthenticationFailed"]
    failed = trial_events(url).events[-1]
    assert (failed.user, failed.actor, failed.account, failed.attempt) == (
        "dm", account(url), account(url), "password")
    assert "password" not in failed.message.lower().replace("the password of", "")


def test_queries_need_the_same_authentication(url):
    assert invoke(["patient", "M22-001"], url=url, user="mon", password="wrong password!"
                  ).exit_code == 4
    assert invoke(["patient", "M22-001"], url=url, user="mon").exit_code == 0


def test_the_user_environment_variable_alone_proves_nothing(url):
    before = store_fingerprint(url)
    result = CliRunner().invoke(app(), ["--ledger", url, *CONTACT],
                                env={"M22BOL_USER": "dm", "USER": "dm", "LOGNAME": "dm",
                                     "M22BOL_PASSWORD": None})
    assert result.exit_code == 4
    assert written_since(url, before) == ["AuthenticationFailed"]


def test_the_operating_system_account_acts_without_a_password(tmp_path):
    url = f"sqlite:///{tmp_path}/mine.sqlite"
    result = CliRunner().invoke(app(), ["--ledger", url, "init", "--json"],
                                env={"M22BOL_USER": None, "M22BOL_PASSWORD": None})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["admin"] == os_account()


def test_init_as_a_named_first_admin_sets_their_password_with_it(tmp_path):
    url = f"sqlite:///{tmp_path}/named.sqlite"
    refused = invoke(["init"], url=url, user="chief", password=None)
    assert refused.exit_code == 4 and store_fingerprint(url) == []
    assert invoke(["init"], url=url, user="chief", password="too short").exit_code == 2
    assert store_fingerprint(url) == []

    assert invoke(["init"], url=url, user="chief").exit_code == 0
    assert invoke(["grant", "nurse", "data-manager"], url=url, user="chief").exit_code == 0
    assert invoke(["grant", "nurse", "monitor"], url=url, user="chief",
                  password="guessed password").exit_code == 4


def test_five_failures_in_a_row_lock_the_user_out_until_an_admin_resets(url):
    for _ in range(LOCKOUT_AFTER):
        assert invoke(CONTACT, url=url, password="guessed wrongly").exit_code == 4
    before = store_fingerprint(url)

    locked = invoke([*CONTACT, "--json"], url=url)  # the right password, too late

    assert locked.exit_code == 4
    error = json.loads(locked.output)["error"]
    assert error["rule"] == "identity.locked_out" and "reset-password" in error["message"]
    assert written_since(url, before) == ["AuthenticationFailed"]
    assert invoke(["reset-password", "dm", "--password-stdin"], url=url, user="admin",
                  input="a brand new one\n").exit_code == 0
    assert invoke(CONTACT, url=url, password="a brand new one").exit_code == 0


def test_a_success_starts_the_count_again(url):
    for _ in range(LOCKOUT_AFTER - 1):
        assert invoke(["status"], url=url, password="guessed wrongly").exit_code == 4
    assert invoke(["status"], url=url).exit_code == 0
    for _ in range(LOCKOUT_AFTER - 1):
        assert invoke(["status"], url=url, password="guessed wrongly").exit_code == 4
    assert invoke(["status"], url=url).exit_code == 0
    assert trial_events(url).events[-1].__class__.__name__ == "AuthenticationSucceeded"


def test_failed_signatures_count_towards_the_lockout(url):
    # The investigator at their own workstation: logged in by the OS, guessing at signing.
    me = account(url)
    assert invoke(["grant", me, "investigator"], url=url, user="admin").exit_code == 0
    assert invoke(["reset-password", me, "--password-stdin"], url=url, user="admin",
                  input=TEST_PASSWORD + "\n").exit_code == 0
    for _ in range(LOCKOUT_AFTER):
        assert invoke(["sign", "M22-001", "--meaning", "reviewed", "--password-stdin"],
                      url=url, user=me, password=None, input="not my password\n"
                      ).exit_code == 4
    assert trial_events(url).locked_out(me)
    locked = invoke(["sign", "M22-001", "--meaning", "reviewed", "--password-stdin"],
                    url=url, user=me, password=None, input=TEST_PASSWORD + "\n")
    assert locked.exit_code == 4 and "locked out" in locked.output


def test_set_password_for_someone_else_is_refused(url):
    """The hijack of issue 11: naming bob and setting "his" first password."""
    before = store_fingerprint(url)

    result = invoke(["set-password", "--password-stdin"], url=url, user="bob",
                    input="mallory was here\n", password=None)

    assert result.exit_code == 4
    assert written_since(url, before) == ["AuthenticationFailed"]
    assert "bob" not in trial_events(url).password_hashes


def test_reset_password_is_for_admins_and_never_for_oneself(url):
    for user in ("dm", "admin"):
        result = invoke(["reset-password", user, "--password-stdin", "--json"], url=url,
                        user=user, input="my own new one\n")
        assert result.exit_code == 4, (user, result.output)
    rules = [json.loads(invoke(["reset-password", u, "--password-stdin", "--json"], url=url,
                               user=u, input="my own new one\n").output)["error"]["rule"]
             for u in ("dm", "admin")]
    assert rules == ["access.role", "admin.self_reset"]


def test_nobody_grants_a_role_to_themselves(url):
    before = store_fingerprint(url)
    result = invoke(["grant", "admin", "investigator", "--json"], url=url, user="admin")
    assert result.exit_code == 4
    assert json.loads(result.output)["error"]["rule"] == "admin.self_grant"
    assert store_fingerprint(url) == before


def test_the_last_admin_cannot_be_revoked(url):
    refused = invoke(["revoke", "admin", "admin", "--reason", "leaving", "--json"], url=url,
                     user="admin")
    assert refused.exit_code == 4
    assert json.loads(refused.output)["error"]["rule"] == "admin.last_admin"
    assert invoke(["grant", "mon", "admin"], url=url, user="admin").exit_code == 0
    assert invoke(["revoke", "admin", "admin", "--reason", "leaving"], url=url,
                  user="mon").exit_code == 0
    assert invoke(["revoke", "mon", "admin", "--reason", "alone"], url=url,
                  user="mon").exit_code == 4


def test_the_production_cost_of_a_password_hash():
    # conftest lowers the cost for the tests' ledgers; the function keeps its own.
    assert hash_password(TEST_PASSWORD).startswith("scrypt$15$8$1$")


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_global_option_wins_over_its_environment_variable(tmp_path, where):
    prod, scratch = f"sqlite:///{tmp_path}/prod.sqlite", f"sqlite:///{tmp_path}/scratch.sqlite"
    args = ["--ledger", scratch, "init"] if where == "before" else ["init", "--ledger", scratch]
    result = CliRunner().invoke(app(), args, env={"M22BOL_LEDGER": prod, "M22BOL_USER": None})
    assert result.exit_code == 0, result.output
    assert store_fingerprint(scratch) and not (tmp_path / "prod.sqlite").exists()


def test_refused_attempts_show_in_the_trial_history_and_both_exports(url, tmp_path,
                                                                   schemas):

    assert invoke(CONTACT, url=url, password="guessed wrongly").exit_code == 4

    history = json.loads(invoke(["history", "--json"], url=url, user="aud").output)
    (failed,) = [r for r in history["entries"] if r["event"] == "AuthenticationFailed"]
    assert failed["values"]["user"] == "dm" and failed["values"]["attempt"] == "password"
    assert all("password_hash" not in r["values"] for r in history["entries"])
    assert invoke(["history"], url=url, user="aud").exit_code == 0

    jsonl, odm = tmp_path / "trail.jsonl", tmp_path / "trail.xml"
    for fmt, out in (("jsonl", jsonl), ("odm", odm)):
        assert invoke(["audit", "export", "--format", fmt, "--out", str(out)], url=url,
                      user="aud").exit_code == 0
    assert any(json.loads(line)["event"] == "AuthenticationFailed"
               for line in jsonl.read_text().splitlines())
    root = valid_odm(schemas, odm)
    records = [r for r in root.iter() if r.tag.endswith("AuditRecord")
               and r.get("ID") == "AR." + failed["entry"].replace("#", ".")]
    assert len(records) == 1
    assert "failed password authentication as dm" in "".join(records[0].itertext())


def test_a_synthetic_ledger_says_so_in_its_exports_and_report(tmp_path):
    url = f"sqlite:///{tmp_path}/demo.sqlite"
    assert invoke(["demo", "--patients", "2", "--seed", "4"], url=url, user="alice"
                  ).exit_code == 0
    done = invoke(["audit", "export", "--format", "odm", "--out", str(tmp_path / "d.xml"),
                   "--json"], url=url, user="alice")
    assert json.loads(done.output)["synthetic"] is True
    assert "SYNTHETIC DEMO DATA" in (tmp_path / "d.xml").read_text()
    assert invoke(["report", "--out", str(tmp_path / "report")], url=url, user="alice"
                  ).exit_code == 0
    assert "SYNTHETIC DEMO DATA" in (tmp_path / "report" / "index.html").read_text()
