"""The first command of a day: the timed edit checks swept over the subjects the summary rows
say are due (`projections.due`) against every subject (as before `checks_due`), with one
entry on a day already swept and plain sqlite3 inserting one row in the same run.

Each size's bench ledger is copied first (this build's read models differ: they are rebuilt
on the copy, not timed). Each round takes two new days, one per sweep, so each timed command
is the first of its day; the clock is the ledger's own (as the tests set it), since the
command line takes the real day. Timed inside the process (start-up excluded): wall and CPU.

    .venv/bin/python bench/bench_sweep.py [--sizes 10k,100k] [--repeat 3] [--dir /tmp/x]
"""

from __future__ import annotations

import argparse
import time
from datetime import date, timedelta
from pathlib import Path

import benchlib as b
from bench_queries import alive_subjects

FIRST_DAY = date(2026, 11, 29)  # the bench ledgers were built (and swept) on 28 November

CATCH_UP = """
from m22bol.ledger.app import TrialLedger
from m22bol.projections.runner import catch_up
ledger = TrialLedger({url!r})
catch_up(ledger)
ledger.close()
RESULT = {{}}
"""

ENTRY = """
import time
from datetime import UTC, datetime
from m22bol.domain.commands import parse_command
from m22bol.ledger.app import TrialLedger
from m22bol.projections import after_save, due_subjects

day = datetime.fromisoformat({day!r}).replace(hour=9, tzinfo=UTC)
swept = {{}}
def counted(ledger, today):
    due = due_subjects(ledger, today)
    swept["subjects"] = "all" if due is None else len(due)
    return due
hook = counted if {selective!r} else None
ledger = TrialLedger({url!r}, clock=lambda: day, after_save=[after_save], due_subjects=hook)
ledger.subjects()  # warm: the store is open before the clock starts
times = []
for subject in {subjects!r}:
    wall, cpu = time.perf_counter(), time.process_time()
    ledger.execute(parse_command("contact", {{"subject": subject, "date": {date!r}}}), {user!r})
    times.append((time.perf_counter() - wall, time.process_time() - cpu))
ledger.close()
RESULT = {{"first": times[0], "next": times[1], "swept": swept.get("subjects", "all")}}
"""

RAW = """
import sqlite3, time, uuid
con = sqlite3.connect({path!r})
con.execute('PRAGMA journal_mode=WAL')
con.execute('CREATE TABLE IF NOT EXISTS t (a TEXT, b INTEGER, c TEXT, d BLOB, PRIMARY KEY (a, b))')
wall, cpu = time.perf_counter(), time.process_time()
con.execute('INSERT INTO t VALUES (?, 1, ?, ?)', (str(uuid.uuid4()), 'topic', b'{{}}'))
con.commit()
RESULT = {{"first": (time.perf_counter() - wall, time.process_time() - cpu)}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/sweep-bench"))
    parser.add_argument("--source", type=Path, default=b.DEFAULT_DIR)
    parser.add_argument("--sizes", default="10k,100k")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    print("machine:", b.machine())
    from m22bol.synthetic.generator import DATA_CUTOFF

    args.dir.mkdir(parents=True, exist_ok=True)
    subjects = alive_subjects(4 * args.repeat)
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    swept: dict[tuple[str, str], list] = {}
    for size, source in b.built_ledgers(args.source, args.sizes).items():
        path = args.dir / f"sweep-{size}.sqlite"
        if not path.exists():
            b.copy(source, path)
        started = time.perf_counter()
        b.child(CATCH_UP.format(url=b.url(path)), timeout=args.timeout)
        print(f"{size}: read models caught up in {b.fmt_s(time.perf_counter() - started)}",
              flush=True)
        pool = list(subjects)
        for r in range(args.repeat):
            for k, (name, selective) in enumerate((("selective", True), ("full", False))):
                # The days after the ledgers were built (their last sweep), one new day per
                # timed command: subjects fall due on some of them, as in a running trial.
                day = (FIRST_DAY + timedelta(days=2 * r + k)).isoformat()
                out = b.child(ENTRY.format(day=day, selective=selective, url=b.url(path),
                                           subjects=[pool.pop(), pool.pop()],
                                           date=DATA_CUTOFF.isoformat(), user=b.USER),
                              timeout=args.timeout)
                times.setdefault((size, f"first of the day, {name} sweep"), []).append(
                    out["first"])
                swept.setdefault((size, f"first of the day, {name} sweep"), []).append(
                    out["swept"])
                times.setdefault((size, "next entry the same day"), []).append(out["next"])
            raw = b.child(RAW.format(path=str(args.dir / "baseline.sqlite")), timeout=60)
            times.setdefault((size, "sqlite3 inserting one row"), []).append(raw["first"])
    rows = []
    for (size, name), found in times.items():
        wall = b.median_of([w for w, _ in found])
        cpu = b.median_of([c for _, c in found])
        counts = ", ".join(map(str, swept.get((size, name), [])))
        rows.append({"size": size, "command": name, "subjects swept": counts,
                     "each run": ", ".join(b.fmt_s(w) for w, _ in found),
                     "wall (median)": b.fmt_s(wall), "CPU user+sys (median)": b.fmt_s(cpu),
                     "runs": len(found)})
    print(f"\n## The first command of a day (median of {args.repeat}, in-process)\n")
    print(b.table(rows), flush=True)


if __name__ == "__main__":
    main()
