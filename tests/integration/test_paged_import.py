"""An import written in pages inside one transaction (ledger/paging.py) is all or nothing, and
writes exactly what writing it at once would: page size and subject cache set small here, so
that a handful of lines spans many pages and subjects are read back from unsaved pages."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta

import pytest

from m22bol.domain.commands import parse_command
from m22bol.domain.errors import BadInput
from m22bol.domain.trial import TRIAL_ID
from m22bol.ledger import app, integrity, log_digest
from tests.support import Clock, new_ledger, store_fingerprint
from tests.support.databases import fresh_postgres_database, sqlite_url
from tests.support.read_models import assert_agrees_with_replay

SUBJECTS = 6
CONSENT = date(2025, 1, 6)


def interleaved_course() -> list:
    """Each step for every subject before the next step: with a cache of two subjects, every
    line names a subject that was evicted, whose events are in pages not yet committed."""
    subjects = [f"PG-{i}" for i in range(SUBJECTS)]
    steps = [
        lambda s: ("register", {"subject": s, "site": "S1", "consent_date": str(CONSENT)}),
        lambda s: ("assess-eligibility", {
            "subject": s, "date": str(CONSENT), "her2": "positive", "er": "negative",
            "prior_therapy": "none", "distant_lesions": 2, "all_lesions_curable": "yes",
            "lvef": 60, "ecog": 0}),
        lambda s: ("enrol", {"subject": s, "date": str(CONSENT + timedelta(days=4)),
                             "weight_kg": 64}),
        *(lambda s, k=k: ("contact", {"subject": s,
                                      "date": str(CONSENT + timedelta(days=10 * k))})
          for k in range(1, 4)),
    ]
    return [parse_command(*step(s)) for step in steps for s in subjects]


def store_url(store: str, stack: ExitStack, folder) -> str:
    if store == "sqlite":
        return sqlite_url(folder)
    return stack.enter_context(fresh_postgres_database())


def import_rows(url: str, *, page: int | None, monkeypatch, cached: int) -> list[tuple]:
    """The import's own stored rows (subjects only: the trial's chain holds each ledger's own
    password hashes) and whether its read models agree with a replay."""
    monkeypatch.setattr(app, "CACHED_SUBJECTS", cached)
    ledger = new_ledger(url, clock=Clock(datetime(2025, 3, 1, 9, tzinfo=UTC)))
    try:
        head = ledger.recorder.max_notification_id()
        outputs = ledger.execute_all(interleaved_course(), "dm", page=page)
        assert len(outputs) == len(interleaved_course())
        assert_agrees_with_replay(ledger)
        assert integrity.verify(ledger).ok
        # One digest row for the whole import, however many pages it took.
        assert [p for p, _ in log_digest.recorded_after(ledger, head)] == [
            ledger.recorder.max_notification_id()]
        return [row[1:] for row in store_fingerprint(url)
                if row[0] > head and row[1] != str(TRIAL_ID)]
    finally:
        ledger.close()


def test_pages_and_evictions_write_what_one_save_writes(store, tmp_path, monkeypatch):
    with ExitStack() as stack:
        (tmp_path / "paged").mkdir()
        (tmp_path / "whole").mkdir()
        paged = import_rows(store_url(store, stack, tmp_path / "paged"), page=3,
                            monkeypatch=monkeypatch, cached=2)
        whole = import_rows(store_url(store, stack, tmp_path / "whole"), page=10**6,
                            monkeypatch=monkeypatch, cached=10**6)
    assert len(paged) == SUBJECTS * 6
    assert paged == whole


def test_a_refusal_after_many_pages_leaves_the_store_byte_identical(ledger_url, monkeypatch):
    """Database tests only (the default stores): the memory store writes once, at the end."""
    monkeypatch.setattr(app, "CACHED_SUBJECTS", 2)
    ledger = new_ledger(ledger_url)
    try:
        before = store_fingerprint(ledger_url)
        digests = log_digest.recorded_after(ledger, 0)
        commands = interleaved_course()
        # The last line names a subject nobody registered: refused after every other line
        # was decided and written, three events a page.
        commands.append(parse_command("contact", {"subject": "PG-404", "date": "2025-03-01"}))
        with pytest.raises(BadInput, match=f"^line {len(commands)}: "):
            ledger.execute_all(commands, "dm", page=3)
        assert store_fingerprint(ledger_url) == before
        assert log_digest.recorded_after(ledger, 0) == digests
        # And the ledger takes the same import afterwards, as if nothing had happened.
        ledger.execute_all(commands[:-1], "dm", page=3)
        assert len(store_fingerprint(ledger_url)) == len(before) + SUBJECTS * 6
    finally:
        ledger.close()


def test_the_log_digest_folds_the_bytes_inserted_not_those_an_event_was_read_from(ledger_url):
    """Database tests only. An event read from the store carries the digest of the bytes it was
    read from; written again (here: bytes that were not canonical) it is stored in the
    canonical form, and the log digest must fold that, not the digest it carried."""
    from uuid import uuid4

    from m22bol.domain.events import ContactRecorded

    ledger = new_ledger(ledger_url)
    try:
        event = ContactRecorded(originator_id=uuid4(), originator_version=1, actor="dm",
                                recorded_at=datetime(2025, 3, 1, tzinfo=UTC),
                                date=date(2025, 3, 1))
        stored = ledger.mapper.to_stored_event(event)
        spaced = type(stored)(stored.originator_id, stored.originator_version, stored.topic,
                              stored.state.replace(b'{"actor"', b'{ "actor"'))
        read = ledger.mapper.to_domain_event(spaced)
        before, before_digest = log_digest.recorded_after(ledger, 0)[-1]
        ledger.save(read)
        head = ledger.recorder.max_notification_id()
        rows = log_digest.query(ledger, log_digest.events_query(ledger_url), (before, head))
        assert len(rows) == 1 and bytes(rows[0][4]) == stored.state  # stored canonically
        assert log_digest.recorded_after(ledger, before) == [
            (head, log_digest.fold_rows(before_digest, rows)[1])]
    finally:
        ledger.close()


def test_the_events_after_a_position_are_read_in_pages(ledger_url):
    """Database tests only. What an account's check reads after a command (ledger.seen): every
    event since the position it saw, a page at a time, in log order."""
    ledger = new_ledger(ledger_url)
    try:
        ledger.execute_all(interleaved_course()[:SUBJECTS], "dm")
        head = ledger.recorder.max_notification_id()
        whole = log_digest.query(ledger, log_digest.events_query(ledger_url), (0, head))
        assert len(whole) > SUBJECTS
        assert list(log_digest.events_between(ledger, 0, head, page=2)) == whole
        assert list(log_digest.events_between(ledger, whole[0][0], whole[-2][0],
                                              page=3)) == whole[1:-1]
    finally:
        ledger.close()
