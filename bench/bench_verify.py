"""`audit verify` against plain sqlite3 reading the same rows and hashing them, and what an
account's check of what it saw costs a command.

On each benchmark ledger (built by bench_import.py), each in its own process:

1. raw: sqlite3 reading (rowid, aggregate, version, topic, state) of every event in log order and
   SHA-256 of each state: the floor any verification stands on;
2. verify: `ledger.integrity.verify` (links, seals, log digest; the streaming pass), events/s and
   peak memory; wall and CPU time (on a shared machine the wall time measures the other users
   too; the CPU time is what verify itself costs);
3. with `--thorough`: the in-memory pass that names findings (what every verify ran before);
4. the account check (`ledger.seen`): remembering the newest position, then checking it again
   as the next command does, with no entry in between and with one entry in between (on a copy).
   Median of `--repeat` runs, in process (start-up excluded: it is the same for every command).
5. with `--read-models`: the read-model check (`projections.check`), on the 10k ledger only by
   default (the larger ones are built without their read models).

    .venv/bin/python bench/bench_verify.py [--sizes 10k,100k,1M] [--dir /tmp/m22bol-bench]
"""

from __future__ import annotations

import argparse

import benchlib as b

RAW = """
import hashlib, sqlite3, time
con = sqlite3.connect({path!r})
started, cpu = time.perf_counter(), time.process_time()
n = 0
for row in con.execute("SELECT rowid, originator_id, originator_version, topic, state "
                       "FROM stored_events ORDER BY rowid"):
    hashlib.sha256(row[4]).digest()
    n += 1
RESULT = {{"events": n, "seconds": time.perf_counter() - started,
          "cpu": time.process_time() - cpu}}
"""

VERIFY = """
import time
from m22bol.ledger.app import TrialLedger
from m22bol.ledger import integrity
ledger = TrialLedger({url!r})
started, cpu = time.perf_counter(), time.process_time()
if {thorough}:
    report = integrity._thorough(ledger)
else:
    report = integrity.verify(ledger)
RESULT = {{"events": report.events, "seconds": time.perf_counter() - started,
          "cpu": time.process_time() - cpu, "ok": report.ok}}
"""

READ_MODELS = """
import time
from m22bol.ledger.app import TrialLedger
from m22bol.projections import check, runner
ledger = TrialLedger({url!r})
runner.catch_up(ledger)
started = time.perf_counter()
differences = check.read_models(ledger)
RESULT = {{"seconds": time.perf_counter() - started, "differences": len(differences),
          "events": ledger.recorder.max_notification_id()}}
"""

ACCOUNT = """
import os, statistics, tempfile, time
from m22bol.domain.commands import parse_command
from m22bol.ledger.app import TrialLedger
from m22bol.ledger import seen
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp()
ledger = TrialLedger({url!r})
admin = ledger.require_trial(whole=True).events[0].actor
seen.watch(ledger)
ledger.close()  # remembers the newest position: as after any earlier command
granted = iter(range(10**6))

def command(entries):
    ledger = TrialLedger({url!r})
    for _ in range(entries):  # someone else's entry since this account last looked
        user = f"u{{next(granted)}}"
        ledger.execute(parse_command("grant", {{"user": user, "role": "monitor"}}), admin)
    started = time.perf_counter()
    seen.watch(ledger)                 # the check, when the command opens the ledger
    remember = ledger.on_close.pop()   # what closing the ledger runs for the account
    remember()
    spent = time.perf_counter() - started
    ledger.close()
    return spent

timings = {{n: [command(n) for _ in range({repeat})] for n in (0, 1)}}
RESULT = {{"none": statistics.median(timings[0]), "one": statistics.median(timings[1])}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=b.Path, default=b.DEFAULT_DIR)
    parser.add_argument("--sizes", default="1M")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--thorough", action="store_true")
    parser.add_argument("--read-models", action="store_true")
    args = parser.parse_args()
    print("machine:", b.machine())
    rows, accounts = [], []
    for size, path in b.built_ledgers(args.dir, args.sizes).items():
        raw = b.child(RAW.format(path=str(path)), timeout=args.timeout)
        verify = b.child(VERIFY.format(url=b.url(path), thorough=False), timeout=args.timeout)
        row = {"size": size, "events": f"{verify['events']:,}",
               "raw read+SHA-256": f"{b.fmt_s(raw['seconds'])}, "
                                   f"{b.rate(raw['events'], raw['seconds'])}",
               "audit verify": f"{b.fmt_s(verify['seconds'])}, "
                               f"{b.rate(verify['events'], verify['seconds'])}, "
                               f"{verify['peak_rss_mib']} MiB",
               "verify/raw": b.ratio(verify["events"], verify["seconds"], raw["events"],
                                     raw["seconds"]),
               "CPU: raw, verify": f"{b.fmt_s(raw['cpu'])}, {b.fmt_s(verify['cpu'])} "
                                   f"({b.rate(verify['events'], verify['cpu'])})",
               "verify/raw by CPU": b.ratio(verify["events"], verify["cpu"], raw["events"],
                                            raw["cpu"]),
               "ok": verify["ok"]}
        if args.thorough:
            old = b.child(VERIFY.format(url=b.url(path), thorough=True), timeout=args.timeout)
            row["thorough pass"] = (f"{b.fmt_s(old['seconds'])}, "
                                    f"{b.rate(old['events'], old['seconds'])}, "
                                    f"{old['peak_rss_mib']} MiB")
        rows.append(row)
        copy = args.dir / f"account-{size}.sqlite"
        b.copy(path, copy)
        try:
            cost = b.child(ACCOUNT.format(url=b.url(copy), repeat=args.repeat),
                           timeout=args.timeout)
        finally:
            b.remove(copy)
        accounts.append({"size": size, "no entry since": f"{cost['none'] * 1000:.2f} ms",
                         "one entry since": f"{cost['one'] * 1000:.2f} ms"})
        print(f"measured {size}", flush=True)
    print("\n## audit verify against raw read + SHA-256 (own process each)\n")
    print(b.table(rows))
    print(f"\n## An account's check of what it saw, per command (median of {args.repeat})\n")
    print(b.table(accounts))
    if args.read_models:
        path = b.ledger_path(args.dir, "10k")
        done = b.child(READ_MODELS.format(url=b.url(path)), timeout=args.timeout)
        print("\n## Read-model check (10k ledger)\n")
        print(b.table([{"events": f"{done['events']:,}",
                        "check": f"{b.fmt_s(done['seconds'])}, "
                                 f"{b.rate(done['events'], done['seconds'])}",
                        "differences": done["differences"]}]))


if __name__ == "__main__":
    main()
