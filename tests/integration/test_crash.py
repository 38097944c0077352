"""SIGKILL an `m22bol import` of a large file at random moments: the store holds the whole
import or none of it, the read models are never half-updated, and a rebuild agrees with them."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from m22bol.ledger.app import TrialLedger
from m22bol.projections import runner
from tests.support import TEST_PASSWORD, new_ledger, open_ledger
from tests.support.read_models import snapshot

SUBJECTS_PER_IMPORT = 250
CONSENT = date(2025, 1, 6)


def m22bol() -> str:
    found = shutil.which("m22bol") or str(Path(sys.executable).with_name("m22bol"))
    assert os.path.exists(found), "install the project (make venv) to run this test"
    return found


def write_import(path: Path, prefix: str) -> int:
    """A few thousand records: subjects screened, enrolled, followed up; the record count."""
    records = []
    for i in range(SUBJECTS_PER_IMPORT):
        s = f"{prefix}-{i:03d}"
        day = CONSENT + timedelta(days=i % 40)
        records += [
            {"command": "register", "subject": s, "site": f"S{i % 3 + 1}",
             "consent_date": str(day)},
            {"command": "assess-eligibility", "subject": s, "date": str(day), "her2": "positive",
             "er": "positive" if i % 2 else "negative", "prior_therapy": "none",
             "distant_lesions": 1 + i % 4, "all_lesions_curable": "yes", "lvef": 60, "ecog": 0},
        ]
        if i % 4 != 3:  # the others failed screening (four distant lesions)
            records.append({"command": "enrol", "subject": s,
                            "date": str(day + timedelta(days=5)), "weight_kg": 64})
        for k in range(1, 8):
            when = str(day + timedelta(days=10 * k))
            if k % 2:
                records.append({"command": "contact", "subject": s, "date": when})
            else:
                records.append({"command": "ctdna", "subject": s, "date": when,
                                "result": "detected" if k == 2 else "not-detected"})
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return len(records)


# The subprocesses act as the people of tests.support, with their password.
PASSWORD_ENV = {**os.environ, "M22BOL_PASSWORD": TEST_PASSWORD}


def start_import(url: str, file: Path) -> subprocess.Popen:
    return subprocess.Popen([m22bol(), "--ledger", url, "--user", "dm", "import", str(file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=PASSWORD_ENV)


def cli(url: str, user: str, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([m22bol(), "--ledger", url, "--user", user, *args],
                          capture_output=True, text=True, timeout=600, env=PASSWORD_ENV)
    assert done.returncode == 0, done.stderr
    return done


def new_events(ledger: TrialLedger, after: int) -> int:
    return len(ledger.recorder.select_notifications(after, 10**6, inclusive_of_start=False))


def test_a_killed_import_leaves_all_or_nothing_and_consistent_read_models(ledger_url, tmp_path):
    rng = random.Random(20270301)
    ledger = new_ledger(ledger_url)
    ledger.close()

    # A full import first: the whole-import outcome, and how long one takes on this machine.
    file = tmp_path / "import-0.jsonl"
    count = write_import(file, "K0")
    began = time.monotonic()
    whole = start_import(ledger_url, file)
    assert whole.wait(timeout=900) == 0, whole.stderr.read().decode()
    duration = time.monotonic() - began

    outcomes = []
    # Two kills at random moments, then right after the commit (while the read models are
    # being brought up to date), the moment where rows and position could part. That window
    # is short (the catch-up reads only what the import wrote): a kill that comes too late
    # is tried again, up to three times.
    moments = ["random", "random", "after-commit", "after-commit", "after-commit"]
    for attempt, moment in enumerate(moments, start=1):
        if moment == "after-commit" and ("after-commit", True, -signal.SIGKILL,
                                         "not projected") in outcomes:
            break
        ledger = open_ledger(ledger_url)
        head = ledger.recorder.max_notification_id()
        before = snapshot(ledger_url)
        assert set(runner.read_models(ledger).positions().values()) == {head}

        file = tmp_path / f"import-{attempt}.jsonl"
        assert write_import(file, f"K{attempt}") == count
        process = start_import(ledger_url, file)
        if moment == "random":
            time.sleep(rng.uniform(0.05, 1.05) * duration)
        else:
            while process.poll() is None and (ledger.recorder.max_notification_id() or 0) == head:
                time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)

        written = new_events(ledger, head)
        assert written in (0, count), f"attempt {attempt}: {written} of {count} events stored"
        outcomes.append((moment, written == count, process.returncode))

        # Rows move with their position or not at all.
        after = snapshot(ledger_url)
        moved = {n for _, _, n in after["_tracking"]}
        new_head = ledger.recorder.max_notification_id()
        assert moved in ({head}, {new_head})
        if moved == {head}:
            assert after == before
        outcomes[-1] += ("projected" if moved == {new_head} != {head} else "not projected",)
        ledger.close()

        # The next command catches up; a rebuild from zero then changes nothing.
        cli(ledger_url, "dm", "status", "--json")
        caught_up = snapshot(ledger_url)
        assert {n for _, _, n in caught_up["_tracking"]} == {new_head}
        rebuilt = cli(ledger_url, "admin", "projections", "rebuild", "--json")
        assert {p["lag"] for p in json.loads(rebuilt.stdout)["projections"]} == {0}
        assert snapshot(ledger_url) == caught_up

    assert ("after-commit", True, -signal.SIGKILL, "not projected") in outcomes, outcomes
