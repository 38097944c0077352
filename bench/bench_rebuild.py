"""Full projection rebuild: events/s and peak memory, against plain sqlite3 reading and decoding
the same rows.

Each measurement runs in its own process, so its peak resident memory is its own:
- `projections.runner.rebuild` (drop the read models, project the whole log from zero);
- the ledger reading and decoding every event (`TrialLedger.stored_events`: rows -> pydantic);
- the baseline: sqlite3 reading every row and `orjson.loads` of its state.

Run `bench_import.py` first (it builds the ledgers).

    .venv/bin/python bench/bench_rebuild.py [--sizes 10k,100k,1M] [--dir /tmp/m22bol-bench]
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import benchlib as b

REBUILD = """
import time
from m22bol.ledger.app import TrialLedger
from m22bol.projections.runner import rebuild
ledger = TrialLedger({url!r})
started = time.perf_counter()
rebuild(ledger)
RESULT = {{"seconds": time.perf_counter() - started}}
ledger.close()
"""

LEDGER_READ = """
import time
from m22bol.ledger.app import TrialLedger
ledger = TrialLedger({url!r})
started = time.perf_counter()
n = sum(1 for _ in ledger.stored_events())
RESULT = {{"seconds": time.perf_counter() - started, "events": n}}
"""

RAW_READ = """
import sqlite3, time, orjson
con = sqlite3.connect({path!r})
started = time.perf_counter()
n = 0
for (state,) in con.execute("SELECT state FROM stored_events ORDER BY rowid"):
    orjson.loads(state)
    n += 1
RESULT = {{"seconds": time.perf_counter() - started, "events": n}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=b.DEFAULT_DIR)
    parser.add_argument("--sizes", default="10k,100k,1M")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    print("machine:", b.machine())
    has_rebuild = importlib.util.find_spec("m22bol.projections.runner") is not None
    rows = []
    for size in args.sizes.split(","):
        path = b.ledger_path(args.dir, size)
        if not path.exists():
            print(f"{path} missing: run bench/bench_import.py first")
            continue
        events = b.count_events(path)
        raw = b.child(RAW_READ.format(path=str(path)), timeout=args.timeout)
        read = b.child(LEDGER_READ.format(url=b.url(path)), timeout=args.timeout)
        row = {"size": size, "events": f"{events:,}",
               "raw read+decode": f"{b.rate(raw['events'], raw['seconds'])}, "
                                  f"{raw['peak_rss_mib']:.0f} MiB",
               "ledger read+decode": f"{b.rate(read['events'], read['seconds'])}, "
                                     f"{read['peak_rss_mib']:.0f} MiB"}
        if has_rebuild:
            done = b.child(REBUILD.format(url=b.url(path)), timeout=args.timeout)
            row.update({
                "rebuild": f"{b.fmt_s(done['seconds'])}, {b.rate(events, done['seconds'])}",
                "rebuild peak RSS": f"{done['peak_rss_mib']:.0f} MiB",
                "rebuild/raw": b.ratio(events, done["seconds"], raw["events"], raw["seconds"]),
            })
        else:
            row["rebuild"] = "TO FILL: projections.runner.rebuild does not exist yet"
        rows.append(row)
        print(b.table([row]), flush=True)
    print("\n## Projection rebuild vs raw read-and-decode\n")
    print(b.table(rows))


if __name__ == "__main__":
    main()
