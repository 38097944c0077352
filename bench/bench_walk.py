"""Where a rebuild's derivation spends its CPU: each phase per event, against plain sqlite3
reading and decoding the same rows (CPU too).

A rebuild (`projections.rebuilding`) decodes each subject's events, folds them into the
Patient (the effective timeline, the query and SDV folds), walks the timeline through the rules,
finishes and summarises the walk, and turns it into every projection's rows; the parent then
writes the rows. This script does the same, one subject at a time in this process (so the
memory held is one subject's), and times each phase with `time.process_time`: CPU, so the
figures hold on a shared machine where wall time does not. It reads the ledger and writes
nothing, so it may run on the bench ledgers themselves.

    .venv/bin/python bench/bench_walk.py [--sizes 10k] [--dir /tmp/m22bol-bench]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import benchlib as b

# The baseline, timed by CPU as the phases are (benchlib's times the wall).
RAW_DECODE_CPU = b.RAW_DECODE.replace("time.perf_counter()", "time.process_time()")


def phases(path: Path) -> tuple[int, dict[str, float]]:
    """(events, CPU seconds by phase) of deriving every subject of the ledger at `path`."""
    from eventsourcing.persistence import StoredEvent

    from m22bol.domain import clarifications, timeline
    from m22bol.domain.patient import project_patient
    from m22bol.domain.trial import TRIAL_ID
    from m22bol.ledger.app import TrialLedger
    from m22bol.ledger.reading import Snapshot
    from m22bol.projections import rebuilding, rows, runner

    ledger = TrialLedger(b.url(path))
    target = ledger.recorder.max_notification_id() or 0
    today = ledger.clock().date()
    spent: dict[str, float] = defaultdict(float)
    events = 0
    clock = time.process_time
    with Snapshot(ledger) as snapshot:
        protocol = runner._trial_at(ledger, snapshot, target).protocol
        for aggregate, stored in rebuilding.chains(snapshot, target):
            if aggregate == TRIAL_ID:
                continue
            started = clock()
            # As `rebuilding.Deriver` decodes: the ledger's mapper, full validation.
            decoded = [ledger.mapper.to_domain_event(StoredEvent(
                originator_id=aggregate, originator_version=version, topic=topic, state=state))
                for version, topic, state in stored]
            folded = clock()  # the Patient: its effective timeline, query and SDV folds
            patient = project_patient(None, decoded)
            clarifications.patient_threads(patient)
            clarifications.patient_verification(patient)
            facts = patient.timeline()
            walked = clock()
            patient.keep_walk(timeline.walk(patient.subject, facts, protocol, today))
            finished = clock()
            derived = rows.derive_subject(patient, protocol, today)  # finishes the kept walk
            made = clock()
            spent["decode"] += folded - started
            spent["patient fold"] += walked - folded
            spent["walk"] += finished - walked
            spent["finish and summary"] += made - finished
            for name, rows_of in rows.SUBJECT_ROWS.items():
                started = clock()
                rows_of(derived)
                spent[f"rows: {name}"] += clock() - started
            events += len(stored)
    ledger.close()
    return events, spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=b.DEFAULT_DIR)
    parser.add_argument("--sizes", default="10k")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    print("machine:", b.machine())
    for size, path in b.built_ledgers(args.dir, args.sizes).items():
        raw = b.child(RAW_DECODE_CPU.format(path=str(path)), timeout=args.timeout)
        events, spent = phases(path)
        total = sum(spent.values())
        raw_us = raw["seconds"] * 1e6 / raw["events"]
        print(f"\n## {size}: {events:,} subject events; deriving {total:.2f} s of CPU, "
              f"{total * 1e6 / events:.1f} us an event ({b.rate(events, total)} of CPU); "
              f"raw read+decode {raw_us:.1f} us an event ({b.rate(raw['events'], raw['seconds'])}"
              f" of CPU)\n")
        print(b.table([{"phase": name, "CPU": f"{seconds:.3f} s",
                        "us an event": f"{seconds * 1e6 / events:.1f}",
                        "share": f"{seconds / total:.0%}"}
                       for name, seconds in sorted(spent.items(), key=lambda kv: -kv[1])]))


if __name__ == "__main__":
    main()
