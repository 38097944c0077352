"""Start-up: the wall time of one `m22bol` process per command, on ledgers of each size, against
the interpreter alone (`python -c pass`), and what the command imports (`python -X importtime`).

Each figure is the median of N processes, sizes interleaved round by round so that a change in
the machine's load falls on every size alike; CPU (user + system of the child) is printed beside
the wall time, since on a shared machine it moves much less than the wall. The commands:

- `m22bol --help`
- one entry: `contact S --date D` on a different subject each time (load the trial and the
  subject, decide, save, project the subject);
- `status --json`, `patient S --json`, `endpoints --json` (read models, no replay).

Then one entry phase by phase (a clock read at the seams of its path, in a fresh process each
time: imports, opening, the trial and the subject, the decision, the write, the projection).

Children run with the byte-code cache on (PYTHONDONTWRITEBYTECODE unset), as an installed
command does; a warm-up process per size writes the cache and brings the read models up to date
first (not timed). Run `bench_import.py` first (it builds the ledgers).

    .venv/bin/python bench/bench_startup.py [--sizes 10k,100k,1M] [--repeat 7] [--top 15]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import time
from pathlib import Path

import benchlib as b
from bench_queries import alive_subjects

# As an installed command runs: byte code cached; what the bench remembers of the ledgers kept
# apart from the account's own (benchlib.STATE).
ENV = {**{k: v for k, v in os.environ.items()
          if k not in ("M22BOL_USER", "PYTHONDONTWRITEBYTECODE")},
       "XDG_STATE_HOME": b.STATE}


def run(argv: list[str], *, timeout: float, check: bool = True) -> tuple[float, float, str]:
    """Wall and CPU seconds of one process, and its stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=ENV)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: "
                           f"{done.stderr.strip() or done.stdout.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stderr


def m22bol(args: list[str], path: Path | None) -> list[str]:
    where = ["--ledger", b.url(path), "--user", b.USER] if path else []
    return [b.M22BOL, *where, *args]


# One entry in a fresh process, as `m22bol` runs it (`cli.main.main`), with a clock read at
# the seams of its path: what the time goes to, in process order. The seams are wrapped where
# the caller looks them up (`ledger.app`'s names), so nothing else changes.
PHASES = """
import json, sys, time
marks = [("interpreter started", time.perf_counter(), time.process_time())]
def mark(name):
    marks.append((name, time.perf_counter(), time.process_time()))
def seam(owner, attr, before=None, after=None):
    inner = getattr(owner, attr)
    def wrapped(*args, **kwargs):
        if before:
            mark(before)
        try:
            return inner(*args, **kwargs)
        finally:
            if after:
                mark(after)
    setattr(owner, attr, wrapped)
from m22bol.cli import main as m
m.process_settings()  # as main() does first: the imports below are timed as m22bol makes them
mark("import cli.main (click)")
seam(m.LazyGroup, "get_command", after="import the command's module, build its command")
import m22bol.ledger.app as a
import m22bol.projections as p
mark("import the ledger (eventsourcing, the command and event models, the walk)")
from m22bol.ledger import seen
seam(a.TrialLedger, "__init__", after="open the ledger")
seam(seen, "watch", after="check what this account saw (ledger.seen)")
seam(a.TrialLedger, "trial", after="load the trial (snapshot + tail)")
seam(a.TrialLedger, "patient", after="load the subject (decode its events)")
seam(a, "decide_subject", before="access checks", after="decide (the walk)")
seam(a.paging.PagedWriter, "write", before="edit checks, hash links", after="write the page")
seam(p, "after_save", before="commit", after="project the subject (read models)")
seam(a.TrialLedger, "close", before="print the output", after="close")
sys.argv = ["m22bol", *ARGV]
try:
    m.main()
except SystemExit as stop:
    assert not stop.code, stop.code
print(json.dumps([(name, wall - marks[i][1], cpu - marks[i][2])
                  for i, (name, wall, cpu) in enumerate(marks[1:])]))
"""


def phases(argv: list[str], repeat: int, *, timeout: float) -> str:
    """The median wall and CPU time of each phase of one entry over `repeat` fresh processes
    (CPU: this process's user + system time, which a busy machine inflates far less)."""
    found: dict[str, list[tuple[float, float]]] = {}
    for argv_one in argv[:repeat]:
        code = "import time\nARGV = " + repr(argv_one) + "\n" + PHASES
        done = subprocess.run([b.PYTHON, "-c", code], capture_output=True, text=True,
                              timeout=timeout, env=ENV)
        if done.returncode != 0:
            raise RuntimeError(f"phases of {argv_one}: {done.stderr.strip()[-2000:]}")
        for name, wall, cpu in json.loads(done.stdout.strip().splitlines()[-1]):
            found.setdefault(name, []).append((wall, cpu))

    def ms(times: list[tuple[float, float]], which: int) -> float:
        return b.median_of([t[which] for t in times]) * 1000

    rows = [{"phase": name, "wall": f"{ms(times, 0):.1f} ms", "CPU": f"{ms(times, 1):.1f} ms"}
            for name, times in found.items()]
    rows.append({"phase": "sum of the medians, after the interpreter's own start",
                 "wall": f"{sum(ms(t, 0) for t in found.values()):.0f} ms",
                 "CPU": f"{sum(ms(t, 1) for t in found.values()):.0f} ms"})
    return b.table(rows)


IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def import_top(argv: list[str], top: int, *, timeout: float) -> str:
    """The modules with the largest cumulative import time, as `-X importtime` reports them
    (microseconds; a module's cumulative time includes what it imports)."""
    _, _, stderr = run([b.PYTHON, "-X", "importtime", *argv], timeout=timeout)
    found = []
    for line in stderr.splitlines():
        if m := IMPORT_LINE.match(line):
            found.append((int(m.group(2)), int(m.group(1)), len(m.group(3)) // 2, m.group(4)))
    total = sum(cum for cum, _, depth, _ in found if depth == 0)
    rows = [{"module": name, "depth": depth, "cumulative": f"{cum / 1000:.1f} ms",
             "self": f"{own / 1000:.1f} ms"}
            for cum, own, depth, name in sorted(found, reverse=True)[:top]]
    return f"{len(found)} modules, {total / 1000:.0f} ms in all\n\n" + b.table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=b.DEFAULT_DIR)
    parser.add_argument("--sizes", default="10k,100k,1M")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--top", type=int, default=15, help="modules shown per -X importtime")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    print("machine:", b.machine())
    print("load average before:", os.getloadavg())
    from m22bol.synthetic.generator import DATA_CUTOFF

    paths = b.built_ledgers(args.dir, args.sizes)
    sizes = list(paths)
    events = {size: b.count_events(path) for size, path in paths.items()}
    # One subject per entry: the timed rounds, the phases, the import profile, and the probe.
    subjects = alive_subjects(args.repeat * (len(sizes) + 1) + 2)
    probe = subjects.pop()
    for size, path in paths.items():
        wall, _, _ = run(m22bol(["--json", "status"], path), timeout=args.timeout)
        print(f"{size}: {events[size]:,} events; warm-up (read models caught up) {b.fmt_s(wall)}",
              flush=True)

    commands: dict[str, list[str] | None] = {
        "python -c pass": None,
        "m22bol --help": ["--help"],
        "one entry": [],
        "status --json": ["--json", "status"],
        "patient --json": ["--json", "patient", probe],
        "endpoints --json": ["--json", "endpoints"],
    }
    walls: dict[tuple[str, str], list[float]] = {}
    cpus: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeat):
        for size, path in paths.items():
            for name, cmd in commands.items():
                if cmd is None:
                    argv = [b.PYTHON, "-c", "pass"]
                elif name == "m22bol --help":
                    argv = m22bol(cmd, None)
                elif not cmd:
                    argv = m22bol(["contact", subjects.pop(), "--date",
                                   DATA_CUTOFF.isoformat()], path)
                else:
                    argv = m22bol(cmd, path)
                wall, cpu, _ = run(argv, timeout=args.timeout)
                walls.setdefault((size, name), []).append(wall)
                cpus.setdefault((size, name), []).append(cpu)

    print(f"\n## One process each: median wall (CPU), of {args.repeat}, and wall / "
          "`python -c pass`\n")
    rows = []
    for size in sizes:
        base = b.median_of(walls[(size, "python -c pass")])
        row = {"size": size, "events": f"{events[size]:,}"}
        for name in commands:
            wall = b.median_of(walls[(size, name)])
            cpu = b.median_of(cpus[(size, name)])
            row[name] = f"{b.fmt_s(wall)} ({b.fmt_s(cpu)})" + (
                "" if name == "python -c pass" else f", x{wall / base:.1f}")
        rows.append(row)
    if len(sizes) > 1:
        rows.append({"size": "max/min of medians", "events": "", **{
            name: f"{max(m) / min(m):.2f}" for name in commands
            for m in [[b.median_of(walls[(size, name)]) for size in sizes]]}})
    print(b.table(rows))
    print("\nload average after:", os.getloadavg())

    smallest = paths[sizes[0]]
    print(f"\n## Where one entry's time goes ({sizes[0]}): the median of {args.repeat} "
          "processes, phase by phase\n")
    print(phases([["--ledger", b.url(smallest), "--user", b.USER, "contact", subjects.pop(),
                   "--date", DATA_CUTOFF.isoformat()] for _ in range(args.repeat)],
                 args.repeat, timeout=args.timeout), flush=True)
    for name, argv in (("m22bol --help", m22bol(["--help"], None)),
                       ("one entry", m22bol(["contact", subjects.pop(), "--date",
                                             DATA_CUTOFF.isoformat()], smallest)),
                       ("status --json", m22bol(["--json", "status"], smallest))):
        print(f"\n## `-X importtime`, {name} ({sizes[0]}): the top {args.top} by cumulative "
              "time\n")
        print(import_top(argv, args.top, timeout=args.timeout), flush=True)


if __name__ == "__main__":
    main()
