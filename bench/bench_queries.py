"""Wall time of `m22bol` processes on the benchmark ledgers (process start included), with
plain sqlite3 processes doing the least comparable work as the baseline:

- one entry (`contact`), on different subjects, against a Python process that opens a SQLite
  file and inserts one row;
- `status --json`, `endpoints --json`, `patient S --json`, against a process that opens the
  ledger and counts rows by index;
- `--known-at` replays (`patient`, `endpoints`), against raw read-and-decode of every row;
- `audit verify` events/s, against raw read + SHA-256 of every row.

The read models are brought up to date first (not timed), so an entry pays only for itself.
Run `bench_import.py` first (it builds the ledgers); entries add a few contacts to them.

    .venv/bin/python bench/bench_queries.py [--sizes 10k,100k,1M] [--repeat 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import benchlib as b

CATCH_UP = """
import time
from m22bol.ledger.app import TrialLedger
from m22bol.projections.runner import catch_up
ledger = TrialLedger({url!r})
started = time.perf_counter()
catch_up(ledger)
RESULT = {{"seconds": time.perf_counter() - started}}
ledger.close()
"""

RAW_HASH = """
import hashlib, sqlite3, time
con = sqlite3.connect({path!r})
started = time.perf_counter()
n = 0
for (state,) in con.execute("SELECT state FROM stored_events ORDER BY rowid"):
    hashlib.sha256(state).hexdigest()
    n += 1
RESULT = {{"seconds": time.perf_counter() - started, "events": n}}
"""


def process(code: str, *, timeout: float) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=timeout,
                   capture_output=True)
    return time.perf_counter() - started


def alive_subjects(n: int) -> list[str]:
    """Subjects of the 10k trial (present in every size) still followed at the data cut-off."""
    from m22bol.domain import commands as c

    found = []
    for s in b.demo_subjects(b.SIZES["10k"]):
        if (any(isinstance(x, c.Enrol) for x in s.commands)
                and not any(isinstance(x, (c.Death, c.Withdraw)) for x in s.commands)):
            found.append(s.subject)
    return found[-n:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=b.DEFAULT_DIR)
    parser.add_argument("--sizes", default="10k,100k,1M")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds allowed to one process; slower ones are reported so")
    parser.add_argument("--quick", action="store_true",
                        help="only the per-process timings, not the whole-ledger replays")
    args = parser.parse_args()
    print("machine:", b.machine())
    from m22bol.synthetic.generator import DATA_CUTOFF

    paths = b.built_ledgers(args.dir, args.sizes)
    sizes = list(paths)
    events = {size: b.count_events(path) for size, path in paths.items()}
    subjects = alive_subjects(args.repeat * len(sizes) + 1)
    probe = subjects.pop()
    now = datetime.now(UTC).isoformat(timespec="seconds")
    scratch = args.dir / "baseline.sqlite"
    b.remove(scratch)
    insert_one = (f"import sqlite3; con = sqlite3.connect({str(scratch)!r}); "
                  "con.execute('PRAGMA journal_mode=WAL'); "
                  "con.execute('CREATE TABLE IF NOT EXISTS t (a TEXT, b INTEGER, c TEXT, d BLOB, "
                  "PRIMARY KEY (a, b))'); "
                  "import uuid; con.execute('INSERT INTO t VALUES (?, 1, ?, ?)', "
                  "(str(uuid.uuid4()), 'topic', b'{}')); con.commit()")
    for size, path in paths.items():
        caught = b.child(CATCH_UP.format(url=b.url(path)), timeout=args.timeout)
        print(f"{size}: {events[size]:,} events; read models caught up in "
              f"{b.fmt_s(caught['seconds'])}", flush=True)

    # Round after round over the sizes, so that a change in the machine's load between
    # measurements falls on every size alike: the question is whether time grows with size.
    cheap = {
        "one entry": None,
        "m22bol --help": ["--help"],
        "status --json": ["--json", "status"],
        "patient --json": ["--json", "patient", probe],
        "patient --known-at": ["--json", "patient", probe, "--known-at", now],
    }
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeat):
        for size, path in paths.items():
            for name, cmd in cheap.items():
                if cmd is None:
                    cmd = ["contact", subjects.pop(), "--date", DATA_CUTOFF.isoformat()]
                times.setdefault((size, name), []).append(
                    b.cli(cmd, path, timeout=args.timeout)[0])
            times.setdefault((size, "sqlite3 inserting one row"), []).append(
                process(insert_one, timeout=60))
            times.setdefault((size, "sqlite3 counting rows"), []).append(process(
                f"import sqlite3; sqlite3.connect({str(path)!r}).execute("
                "'SELECT count(*) FROM stored_events').fetchone()", timeout=600))
    names = [*cheap, "sqlite3 inserting one row", "sqlite3 counting rows"]
    rows = [{"size": size, "events": f"{events[size]:,}",
             **{name: b.fmt_s(b.median_of(times[(size, name)])) for name in names}}
            for size in sizes]
    rows.append({"size": "max/min of medians", "events": "", **{
        name: f"{max(m) / min(m):.2f}" for name in names
        for m in [[b.median_of(times[(size, name)]) for size in sizes]]}})
    print(f"\n## One process each (median of {args.repeat}, process start included)\n")
    print(b.table(rows), flush=True)
    if args.quick:
        b.remove(scratch)
        return

    heavy = []
    for size, path in paths.items():
        row: dict[str, str] = {"size": size}
        for name, cmd in (("endpoints --json", ["--json", "endpoints"]),
                          ("endpoints --known-at", ["--json", "endpoints", "--known-at", now])):
            try:
                seconds = b.cli(cmd, path, timeout=args.timeout)[0]
                row[name] = f"{b.fmt_s(seconds)}, {b.rate(events[size], seconds)}"
            except subprocess.TimeoutExpired:
                row[name] = f"> {args.timeout:.0f} s"
        raw = b.child(b.RAW_DECODE.format(path=str(path)), timeout=args.timeout)
        row["raw read+decode"] = b.rate(raw["events"], raw["seconds"])
        try:
            seconds, done = b.cli(["--json", "audit", "verify"], path, timeout=args.timeout,
                                  check=False)
            verdict = "ok" if done.returncode == 0 else f"exit {done.returncode}"
            row["audit verify"] = (f"{b.fmt_s(seconds)}, {b.rate(events[size], seconds)} "
                                   f"({verdict})")
        except subprocess.TimeoutExpired:
            row["audit verify"] = f"> {args.timeout:.0f} s"
        hashed = b.child(RAW_HASH.format(path=str(path)), timeout=args.timeout)
        row["raw read+SHA-256"] = b.rate(hashed["events"], hashed["seconds"])
        heavy.append(row)
        print(b.table([row]), flush=True)
    b.remove(scratch)
    print(f"\n## Whole-ledger work (`--known-at {now}`: everything known)\n")
    print(b.table(heavy))


if __name__ == "__main__":
    main()
