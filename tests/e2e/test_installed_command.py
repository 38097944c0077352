"""The installed `m22bol` command, run as a person runs it, in a subprocess."""

import json

import pytest

from tests.support.installed import PASSWORD, run

pytestmark = pytest.mark.e2e


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
