"""A full course for one subject through the command line: 8 neo-adjuvant cycles, surgery,
local treatment complete, 8 adjuvant cycles; and an adverse event through the installed `m22bol`
command, in a subprocess.

The course's forty commands run in-process (the same click command the installed script
runs): a subprocess each cost about a second of interpreter start and imports, and what the
process boundary adds (exit status, stdout and stderr apart, the M22BOL_* variables, no
traceback) is checked by the subprocess tests here and in test_installed_command.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.support import TEST_PASSWORD, invoke
from tests.support.databases import sqlite_url

pytestmark = pytest.mark.e2e

S = "M22-001"


def m22bol() -> str:
    found = shutil.which("m22bol") or str(Path(sys.executable).with_name("m22bol"))
    assert os.path.exists(found), "install the project (make venv) to run e2e tests"
    return found


@pytest.fixture
def in_process(tmp_path):
    ledger = sqlite_url(tmp_path)

    def run(user: str, *args: str, code: int = 0, input: str | None = None):
        done = invoke(list(args), url=ledger, user=user, input=input)
        assert done.exit_code == code, done.output
        return done

    return run


@pytest.fixture
def run(tmp_path):
    """The installed command in a subprocess, as a script acting as a person runs it: the
    user and their password in M22BOL_USER and M22BOL_PASSWORD."""
    ledger = f"sqlite:///{tmp_path}/course.sqlite"

    def run(user: str, *args: str, code: int = 0,
            input: str | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run([m22bol(), "--ledger", ledger, *args], input=input,
                              env={**os.environ, "M22BOL_USER": user,
                                   "M22BOL_PASSWORD": TEST_PASSWORD}, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == code, done.stderr or done.stdout
        assert "Traceback" not in done.stderr
        return done

    return run


def test_a_full_course_through_the_command_line(in_process):
    def nurse(*args: str, code: int = 0) -> dict:
        done = in_process("nurse", *args, "--json", code=code)
        return json.loads(done.stdout)

    in_process("chief", "init")
    in_process("chief", "grant", "nurse", "data-manager")
    in_process("chief", "reset-password", "nurse", "--password-stdin",
               input=TEST_PASSWORD + "\n")
    nurse("register", S, "--site", "S1", "--consent-date", "2025-01-02")
    nurse("assess-eligibility", S, "--date", "2025-01-03", "--her2", "positive", "--er",
          "positive", "--prior-therapy", "none", "--distant-lesions", "2",
          "--all-lesions-curable", "yes", "--lvef", "62", "--ecog", "0")
    assert nurse("enrol", S, "--date", "2025-01-06", "--weight-kg", "64")["basket"] == "I"

    def infuse(cycle: int, day: date, dose: float, *extra: str, code: int = 0) -> dict:
        return nurse("infuse", S, "--cycle", str(cycle), "--date", day.isoformat(),
                     "--weight-kg", "64", "--dose-mg", str(dose), *extra, code=code)

    day = date(2025, 1, 8)
    for cycle in range(1, 9):
        out = infuse(cycle, day, 345.6)
        assert out["expected_dose_mg"] == 345.6
        assert out["dose_level_mg_per_kg"] == 5.4
        assert out["next_cycle_due"] == (day + timedelta(days=21)).isoformat()
        day += timedelta(days=21)
    last_neo = day - timedelta(days=21)
    doc = nurse("patient", S)
    assert (doc["cycles_given"], doc["phase"]) == (8, "local-treatment")

    surgery = last_neo + timedelta(days=28)
    nurse("surgery", S, "--date", surgery.isoformat(), "--site", "primary",
          "--location", "right breast")
    nurse("pathology", S, "--date", (surgery + timedelta(days=7)).isoformat(), "--ypt", "T0",
          "--ypn", "N0", "--viable-metastatic-tumour", "not-resected")
    # Cycle 9 before local treatment is marked complete: refused, naming the rule.
    refused = infuse(9, surgery + timedelta(days=21), 345.6, code=3)
    assert refused["error"]["rule"] == "schedule.adjuvant_before_local"
    done = nurse("complete-local-treatment", S, "--date",
                 (surgery + timedelta(days=21)).isoformat())
    assert done["phase"] == "adjuvant"

    day = surgery + timedelta(days=21)
    for cycle in range(9, 17):
        out = infuse(cycle, day, 345.6)
        day += timedelta(days=21)
    assert out["next_cycle_due"] is None

    doc = nurse("patient", S)
    assert doc["cycles_given"] == 16
    assert (doc["treatment_state"], doc["phase"]) == ("completed", "completed")
    assert doc["local_treatment_complete"] == (surgery + timedelta(days=21)).isoformat()
    assert doc["pcr"] is True
    assert doc["deviations"] == []
    assert nurse("deviations")["deviations"] == []


def test_an_adverse_event_through_the_installed_command(run):
    """The printed action, the stored action, and a refused infusion naming the rule."""
    run("chief", "init")
    run("chief", "grant", "nurse", "data-manager")
    run("chief", "reset-password", "nurse", "--password-stdin", input=TEST_PASSWORD + "\n")
    run("nurse", "register", S, "--site", "S1", "--consent-date", "2025-01-02")
    run("nurse", "assess-eligibility", S, "--date", "2025-01-03", "--her2", "positive", "--er",
        "negative", "--prior-therapy", "none", "--distant-lesions", "1",
        "--all-lesions-curable", "yes", "--lvef", "60", "--ecog", "0")
    run("nurse", "enrol", S, "--date", "2025-01-06", "--weight-kg", "60")
    run("nurse", "infuse", S, "--cycle", "1", "--date", "2025-01-08", "--weight-kg", "60",
        "--dose-mg", "324")
    text = run("nurse", "adverse-event", S, "--term", "Neutrophil count decreased", "--grade",
               "4", "--onset", "2025-01-20").stdout
    assert "ae_id: AE1" in text and "action: interrupt" in text
    refused = run("nurse", "infuse", S, "--cycle", "2", "--date", "2025-01-29", "--weight-kg",
                  "60", "--dose-mg", "324", code=3)
    assert "treatment.while_interrupted" in refused.stderr
    out = json.loads(run("nurse", "update-adverse-event", S, "AE1", "--date", "2025-01-27",
                         "--grade", "2", "--json").stdout)
    assert {k: out[k] for k in ("entry", "ae_id", "action", "treatment_state")} == {
        "entry": f"{S}#6", "ae_id": "AE1", "action": "resume-reduced",
        "treatment_state": "active"}
    refused = run("nurse", "infuse", S, "--cycle", "2", "--date", "2025-01-29", "--weight-kg",
                  "60", "--dose-mg", "324", "--json", code=3)
    assert json.loads(refused.stdout)["error"]["rule"] == "dose.re_escalation"
    out = json.loads(run("nurse", "infuse", S, "--cycle", "2", "--date", "2025-01-29",
                         "--weight-kg", "60", "--dose-mg", "264", "--json").stdout)
    assert (out["expected_dose_mg"], out["dose_level_mg_per_kg"]) == (264, 4.4)
    unknown = run("nurse", "resolve-adverse-event", S, "AE7", "--date", "2025-02-01", code=2)
    assert "AE7" in unknown.stderr
    bad_grade = run("nurse", "adverse-event", S, "--term", "alopecia", "--grade", "3",
                    "--onset", "2025-02-01", code=2)
    assert "grade" in bad_grade.stderr
