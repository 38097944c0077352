"""Electronic signatures (Part 11 §11.50, §11.70, §11.200): a password kept only as a salted
scrypt hash, re-entered to sign; the signature records signer, time, meaning and the digest of
the chain head it covers; `history` and `patient` show whether it still covers the data."""

from __future__ import annotations

import json

import pytest

from m22bol.domain import commands as c
from m22bol.domain.errors import NotPermitted
from m22bol.ledger.signatures import hash_password, verify_password
from m22bol.ledger.store import event_hash
from tests.support import TEST_PASSWORD, invoke, store_fingerprint

S = "M22-001"
PASSWORD = TEST_PASSWORD  # one password per person: the one `inv` logs in with signs too


@pytest.fixture
def signer(driver):
    """M22-001 enrolled (entries #1-#3); `inv` has a password (tests.support)."""
    driver.enrolled(S)
    return driver


def sign(driver, password: str = PASSWORD, user: str = "inv", meaning: str = "approved",
         subject: str = S, login: str = TEST_PASSWORD):
    """`sign` re-entering `password`, run as `user` authenticated with `login`."""
    return invoke(["sign", subject, "--meaning", meaning, "--password-stdin", "--json"],
                  url=driver.ledger.url, user=user, input=password + "\n", password=login)


def security_events(url: str, before: list) -> list[str]:
    """The topics of the rows written since `before`."""
    return [row[3].split(":")[-1] for row in store_fingerprint(url)[len(before):]]


def test_only_a_salted_scrypt_hash_of_the_password_is_stored(signer):
    stored = signer.ledger.require_trial().password_hashes["inv"]

    assert stored.startswith("scrypt$") and PASSWORD not in stored
    assert verify_password(PASSWORD, stored) and not verify_password(PASSWORD + "!", stored)
    assert hash_password(PASSWORD) != hash_password(PASSWORD)  # a fresh salt each time
    # conftest lowers the cost for the ledgers of the tests; the function keeps its own.
    assert hash_password(PASSWORD).startswith("scrypt$15$8$1$")
    for row in store_fingerprint(signer.ledger.url):
        assert PASSWORD.encode() not in row[4]


def test_a_signature_records_signer_time_meaning_and_the_head_it_covers(signer):
    head = signer.ledger.require_patient(S).events[-1]

    result = sign(signer)

    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    signed = signer.ledger.require_patient(S).events[-1]
    assert out == {"entry": f"{S}#4", "signer": "inv", "meaning": "approved",
                   "covers": f"{S}#3", "head_digest": event_hash(head)}
    assert (signed.actor, signed.meaning, signed.head_digest, signed.covers_version) == (
        "inv", "approved", event_hash(head), 3)
    assert signed.recorded_at is not None
    status = json.loads(invoke(["patient", S, "--json"], url=signer.ledger.url,
                               user="mon").output)["signature"]
    assert status["covers_current_data"] is True
    assert (status["signer"], status["meaning"], status["covers"]) == ("inv", "approved",
                                                                       f"{S}#3")


def test_a_later_correction_shows_the_signature_no_longer_covers_the_data(signer):
    assert sign(signer).exit_code == 0
    signer.do("correct", subject=S, entry=f"{S}#3", reason="weighed again",
              set=["weight_kg=61"])

    for command in ("patient", "history"):
        result = invoke([command, S, "--json"], url=signer.ledger.url, user="mon")
        status = json.loads(result.output)["signature"]
        assert status["covers_current_data"] is False, command
        assert status["changed_since"] == [f"{S}#5"]
    text = invoke(["patient", S], url=signer.ledger.url, user="mon").output
    assert "no longer covers the current data (changed since: M22-001#5)" in text

    assert sign(signer, meaning="reviewed").exit_code == 0  # signing again covers it again
    status = json.loads(invoke(["history", S, "--json"], url=signer.ledger.url,
                               user="mon").output)["signature"]
    assert (status["covers_current_data"], status["covers"]) == (True, f"{S}#5")


@pytest.mark.parametrize("password, user, rule, written", [
    ("not-the-password", "inv", "identity.password", ["AuthenticationFailed"]),
    (PASSWORD, "dm", "access.role", []),
    (PASSWORD, "mon", "access.role", []),
])
def test_a_signature_is_refused_without_the_right_password_or_role(signer, password, user,
                                                                   rule, written):
    before = store_fingerprint(signer.ledger.url)

    result = sign(signer, password=password, user=user)

    assert result.exit_code == 4, result.output
    assert json.loads(result.output)["error"]["rule"] == rule
    # No signature; a failed signature is a failed authentication and leaves its trace.
    assert security_events(signer.ledger.url, before) == written
    if written:
        failed = signer.ledger.require_trial().events[-1]
        assert (failed.user, failed.attempt) == ("inv", "signature")


def test_an_investigator_without_a_password_cannot_sign(signer):
    signer.do("grant", actor="admin", user="inv2", role="investigator")

    result = sign(signer, user="inv2")

    assert result.exit_code == 4
    assert json.loads(result.output)["error"]["rule"] == "identity.no_password"


def test_an_investigator_limited_to_a_site_signs_only_its_subjects(signer):
    signer.enrolled("M22-002", site="S2")
    signer.do("grant", actor="admin", user="inv2", role="investigator", site="S2")
    signer.ledger.execute(c.SetPassword(password="site-two-password"), "inv2")

    assert sign(signer, user="inv2", password="site-two-password", login="site-two-password",
                subject="M22-002").exit_code == 0
    result = sign(signer, user="inv2", password="site-two-password", login="site-two-password")
    assert result.exit_code == 4
    assert json.loads(result.output)["error"]["rule"] == "access.role"


def test_changing_a_password_needs_the_current_one(signer):
    url = signer.ledger.url
    refused = invoke(["set-password", "--password-stdin"], url=url, user="inv",
                     input="guessed-password\nmine-now-12345\n")
    assert refused.exit_code == 4, refused.output

    changed = invoke(["set-password", "--password-stdin"], url=url, user="inv",
                     input=f"{PASSWORD}\nnew-password-99\n")

    assert changed.exit_code == 0, changed.output
    assert sign(signer, login="new-password-99").exit_code == 4
    assert sign(signer, password="new-password-99", login="new-password-99").exit_code == 0


@pytest.mark.parametrize("password", ["short", "eleven char", " " * 11])
def test_a_password_has_at_least_twelve_characters(driver, password):
    before = driver.ledger.require_trial().password_hashes["inv"]
    result = invoke(["set-password", "--password-stdin", "--json"], url=driver.ledger.url,
                    user="inv", input=f"{TEST_PASSWORD}\n{password}\n")

    assert result.exit_code == 2
    assert "at least 12 characters" in json.loads(result.output)["error"]["message"]
    assert driver.ledger.require_trial().password_hashes["inv"] == before


def test_a_password_is_taken_exactly_as_typed(driver):
    spaced = "  twelve or more  "
    assert invoke(["set-password", "--password-stdin"], url=driver.ledger.url, user="inv",
                  input=f"{TEST_PASSWORD}\n{spaced}\n").exit_code == 0
    stored = driver.ledger.require_trial().password_hashes["inv"]
    assert verify_password(spaced, stored) and not verify_password(spaced.strip(), stored)


def test_the_password_is_prompted_for_without_echo(signer):
    result = invoke(["sign", S, "--meaning", "reviewed"], url=signer.ledger.url, user="inv",
                    input=PASSWORD + "\n")

    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output


def test_signing_the_same_unchanged_records_twice_is_refused(signer):
    assert sign(signer).exit_code == 0

    again = sign(signer)

    assert again.exit_code == 3
    assert json.loads(again.output)["error"]["rule"] == "sign.unchanged"


@pytest.mark.parametrize("record", [
    {"command": "sign", "subject": S, "meaning": "approved", "password": PASSWORD},
    {"command": "set-password", "password": PASSWORD},
])
def test_passwords_cannot_come_from_an_import_file(signer, tmp_path, record):
    path = tmp_path / "sign.jsonl"
    path.write_text(json.dumps(record) + "\n")

    result = invoke(["import", str(path)], url=signer.ledger.url, user="inv")

    assert result.exit_code == 2
    assert "cannot be imported" in result.output


def test_a_wrong_password_raises_not_permitted_on_the_write_path(signer):
    with pytest.raises(NotPermitted):
        signer.ledger.execute(c.Sign(subject=S, meaning="reviewed", password="wrong-one-12"),
                              "inv")
