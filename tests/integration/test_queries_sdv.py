"""Queries and source data verification on the ledger: the rules of each step, SDV undone by a
correction, retractions closing queries, locks, and the read models agreeing with the events."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m22bol.domain.events import QueryClosed
from m22bol.projections.reader import Reader
from tests.support import ON_DATABASES, ON_SQLITE, TEST_PASSWORD, invoke, store_fingerprint
from tests.support.read_models import assert_agrees_with_replay, assert_rebuild_changes_nothing

S, OTHER = "M22-001", "M22-002"


@pytest.fixture
def two(driver):
    driver.enrolled(S)
    driver.do("infuse", subject=S, cycle=1, date="2025-01-15", weight_kg=60, dose_mg=324)
    driver.enrolled(OTHER, site="S2")
    return driver


def run(driver, *args, user="mon"):
    result = invoke([*args, "--json"], url=driver.ledger.url, user=user)
    return result.exit_code, json.loads(result.output) if result.output.strip() else None


def open_query(driver, entry=f"{S}#4", field="dose_mg", subject=S, user="mon"):
    return driver.do("query open", actor=user, subject=subject, entry=entry, field=field,
                     text="please check the source")["query_id"]


@ON_DATABASES
def test_verify_then_correct_shows_the_entry_unverified_with_the_corrected_value(two):
    two.do("verify-source", actor="mon", subject=S, entry=f"{S}#4", note="pharmacy log")
    reader = Reader(two.ledger, "mon")
    [row] = [r for r in reader.patient(S)["timeline"] if r["entry"] == f"{S}#4"]
    assert row["verified"] is True
    fix = two.do("correct", subject=S, entry=f"{S}#4", set=["dose_mg=330"], reason="log")
    [row] = [r for r in reader.patient(S)["timeline"] if r["entry"] == f"{S}#4"]
    assert (row["verified"], row["dose_mg"]) == (False, 330)
    sdv = reader.sdv(subject=S)
    [pending] = [u for u in sdv["unverified"] if u["entry"] == f"{S}#4"]
    assert pending["unverified_by"] == fix["entry"]
    history = {r["entry"]: r for r in reader.history(S)["entries"]}
    assert history[f"{S}#4"]["verified"] is False
    # Verified again, it counts again.
    two.do("verify-source", actor="mon", subject=S, entry=f"{S}#4")
    assert reader.sdv(subject=S)["sites"][0]["verified"] == 1
    assert_agrees_with_replay(two.ledger)
    assert_rebuild_changes_nothing(two.ledger)


def test_sdv_counts_per_site_and_subject(two):
    for entry in (f"{S}#1", f"{S}#2"):
        two.do("verify-source", actor="mon", subject=S, entry=entry)
    sites = {s["site"]: s for s in Reader(two.ledger, "aud").sdv()["sites"]}
    assert (sites["S1"]["verified"], sites["S1"]["entries"]) == (2, 4)
    assert (sites["S2"]["verified"], sites["S2"]["entries"]) == (0, 3)
    assert sites["S1"]["subjects"] == [{"subject": S, "verified": 2, "entries": 4}]


def test_verifying_twice_or_a_retracted_entry_is_refused(two):
    two.do("verify-source", actor="mon", subject=S, entry=f"{S}#4")
    code, out = run(two, "verify-source", S, f"{S}#4")
    assert (code, out["error"]["rule"]) == (3, "sdv.already_verified")
    two.do("contact", subject=S, date="2025-02-01")
    two.do("retract", subject=S, entry=f"{S}#6", reason="other patient")
    code, out = run(two, "verify-source", S, f"{S}#6")
    assert code == 3 and "retracted" in out["error"]["message"]


def test_a_retraction_closes_the_queries_on_the_retracted_entry_with_its_reason(two):
    two.do("contact", subject=S, date="2025-02-01")
    query = open_query(two, entry=f"{S}#5", field="date")
    keep = open_query(two)
    two.do("retract", subject=S, entry=f"{S}#5", reason="visit of another patient")
    closed = [e for e in two.ledger.patient(S).events if isinstance(e, QueryClosed)]
    assert [(e.query_id, e.text) for e in closed] == [
        (query, "entry retracted: visit of another patient")]
    statuses = {t["query_id"]: t["status"] for t in Reader(two.ledger, "mon").queries()}
    assert statuses == {query: "closed", keep: "open"}


def test_each_step_needs_the_right_status(two):
    query = open_query(two)
    assert run(two, "query", "reopen", query, "--text", "again")[1]["error"]["rule"] \
        == "query.status"
    two.do("query answer", actor="inv", query_id=query, text="checked")
    code, out = run(two, "query", "answer", query, "--text", "twice", user="inv")
    assert code == 3
    two.do("query close", actor="dm", query_id=query)
    assert run(two, "query", "close", query)[0] == 3


def test_bad_input_names_the_field(two):
    code, out = run(two, "query", "answer", "Q-99", "--text", "x", user="inv")
    assert code == 2 and out["error"]["message"].startswith("query_id: Q-99")
    assert run(two, "query", "answer", "17", "--text", "x", user="inv")[0] == 2
    assert run(two, "query", "open", S, f"{S}#40", "--field", "dose_mg", "--text", "x")[0] == 2
    assert run(two, "query", "open", S, f"{S}#4", "--field", "dose_mg", "--text", " ")[0] == 2
    query = open_query(two)
    code, out = run(two, "query", "answer", query, "--text", "x", "--correction", f"{S}#3",
                    user="inv")
    assert code == 2 and out["error"]["message"].startswith("correction:")


def test_query_ids_are_unique_across_subjects(two):
    ids = [open_query(two), open_query(two, entry=f"{OTHER}#3", field="weight_kg",
                                       subject=OTHER), open_query(two)]
    assert ids == ["Q-1", "Q-2", "Q-3"]
    assert {t["subject"] for t in Reader(two.ledger, "mon").queries(site="S2")} == {OTHER}


@ON_SQLITE
def test_a_locked_subject_refuses_queries_and_sdv_except_closing_one(two):
    query = open_query(two)
    other = open_query(two, entry=f"{S}#3", field="weight_kg")
    two.do("query answer", actor="inv", query_id=other, text="fine")
    assert invoke(["lock", "--subject", S, "--reason", "subject data clean"],
                  url=two.ledger.url, user="admin").exit_code == 0
    before = store_fingerprint(two.ledger.url)
    for args, user in ((["query", "open", S, f"{S}#4", "--field", "cycle", "--text", "x"], "mon"),
                       (["query", "answer", query, "--text", "x"], "inv"),
                       (["query", "reopen", other, "--text", "x"], "mon"),
                       (["verify-source", S, f"{S}#4"], "mon")):
        code, out = run(two, *args, user=user)
        assert (code, out["error"]["rule"]) == (4, "lock.subject"), args
    assert store_fingerprint(two.ledger.url) == before
    assert run(two, "query", "close", other)[0] == 0
    # The other subject is not locked.
    assert run(two, "verify-source", OTHER, f"{OTHER}#1")[0] == 0


def test_queries_and_sdv_never_change_clinical_derivations(two):
    reader = Reader(two.ledger, "mon")

    def clinical(doc):
        # Every new event is an entry no seal covers yet: that count moves, no derivation.
        return {k: v for k, v in doc.items() if k not in ("open_queries", "timeline",
                                                          "known_at", "not_yet_sealed")}

    def derived():
        return (clinical(reader.patient(S)), clinical(reader.endpoints()),
                clinical(reader.status()),
                [{k: v for k, v in r.items() if k != "verified"}
                 for r in reader.patient(S)["timeline"]])

    before = derived()
    query = open_query(two)
    two.do("verify-source", actor="mon", subject=S, entry=f"{S}#4")
    two.do("query answer", actor="inv", query_id=query, text="checked")
    assert derived() == before


STEPS = st.lists(st.sampled_from(["open", "answer", "close", "reopen", "verify", "correct"]),
                 max_size=12)


@ON_SQLITE
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_the_read_models_say_what_the_events_say_after_any_steps(two, steps):
    """Whatever order the steps come in (refused ones leave nothing), the `queries` and `sdv`
    read models equal the same rows computed from the events, and a rebuild changes nothing."""
    from m22bol.domain.errors import LedgerError

    dose = 324.0
    for step in steps:
        query = two.ledger.trial().queries and sorted(two.ledger.trial().queries)[-1]
        try:
            match step:
                case "open":
                    open_query(two)
                case "answer":
                    two.do("query answer", actor="inv", query_id=query, text="checked")
                case "close":
                    two.do("query close", actor="mon", query_id=query)
                case "reopen":
                    two.do("query reopen", actor="mon", query_id=query, text="still wrong")
                case "verify":
                    two.do("verify-source", actor="mon", subject=S, entry=f"{S}#4")
                case "correct":
                    dose += 1
                    two.do("correct", subject=S, entry=f"{S}#4", set=[f"dose_mg={dose}"],
                           reason="source")
        except (LedgerError, TypeError):
            pass
    from m22bol.projections import rows

    reader = Reader(two.ledger, "mon")
    patient = two.ledger.patient(S)
    derived = rows.derive_subject(patient, two.ledger.trial().protocol,
                                  two.ledger.clock().date())
    expected = [json.loads(r["thread"]) for r in sorted(
        rows.query_rows(derived)["rm_queries"], key=lambda r: r["number"])]
    assert [{k: v for k, v in t.items() if k != "age_days"}
            for t in reader.queries(subject=S)] == expected
    verified = sum(r["verified"] for r in rows.sdv_rows(derived)["rm_sdv"])
    assert reader.sdv(subject=S)["sites"][0]["verified"] == verified
    assert_agrees_with_replay(two.ledger)


def test_the_report_counts_open_queries_per_site_by_age_and_sdv_per_site(two, tmp_path):
    from datetime import timedelta

    from m22bol.projections.report.data import clarification_tallies
    from m22bol.projections.report.render import write_report

    open_query(two)
    closed = open_query(two, entry=f"{S}#3", field="weight_kg")
    two.do("query close", actor="mon", query_id=closed)
    open_query(two, entry=f"{OTHER}#3", field="weight_kg", subject=OTHER)
    two.do("verify-source", actor="mon", subject=S, entry=f"{S}#4")
    patients = [two.ledger.patient(S), two.ledger.patient(OTHER)]
    today = two.ledger.clock().date()
    tallies = clarification_tallies(patients, today + timedelta(days=40))
    assert tallies["open_queries"] == [
        {"site": "S1", "total": 1, "0-7 days": 0, "8-30 days": 0, "31-90 days": 1,
         "over 90 days": 0},
        {"site": "S2", "total": 1, "0-7 days": 0, "8-30 days": 0, "31-90 days": 1,
         "over 90 days": 0}]
    assert tallies["sdv"] == [{"site": "S1", "verified": 1, "entries": 4, "percent": 25.0},
                              {"site": "S2", "verified": 0, "entries": 3, "percent": 0.0}]
    write_report(Reader(two.ledger, "mon"), tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "Open data clarification queries per site" in page and "<td>25.0</td>" in page


def test_queries_and_verification_leave_a_signature_covering_the_data(two):
    from m22bol.domain import commands as c
    from m22bol.ledger.signatures import signature_status

    # `inv` already has a password (tests.support.new_ledger); the signature re-enters it.
    two.ledger.execute(c.Sign(subject=S, meaning="approved", password=TEST_PASSWORD), "inv")
    query = open_query(two)
    two.do("query answer", actor="inv", query_id=query, text="checked")
    two.do("verify-source", actor="mon", subject=S, entry=f"{S}#4")
    assert signature_status(two.ledger.patient(S))["covers_current_data"] is True
    fix = two.do("correct", subject=S, entry=f"{S}#4", set=["dose_mg=330"], reason="log")
    assert signature_status(two.ledger.patient(S))["changed_since"] == [fix["entry"]]
