"""The present's three queries (`status`, `patient S`, `endpoints`, all `--json`), one process
each, for two installs side by side (e.g. main's `.venv/bin/m22bol` and this branch's), round
after round so that load falls on both alike: median wall and CPU (user + system of the child),
beside `python -c pass`. Then, in this process, what each answer costs without start-up.

    .venv/bin/python bench/bench_present.py --before /work/main/.venv/bin/m22bol \
        [--sizes 10k,100k,1M] [--repeat 5] [--dir /tmp/m22bol-bench]

The ledgers are read, never written, but the first command on lagging read models brings
them up to date: copy the bench ledgers into a folder of your own first.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import time
from pathlib import Path

import benchlib as b

SUBJECT = "M22-044"  # a subject of the 10k trial, present at every size
IN_PROCESS = """
import time
from m22bol.ledger.readonly import ReadOnlyLedger
from m22bol.projections.present import PresentReader
ledger = ReadOnlyLedger({url!r})
reader = PresentReader(ledger, None, lambda: None)
RESULT = {{}}
for name, ask in (("status", reader.status), ("patient", lambda: reader.patient({subject!r})),
                  ("endpoints", reader.endpoints)):
    ask()  # the first asks import what the answer needs
    started = time.process_time()
    ask()
    RESULT[name] = time.process_time() - started
ledger.close()
"""


def run(argv: list[str]) -> tuple[float, float]:
    env = {**{k: v for k, v in os.environ.items()
              if k not in ("M22BOL_USER", "PYTHONDONTWRITEBYTECODE")}, "XDG_STATE_HOME": b.STATE}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env, timeout=3600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="the m22bol command to compare with")
    parser.add_argument("--after", default=b.M22BOL)
    parser.add_argument("--dir", type=Path, default=b.DEFAULT_DIR)
    parser.add_argument("--sizes", default="10k,100k,1M")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print("machine:", b.machine())
    print("load average before:", os.getloadavg())
    paths = b.built_ledgers(args.dir, args.sizes)
    queries = {"status": ["--json", "status"], "patient": ["--json", "patient", SUBJECT],
               "endpoints": ["--json", "endpoints"]}
    installs = {"before": args.before, "after": args.after}
    found: dict[tuple, list[tuple[float, float]]] = {}
    for _ in range(args.repeat):
        for size, path in paths.items():
            found.setdefault((size, "python -c pass"), []).append(
                run([b.PYTHON, "-c", "pass"]))
            for label, command in installs.items():
                for name, query in queries.items():
                    found.setdefault((size, label, name), []).append(
                        run([command, "--ledger", b.url(path), *query]))
    print("load average after:", os.getloadavg())

    def cell(runs: list[tuple[float, float]]) -> str:
        return (f"{b.fmt_s(b.median_of([w for w, _ in runs]))} "
                f"({b.fmt_s(b.median_of([c for _, c in runs]))})")

    print(f"\n## One process each: median wall (CPU) of {args.repeat}\n")
    print(b.table([{"size": size, "": label,
                    "python -c pass": cell(found[(size, "python -c pass")]),
                    **{f"{name} --json": cell(found[(size, label, name)]) for name in queries}}
                   for size in paths for label in installs]))
    print("\n## In process, start-up excluded (`after` only): CPU of one answer\n")
    rows = []
    for size, path in paths.items():
        spent = b.child(IN_PROCESS.format(url=b.url(path), subject=SUBJECT), timeout=3600)
        rows.append({"size": size, **{name: f"{spent[name] * 1000:.1f} ms" for name in queries}})
    print(b.table(rows))


if __name__ == "__main__":
    main()
