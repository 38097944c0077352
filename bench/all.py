"""Every row of the speed table in one command: the benchmark scripts in order, each printing
its figures and its ratio against raw sqlite3 on the same data, all written to one file.

    .venv/bin/python bench/all.py [--sizes 10k,100k,1M] [--dir /tmp/m22bol-bench] [--out FILE]

`bench_import.py` runs first because it builds the ledgers the others read. A script that
fails is reported and the rest still run: one broken figure should not hide the others.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import benchlib as b

HERE = Path(__file__).resolve().parent
# (script, the rows it answers, the shared options it takes)
SCRIPTS = [
    ("bench_import.py", "import through the rules; writing decided events; import memory",
     ("dir", "sizes")),
    ("bench_rebuild.py", "projection rebuild", ("dir", "sizes")),
    ("bench_verify.py", "audit verify", ("dir", "sizes")),
    ("bench_queries.py", "one entry; status, patient, endpoints --json", ("dir", "sizes")),
    ("bench_startup.py", "start-up per command, import times", ("dir", "sizes")),
    ("bench_trial_load.py", "loading the trial: snapshot against the whole chain", ()),
    ("bench_report.py", "report for 400 patients", ("dir",)),
    # Last, being the longest: a 1M-line import through the rules runs for many minutes.
    ("bench_import.py", "import peak memory, one process per file", ("dir", "memory")),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=b.DEFAULT_DIR)
    parser.add_argument("--sizes", default="10k,100k,1M")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the figures (default: DIR/figures-DATE.md)")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    out = args.out or args.dir / f"figures-{datetime.now(UTC):%Y-%m-%dT%H%M}.md"
    failed = []
    with out.open("w") as sink:
        sink.write(f"# m22bol benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n")
        sink.write("".join(f"- {k}: {v}\n" for k, v in b.machine().items()) + "\n")
        for script, rows, options in SCRIPTS:
            command = [sys.executable, str(HERE / script)]
            if "dir" in options:
                command += ["--dir", str(args.dir)]
            if "sizes" in options:
                command += ["--sizes", args.sizes]
            if "memory" in options:
                command += ["--memory", args.sizes]
            header = f"\n## {script} ({rows})\n\n"
            print(header, flush=True)
            sink.write(header)
            started = time.perf_counter()
            with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
                assert child.stdout is not None
                for line in child.stdout:  # shown as it comes: some scripts run for minutes
                    print(line, end="", flush=True)
                    sink.write(line)
            took = time.perf_counter() - started
            if child.returncode:
                failed.append(script)
                sink.write(f"\n**{script} failed (exit {child.returncode}).**\n")
            sink.write(f"\n_{script}: {took:.0f} s_\n")
            sink.flush()
    print(f"\nfigures written to {out}")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
