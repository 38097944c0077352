"""A query's whole cycle through the installed command, as a monitor and a site run it."""

import json

import pytest
import xmlschema
from odmlib import schema_manager

from tests.support.installed import PASSWORD, run

pytestmark = pytest.mark.e2e
S = "M22-001"


def test_query_open_answer_with_a_correction_close_and_a_reopened_second(tmp_path):
    run(tmp_path, "chief", "init")
    for user, role in (("nurse", "data-manager"), ("mon", "monitor")):
        run(tmp_path, "chief", "grant", user, role)
        run(tmp_path, "chief", "reset-password", user, "--password-stdin", input=PASSWORD + "\n")
    run(tmp_path, "nurse", "register", S, "--site", "S1", "--consent-date", "2025-01-02")
    run(tmp_path, "nurse", "assess-eligibility", S, "--date", "2025-01-03", "--her2",
        "positive", "--er", "negative", "--prior-therapy", "chemo-anti-her2",
        "--distant-lesions", "3", "--all-lesions-curable", "yes", "--lvef", "61", "--ecog", "0")
    run(tmp_path, "nurse", "enrol", S, "--date", "2025-01-06", "--weight-kg", "64")
    run(tmp_path, "nurse", "infuse", S, "--cycle", "1", "--date", "2025-01-08", "--weight-kg",
        "64", "--dose-mg", "345.6")

    opened = json.loads(run(tmp_path, "mon", "query", "open", S, f"{S}#4", "--field",
                            "dose_mg", "--text", "dose 345.6 mg: please check the source",
                            "--json").stdout)
    dose_query = opened["query_id"]
    assert dose_query.startswith("Q-") and opened["status"] == "open"
    # A monitor may not answer; the site corrects the dose and answers pointing to it.
    refused = run(tmp_path, "mon", "query", "answer", dose_query, "--text", "ok", check=False)
    assert refused.returncode == 4
    fix = json.loads(run(tmp_path, "nurse", "correct", S, f"{S}#4", "--set", "dose_mg=345",
                         "--reason", "pump record", "--json").stdout)
    run(tmp_path, "nurse", "query", "answer", dose_query, "--text", "corrected from the pump",
        "--correction", fix["entry"])
    run(tmp_path, "mon", "query", "close", dose_query, "--text", "thank you")

    second = json.loads(run(tmp_path, "mon", "query", "open", S, f"{S}#3", "--field",
                            "weight_kg", "--text", "weight on the day?", "--json").stdout)
    run(tmp_path, "nurse", "query", "answer", second["query_id"], "--text", "as measured")
    run(tmp_path, "mon", "query", "reopen", second["query_id"], "--text", "chart says 66")

    threads = {t["query_id"]: t for t in json.loads(
        run(tmp_path, "mon", "queries", "--json").stdout)["queries"]}
    assert [s["step"] for s in threads[dose_query]["thread"]] == ["opened", "answered", "closed"]
    assert threads[dose_query]["thread"][1]["correction"] == fix["entry"]
    assert threads[dose_query]["status"] == "closed"
    assert [s["step"] for s in threads[second["query_id"]]["thread"]] == [
        "opened", "answered", "reopened"]
    assert threads[second["query_id"]]["status"] == "open"
    assert all(t["age_days"] == 0 for t in threads.values())
    only_open = json.loads(run(tmp_path, "mon", "queries", "--status", "open", "--json").stdout)
    assert [t["query_id"] for t in only_open["queries"]] == [second["query_id"]]

    history = json.loads(run(tmp_path, "mon", "history", S, "--json").stdout)["entries"]
    steps = [(r["event"], r["actor"]) for r in history if r["event"].startswith("Query")]
    assert steps == [("QueryOpened", "mon"), ("QueryAnswered", "nurse"), ("QueryClosed", "mon"),
                     ("QueryOpened", "mon"), ("QueryAnswered", "nurse"),
                     ("QueryReopened", "mon")]
    patient = json.loads(run(tmp_path, "nurse", "patient", S, "--json").stdout)
    assert [q["query_id"] for q in patient["open_queries"]] == [second["query_id"]]

    out = tmp_path / "trail.xml"
    run(tmp_path, "mon", "audit", "export", "--format", "odm", "--out", str(out))
    xmlschema.XMLSchema(schema_manager.get_schema_path("odm", "1.3.2")).validate(str(out))
    text = out.read_text()
    assert f"{dose_query} answered by nurse (correction {fix['entry']})" in text
    assert run(tmp_path, "mon", "audit", "verify").returncode == 0
