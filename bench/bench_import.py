"""Bulk import: the ledger against plain sqlite3 inserting the same bytes.

Builds the benchmark ledgers on the way (10k, 100k, 1M events) and measures, in the same run:

1. `m22bol import FILE` of the demo's commands into a new ledger (rules, hash chain, projections,
   one transaction): what a site's batch upload costs. This ledger is `ledger-10k.sqlite`.
2. Writing decided events (`TrialLedger.save`: pydantic -> canonical JSON -> native recorder,
   one transaction per batch), which is how the 100k and 1M ledgers are filled: copies of the
   10k trial's subjects under new ids, hash chains recomputed (the copying is not timed).
3. The baseline: plain sqlite3 inserting the same canonical bytes, read back from the ledger,
   into a table with the same schema and unique index, one transaction per same batch.
4. With `--memory 10k,100k`: the peak resident memory of `m22bol import` (its own process,
   from `wait4`) of files of that many lines (the demo's commands, then copies of its subjects
   under new ids), each into a new ledger: flat in the file's size is what an import must be.

    .venv/bin/python bench/bench_import.py [--sizes 10k,100k,1M] [--dir /tmp/m22bol-bench]
    .venv/bin/python bench/bench_import.py --memory 10k,100k   # only the memory figures
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import sqlite3
import subprocess
import time
from pathlib import Path

import benchlib as b

SCHEMA = ("CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, "
          "topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))")


def raw_insert(src: Path, after: int, batch: int, scratch: Path) -> tuple[int, float, float]:
    """Insert rows `after`+1.. of `src` into a fresh plain table; (rows, seconds inserting,
    CPU seconds inserting)."""
    b.remove(scratch)
    out = sqlite3.connect(scratch, isolation_level=None)
    # The same journal mode the eventsourcing SQLite recorder sets.
    out.execute("PRAGMA journal_mode=WAL")
    out.execute(SCHEMA)
    read = sqlite3.connect(src)
    rows = spent = cpu = 0
    last = after
    while True:
        page = read.execute("SELECT rowid, originator_id, originator_version, topic, state "
                            "FROM stored_events WHERE rowid > ? ORDER BY rowid LIMIT ?",
                            (last, batch)).fetchall()
        if not page:
            break
        last = page[-1][0]
        values = [r[1:] for r in page]
        started, used = time.perf_counter(), time.process_time()
        out.execute("BEGIN")
        out.executemany("INSERT INTO stored_events VALUES (?, ?, ?, ?)", values)
        out.execute("COMMIT")
        spent += time.perf_counter() - started
        cpu += time.process_time() - used
        rows += len(values)
    read.close()
    out.close()
    b.remove(scratch)
    return rows, spent, cpu


def import_through_rules(folder: Path, events: int, timeout: float) -> dict:
    path = b.ledger_path(folder, "10k")
    b.remove(path)
    jsonl = folder / "demo-10k.jsonl"
    lines = b.write_jsonl(b.demo_subjects(events), jsonl)
    b.cli(["init", "--synthetic"], path, timeout=60)
    b.cli(["grant", b.USER, "data-manager"], path, timeout=60)
    used = children_cpu()
    seconds, _ = b.cli(["import", str(jsonl)], path, timeout=timeout)
    cpu = children_cpu() - used
    total = b.count_events(path)
    rows, raw, raw_cpu = raw_insert(path, 0, 5000, folder / "raw.sqlite")
    return {"size": "10k", "events": total, "imported lines": lines,
            "m22bol import (rules)": f"{b.fmt_s(seconds)}, {b.rate(lines, seconds)}",
            "raw sqlite3 insert": f"{b.fmt_s(raw)}, {b.rate(rows, raw)}",
            "ledger/raw": b.ratio(lines, seconds, rows, raw),
            "CPU import / raw": f"{b.fmt_s(cpu)} / {b.fmt_s(raw_cpu)}",
            "ledger/raw CPU": b.ratio(lines, cpu, rows, raw_cpu)}


def children_cpu() -> float:
    """User + system CPU seconds of the waited-for child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def save_decided(src_streams, copies: range, path: Path, batch: int
                 ) -> tuple[int, float, float]:
    """Append copies of the subjects to the ledger at `path` through `TrialLedger.save`;
    (events, seconds saving, CPU seconds saving)."""
    from m22bol.ledger.app import TrialLedger

    ledger = TrialLedger(b.url(path))
    pending: list = []
    saved = spent = cpu = 0

    def flush() -> None:
        nonlocal saved, spent, cpu
        started, used = time.perf_counter(), time.process_time()
        ledger.save(*pending)
        spent += time.perf_counter() - started
        cpu += time.process_time() - used
        saved += len(pending)
        pending.clear()

    try:
        for events in b.replicas(src_streams, copies):
            pending.extend(events)
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
    finally:
        ledger.close()
    return saved, spent, cpu


def saved_row(size: str, saved: int, spent: float, cpu: float, raw_rows: int, raw: float,
              raw_cpu: float) -> dict:
    """One row of the decided-events table: wall and CPU time, each against raw sqlite3's.
    CPU time is the steadier figure on a shared machine (the commits' fsync is in wall)."""
    return {"size": size, "events written": saved,
            "TrialLedger.save": f"{b.fmt_s(spent)}, {b.rate(saved, spent)}",
            "raw sqlite3": f"{b.fmt_s(raw)}, {b.rate(raw_rows, raw)}",
            "ledger/raw": b.ratio(saved, spent, raw_rows, raw),
            "CPU save / raw": f"{b.fmt_s(cpu)} / {b.fmt_s(raw_cpu)}",
            "ledger/raw CPU": b.ratio(saved, cpu, raw_rows, raw_cpu)}


def copied_lines(template: Path, lines: int, out: Path) -> int:
    """`lines` records: the template's, then copies of them with every subject renamed
    (`M22-001` -> `M22-001-c002`), so each copy is a new subject with the same story."""
    source = template.read_bytes().splitlines(keepends=True)
    subject = re.compile(rb'"(M22-\d+)(["#])')
    written = 0
    with open(out, "wb") as handle:
        copy = 1
        while written < lines:
            tag = b"" if copy == 1 else b"-c%03d" % copy
            for line in source[:lines - written]:
                handle.write(subject.sub(rb'"\1' + tag + rb'\2', line))
            written += min(len(source), lines - written)
            copy += 1
    return written


def peak_import(folder: Path, size: str, timeout: float) -> dict:
    """`m22bol import` of a file of `size` lines into a new ledger: wall time and the peak
    resident memory of the importing process itself."""
    template = folder / "demo-10k.jsonl"
    if not template.exists():
        b.write_jsonl(b.demo_subjects(b.SIZES["10k"]), template)
    jsonl = folder / f"import-{size}.jsonl"
    lines = copied_lines(template, b.SIZES[size], jsonl)
    path = folder / f"import-{size}.sqlite"
    b.remove(path)
    b.cli(["init", "--synthetic"], path, timeout=60)
    b.cli(["grant", b.USER, "data-manager"], path, timeout=60)
    env = {**{k: v for k, v in os.environ.items() if k != "M22BOL_USER"},
           "XDG_STATE_HOME": b.STATE}
    started = time.perf_counter()
    process = subprocess.Popen([b.M22BOL, "--ledger", b.url(path), "--user", b.USER,
                                "import", str(jsonl)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        _, status, usage = os.wait4(process.pid, 0)
    except BaseException:
        process.kill()
        raise
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"import of {jsonl} failed: {process.stderr.read().decode()[-2000:]}")
    process.returncode = os.waitstatus_to_exitcode(status)
    events = b.count_events(path)
    b.remove(path)
    return {"lines": f"{lines:,}", "events": f"{events:,}",
            "m22bol import": f"{b.fmt_s(seconds)}, {b.rate(lines, seconds)}",
            "peak RSS": f"{usage.ru_maxrss / 1024:.0f} MiB"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=b.DEFAULT_DIR)
    parser.add_argument("--sizes", default="10k,100k,1M")
    parser.add_argument("--batch", type=int, default=5000, help="events per transaction")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--memory", default="",
                        help="only measure the import's peak memory at these sizes (10k,100k)")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    sizes = args.sizes.split(",")
    print("machine:", b.machine())
    if args.memory:
        print("\n## Peak memory of `m22bol import` (one process per file)\n", flush=True)
        print(b.table([peak_import(args.dir, size, args.timeout)
                       for size in args.memory.split(",")]))
        return

    started = time.perf_counter()
    first = import_through_rules(args.dir, b.SIZES["10k"], args.timeout)
    print("\n## Import through the rules (`m22bol import`, one transaction)\n")
    print(b.table([first]), flush=True)

    template = b.ledger_path(args.dir, "10k")
    streams = b.subject_streams(template)
    per_copy = sum(len(s) for s in streams)
    rows = []
    # The decided-event path at 10k too: the same events saved again into a new ledger.
    scratch = args.dir / "resave.sqlite"
    b.remove(scratch)
    b.cli(["init", "--synthetic"], scratch, timeout=60)
    saved, spent, cpu = save_decided(streams, range(1), scratch, args.batch)
    rows.append(saved_row("10k", saved, spent, cpu,
                          *raw_insert(scratch, 1, args.batch, args.dir / "raw.sqlite")))
    b.remove(scratch)
    for size in sizes:
        if size == "10k":
            continue
        path = b.ledger_path(args.dir, size)
        b.copy(template, path)
        have = b.count_events(path)
        copies = range(1, -(-(b.SIZES[size] - have) // per_copy) + 1)
        saved, spent, cpu = save_decided(streams, copies, path, args.batch)
        rows.append(saved_row(size, saved, spent, cpu,
                              *raw_insert(path, have, args.batch, args.dir / "raw.sqlite")))
        # Saved without the after-save hook: the read models are brought up to date here,
        # once, by a rebuild (workers on every core), rather than by the first command each
        # later script runs on a copy (at 1M that catch-up took a quarter of an hour).
        took, _ = b.cli(["projections", "rebuild"], path, timeout=args.timeout)
        print(f"built {path} ({b.count_events(path):,} events; read models rebuilt in "
              f"{b.fmt_s(took)})", flush=True)
    print("\n## Writing decided events (`TrialLedger.save`) vs raw sqlite3, "
          f"{args.batch} events per transaction\n")
    print(b.table(rows))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
