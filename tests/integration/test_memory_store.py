"""The memory store the rule tests run on stores what a database stores: the same entries give
the same rows, byte for byte, and a version clash is refused the same way."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from eventsourcing.persistence import IntegrityError

from m22bol.domain.commands import parse_command
from m22bol.ledger.app import _Batch
from m22bol.ledger.store import MEMORY_URL, store_env
from tests.support import Driver, open_ledger, store_fingerprint


def fixed_clock() -> datetime:
    return datetime(2025, 6, 1, 9, 30, tzinfo=UTC)


def enter_a_short_course(url: str) -> list[tuple]:
    """The stored rows after the same entries: notification id, aggregate, version, topic, bytes."""
    ledger = open_ledger(url, clock=fixed_clock)
    try:
        driver = Driver(ledger)
        driver.do("init", actor="admin")
        driver.do("grant", actor="admin", user="dm", role="data-manager")
        driver.enrolled("M22-001")
        driver.do("infuse", subject="M22-001", cycle=1, date="2025-01-15", weight_kg=60,
                  dose_mg=324)
        driver.do("adverse-event", subject="M22-001", term="Pneumonitis", grade=1,
                  onset="2025-01-25")
        driver.do("correct", subject="M22-001", entry="M22-001#3", reason="scale not tared",
                  set=["weight_kg=59"])
        rows = ledger.recorder.select_notifications(None, 10**6)
        return [(n.id, str(n.originator_id), n.originator_version, n.topic, bytes(n.state))
                for n in rows]
    finally:
        ledger.close()


def test_the_memory_store_keeps_the_bytes_sqlite_keeps(sqlite_url):
    in_memory = enter_a_short_course(MEMORY_URL)

    assert in_memory == enter_a_short_course(sqlite_url) == store_fingerprint(sqlite_url)


def test_a_decision_on_a_stale_aggregate_is_refused_as_on_a_database():
    """The clash `TrialLedger.execute_all` retries on: someone saved the aggregate first."""
    ledger = open_ledger(MEMORY_URL, clock=fixed_clock)
    try:
        Driver(ledger).do("init", actor="admin")
        stale = _Batch(ledger, "admin", fixed_clock())
        stale.apply(parse_command("grant", {"user": "dm", "role": "data-manager"}))
        Driver(ledger).do("grant", actor="admin", user="inv", role="investigator")

        with pytest.raises(IntegrityError):
            ledger.save(*stale.pending)
    finally:
        ledger.close()


def test_the_memory_url_selects_the_library_s_in_memory_store():
    assert store_env(MEMORY_URL)["PERSISTENCE_MODULE"] == "eventsourcing.popo"
