"""The installed `m22bol` command, run as a person runs it, in a subprocess."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import TEST_PASSWORD

pytestmark = pytest.mark.e2e


def m22bol_path() -> str:
    found = shutil.which("m22bol") or str(Path(sys.executable).with_name("m22bol"))
    assert os.path.exists(found), "install the project (make venv) to run e2e tests"
    return found


# A script acting as a person gives the person's password as M22BOL_PASSWORD.
PASSWORD = TEST_PASSWORD


def run(tmp_path, user, *args, check=True, input=None):
    env = {**os.environ, "M22BOL_LEDGER": f"sqlite:///{tmp_path}/trial.sqlite",
           "M22BOL_USER": user, "M22BOL_PASSWORD": PASSWORD}
    done = subprocess.run([m22bol_path(), *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, input=input)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_screening_and_enrolment_through_the_installed_command(tmp_path):
    run(tmp_path, "chief", "init")
    run(tmp_path, "chief", "grant", "nurse", "data-manager")
    run(tmp_path, "chief", "reset-password", "nurse", "--password-stdin", input=PASSWORD + "\n")
    run(tmp_path, "nurse", "register", "M22-001", "--site", "S1", "--consent-date", "2025-01-02")
    run(tmp_path, "nurse", "assess-eligibility", "M22-001", "--date", "2025-01-03", "--her2",
        "positive", "--er", "negative", "--prior-therapy", "chemo-anti-her2",
        "--distant-lesions", "3", "--all-lesions-curable", "yes", "--lvef", "61",
        "--ecog", "0")
    enrol = run(tmp_path, "nurse", "enrol", "M22-001", "--date", "2025-01-06", "--weight-kg",
                "64", "--json")
    assert json.loads(enrol.stdout) == {"entry": "M22-001#3", "basket": "IV"}
    patient = json.loads(run(tmp_path, "nurse", "patient", "M22-001", "--json").stdout)
    assert patient["status"] == "enrolled" and patient["basket"] == "IV"
    history = json.loads(run(tmp_path, "chief", "history", "M22-001", "--json").stdout)
    assert [e["actor"] for e in history["entries"]] == ["nurse"] * 3
    refused = run(tmp_path, "chief", "contact", "M22-001", "--date", "2025-02-01", check=False)
    assert refused.returncode == 4 and "Traceback" not in refused.stderr
    bad = run(tmp_path, "nurse", "contact", "M22-001", "--date", "tomorrow", check=False)
    assert bad.returncode == 2 and "date" in bad.stderr
