"""Loading the trial aggregate, which every command does, on trial chains of growing length.

A long-running ledger piles up trial events: a query number for every query, an edit-check run
every day, grants, passwords, locks, seals. Here a new ledger gets N such events written in
bulk (`TrialLedger.save`, hash-chained, 5,000 a transaction; two thirds `QueryNumbered`, one
third `EditChecksRun`), then a snapshot is taken as the first command after them would take it.
Timed in process (start-up excluded), median of `--repeat`:

- `trial()`: the latest snapshot and the events after it (what every command now does);
- `trial(whole=True)`: every event folded (what every command did before);
- raw sqlite3: reading the latest snapshot row and decoding its JSON (the floor for a snapshot).

    .venv/bin/python bench/bench_trial_load.py [--sizes 1k,10k,100k] [--repeat 7]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson

from m22bol.domain import commands as c
from m22bol.domain.events import EditChecksRun, QueryNumbered
from m22bol.domain.trial import TRIAL_ID
from m22bol.ledger import trial_snapshots
from m22bol.ledger.app import TrialLedger
from m22bol.ledger.store import event_hash

SIZES = {"1k": 1_000, "10k": 10_000, "100k": 100_000, "1M": 1_000_000}


def build(path: Path, n: int) -> TrialLedger:
    start = datetime(2025, 1, 1, 9, tzinfo=UTC)
    ledger = TrialLedger(f"sqlite:///{path}", clock=lambda: start)
    ledger.execute(c.Init(), "admin")
    last = ledger.trial(whole=True).events[-1]
    version, queries, page = 1, 0, []
    for i in range(n):
        version += 1
        envelope = {"originator_id": TRIAL_ID, "originator_version": version,
                    "recorded_at": start + timedelta(minutes=i), "actor": "system",
                    "prev_hash": event_hash(last)}
        if i % 3 == 2:
            event = EditChecksRun(**envelope, day=date(2025, 1, 1) + timedelta(days=i // 3))
        else:
            queries += 1
            event = QueryNumbered(**envelope, query_id=f"Q-{queries}",
                                  subject=f"M22-{queries % 9000:04d}")
        page.append(event)
        last = event
        if len(page) == 5000:
            ledger.save(*page)
            page = []
    ledger.save(*page)
    trial_snapshots.take(ledger, ledger.trial(whole=True))
    return ledger


def timed(work, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def raw_snapshot(path: Path) -> None:
    with sqlite3.connect(path) as db:
        (state,) = db.execute("SELECT state FROM stored_snapshots ORDER BY "
                              "originator_version DESC LIMIT 1").fetchone()
        orjson.loads(state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1k,10k,100k")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print("| trial events | build | trial() (snapshot + tail) | trial(whole=True) | "
          "raw sqlite3: latest snapshot | snapshot bytes | trial()/raw |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="m22bol-trial-") as folder:
        for name in args.sizes.split(","):
            path = Path(folder) / f"trial-{name}.sqlite"
            started = time.perf_counter()
            ledger = build(path, SIZES[name])
            built = time.perf_counter() - started
            assert ledger.trial().version == ledger.trial(whole=True).version
            snap = timed(ledger.trial, args.repeat)
            whole = timed(lambda ledger=ledger: ledger.trial(whole=True), min(args.repeat, 3))
            raw = timed(lambda path=path: raw_snapshot(path), args.repeat)
            with sqlite3.connect(path) as db:
                (size,) = db.execute("SELECT max(length(state)) FROM stored_snapshots").fetchone()
            print(f"| {name} | {built:.1f} s | {snap * 1000:.2f} ms | {whole * 1000:.0f} ms | "
                  f"{raw * 1000:.2f} ms | {size:,} | {snap / raw:.1f} |", flush=True)
            ledger.close()


if __name__ == "__main__":
    main()
