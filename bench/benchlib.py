"""Shared by the benchmark scripts: the machine, timing, child processes, and large ledgers.

The ledgers are SQLite files under one folder (default /tmp/m22bol-bench, `--dir`):
`ledger-10k.sqlite` holds a synthetic trial entered through the rules (`m22bol import` of the
demo's commands); the larger ones hold that trial plus copies of its subjects under new ids,
written through `TrialLedger.save` (mapper, canonical bytes, native recorder), with every copy's
hash chain recomputed so that `audit verify` holds. A copy is the same story under another
subject id: realistic for the store and the read models, though the tallies repeat.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from m22bol.ledger.identity import os_account

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
M22BOL = str(Path(PYTHON).parent / "m22bol")
SIZES = {"10k": 10_000, "100k": 100_000, "1M": 1_000_000}
DEFAULT_DIR = Path(os.environ.get("M22BOL_BENCH_DIR", "/tmp/m22bol-bench"))
# What the bench's commands remember of the ledgers (ledger.seen): fresh for every run, since
# the bench deliberately rebuilds ledgers at the same paths, which an account would rightly
# report as a replaced history.
STATE = tempfile.mkdtemp(prefix="m22bol-bench-state-")
# The benchmarks act as the operating-system account running them: no password is checked, so
# the figures hold no scrypt cost (a `--user` with its password adds about 0.1 s a command).
USER = os_account()
SEED = 1
QUERY_ID = re.compile(r"\bQ-([1-9][0-9]*)\b")

# The baseline of read-and-decode figures: sqlite3 reading every stored event and parsing its
# JSON, in a child process (`child`), timed inside it.
RAW_DECODE = """
import sqlite3, time, orjson
con = sqlite3.connect({path!r})
started = time.perf_counter()
n = 0
for (state,) in con.execute("SELECT state FROM stored_events ORDER BY rowid"):
    orjson.loads(state)
    n += 1
RESULT = {{"seconds": time.perf_counter() - started, "events": n}}
"""


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        pass
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "memory": memory,
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "eventsourcing": metadata.version("eventsourcing"),
        "platform": platform.platform(),
    }


def ledger_path(folder: Path, size: str) -> Path:
    return folder / f"ledger-{size}.sqlite"


def built_ledgers(folder: Path, sizes: str) -> dict[str, Path]:
    """size -> ledger file of each size asked for (`10k,100k`) that `bench_import.py` built;
    the missing ones are named and left out."""
    found = {}
    for size in sizes.split(","):
        path = ledger_path(folder, size)
        if path.exists():
            found[size] = path
        else:
            print(f"{path} missing: run bench/bench_import.py first")
    return found


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def copy(src: Path, dst: Path) -> None:
    """Copy a SQLite ledger after folding its write-ahead log in."""
    con = sqlite3.connect(src)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    remove(dst)
    shutil.copyfile(src, dst)


def count_events(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT max(rowid) FROM stored_events").fetchone()[0] or 0
    finally:
        con.close()


def cli(args: list[str], path: Path, *, timeout: float, check: bool = True,
        user: str = USER) -> tuple[float, subprocess.CompletedProcess]:
    """Wall time of one `m22bol` process, start-up included."""
    started = time.perf_counter()
    done = subprocess.run([M22BOL, "--ledger", url(path), "--user", user, *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**{k: v for k, v in os.environ.items() if k != "M22BOL_USER"},
                               "XDG_STATE_HOME": STATE})
    seconds = time.perf_counter() - started
    if check and done.returncode != 0:
        raise RuntimeError(f"m22bol {' '.join(args)} exited {done.returncode}: "
                           f"{done.stderr.strip() or done.stdout.strip()}")
    return seconds, done


def child(code: str, *, timeout: float) -> dict[str, Any]:
    """Run Python `code` in a fresh process; it prints one JSON object on its last line. The
    process's peak resident memory (KiB, Linux) is added as `peak_rss_mib`."""
    wrapped = (code + "\nimport resource as _r, json as _j\n"
               "print(_j.dumps({**RESULT, 'peak_rss_mib': round("
               "_r.getrusage(_r.RUSAGE_SELF).ru_maxrss / 1024, 1)}))\n")
    done = subprocess.run([PYTHON, "-c", wrapped], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"child failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_of(times: list[float]) -> float:
    return statistics.median(times)


def rate(events: int, seconds: float) -> str:
    return f"{events / seconds:,.0f}/s" if seconds > 0 else "-"


def ratio(events: int, seconds: float, base_events: int, base_seconds: float) -> str:
    """How fast the ledger is as a fraction of the baseline's rate (1.0: as fast)."""
    if not (seconds and base_seconds and base_events):
        return "-"
    return f"{(events / seconds) / (base_events / base_seconds):.3f}"


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table, so the output pastes into bench/README.md as it is."""
    if not rows:
        return "(none)"
    heads = list(rows[0])
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
    lines += ["| " + " | ".join(str(r.get(h, "")) for h in heads) + " |" for r in rows]
    return "\n".join(lines)


# --- building ledgers --------------------------------------------------------------------------


def demo_subjects(events: int):
    """The demo's subjects (seed 1), in accrual order, up to at least `events` commands."""
    from m22bol.synthetic.generator import generate

    total = 0
    # About 60 commands a subject; generate a few more than needed and stop when there.
    for subject in generate(events // 50 + 20, SEED):
        yield subject
        total += len(subject.commands)
        if total >= events:
            return


def write_jsonl(subjects, path: Path) -> int:
    """The commands as `m22bol import` reads them; how many lines."""
    n = 0
    with open(path, "wb") as out:
        for subject in subjects:
            for cmd in subject.commands:
                record = {"command": cmd.name, **cmd.model_dump(mode="json", exclude_none=True)}
                out.write(orjson.dumps(record) + b"\n")
                n += 1
    return n


def subject_streams(path: Path) -> list[list]:
    """The template's subjects: each one's events in version order, decoded."""
    from m22bol.domain.trial import TRIAL_ID
    from m22bol.ledger.app import TrialLedger

    ledger = TrialLedger(url(path))
    try:
        by_subject: dict = {}
        for _, event in ledger.stored_events():
            if event.originator_id != TRIAL_ID:
                by_subject.setdefault(event.originator_id, []).append(event)
        return [sorted(events, key=lambda e: e.originator_version)
                for events in by_subject.values()]
    finally:
        ledger.close()


def replicas(streams: list[list], copies: range) -> Iterator[list]:
    """For each copy number, every template subject under a new id (`M22-0001-c007`), with
    its hash chain recomputed: yields one list of events per subject."""
    from m22bol.domain.events import Registered
    from m22bol.domain.patient import patient_id
    from m22bol.ledger.store import event_hash

    for k in copies:
        for events in streams:
            old = next(e for e in events if isinstance(e, Registered)).subject
            new = f"{old}-c{k:03d}"
            new_id = str(patient_id(new))
            old_id = str(events[0].originator_id)
            out = []
            last = None
            for event in events:
                # Subject ids are of one width, so the old id never occurs inside another id;
                # it appears as the subject, in entry ids (`M22-0001#7`) and in messages.
                text = orjson.dumps(event.model_dump(mode="json")).decode()
                text = text.replace(old_id, new_id).replace(f'"{old}"', f'"{new}"')
                text = text.replace(f"{old}#", f"{new}#")
                # Query ids are numbered trial-wide (Q-N): each copy gets its own range, or the
                # copies' queries would collide in the read model's primary key.
                text = QUERY_ID.sub(lambda m, k=k: f"Q-{k * 100_000 + int(m.group(1))}", text)
                data = orjson.loads(text)
                data["prev_hash"] = event_hash(last) if last is not None else None
                copy_event = type(event).model_validate(data)
                out.append(copy_event)
                last = copy_event
            yield out
