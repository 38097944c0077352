"""Four processes entering facts for the same subjects at once lose nothing and duplicate
nothing, and the read models they keep between them equal a rebuild from zero."""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections import Counter
from datetime import date, timedelta

from m22bol.domain.commands import parse_command
from m22bol.domain.errors import LedgerError
from tests.support import new_ledger, open_ledger
from tests.support.read_models import assert_agrees_with_replay, assert_rebuild_changes_nothing

PROCESSES = 4
ENTRIES = 200
SUBJECTS = [f"C-{i}" for i in range(6)]
CONSENT = date(2025, 1, 2)


def enter(url: str, worker: int, start, results) -> None:
    """One process: its own ledger object on the shared database, ENTRIES entries."""
    ledger = open_ledger(url)
    outcomes: Counter[str] = Counter()
    start.wait()
    for i in range(ENTRIES):
        # Every worker walks all subjects, offset from the others: they collide constantly.
        subject = SUBJECTS[(worker + i) % len(SUBJECTS)]
        when = str(CONSENT + timedelta(days=1 + (7 * i + worker) % 300))
        values = {"subject": subject, "date": when, "source": f"w{worker}-{i}"}
        if i % 2:
            values["result"] = "detected" if i % 4 == 1 else "not-detected"
        try:
            ledger.execute(parse_command("ctdna" if i % 2 else "contact", values), "dm")
            outcomes["accepted"] += 1
        except LedgerError as error:
            outcomes[f"exit {error.exit_code}: {error.rule}"] += 1
    ledger.close()
    results.put((worker, dict(outcomes)))


def test_four_processes_lose_nothing_and_duplicate_nothing(ledger_url):
    ledger = new_ledger(ledger_url)
    for s in SUBJECTS:
        ledger.execute(parse_command(
            "register", {"subject": s, "site": "S1", "consent_date": str(CONSENT)}), "dm")
    before = ledger.recorder.max_notification_id()

    spawn = multiprocessing.get_context("spawn")
    start, results = spawn.Event(), spawn.Queue()
    workers = [spawn.Process(target=enter, args=(ledger_url, w, start, results))
               for w in range(PROCESSES)]
    for p in workers:
        p.start()
    start.set()
    outcomes = {}
    deadline = time.monotonic() + 600
    while len(outcomes) < PROCESSES:
        try:
            worker, counts = results.get(timeout=1)
            outcomes[worker] = counts
        except queue.Empty:
            # A worker that died without reporting fails the test now, not at the timeout.
            assert all(p.exitcode in (None, 0) for p in workers), [p.exitcode for p in workers]
            assert time.monotonic() < deadline, "workers did not finish in time"
    for p in workers:
        p.join(timeout=60)
        assert p.exitcode == 0

    assert outcomes == {w: {"accepted": ENTRIES} for w in range(PROCESSES)}
    stored = ledger.recorder.select_notifications(before, 10**6, inclusive_of_start=False)
    assert len(stored) == PROCESSES * ENTRIES
    sources = Counter(ledger.mapper.to_domain_event(n).source for n in stored)
    expected = {f"w{w}-{i}" for w in range(PROCESSES) for i in range(ENTRIES)}
    assert set(sources) == expected and set(sources.values()) == {1}
    # Each subject's versions run 1..n without a hole (optimistic concurrency held).
    for s in SUBJECTS:
        patient = ledger.require_patient(s)
        assert [e.originator_version for e in patient.events] == list(
            range(1, patient.version + 1))

    assert_agrees_with_replay(ledger)
    assert_rebuild_changes_nothing(ledger)
    ledger.close()
