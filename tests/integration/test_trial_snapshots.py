"""Trial snapshots (ledger/trial_snapshots.py): the trial resumed from a snapshot is the trial
folded from every event, the hash chain is what it was without snapshots, and a forged
snapshot is named by `audit verify`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from m22bol.domain.trial import summary
from m22bol.ledger import integrity, trial_snapshots
from m22bol.ledger.app import TrialLedger
from m22bol.ledger.store import MEMORY_URL
from tests.support import (
    IN_MEMORY,
    ON_DATABASES,
    ON_SQLITE,
    Clock,
    Driver,
    new_ledger,
    open_ledger,
    store_fingerprint,
)
from tests.support.databases import forge_trial_snapshot

EVERY = 10  # small, so a few commands cross several snapshots


@pytest.fixture(autouse=True)
def small_interval(monkeypatch):
    monkeypatch.setattr(trial_snapshots, "EVERY", EVERY)


def grow(driver: Driver, clock: Clock, rounds: int) -> None:
    """Trial events of every kind a long-running ledger piles up: daily edit-check runs,
    query numbers, subject locks, grants and revocations."""
    driver.do("register", subject="M22-001", site="S1", consent_date="2025-01-02")
    for n in range(rounds):
        clock.now += timedelta(days=1)  # the day's first command runs the checks
        driver.do("query open", actor="mon", subject="M22-001", entry="M22-001#1",
                  field="site", text=f"question {n}")
        driver.do("lock", actor="admin", subject="M22-001", reason="check")
        driver.do("unlock", actor="admin", subject="M22-001", reason="checked")
        driver.do("grant", actor="admin", user=f"u{n}", role="monitor", site="S1")
        if n % 2:
            driver.do("revoke", actor="admin", user=f"u{n}", role="monitor", site="S1",
                      reason="left")


def start(url: str) -> tuple[Driver, Clock]:
    clock = Clock(datetime(2025, 3, 1, 9, tzinfo=UTC))
    return Driver(new_ledger(url, clock=clock)), clock


@pytest.mark.stores("memory", "sqlite", "postgres")
def test_the_trial_resumed_from_a_snapshot_is_the_trial_folded_from_every_event(ledger_url):
    driver, clock = start(ledger_url)
    grow(driver, clock, 8)
    ledger = driver.ledger
    resumed, whole = ledger.trial(), ledger.trial(whole=True)
    assert resumed.base_version > 0 and resumed.version - resumed.base_version < EVERY
    assert whole.base_version == 0
    assert resumed.version == whole.version
    assert summary(resumed) == summary(whole)
    # and it goes on deciding and chaining from where the snapshot left off
    driver.do("query open", actor="mon", subject="M22-001", entry="M22-001#1", field="site",
              text="one more")
    assert summary(ledger.trial()) == summary(ledger.trial(whole=True))
    if ledger_url != MEMORY_URL:
        report = integrity.verify(ledger)
        assert report.ok, report.as_dict()
    ledger.close()


@IN_MEMORY
def test_queries_answer_by_the_id_numbered_before_the_snapshot(ledger_url):
    driver, clock = start(ledger_url)
    grow(driver, clock, 6)
    assert driver.ledger.trial().base_version > 0
    answered = driver.do("query answer", actor="dm", query_id="Q-1", text="it is S1")
    assert answered


@ON_SQLITE
def test_snapshots_leave_every_stored_event_byte_for_byte_as_without_them(tmp_path,
                                                                         monkeypatch):
    """The hash chain is unchanged: the same commands at the same times store the same bytes
    whether snapshots were taken (and resumed from) or not. No passwords: their salt is
    random."""
    fingerprints = []
    for every in (EVERY, 10**9):
        monkeypatch.setattr(trial_snapshots, "EVERY", every)
        url = f"sqlite:///{tmp_path}/ledger-{every}.sqlite"
        clock = Clock(datetime(2025, 3, 1, 9, tzinfo=UTC))
        driver = Driver(TrialLedger(url, clock=clock))
        driver.do("init", actor="admin")
        for user, role in (("dm", "data-manager"), ("mon", "monitor")):
            driver.do("grant", actor="admin", user=user, role=role)
        grow(driver, clock, 6)
        taken = list(trial_snapshots._rows(driver.ledger))
        assert bool(taken) == (every == EVERY)
        driver.ledger.close()
        fingerprints.append([row[1:] for row in store_fingerprint(url)])
    assert fingerprints[0] == fingerprints[1]


@ON_SQLITE
def test_a_forged_snapshot_granting_a_role_is_named_by_audit_verify(ledger_url):
    driver, clock = start(ledger_url)
    grow(driver, clock, 4)
    driver.ledger.close()

    forge_trial_snapshot(ledger_url,
                         lambda body: body["trial"]["grants"].append(["mallory", "admin", None]))

    ledger = open_ledger(ledger_url)
    # The forgery works on what commands decide (that is why verify must catch it) ...
    assert "mallory" in ledger.trial().admins()
    assert "mallory" not in ledger.trial(whole=True).admins()
    report = integrity.verify(ledger)
    assert not report.ok
    found = [f for f in report.findings if f.kind == "snapshot"]
    assert found and "grants" in found[0].message, report.as_dict()
    ledger.close()


@ON_SQLITE
def test_a_snapshot_naming_a_head_the_chain_does_not_have_is_ignored_and_named(ledger_url):
    driver, clock = start(ledger_url)
    grow(driver, clock, 4)
    driver.ledger.close()

    def lift_lock_and_rehead(body):
        body["trial"]["locked"] = True
        body["head"] = "0" * 64

    forge_trial_snapshot(ledger_url, lift_lock_and_rehead)
    ledger = open_ledger(ledger_url)
    trial = ledger.trial()
    assert not trial.locked  # a snapshot off the chain is not used: the whole chain folds
    assert trial.base_version == 0
    messages = [f.message for f in integrity.verify(ledger).findings if f.kind == "snapshot"]
    assert messages and "head" in messages[0]
    ledger.close()


@ON_DATABASES
def test_a_ledger_without_snapshots_verifies_and_loads_as_before(ledger_url, monkeypatch):
    monkeypatch.setattr(trial_snapshots, "EVERY", 10**9)
    driver, _ = start(ledger_url)
    assert driver.ledger.trial().base_version == 0
    assert integrity.verify(driver.ledger).ok
    driver.ledger.close()
