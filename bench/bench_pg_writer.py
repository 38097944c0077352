"""One entry by a PostgreSQL writer login while the trial is a long tail past its last snapshot.

Only the database owner may store trial snapshots (a forged one granting a role would be
obeyed until the next verify), so on a ledger where only staff write, the trial's tail grows
until the owner runs `db setup` again. Until it did ask (`trial_snapshots.may_store`), a writer
with the tail at 100 events or more read the whole trial back after every commit and sent a
snapshot insert the database refused.

For each tail length, a new database is set up by its owner (`db setup`), the owner writes
that many trial events without a snapshot (grants), and a writer login registers subjects,
timed in process (start-up excluded), median of `--repeat`, wall and this process's CPU:

- `now`: the writer as it runs today (asks once, then never builds a snapshot);
- `before`: the same ledger told it may store (`_may_store_snapshots = True`): the old path,
  which reads the trial back and has its insert refused;
- raw psycopg: one INSERT of an event-sized row and its commit, the floor of any entry.

    M22BOL_BENCH_POSTGRES=postgresql+psycopg://owner@host:port/postgres \\
        .venv/bin/python bench/bench_pg_writer.py [--tails 100,1000] [--repeat 15]

The server URL defaults to the one `scripts/postgres.sh start` runs (`scripts/postgres.sh url`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from m22bol.cli.db import setup_database
from m22bol.domain import commands as c
from m22bol.ledger import trial_snapshots
from m22bol.ledger.app import TrialLedger
from m22bol.ledger.postgres import group_roles

ROOT = Path(__file__).resolve().parent.parent


def server_url() -> str:
    return os.environ.get("M22BOL_BENCH_POSTGRES") or subprocess.run(
        [str(ROOT / "scripts/postgres.sh"), "url"], check=True, capture_output=True,
        text=True).stdout.strip()


def libpq(url: str, login: str | None = None) -> str:
    parts = urlsplit(url)._replace(scheme="postgresql")
    if login:
        parts = parts._replace(netloc=f"{login}@{parts.hostname}:{parts.port}")
    return parts.geturl()


@contextmanager
def database(server: str):
    """A new database set up by its owner, with a writer login; dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    url = urlsplit(server)._replace(path=f"/{name}").geturl()
    login = f"w_{name}"
    with psycopg.connect(libpq(server), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        setup_database(url)
        with psycopg.connect(libpq(server), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                sql.Identifier(login), sql.Identifier(group_roles(url)[0])))
        yield url, login
    finally:
        with psycopg.connect(libpq(server), autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            for role in (login, *group_roles(url)):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def grow(url: str, login: str, tail: int) -> None:
    """Init, the writer made data-manager, and `tail` more trial events, no snapshot taken."""
    every, trial_snapshots.EVERY = trial_snapshots.EVERY, 10**9
    try:
        owner = TrialLedger(url)
        owner.execute(c.Init(), "admin")
        owner.execute_all([c.Grant(user=login, role="data-manager"),
                           *(c.Grant(user=f"u{n}", role="monitor") for n in range(tail))],
                          "admin")
        owner.close()
    finally:
        trial_snapshots.EVERY = every


def entries(ledger: TrialLedger, login: str, repeat: int, tag: str) -> tuple[float, float]:
    """Median wall and CPU seconds of one registration by the writer."""
    walls, cpus = [], []
    for n in range(repeat):
        command = c.Register(subject=f"M22-{tag}{n:03d}", site="S1", consent_date="2025-01-02")
        wall, cpu = time.perf_counter(), time.process_time()
        ledger.execute(command, login)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def raw_insert(url: str, login: str, repeat: int) -> float:
    """One INSERT of an event-sized row and its commit, into a scratch table (as the owner:
    a writer may create none)."""
    state = b'{"actor":"x","consent_date":"2025-01-02","site":"S1","subject":"M22-1"}' * 4
    times = []
    with psycopg.connect(libpq(url)) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS raw_bench "
                     "(id bigserial PRIMARY KEY, state bytea)")
        conn.commit()
        for _ in range(repeat):
            started = time.perf_counter()
            conn.execute("INSERT INTO raw_bench (state) VALUES (%s)", (state,))
            conn.commit()
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tails", default="100,1000")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    server = server_url()
    print("| trial tail | now: wall / CPU | before: wall / CPU | before / now (wall) | "
          "raw psycopg insert+commit | now / raw |")
    print("|---|---|---|---|---|---|")
    for tail in (int(t) for t in args.tails.split(",")):
        with database(server) as (url, login):
            grow(url, login, tail)
            writer = TrialLedger(libpq(url, login).replace("postgresql", "postgresql+psycopg"))
            try:
                entries(writer, login, 2, "warm")  # connections, caches, the privilege asked
                assert trial_snapshots.may_store(writer) is False
                now = entries(writer, login, args.repeat, "n")
                writer._may_store_snapshots = True  # the old path: read back, refused insert
                before = entries(writer, login, args.repeat, "b")
                assert trial_snapshots.behind(writer.trial()) >= tail  # nothing was stored
            finally:
                writer.close()
            raw = raw_insert(url, login, args.repeat)
        print(f"| {tail} | {now[0] * 1000:.1f} / {now[1] * 1000:.1f} ms | "
              f"{before[0] * 1000:.1f} / {before[1] * 1000:.1f} ms | "
              f"{before[0] / now[0]:.2f} | {raw * 1000:.2f} ms | {now[0] / raw:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
