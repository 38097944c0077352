"""Full projection rebuild: events/s and peak memory, against plain sqlite3 reading and decoding
the same rows.

Each measurement runs in its own process, so its peak resident memory is its own:
- `projections.runner.rebuild` (empty the read models, project the whole log from zero; on a
  large ledger deriving runs on worker processes, whose peak memory is shown apart);
- the ledger reading and decoding every event (`TrialLedger.stored_events`: rows -> pydantic);
- the baseline: sqlite3 reading every row and `orjson.loads` of its state.

The CPU seconds of the rebuild's own process and of its workers are shown apart: on a shared
machine the wall time says more about the other users than about the rebuild (Linux puts all
processes of one session in one scheduling group, so workers share that group's part of the
cores), while the parent's CPU time is the rebuild's critical path on free cores.

Run `bench_import.py` first (it builds the ledgers).

    .venv/bin/python bench/bench_rebuild.py [--sizes 10k,100k,1M] [--dir /tmp/m22bol-bench]
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import benchlib as b

REBUILD = """
import resource, time
from m22bol.ledger.app import TrialLedger
from m22bol.projections import rebuilding
from m22bol.projections.runner import rebuild
ledger = TrialLedger({url!r})
workers = rebuilding.workers_for(ledger.recorder.max_notification_id() or 0)
def cpu(who):
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime
started, own = time.perf_counter(), cpu(resource.RUSAGE_SELF)
rebuild(ledger)
RESULT = {{"seconds": time.perf_counter() - started, "workers": workers,
          "cpu": cpu(resource.RUSAGE_SELF) - own, "worker_cpu": cpu(resource.RUSAGE_CHILDREN),
          "worker_peak_rss_mib": round(
              resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=b.DEFAULT_DIR)
    parser.add_argument("--sizes", default="10k,100k,1M")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    print("machine:", b.machine())
    has_rebuild = importlib.util.find_spec("m22bol.projections.runner") is not None
    rows = []
    for size, path in b.built_ledgers(args.dir, args.sizes).items():
        events = b.count_events(path)
        raw = b.child(b.RAW_DECODE.format(path=str(path)), timeout=args.timeout)
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
                "workers": done["workers"],
                "CPU: parent, workers": f"{done['cpu']:.1f} s, {done['worker_cpu']:.1f} s",
                # What a loaded machine's wall time hides: events per second of CPU spent.
                "events/s of CPU": b.rate(events, done["cpu"] + done["worker_cpu"]),
                "rebuild peak RSS": f"{done['peak_rss_mib']:.0f} MiB"
                                    + (f" (+ {done['worker_peak_rss_mib']:.0f} MiB a worker)"
                                       if done["workers"] else ""),
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
