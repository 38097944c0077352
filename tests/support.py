"""Shared test helpers: a ledger with the usual people, and one-line entries."""

from __future__ import annotations

from typing import Any

from m22bol.domain.commands import ResetPassword, SetPassword, parse_command
from m22bol.ledger.app import TrialLedger
from m22bol.projections import after_save

PEOPLE = {"dm": "data-manager", "inv": "investigator", "mon": "monitor", "aud": "auditor"}
# Everyone's ledger password in the tests: `invoke` acts as a person with `--user NAME` and
# this password in M22BOL_PASSWORD, as a script would (conftest makes hashing it cheap).
TEST_PASSWORD = "test passphrase 1"


class Driver:
    """Drives a real ledger the way the CLI does: primitive values in, outputs back."""

    def __init__(self, ledger: TrialLedger):
        self.ledger = ledger

    def do(self, command: str, actor: str = "dm", **values: Any) -> dict:
        return self.ledger.execute(parse_command(command, values), actor)

    def enrolled(self, subject: str, *, er: str = "positive", prior: str = "none",
                 consent: str = "2025-01-02", enrol: str = "2025-01-10",
                 weight: float = 60, lvef: float = 60, site: str = "S1") -> dict:
        """Register, assess and enrol one eligible subject; the enrolment output."""
        self.do("register", subject=subject, site=site, consent_date=consent)
        self.do("assess-eligibility", subject=subject, date=consent, her2="positive", er=er,
                prior_therapy=prior, distant_lesions=2, all_lesions_curable="yes", lvef=lvef,
                ecog=0)
        return self.do("enrol", subject=subject, date=enrol, weight_kg=weight)


def open_ledger(url: str, **options: Any) -> TrialLedger:
    """A ledger as the CLI opens it: read models kept current after each save."""
    return TrialLedger(url, after_save=[after_save], **options)


def new_ledger(url: str) -> TrialLedger:
    """An initialised ledger whose admin is `admin`, with one person per other role."""
    ledger = open_ledger(url)
    driver = Driver(ledger)
    driver.do("init", actor="admin")
    for user, role in PEOPLE.items():
        driver.do("grant", actor="admin", user=user, role=role)
    set_passwords(ledger, [*PEOPLE, "nobody"])
    return ledger


def set_passwords(ledger: TrialLedger, users: list[str], *, admin: str = "admin") -> None:
    """Give the admin and each user TEST_PASSWORD, so the CLI can act as them."""
    commands = [ResetPassword(user=user, password=TEST_PASSWORD) for user in users]
    if admin not in ledger.require_trial().password_hashes:
        commands.insert(0, SetPassword(password=TEST_PASSWORD))
        ledger.execute(commands.pop(0), admin)
    ledger.execute_all(commands, admin)


def invoke(args: list[str], *, url: str, user: str = "dm", input: bytes | str | None = None,
           password: str | None = TEST_PASSWORD):
    """Run the CLI in-process, as a person would type it, acting as `user` with `password`
    (None: no password given); the click Result."""
    from click.testing import CliRunner

    from m22bol.cli.main import app

    return CliRunner().invoke(app(), ["--ledger", url, "--user", user, *args], input=input,
                              env={"M22BOL_PASSWORD": password}, catch_exceptions=False)


def store_fingerprint(url: str) -> list[tuple]:
    """Every stored event row, byte for byte: what a refused command must leave unchanged."""
    ledger = TrialLedger(url)  # no read models: this reads the event rows only
    try:
        rows = ledger.recorder.select_notifications(None, 10**9)
        return [(n.id, str(n.originator_id), n.originator_version, n.topic, bytes(n.state))
                for n in rows]
    finally:
        ledger.close()
