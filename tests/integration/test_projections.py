"""The SQL read models: kept by every entry, equal to a rebuild from zero and to the replay."""

from __future__ import annotations

import orjson
import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from m22bol.domain.errors import BadInput
from m22bol.projections import catalog, runner, stored, tables
from m22bol.projections.document_json import plain
from m22bol.projections.recorder import ProjectionTracking
from tests.support import invoke, open_ledger
from tests.support.protocols import amendment
from tests.support.read_models import (
    append_without_projecting,
    assert_agrees_with_replay,
    assert_rebuild_changes_nothing,
    screening,
    snapshot,
)

# --- the tests --------------------------------------------------------------------------------


def test_every_entry_is_projected_before_it_returns(driver):
    ledger = driver.ledger
    driver.enrolled("P-1")
    assert stored.status(ledger)["baskets"]["I"]["enrolled"] == 1
    driver.do("death", subject="P-1", date="2025-02-01")
    assert stored.status(ledger)["baskets"]["I"]["dead"] == 1
    assert stored.patient(ledger, "P-1")["death"] == "2025-02-01"
    driver.do("correct", subject="P-1", entry="P-1#4", set={"date": "2025-02-03"}, reason="typo")
    assert stored.patient(ledger, "P-1")["death"] == "2025-02-03"
    assert_agrees_with_replay(ledger)


def test_read_models_agree_with_replay_and_with_a_rebuild(driver):
    screening(driver)
    assert_agrees_with_replay(driver.ledger)
    rebuilt = assert_rebuild_changes_nothing(driver.ledger)
    summary = {r[0]: r for r in rebuilt[catalog.PATIENT_SUMMARY]}
    assert set(summary) == {"P-1", "P-2", "P-3", "P-4"}
    assert summary["P-4"][3] == "S3"  # the corrected site, not the one first entered
    assert [r[0] for r in rebuilt[catalog.BASKETS]] == ["I", "II", "III", "IV"]
    # The corrected ctDNA result and the retracted contact reach the rows.
    ctdna = [r for r in rebuilt[catalog.ASSESSMENTS] if r[1] == "P-1"]
    assert [(r[0], r[5]) for r in ctdna] == [("P-1#4", "not-detected")]
    assert stored.patient(driver.ledger, "P-2")["last_known_alive"] == "2025-03-02"


def test_endpoint_inputs_hold_the_rule_modules_facts(driver):
    from m22bol.domain.rules.endpoint_inputs import patient_facts
    from m22bol.domain.timeline import derive

    screening(driver)
    ledger = driver.ledger
    stored = {r[0]: orjson.loads(r[2]) for r in snapshot(ledger.url)[catalog.ENDPOINT_INPUTS]}
    protocol = ledger.require_trial().protocol
    assert set(stored) == set(ledger.subjects())
    for subject in ledger.subjects():
        timeline = ledger.require_patient(subject).timeline()
        state = derive(subject, timeline, protocol, ledger.clock().date())
        assert stored[subject] == plain(patient_facts(state, timeline))


def test_a_protocol_amendment_rederives_subjects_it_does_not_touch(driver, tmp_path):
    ledger = driver.ledger
    driver.do("register", subject="M22-101", site="S1", consent_date="2025-01-02")
    driver.do("assess-eligibility", subject="M22-101", date="2025-01-03", her2="negative",
              er="positive", prior_therapy="none", distant_lesions=1, all_lesions_curable="yes",
              lvef=60, ecog=0)
    assert stored.patient(ledger, "M22-101")["status"] == "screen-failed"

    driver.do("amend-protocol", actor="admin", file=amendment(tmp_path), reason="basket V")
    # Basket V takes HER2-negative ER-positive subjects: no longer a screen failure.
    assert stored.patient(ledger, "M22-101")["status"] == "registered"
    assert list(stored.status(ledger)["baskets"])[:5] == ["I", "II", "III", "IV", "V"]
    assert_agrees_with_replay(ledger)
    assert_rebuild_changes_nothing(ledger)


def test_a_lagging_projection_is_caught_up_by_the_next_query(driver):
    ledger = driver.ledger
    driver.enrolled("P-1")
    append_without_projecting(ledger, "death", subject="P-1", date="2025-02-01")
    head = ledger.recorder.max_notification_id()
    lags = {p["name"]: p["lag"] for p in runner.status(ledger)["projections"]}
    assert lags == dict.fromkeys(catalog.projections(), 1)
    assert runner.status(ledger)["max_notification_id"] == head

    assert stored.status(ledger)["baskets"]["I"]["dead"] == 1
    assert {p["lag"] for p in runner.status(ledger)["projections"]} == {0}
    assert_agrees_with_replay(ledger)


def test_status_counts_what_the_tables_hold(driver):
    """The query reads the read model, not the events: change a row and the count follows."""
    driver.enrolled("P-1")
    ledger = driver.ledger
    with runner.read_models(ledger).store.transaction() as sql:
        sql.run(f"UPDATE {tables.patient_summary.name} SET basket = 'III' WHERE subject = ?",
                ("P-1",))
    counts = stored.status(ledger)["baskets"]
    assert (counts["I"]["enrolled"], counts["III"]["enrolled"]) == (0, 1)


def test_unknown_subject_is_bad_input(driver):
    with pytest.raises(BadInput, match="not registered"):
        stored.patient(driver.ledger, "NOBODY")


def test_tracking_recorder_moves_forward_only(ledger):
    tracking = ProjectionTracking(runner.read_models(ledger).store, "a-test-projection")
    assert tracking.max_tracking_id("m22bol") is None
    assert tracking.has_tracking_id("m22bol", None)
    assert not tracking.has_tracking_id("m22bol", 1)
    tracking.insert_tracking(Tracking("m22bol", 5))
    assert tracking.max_tracking_id("m22bol") == 5
    assert tracking.has_tracking_id("m22bol", 5) and not tracking.has_tracking_id("m22bol", 6)
    for stale in (5, 4):
        with pytest.raises(IntegrityError):
            tracking.insert_tracking(Tracking("m22bol", stale))
    tracking.insert_tracking(Tracking("m22bol", 9))
    tracking.wait("m22bol", 9, timeout=0.1)
    with pytest.raises(TimeoutError):
        tracking.wait("m22bol", 10, timeout=0.1)
    # Another application's position is separate.
    assert tracking.max_tracking_id("other") is None


def test_a_concurrent_updater_that_got_there_first_makes_advance_fail_cleanly(driver):
    ledger = driver.ledger
    driver.enrolled("P-1")
    models = runner.read_models(ledger)
    append_without_projecting(ledger, "contact", subject="P-1", date="2025-02-01")
    before = snapshot(ledger.url)
    head = ledger.recorder.max_notification_id()
    # Someone else moved one projection to the head while this updater was deriving.
    models.tracking["treatment"].insert_tracking(Tracking(ledger.name, head))
    with pytest.raises(IntegrityError):
        runner.advance(models, {p: head - 1 for p in models.names}, head)
    after = snapshot(ledger.url)
    assert {k: v for k, v in after.items() if k != "_tracking"} == {
        k: v for k, v in before.items() if k != "_tracking"}
    runner.catch_up(ledger)  # re-reads the positions and does only what is missing
    assert_agrees_with_replay(ledger)


def test_cli_projections_status_and_rebuild(ledger_url):
    from tests.support import new_ledger

    new_ledger(ledger_url).close()
    assert invoke(["register", "P-1", "--site", "S1", "--consent-date", "2025-01-02"],
                  url=ledger_url).exit_code == 0
    shown = invoke(["projections", "status", "--json"], url=ledger_url, user="mon")
    assert shown.exit_code == 0, shown.output
    doc = orjson.loads(shown.output)
    assert {p["lag"] for p in doc["projections"]} == {0}
    assert {p["name"] for p in doc["projections"]} == set(catalog.projections())

    refused = invoke(["projections", "rebuild"], url=ledger_url, user="dm")
    assert refused.exit_code == 4
    before = snapshot(ledger_url)
    done = invoke(["projections", "rebuild", "--json"], url=ledger_url, user="admin")
    assert done.exit_code == 0, done.output
    assert "rebuilding" not in done.stderr  # progress: on a terminal only (e2e/test_progress)
    assert snapshot(ledger_url) == before
    assert invoke(["status", "--json"], url=ledger_url).exit_code == 0


def test_a_projection_whose_schema_changed_is_rebuilt_from_zero(driver):
    """A new build with other columns (or other row contents) for one projection: that
    projection starts again from zero on first use, the others keep their rows."""
    screening(driver)
    url = driver.ledger.url
    kept = snapshot(url)
    with runner.read_models(driver.ledger).store.transaction() as sql:
        sql.run(f"UPDATE {tables.schema.name} SET fingerprint = 'an older build' "
                "WHERE projection = ?", ("treatment",))

    reopened = open_ledger(url)
    try:
        lags = {p["name"]: p["lag"] for p in runner.status(reopened)["projections"]}
        head = reopened.recorder.max_notification_id()
        assert lags == {**dict.fromkeys(catalog.projections(), 0), "treatment": head}
        assert snapshot(url)[catalog.TREATMENT] == []
        stored.status(reopened)  # any query catches up
        assert snapshot(url) == kept
    finally:
        reopened.close()
