"""Wall and CPU time of `m22bol report` on the demo trial (400 patients; 5,000 with `--large`),
with plain sqlite3 reading and decoding the same ledger's events as the baseline.

- `report` (the present): read from the read models, as `endpoints` and `patient` read it;
- `report --cutoff D`: one replay of every event, walked through the rules up to D;
- raw: a Python process that opens the file and `orjson.loads` every stored event.

Each figure is a whole process (start-up included), the median of `--repeat` runs; CPU is the
process's user + system time. The ledgers are built once with `m22bol demo --patients N
--seed 1` under `--dir` (about 2 min for 400; 5,000 takes 25 min or more), and kept.

    .venv/bin/python bench/bench_report.py [--large] [--repeat 3] [--dir /tmp/m22bol-bench]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import benchlib as b

CUTOFF = "2026-03-01"

RAW_DECODE = """
import sqlite3, orjson
con = sqlite3.connect({path!r})
n = 0
for (state,) in con.execute("SELECT state FROM stored_events ORDER BY rowid"):
    orjson.loads(state)
    n += 1
print(n)
"""


def timed(command: list[str], *, timeout: float) -> tuple[float, float, str]:
    """(wall, CPU of the child, its stdout) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**{k: v for k, v in os.environ.items() if k != "M22BOL_USER"},
                               "XDG_STATE_HOME": b.STATE})
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: "
                           f"{done.stderr.strip() or done.stdout.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def median(runs: list[tuple[float, float, str]]) -> tuple[float, float]:
    return (b.median_of([r[0] for r in runs]), b.median_of([r[1] for r in runs]))


def demo_ledger(folder: Path, patients: int, timeout: float) -> Path:
    path = folder / f"demo-{patients}.sqlite"
    if not path.exists():
        print(f"building the {patients}-patient demo ledger (once) ...", file=sys.stderr)
        partial = folder / f"demo-{patients}.partial.sqlite"
        b.remove(partial)
        timed([b.M22BOL, "--ledger", b.url(partial), "demo", "--patients", str(patients),
               "--seed", "1"], timeout=timeout)
        b.copy(partial, path)
        b.remove(partial)
    return path


def measure(path: Path, repeat: int, timeout: float) -> list[dict[str, str]]:
    out = Path(tempfile.mkdtemp(prefix="m22bol-bench-report-"))
    report = [b.M22BOL, "--ledger", b.url(path), "report", "--out", str(out)]
    try:
        timed(report, timeout=timeout)  # catches the read models up, warms the file cache
        present = median([timed(report, timeout=timeout) for _ in range(repeat)])
        replay = median([timed([*report, "--cutoff", CUTOFF], timeout=timeout)
                         for _ in range(repeat)])
        raw_runs = [timed([b.PYTHON, "-c", RAW_DECODE.format(path=str(path))], timeout=timeout)
                    for _ in range(repeat)]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    raw = median(raw_runs)
    events = int(raw_runs[0][2].strip())
    rows = []
    for name, (wall, cpu) in (("report", present), (f"report --cutoff {CUTOFF}", replay),
                              ("raw sqlite3 read + orjson.loads", raw)):
        rows.append({"command": name, "events": f"{events:,}", "wall": b.fmt_s(wall),
                     "CPU": b.fmt_s(cpu),
                     # Under load the wall clock measures the neighbours; CPU does not.
                     "wall / raw": f"{wall / raw[0]:.1f}" if raw[0] else "-",
                     "CPU / raw": f"{cpu / raw[1]:.1f}" if raw[1] else "-"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="also 5,000 patients")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=b.DEFAULT_DIR)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"# m22bol report, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print(" | ".join(f"{k}: {v}" for k, v in b.machine().items()) + "\n")
    for patients in (400, 5000) if args.large else (400,):
        path = demo_ledger(args.dir, patients, args.timeout)
        print(f"## {patients} patients ({path.name})\n")
        print(b.table(measure(path, args.repeat, args.timeout)) + "\n")


if __name__ == "__main__":
    main()
